"""The fill guard: which windows it leaves out, that their targets never reach the cloud they
are rendered from, and that it picks whichever frame source, or mix of the two, comes closer
to the views."""

from __future__ import annotations

import numpy as np
import pytest

from models.fill_guard import MIX_WEIGHTS, NOISE_Z, FillGuard, calibration_windows, guarded_frame, measure_fill_guard
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


def _nothing_covered(view) -> np.ndarray:
    """A covered mask with no pixel covered: the whole frame one wide hole, so every pixel mixes."""
    return np.zeros(view.rgb.shape[:2], bool)


def _noisy(rgb: np.ndarray, spread: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-spread, spread + 1, rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("model_spread, fill_spread, weight", [(4, 30, 1.0), (30, 4, 0.0), (10, 10, 0.0)])
def test_the_closer_source_wins_and_targets_stay_out_of_their_cloud(scene, model_spread, fill_spread, weight):
    calls = []

    def render_both(anchor, targets):
        held = {f.name for f in targets}
        assert held.isdisjoint(f.name for f in anchor.frames)  # a target never builds its own cloud
        assert len(anchor.frames) + 4 == len(scene.frames)  # the rest of the scene does
        calls.append(sorted(held))
        return [(_noisy(t.rgb, model_spread, 1), _noisy(t.rgb, fill_spread, 1), _nothing_covered(t)) for t in targets]

    guard = measure_fill_guard(scene.frames, render_both)
    # every run of 4 views left out in turn, every other view of it a target
    assert calls == [[f"{s:05d}", f"{s + 2:05d}"] for s in range(9)]
    assert guard.targets == 18 and guard.weight == weight and guard.use_model is (weight > 0)
    # PSNR of uniform noise of spread s: 10 log10(255^2 / E[n^2]), E[n^2] = s (s + 1) / 3 (before clipping)
    expected = 10 * np.log10(255.0**2 * 3 / (model_spread * (model_spread + 1)))
    assert guard.model_psnr == pytest.approx(expected, abs=0.3)
    assert guard.gain_db == pytest.approx(guard.model_psnr - guard.fill_psnr)
    assert len(guard.mixed_psnr) == len(MIX_WEIGHTS) and len(guard.gain_se) == len(MIX_WEIGHTS) + 1
    assert all(se > 0 for se in guard.gain_se) or weight == 0.0  # 18 targets' gains vary, unless the frames agree


def test_an_even_mix_wins_where_the_two_err_independently(scene):
    """Two sources equally far off, their errors independent: the mean of the two has half
    their squared error (+3 dB), so the guard serves it rather than either."""
    guard = measure_fill_guard(scene.frames, lambda anchor, targets: [
        (_noisy(t.rgb, 20, 1 + i), _noisy(t.rgb, 20, 1000 + i), _nothing_covered(t)) for i, t in enumerate(targets)])
    assert guard.weight == 0.5 and guard.use_model, guard.describe()
    assert guard.mixed_psnr[MIX_WEIGHTS.index(0.5)] == pytest.approx(guard.model_psnr + 3.0, abs=0.3)
    assert "model 50% + fill in the holes" in guard.describe()


def test_a_mix_is_the_weighted_mean_of_the_two_frames_in_the_wide_holes_and_the_fill_in_the_thin():
    rng = np.random.default_rng(0)
    model, fill = rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    covered = np.ones((20, 24), bool)
    covered[2:18, 2:14] = False  # a hole 16 x 12 px: its middle lies 6 px from the covered pixels
    covered[:, 18:20] = False  # a crack 2 px wide
    fill[covered] = model[covered]  # covered pixels: the anchor in both
    wide = np.zeros_like(covered)
    wide[2:18, 2:14] = True
    thin = ~covered & ~wide
    assert guarded_frame(model, fill, covered, 0.0) is fill
    whole = guarded_frame(model, fill, covered, 1.0)
    assert np.array_equal(whole[wide], model[wide]) and np.array_equal(whole[thin], fill[thin])
    assert np.array_equal(whole[covered], model[covered])
    for weight in (0.25, 0.5):
        mixed = guarded_frame(model, fill, covered, weight)
        assert mixed.dtype == np.uint8 and np.array_equal(mixed[thin], fill[thin])
        expected = weight * model[wide].astype(float) + (1 - weight) * fill[wide].astype(float)
        assert np.abs(mixed[wide] - expected).max() <= 0.5
    corner = model[:4, :4]  # no hole: at weight 1 the model's frame as it is
    assert guarded_frame(corner, fill[:4, :4], np.ones((4, 4), bool), 1.0) is corner


def test_too_few_views_measure_nothing(scene):
    def render_both(anchor, targets):
        raise AssertionError("nothing to render")

    assert measure_fill_guard(scene.frames[:5], render_both) is None


def test_a_gain_within_its_noise_serves_the_fill():
    """The best weight serves only where its mean gain over the fill exceeds NOISE_Z standard errors."""
    noisy = FillGuard(30.1, 30.0, 34, (30.0, 30.0, 30.0), gain_se=(0.1, 0.1, 0.1, 0.11 / NOISE_Z))
    assert noisy.weight == 0.0 and not noisy.use_model
    clear = FillGuard(30.1, 30.0, 34, (30.0, 30.0, 30.0), gain_se=(0.1, 0.1, 0.1, 0.09 / NOISE_Z))
    assert clear.weight == 1.0
    mixed = FillGuard(29.0, 30.0, 34, (30.2, 30.4, 30.3), gain_se=(1.0, 0.3, 0.1, 0.1))  # judged by its own error
    assert mixed.weight == 0.5
    with pytest.raises(ValueError, match="one error per weight"):
        FillGuard(30.0, 29.0, 6, (30.0, 30.0, 30.0), gain_se=(0.1,))


def test_a_tie_goes_to_the_fill_and_exact_frames_stay_finite(scene):
    assert not FillGuard(30.0, 30.0, 6).use_model and FillGuard(30.01, 30.0, 6).use_model
    assert FillGuard(30.0, 29.0, 6, (30.0, 30.0, 30.0)).weight == 0.25  # the best score nearest the fill
    with pytest.raises(ValueError, match="one score per weight"):
        FillGuard(30.0, 29.0, 6, (30.0,))
    assert "anchor + hole filling" in FillGuard(20.0, 25.0, 6).describe()
    exact = measure_fill_guard(scene.frames[:6], lambda anchor, targets: [(t.rgb, t.rgb, _nothing_covered(t))
                                                                          for t in targets])
    assert exact.model_psnr == exact.fill_psnr and np.isfinite(exact.model_psnr) and not exact.use_model
