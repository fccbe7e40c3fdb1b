"""The fill guard: which windows it leaves out, that their targets never reach the cloud they
are rendered from, and that it picks whichever frame source comes closer to the views."""

from __future__ import annotations

import numpy as np
import pytest

from models.fill_guard import FillGuard, calibration_windows, measure_fill_guard
from training_fixtures import procedural_scenes


def test_windows_are_every_run_of_views_that_leaves_enough_to_build():
    assert calibration_windows(8) == [range(s, s + 4) for s in range(5)]
    assert calibration_windows(6) == [range(0, 4), range(1, 5), range(2, 6)]  # two views remain to build from
    assert calibration_windows(5) == []  # one view left: no cloud worth testing
    assert calibration_windows(24) == [range(s, s + 4) for s in range(21)]
    spread = calibration_windows(100)  # more runs than GUARD_WINDOWS: that many, first to last
    assert len(spread) == 24 and spread[0] == range(0, 4) and spread[-1] == range(96, 100)
    assert calibration_windows(24, windows=1) == [range(0, 4)]
    assert calibration_windows(24, windows=0) == []
    for count in range(6, 120):  # never past the end; distinct windows
        windows = calibration_windows(count)
        assert max(max(w) for w in windows) < count and len(set(map(tuple, windows))) == len(windows)


@pytest.fixture(scope="module")
def scene():
    return procedural_scenes(1, 12)[0]


def _noisy(rgb: np.ndarray, spread: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-spread, spread + 1, rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("model_spread, fill_spread, use_model", [(4, 30, True), (30, 4, False), (10, 10, False)])
def test_the_closer_source_wins_and_targets_stay_out_of_their_cloud(scene, model_spread, fill_spread, use_model):
    calls = []

    def render_both(anchor, targets):
        held = {f.name for f in targets}
        assert held.isdisjoint(f.name for f in anchor.frames)  # a target never builds its own cloud
        assert len(anchor.frames) + 4 == len(scene.frames)  # the rest of the scene does
        calls.append(sorted(held))
        return [(_noisy(t.rgb, model_spread, 1), _noisy(t.rgb, fill_spread, 1)) for t in targets]

    guard = measure_fill_guard(scene.frames, render_both)
    # every run of 4 views left out in turn, every other view of it a target
    assert calls == [[f"{s:05d}", f"{s + 2:05d}"] for s in range(9)]
    assert guard.targets == 18 and guard.use_model is use_model
    # PSNR of uniform noise of spread s: 10 log10(255^2 / E[n^2]), E[n^2] = s (s + 1) / 3 (before clipping)
    expected = 10 * np.log10(255.0**2 * 3 / (model_spread * (model_spread + 1)))
    assert guard.model_psnr == pytest.approx(expected, abs=0.3)
    assert guard.gain_db == pytest.approx(guard.model_psnr - guard.fill_psnr)


def test_too_few_views_measure_nothing(scene):
    def render_both(anchor, targets):
        raise AssertionError("nothing to render")

    assert measure_fill_guard(scene.frames[:5], render_both) is None


def test_a_tie_goes_to_the_fill_and_exact_frames_stay_finite(scene):
    assert not FillGuard(30.0, 30.0, 6).use_model and FillGuard(30.01, 30.0, 6).use_model
    assert "anchor + hole filling" in FillGuard(20.0, 25.0, 6).describe()
    exact = measure_fill_guard(scene.frames[:6], lambda anchor, targets: [(t.rgb, t.rgb) for t in targets])
    assert exact.model_psnr == exact.fill_psnr and np.isfinite(exact.model_psnr) and not exact.use_model
