"""Evaluation: metrics against slow references, the warp-based consistency, a run on the tiny export."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluate import CEILING, OnnxRunner, evaluate, evaluation_targets, psnr, ssim, warp_error
from training_fixtures import procedural_scenes, tiny_codec


def _slow_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM per window position by explicit loops (the definition), valid region, channel mean."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for ch in range(3):
        x, y = a[..., ch] / 255.0, b[..., ch] / 255.0
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
                mx, my = (win * px).sum(), (win * py).sum()
                vx, vy = (win * px * px).sum() - mx**2, (win * py * py).sum() - my**2
                cxy = (win * px * py).sum() - mx * my
                vals.append(((2 * mx * my + 1e-4) * (2 * cxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4)))
    return float(np.mean(vals))


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 18, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a / 255.0 - b / 255.0) ** 2)
    assert psnr(a, b) == pytest.approx(-10 * math.log10(mse))
    assert psnr(a, a) == math.inf
    assert ssim(a, b) == pytest.approx(_slow_ssim(a, b), abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_warp_error_is_zero_for_a_view_and_itself_and_grows_with_a_shift():
    scene = procedural_scenes(2, 8)[0]
    a, b = scene.frames[0], scene.frames[1]
    assert warp_error(a.rgb, a.rgb, a, a) == 0.0
    real = warp_error(a.rgb, b.rgb, a, b)
    shifted = warp_error(np.roll(a.rgb, 6, axis=1), b.rgb, a, b)
    assert real < shifted


def test_targets_never_see_their_own_window():
    scene = procedural_scenes(2, 8)[1]
    targets = evaluation_targets(scene, window=4)
    assert len(targets) == 8
    for t in targets:
        names = {f.name for f in scene.frames[4 * t.window : 4 * t.window + 4]}
        assert t.reference.name not in names and t.frame.name in names


def test_evaluate_the_tiny_export(export_dir, teacher_run, tmp_path):
    from dataclasses import replace

    from models.checkpoints import load_model
    from models.dit import build_model

    teacher = load_model(teacher_run / "teacher.safetensors")
    no_anchor = build_model(replace(teacher.config, ablate=("anchor",))).eval()
    no_anchor.load_state_dict(teacher.state_dict())
    ablations = {"full": teacher, "no anchor": no_anchor}
    scenes = procedural_scenes(2, 8)[:1]
    with pytest.raises(ValueError, match="latent_decoder"):
        evaluate(OnnxRunner(export_dir), scenes, ablations=ablations, progress=False)
    result = evaluate(OnnxRunner(export_dir), scenes, teacher=teacher, teacher_steps=3, stride=2,
                      strip=tmp_path / "strip.png", progress=False, ablations=ablations, latent_decoder=tiny_codec()[1])
    expected = {"raw anchor", "anchor + hole filling", "nearest reference", "generator 1 step", "generator 2 steps",
                "teacher (3 steps)", "1 step, no anchor", "1 step, no reference", "1 step, no camera",
                "ablation: full", "ablation: no anchor", CEILING}
    assert set(result.rows) == expected
    assert result.targets == 4
    # hole filling only changes empty pixels, and fills them with something closer than black
    assert result.rows["anchor + hole filling"]["psnr"] >= result.rows["raw anchor"]["psnr"]
    assert set(result.consistency) == {"raw anchor", "anchor + hole filling", "generator 1 step", "generator 2 steps",
                                      "teacher (3 steps)"}
    assert "| generator 1 step |" in result.markdown()
    # same weights and noise: only the anchor the ablated model no longer sees tells the rows apart
    assert result.rows["ablation: no anchor"] != result.rows["ablation: full"]
    assert (tmp_path / "strip.png").is_file()
