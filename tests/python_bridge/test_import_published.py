"""``worldfm import-published``: published-format checkpoints -> a model folder the server runs.

The checkpoints are small (2 blocks of width 144) but in the release's exact layout
(tests/models/published_format.py): PixArt-trainer wrappers with an EMA copy, optimizer,
numpy-1.x scalars and an argparse Namespace; the VAE a small diffusers ``AutoencoderKL``
saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge_views import make_views
from python_bridge.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))  # the published-format writers live with the model tests
from published_format import published_shapes, random_state, write_published_checkpoint, write_small_vae  # noqa: E402

SIZE = 64  # frames; the reduced XL's latent is 8x8


@pytest.fixture(scope="module")
def release_files(tmp_path_factory) -> Path:
    """worldfm_1-step.pth, worldfm_2-step.pth (different networks) and vae/, as downloaded."""
    root = tmp_path_factory.mktemp("release")
    write_published_checkpoint(root / "worldfm_1-step.pth", seed=1)
    write_published_checkpoint(root / "worldfm_2-step.pth", seed=2)
    write_small_vae(root / "vae")
    return root


def import_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["import-published", "--checkpoint", str(root / "worldfm_1-step.pth"), "--checkpoint",
            str(root / "worldfm_2-step.pth"), "--vae", str(root / "vae"), "--out", str(out), "--image-size",
            str(SIZE), *extra]


@pytest.fixture(scope="module")
def imported(release_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "worldfm-xl-small"
    assert main(import_args(release_files, out, "--fp16")) == 0
    return out


def test_imported_folder_is_served_and_renders_frames(imported, release_files, make_server, capsys):
    from models.anchor.release_style import render_release
    from models.checkpoints import load_published_checkpoint, published_config, read_published_weights
    from models.sampling import FewStepGenerator
    from python_bridge.client import Client
    from python_bridge.engine import Engine
    from python_bridge.pipeline import FramePipeline

    manifest = json.loads((imported / "manifest.json").read_text())
    assert manifest["anchor_style"] == "release" and manifest["steps"] == [1, 2]
    assert set(manifest["graphs_fp16"]) == {"generator_1", "generator_2"} and "probe" not in manifest["parity"]
    assert manifest["config"]["depth"] == 2 and manifest["config"]["checkpoints"]["2"]["weights"] == "state_dict"

    # The graph computes the release's weights (state_dict, not the EMA copy beside it).
    engine = Engine(imported, provider="cpu")
    weights = read_published_weights(release_files / "worldfm_2-step.pth")
    network = load_published_checkpoint(release_files / "worldfm_2-step.pth", published_config(weights, SIZE))
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((1, 4, 8, 8), dtype=np.float32)
    K = np.array([[0.9 * SIZE, 0, SIZE / 2], [0, 0.9 * SIZE, SIZE / 2], [0, 0, 1.0]])
    target = np.eye(4)
    target[:3, 3] = [0.3, 0.0, 0.1]
    args = (latent, np.ones((SIZE, SIZE)), latent, K, np.eye(4), K, target)
    got = engine.generate(2, *args, rng=np.random.default_rng(5)).numpy()
    noise = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 2, 4, 8, 8), dtype=np.float32))
    torch_args = [torch.as_tensor(np.asarray(a, np.float32))[None] for a in args]
    torch_args[0], torch_args[2] = torch_args[0][0], torch_args[2][0]  # latents already carry the batch axis
    torch_args[1] = torch_args[1][None]  # mask (B, 1, H, W)
    with torch.no_grad():
        want = FewStepGenerator(network, 2)(noise, *torch_args).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 + 1e-3 * np.abs(want).max())

    # The server renders with it, anchors in the release's style.
    pipeline = FramePipeline(engine)
    assert pipeline.anchor_style == "release"
    views = make_views(3, width=SIZE, height=SIZE)
    scene = pipeline.build(views)
    cam = views[1].camera
    frame = pipeline.render(scene, cam.c2w, cam.K, (SIZE, SIZE), steps=1, seed=0)
    np.testing.assert_array_equal(frame.anchor, render_release(scene.anchor.cloud, cam.K, cam.c2w, SIZE, SIZE).rgb.numpy())
    server = make_server(FramePipeline(Engine(imported, provider="cpu")))
    with Client(server.endpoint, timeout_s=60) as client:
        opened = client.open_scene(views).scene
        one = client.render(opened, cam.c2w, cam.K, (SIZE, SIZE), seed=3, steps=1)
        two = client.render(opened, cam.c2w, cam.K, (SIZE, SIZE), seed=3, steps=2)
    assert one.mode == two.mode == "model" and one.rgb.shape == (SIZE, SIZE, 3) and one.rgb.std() > 0
    assert not np.array_equal(one.rgb, two.rgb)  # two networks, two graphs

    # `worldfm demo --model` takes the folder unchanged.
    assert main(["demo", "--model", str(imported), "--frames", "2", "--views", "2", "--size", "32",
                 "--out", str(imported.parent / "demo")]) == 0
    assert "mode model (model worldfm-xl-small" in capsys.readouterr().out


def test_a_missing_or_misshaped_tensor_is_refused_by_name(release_files, tmp_path, capsys):
    state = random_state(published_shapes(depth=2, d=144, latent=8))
    del state["blocks.1.mlp.fc2.weight"]
    torch.save({"state_dict": state}, tmp_path / "worldfm_1-step.pth")
    out = tmp_path / "model"
    args = ["import-published", "--checkpoint", str(tmp_path / "worldfm_1-step.pth"), "--vae",
            str(release_files / "vae"), "--out", str(out), "--image-size", str(SIZE)]
    assert main(args) == 2
    assert "missing keys (1): blocks.1.mlp.fc2.weight" in capsys.readouterr().err
    state = random_state(published_shapes(depth=2, d=144, latent=8))
    state["blocks.0.attn.proj.weight"] = torch.zeros(144, 100)
    torch.save({"state_dict": state}, tmp_path / "worldfm_1-step.pth")
    assert main(args) == 2
    assert "blocks.0.attn.proj.weight: checkpoint (144, 100) vs model (144, 144)" in capsys.readouterr().err
    assert not out.exists()


def test_unsafe_objects_need_trust_pickle(release_files, tmp_path, capsys):
    from pathlib import PurePosixPath

    state = random_state(published_shapes(depth=2, d=144, latent=8))
    torch.save({"state_dict": state, "work_dir": PurePosixPath("output/dmd")}, tmp_path / "worldfm_1-step.pth")
    args = ["import-published", "--checkpoint", str(tmp_path / "worldfm_1-step.pth"), "--vae",
            str(release_files / "vae"), "--out", str(tmp_path / "model"), "--image-size", str(SIZE), "--dry-run"]
    assert main(args) == 2
    assert "(pathlib.PurePosixPath)" in capsys.readouterr().err
    assert main([*args, "--trust-pickle"]) == 0 and not (tmp_path / "model").exists()  # dry run: nothing written


def test_the_import_says_what_it_needs_and_refuses_without_it(release_files, tmp_path, capsys, monkeypatch):
    from models import published

    out = tmp_path / "model"
    monkeypatch.setattr(published, "available_memory", lambda: 10 * 1024**2)
    assert main(import_args(release_files, out)) == 2
    captured = capsys.readouterr()
    assert "needs       ~" in captured.out and "of disk" in captured.out and "of memory" in captured.out
    assert "the import needs ~" in captured.err and "of memory but 10 MB is available" in captured.err
    monkeypatch.setattr(published, "available_memory", lambda: 1024**4)
    monkeypatch.setattr(published, "free_disk", lambda folder: 1024)
    assert main(import_args(release_files, out)) == 2
    assert "of disk in" in capsys.readouterr().err and not out.exists()
    assert main(["import-published", "--checkpoint", str(release_files / "worldfm_1-step.pth"), "--checkpoint",
                 f"1={release_files / 'worldfm_2-step.pth'}", "--vae", str(release_files / "vae"), "--out",
                 str(out)]) == 2
    assert "two checkpoints for 1 steps" in capsys.readouterr().err
