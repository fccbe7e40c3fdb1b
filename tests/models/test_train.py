"""Stage-2 training on the tiny config: the loss falls, resumption continues, DDP over gloo runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from training_fixtures import TRAIN_STEPS
from models.checkpoints import load_model
from models.sampling import null_condition
from models.train import TrainConfig, batch_condition, drop_conditions, read_log, train

SCRIPT = Path(__file__).parent / "ddp_train_script.py"


def test_loss_falls_and_artifacts_are_written(teacher_run):
    losses = [r["loss"] for r in read_log(teacher_run) if "loss" in r]
    assert len(losses) == TRAIN_STEPS // 10
    assert losses[-1] < 0.7 * losses[0], losses
    assert (teacher_run / "val" / f"step_{TRAIN_STEPS:06d}.png").is_file()
    model = load_model(teacher_run / "teacher.safetensors")
    assert model.config.name == "tiny"


def test_resume_continues_from_the_saved_step(teacher_run, pair_dataset, tmp_path):
    """A run asked for more steps resumes at the saved step and logs only the new ones."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(teacher_run, run)
    config = TrainConfig(model="tiny", steps=TRAIN_STEPS + 10, batch_size=8, lr=1e-3, warmup=5, save_every=10,
                         log_every=10)
    train(pair_dataset, run, config, progress=False)
    steps = [r["step"] for r in read_log(run) if "loss" in r]
    assert steps == list(range(10, TRAIN_STEPS + 11, 10))


def test_condition_dropout_matches_the_null_condition(val_batch):
    dropped = drop_conditions(val_batch, 1.0)
    null = null_condition(batch_condition(val_batch))
    for name in ("anchor_latent", "anchor_mask", "ref_latent"):
        assert torch.equal(getattr(batch_condition(dropped), name), getattr(null, name))
    assert torch.equal(dropped["target_latent"], val_batch["target_latent"])
    kept = drop_conditions(val_batch, 0.0)
    assert torch.equal(kept["ref_latent"], val_batch["ref_latent"])


def test_two_process_gloo_ddp_run(pair_cache, pair_dataset, tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks step, rank 0 writes, weights stay in sync."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), *sys.path])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(pair_cache), str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "train_config.json").read_text())
    assert config["world_size"] == 2
    assert [r["step"] for r in read_log(out) if "loss" in r] == [2, 4]
    digests = sorted(Path(out).glob("rank*.sum"))
    assert len(digests) == 2 and digests[0].read_text() == digests[1].read_text()
