"""Session fixtures of the training-stage tests: one tiny dataset, teacher, generator and export,
built once and shared by test_pairs/test_train/test_distill/test_export/test_evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from training_fixtures import IMAGE_SIZE, TRAIN_STEPS, procedural_scenes, tiny_autoencoder, tiny_codec  # noqa: E402



@pytest.fixture(scope="session")
def pair_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("latent_cache")


@pytest.fixture(scope="session")
def pair_dataset(pair_cache):
    """PairDataset of two 8-view 64 px procedural scenes, encoded by the tiny autoencoder."""
    from models.pairs import PairConfig, PairDataset

    encoder, _ = tiny_codec()
    return PairDataset(procedural_scenes(2, 8), encoder, PairConfig(image_size=IMAGE_SIZE), pair_cache)


@pytest.fixture(scope="session")
def val_batch(pair_dataset):
    from torch.utils.data import default_collate

    torch.manual_seed(0)
    return default_collate([pair_dataset[i] for i in (0, 5)])


@pytest.fixture(scope="session")
def teacher_run(pair_dataset, val_batch, tmp_path_factory) -> Path:
    """A 40-step tiny teacher run folder (log.jsonl, teacher.safetensors, val strips)."""
    from models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("teacher")
    _, decoder = tiny_codec()
    config = TrainConfig(model="tiny", steps=TRAIN_STEPS, batch_size=8, lr=1e-3, warmup=5, save_every=20,
                         val_every=20, log_every=10, val_sampler_steps=4)
    train(pair_dataset, out, config, val_batch=val_batch, decoder=decoder, progress=False)
    return out


@pytest.fixture(scope="session")
def distill_run(teacher_run, pair_dataset, val_batch, tmp_path_factory) -> Path:
    """A short tiny distillation run folder (generator_{1,2}step.safetensors, log.jsonl)."""
    from models.checkpoints import load_model
    from models.distill import DistillConfig, distill

    out = tmp_path_factory.mktemp("distill")
    _, decoder = tiny_codec()
    config = DistillConfig(steps=30, batch_size=8, pool_size=16, teacher_steps=4, generator_lr=1e-3, critic_lr=1e-3,
                           save_every=10, log_every=10)
    distill(load_model(teacher_run / "teacher.safetensors"), pair_dataset, out, config, val_batch=val_batch,
            decoder=decoder, progress=False)
    return out


@pytest.fixture(scope="session")
def export_dir(distill_run, tmp_path_factory) -> Path:
    """The tiny distilled generator exported with the tiny autoencoder, fp16 generators included."""
    from models.checkpoints import load_model
    from models.export import export_model

    out = tmp_path_factory.mktemp("export") / "tiny"
    generators = {s: load_model(distill_run / f"generator_{s}step.safetensors") for s in (1, 2)}
    export_model(generators, tiny_autoencoder(), out, "tiny", fp16=True)
    return out
