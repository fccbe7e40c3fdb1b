"""The fill guard: per scene, serve the model's frames only where they beat the classical fill
on the scene's own views.

Why: a frame model trained on a few scene families can fill a cloud's holes worse than
push-pull does on a family it never saw. Measured on the demo model (`worldfm eval`, the
card's out-of-family set): 1 step is 0.07-0.48 dB below anchor + hole filling on the four
hall scenes, and there even the ground truth's own latent through the same decoders is below
the fill, so no better generator would fix it; on the other four scenes it gains 0.10 to 11 dB.
Which kind a scene is can be measured before any frame is asked for: the server holds posed
views of the scene, so it can leave a few windows of them out of the cloud, render them as
targets both ways, and compare with the views themselves -- the evaluation's protocol, on the
scene's own data, with no ground truth a user has not given.

:func:`measure_fill_guard` does that for any frame source (the server's pipeline, the
evaluation's ONNX runner), and :class:`FillGuard` says which wins. Where the fill wins, the
frame is anchor + hole filling: covered pixels are the anchor in both cases (the anchor decoder
pins them), so only the holes change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.anchor import AnchorScene, build_scene
from models.anchor.view_work import reuse_view_work
from models.metrics import psnr
from models.scene import Frame

__all__ = ["GUARD_STRIDE", "GUARD_WINDOW", "GUARD_WINDOWS", "FillGuard", "calibration_windows", "measure_fill_guard"]

GUARD_WINDOWS = 24  # at most this many windows of views left out per scene (every run of GUARD_WINDOW views below)
GUARD_WINDOW = 4  # views per window, as `worldfm eval` holds them out
GUARD_STRIDE = 2  # every other view of a window is a target
EXACT_DB = 200.0  # a frame equal to its view scores this, not inf, so that a mean stays finite


@dataclass(frozen=True)
class FillGuard:
    """Mean PSNR (dB) of the model's frames and of anchor + hole filling over ``targets`` views of
    the scene held out of its cloud (the mean, as `worldfm eval` scores). ``use_model``: the model
    scored higher (a tie goes to the fill, which is cheaper and never invents content)."""

    model_psnr: float
    fill_psnr: float
    targets: int

    @property
    def use_model(self) -> bool:
        return self.model_psnr > self.fill_psnr

    @property
    def gain_db(self) -> float:
        return self.model_psnr - self.fill_psnr

    def describe(self) -> str:
        choice = "model" if self.use_model else "anchor + hole filling"
        return (f"fill guard: {choice} ({self.targets} held-out views of the scene: model {self.model_psnr:.2f} dB, "
                f"fill {self.fill_psnr:.2f} dB)")


def calibration_windows(count: int, windows: int = GUARD_WINDOWS, window: int = GUARD_WINDOW) -> list[range]:
    """Runs of ``window`` consecutive view indices out of ``count`` to leave out one at a time:
    every such run, or ``windows`` of them spread evenly where there are more; none when leaving
    one out would keep fewer than two views (no cloud worth testing).

    Why every run: each window's targets differ in how much of them the rest of the scene covers,
    and the guard's choice is only as good as its sample. On the card's out-of-family set
    (`worldfm eval`), 3 spread windows of 2 targets each chose wrongly often enough to leave 1
    step with the guard below the fill on 3 of 8 scenes; every run (17 windows, 34 targets) on
    none (docs/model.md, "Fill guard")."""
    if count - window < 2 or windows < 1:
        return []
    runs = count - window + 1
    starts = range(runs) if runs <= windows else np.linspace(0, runs - 1, windows).round().astype(int).tolist()
    return [range(s, s + window) for s in starts]


def measure_fill_guard(
    frames: Sequence[Frame],
    render_both: Callable[[AnchorScene, list[Frame]], list[tuple[np.ndarray, np.ndarray]]],
    windows: int = GUARD_WINDOWS,
    window: int = GUARD_WINDOW,
    stride: int = GUARD_STRIDE,
    before_window: Callable[[], None] | None = None,
) -> FillGuard | None:
    """Hold windows of ``frames`` (a scene's posed views, in trajectory order) out of its cloud
    and score both ways of making their frames against the views themselves.

    ``render_both(scene, targets)``: for a scene built without the targets, (model frame,
    anchor + hole filling) per target, uint8 (H, W, 3) each at the target's size.
    ``before_window()`` runs before each window: a server measuring between frames waits there
    for a pause in the stream, or raises to abandon the measurement. Returns None when the scene
    has too few views to leave any out (then nothing is known: callers keep the model).
    """
    model, fill = [], []
    with reuse_view_work():  # each view's points and source tables once, not once per window
        for held in calibration_windows(len(frames), windows, window):
            if before_window is not None:
                before_window()
            kept = [f for i, f in enumerate(frames) if i not in held]
            targets = [frames[i] for i in held][::stride]
            for target, (ours, classical) in zip(targets, render_both(build_scene(kept), targets), strict=True):
                truth = target.rgb.astype(np.float64)
                model.append(min(psnr(ours, truth), EXACT_DB))
                fill.append(min(psnr(classical, truth), EXACT_DB))
    if not model:
        return None
    return FillGuard(float(np.mean(model)), float(np.mean(fill)), len(model))
