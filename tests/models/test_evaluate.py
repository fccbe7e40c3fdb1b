"""Evaluation: metrics against slow references, the warp-based consistency, a run on the tiny export."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluate import (CEILING, FILL_ROW, GENERATOR_ROW, GUARD_ROW, OnnxRunner, evaluate, evaluation_targets,
                             psnr, ssim, warp_error)
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
                "ablation: full", "ablation: no anchor", CEILING, GUARD_ROW}
    assert set(result.rows) == expected
    assert result.targets == 4
    # hole filling only changes empty pixels, and fills them with something closer than black
    assert result.rows["anchor + hole filling"]["psnr"] >= result.rows["raw anchor"]["psnr"]
    assert set(result.consistency) == {"raw anchor", "anchor + hole filling", "generator 1 step", "generator 2 steps",
                                      "teacher (3 steps)", GUARD_ROW}
    # 8 views in windows of 4: a window's cloud keeps 4 views, too few to leave any out, so the
    # guard measures nothing and the model serves
    assert result.fill_guard == {scenes[0].name: [None, None]}
    assert result.rows[GUARD_ROW] == result.rows[GENERATOR_ROW]
    assert "| generator 1 step |" in result.markdown()
    # In the holes the raw anchor is black: filling them is what moves the holes-only figure.
    holes = {k: v["holes_psnr"] for k, v in result.rows.items()}
    assert holes["anchor + hole filling"] > holes["raw anchor"]
    # pooled over thin and wide holes, the squared error is a weighted mean of the two kinds'
    for m in result.rows.values():
        kinds = [m["thin_holes_psnr"], m["wide_holes_psnr"]]
        if all(math.isfinite(k) for k in kinds):
            assert min(kinds) - 1e-9 <= m["holes_psnr"] <= max(kinds) + 1e-9
    assert set(result.per_scene) == {scenes[0].name} and set(result.per_scene[scenes[0].name]) == expected
    assert result.per_scene[scenes[0].name]["raw anchor"] == pytest.approx(result.rows["raw anchor"]["psnr"])
    # same weights and noise: only the anchor the ablated model no longer sees tells the rows apart
    assert result.rows["ablation: no anchor"] != result.rows["ablation: full"]
    assert (tmp_path / "strip.png").is_file()


def test_the_fill_guard_row_serves_what_the_guard_chose(export_dir):
    """12 views: each window's cloud keeps 8, so the guard leaves 5 runs of 4 of them out. The
    tiny model (40 steps at 64 px) fills holes worse than push-pull on every one, and where
    the guard chose the fill the row is the fill exactly."""
    scenes = procedural_scenes(1, 12)
    result = evaluate(OnnxRunner(export_dir), scenes, stride=2, progress=False)
    gains = result.fill_guard[scenes[0].name]
    assert len(gains) == 3 and all(g is not None and g < 0 for g in gains), gains
    assert result.fill_guard_weights[scenes[0].name] == [0.0] * 3
    assert result.rows[GUARD_ROW] == result.rows[FILL_ROW]
    assert result.rows[GENERATOR_ROW]["psnr"] < result.rows[FILL_ROW]["psnr"]
    assert evaluate(OnnxRunner(export_dir), scenes, stride=2, progress=False, fill_guard=False).fill_guard == {}


def _slow_wide_holes(mask: np.ndarray, radius: float) -> np.ndarray:
    """The definition, pixel by pixel: flood-fill each hole (8-connected) and call it wide when one
    of its pixels is farther than ``radius`` from the centre of every covered pixel."""
    h, w = mask.shape
    covered = np.argwhere(mask).astype(np.float64)
    out = np.zeros_like(mask)
    seen = mask.copy()
    for start in map(tuple, np.argwhere(~mask)):
        if seen[start]:
            continue
        hole, stack = [], [start]
        seen[start] = True
        while stack:
            i, j = stack.pop()
            hole.append((i, j))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    ni, nj = i + di, j + dj
                    if 0 <= ni < h and 0 <= nj < w and not seen[ni, nj]:
                        seen[ni, nj] = True
                        stack.append((ni, nj))
        far = max(np.sqrt(((covered - p) ** 2).sum(1)).min() for p in np.array(hole, np.float64))
        for p in hole:
            out[p] = far > radius
    return out


def test_wide_holes_split_slivers_from_disocclusions():
    from models.anchor.holes import THIN_HOLE_RADIUS, wide_holes

    rng = np.random.default_rng(3)
    for trial in range(6):
        mask = np.ones((24, 32), bool)
        for _ in range(3):  # rectangles from slivers (1 px across) to blocks wider than 2 * radius
            y, x = rng.integers(0, 20), rng.integers(0, 28)
            mask[y : y + rng.integers(1, 14), x : x + rng.integers(1, 14)] = False
        mask[rng.random(mask.shape) < 0.05] = False  # speckle
        assert np.array_equal(wide_holes(mask), _slow_wide_holes(mask, THIN_HOLE_RADIUS)), trial
    assert not wide_holes(np.ones((8, 8), bool)).any()
    assert wide_holes(np.zeros((8, 8), bool)).all()  # nothing covered: the whole frame is to invent


def test_side_by_side_puts_sets_in_order_and_counts_scenes_below_the_fill():
    from models.evaluate import EvalResult, side_by_side

    def result(gen: dict[str, float], fill: dict[str, float]) -> EvalResult:
        rows = {"anchor + hole filling": {"psnr": np.mean(list(fill.values())), "ssim": 0.9, "holes_psnr": 20.0},
                "generator 1 step": {"psnr": np.mean(list(gen.values())), "ssim": 0.8, "holes_psnr": float("nan")}}
        per_scene = {s: {"generator 1 step": gen[s], "anchor + hole filling": fill[s]} for s in gen}
        return EvalResult(rows=rows, consistency={"generator 1 step": 1.25}, per_scene=per_scene, targets=4,
                          scenes=len(gen))

    ood = result({"a": 25.0, "b": 27.0}, {"a": 26.0, "b": 26.5})
    ind = result({"c": 31.0}, {"c": 29.0})
    table = side_by_side({"out-of-family": ood, "in-family": ind})
    lines = table.splitlines()
    assert lines[0].index("out-of-family") < lines[0].index("in-family")
    assert "| generator 1 step | 26.00 | 0.800 | - | 1.25 | 31.00 | 0.800 | - | 1.25 |" in lines
    assert "a -1.00, b +0.50; below it on 1 of 2." in table
    assert "c +2.00; below it on 0 of 1." in table


def test_eval_command_scores_out_of_family_beside_in_family(export_dir, tmp_path):
    import json

    from python_bridge.cli import main

    size = json.loads((export_dir / "manifest.json").read_text())["image_size"][0]
    common = ["--scenes", "1", "--views", "8", "--size", str(size), "--workers", "1"]
    assert main(["datagen", "procedural", *common, "--kind", "indoor", "--out", str(tmp_path / "in")]) == 0
    assert main(["datagen", "procedural", *common, "--kind", "held-out", "--out", str(tmp_path / "ood")]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(export_dir), "--data", str(tmp_path / "in"), "--out-of-family",
                 str(tmp_path / "ood"), "--stride", "4", "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert list(report) == ["out of family", "in family"]
    assert report["out of family"]["scenes"] == report["in family"]["scenes"] == 1
    assert (out / "eval.md").read_text().startswith("| method | out of family: PSNR")
    assert (out / "strip_out_of_family.png").is_file() and (out / "strip_in_family.png").is_file()
    anchors = json.loads((out / "anchors.json").read_text())["rows"]  # default: also at 1/4 size (far cameras)
    assert list(anchors) == ["in family", "in family, 1/4 size", "out of family", "out of family, 1/4 size"]
    assert anchors["in family"]["mesh"]["targets"] == anchors["in family, 1/4 size"]["mesh"]["targets"] > 0
    assert main(["eval", "--data", str(tmp_path / "in"), "--anchor-minify", "0", "--out", str(out)]) == 2


def test_minified_frames_average_their_pixels_on_the_same_rays():
    from models.cameras import K_from_hfov, look_at
    from models.evaluate import minified
    from models.scene import Camera, Frame

    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)  # sizes that 3 does not divide
    depth = rng.uniform(1, 5, (13, 17)).astype(np.float32)
    cam = Camera(K_from_hfov(60.0, 17, 13), look_at([0.0, 0.0, 0.0], [0.0, 1.0, 0.2]), 17, 13)
    small = minified(Frame(rgb, cam, depth, "f"), 3)
    assert (small.camera.width, small.camera.height) == (5, 4)
    for i in range(4):
        for j in range(5):
            block = rgb[3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(-1, 3).astype(np.float64)
            assert np.abs(small.rgb[i, j] - block.mean(0)).max() <= 0.5 + 1e-9  # the block's mean, rounded
            assert small.depth[i, j] == depth[3 * i + 1, 3 * j + 1]  # the block's centre sample
    # a small pixel's centre looks along the ray through the centre of the block it spans
    centres = np.array([[0.5, 0.5], [4.5, 3.5], [2.5, 1.5]])
    def rays(uv: np.ndarray, K: np.ndarray) -> np.ndarray:  # world directions through pixel coordinates uv
        return (cam.c2w[:3, :3] @ np.linalg.solve(K, np.c_[uv, np.ones(len(uv))].T)).T

    np.testing.assert_allclose(rays(centres, small.camera.K), rays(centres * 3, cam.K), atol=1e-12)
    assert minified(Frame(rgb, cam, depth, "f"), 1).rgb is rgb
    with pytest.raises(ValueError, match="no pixel"):
        minified(Frame(rgb, cam, depth, "f"), 20)
