"""The fill guard: per scene, serve the model's frames, the classical fill, or a mix of the two in
the holes -- whichever came closest to the scene's own views.

Why: a frame model trained on a few scene families can fill a cloud's holes worse than
push-pull does on a family it never saw. Measured on the demo model of 2026-12-03 (`worldfm eval`,
the card's out-of-family set): 1 step is 0.07-0.48 dB below anchor + hole filling on the four
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

Why mixes too (:data:`MIX_WEIGHTS`, :func:`guarded_frame`): a choice between the two alone was
only as good as the held-out views' prediction of the frames to come, and that prediction
failed where it mattered. On the card's out-of-family set (docs/model.md, "Fill guard") a
retrained generator gained +0.8 to +1.7 dB on the views one scene left out, then lost 2.5 and
4.9 dB on average on the two targets of two of its windows (one draw of the noise); choosing
"model" left the scene 0.35 dB below the fill.
The model's and the fill's errors in a hole are far from identical, so a weighted mean has a
smaller squared error than either unless one is much the better -- a shrinkage of the invented
content toward its smooth surroundings that bounds the loss on the frames where the model
fails. The measured views pick the weight, so a scene where the model wins clearly keeps its
frames whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.anchor import AnchorScene, build_scene
from models.anchor.holes import wide_holes
from models.anchor.view_work import reuse_view_work
from models.metrics import psnr
from models.scene import Frame

__all__ = ["GUARD_STRIDE", "GUARD_WINDOW", "GUARD_WINDOWS", "MIX_WEIGHTS", "NOISE_Z", "FillGuard", "RenderBoth",
           "calibration_windows", "guarded_frame", "measure_fill_guard"]

GUARD_WINDOWS = 24  # at most this many windows of views left out per scene (every run of GUARD_WINDOW views below)
GUARD_WINDOW = 4  # views per window, as `worldfm eval` holds them out
GUARD_STRIDE = 2  # every other view of a window is a target
EXACT_DB = 200.0  # a frame equal to its view scores this, not inf, so that a mean stays finite
# (scene built without the targets, targets) -> per target (model frame, anchor + hole filling, covered pixels)
RenderBoth = Callable[[AnchorScene, list[Frame]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]
MIX_WEIGHTS = (0.25, 0.5, 0.75)  # the model's share in the mixes measured between the fill (0) and the model (1)
# The best weight serves only where its mean gain over the fill exceeds this many standard errors of
# that mean (FillGuard.weight). Why: the best of five noisy means is biased upward, and a gain of
# +0.01 dB is no evidence. Without it, on 8 fresh held-out scenes (docs/model.md, "Fill guard"),
# 25 % mixes chosen at such gains left 2 scenes 0.00-0.04 dB below the fill; at 0.5 the fill
# served there and nothing else changed on the three sets measured. At 1 or 2 it also withheld
# the mix from a window whose targets gained most.
NOISE_Z = 0.5


@dataclass(frozen=True)
class FillGuard:
    """Mean PSNR (dB) over ``targets`` views of the scene held out of its cloud (the mean, as
    `worldfm eval` scores) of the model's frames (as served at weight 1: thin holes from the
    fill, :func:`guarded_frame`), of anchor + hole filling, and of their mixes ``mixed_psnr``,
    one per :data:`MIX_WEIGHTS`; ``gain_se``: the standard error of the mean per-target gain
    over the fill, per weight of ``MIX_WEIGHTS`` then 1 (none: not measured, no noise assumed).

    ``weight``: the model's share in the frames the scene gets: the best-scoring one (a tie goes
    toward the fill, which is cheaper and never invents content), unless its gain over the fill
    is within :data:`NOISE_Z` standard errors of zero, where the fill serves."""

    model_psnr: float
    fill_psnr: float
    targets: int
    mixed_psnr: tuple[float, ...] = ()
    gain_se: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mixed_psnr and len(self.mixed_psnr) != len(MIX_WEIGHTS):
            raise ValueError(f"mixed_psnr needs one score per weight of {MIX_WEIGHTS}; got {self.mixed_psnr}")
        if self.gain_se and len(self.gain_se) != len(self.mixed_psnr) + 1:
            raise ValueError(f"gain_se needs one error per weight of {self.scores()[1:]}; got {self.gain_se}")

    def scores(self) -> list[tuple[float, float]]:
        """(model weight, mean PSNR) from the fill to the model."""
        return [(0.0, self.fill_psnr), *zip(MIX_WEIGHTS, self.mixed_psnr), (1.0, self.model_psnr)]

    @property
    def weight(self) -> float:
        scores = self.scores()
        best = max(score for _, score in scores)
        index = next(i for i, (_, score) in enumerate(scores) if score == best)
        if index == 0 or (self.gain_se and best - self.fill_psnr <= NOISE_Z * self.gain_se[index - 1]):
            return 0.0
        return scores[index][0]

    @property
    def use_model(self) -> bool:
        return self.weight > 0

    @property
    def gain_db(self) -> float:
        """The model's frames' score minus the fill's, whatever is served."""
        return self.model_psnr - self.fill_psnr

    def describe(self) -> str:
        weight = self.weight
        choice = ("anchor + hole filling" if weight == 0 else "model" if weight == 1
                  else f"model {weight:.0%} + fill in the holes")
        return (f"fill guard: {choice} ({self.targets} held-out views of the scene: model {self.model_psnr:.2f} dB, "
                f"fill {self.fill_psnr:.2f} dB"
                + "".join(f", {w:.0%} model {p:.2f} dB" for w, p in zip(MIX_WEIGHTS, self.mixed_psnr)) + ")")


def guarded_frame(model: np.ndarray, fill: np.ndarray, covered: np.ndarray, weight: float) -> np.ndarray:
    """uint8 (H, W, 3), what the guard serves at the model's ``weight``: ``fill`` at 0; above 0,
    ``fill + weight * (model - fill)`` (rounded) in the wide holes and ``fill`` in the thin ones
    (:func:`models.anchor.holes.wide_holes` of ``covered``, bool (H, W)); the covered pixels are
    the anchor in both frames.

    Why the thin holes from the fill: a sliver is bridged from both sides by push-pull, and
    every generator measured does worse there, out of family and in it (`worldfm eval`'s holes
    by width: the release of 2026-12-03 21.43 against 21.68 dB and 24.98 against 25.04, the
    pinned lineage 22.79 against 23.00 and 25.99 against 26.03); on a scene of that lineage with
    few holes, badly filled cracks cost one window's targets 1.3 dB."""
    if weight <= 0.0:
        return fill
    return _mixed(model, fill, _thin_holes(covered), weight)


def _thin_holes(covered: np.ndarray) -> np.ndarray:
    """bool (H, W): the empty pixels of ``covered`` outside its wide holes."""
    return ~np.asarray(covered, bool) & ~wide_holes(covered)


def _mixed(model: np.ndarray, fill: np.ndarray, thin: np.ndarray, weight: float) -> np.ndarray:
    """:func:`guarded_frame` above weight 0, its ``thin`` holes found once by the caller."""
    if weight >= 1.0 and not thin.any():
        return model
    mixed = fill.astype(np.float32) + np.float32(min(weight, 1.0)) * (model.astype(np.float32) - fill)
    mixed[thin] = fill[thin]
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


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
    render_both: RenderBoth,
    windows: int = GUARD_WINDOWS,
    window: int = GUARD_WINDOW,
    stride: int = GUARD_STRIDE,
    before_window: Callable[[], None] | None = None,
) -> FillGuard | None:
    """Hold windows of ``frames`` (a scene's posed views, in trajectory order) out of its cloud
    and score both ways of making their frames against the views themselves.

    ``render_both(scene, targets)``: for a scene built without the targets, (model frame,
    anchor + hole filling, covered) per target: uint8 (H, W, 3) frames at the target's size and
    the bool (H, W) pixels the anchor covers.
    ``before_window()`` runs before each window: a server measuring between frames waits there
    for a pause in the stream, or raises to abandon the measurement. Returns None when the scene
    has too few views to leave any out (then nothing is known: callers keep the model).
    """
    model, fill, mixed = [], [], []
    with reuse_view_work():  # each view's points and source tables once, not once per window
        for held in calibration_windows(len(frames), windows, window):
            if before_window is not None:
                before_window()
            kept = [f for i, f in enumerate(frames) if i not in held]
            targets = [frames[i] for i in held][::stride]
            rendered = render_both(build_scene(kept), targets)
            for target, (ours, classical, covered) in zip(targets, rendered, strict=True):
                truth = target.rgb.astype(np.float64)
                thin = _thin_holes(covered)  # once per target, for the model's frame and every mix
                model.append(min(psnr(_mixed(ours, classical, thin, 1.0), truth), EXACT_DB))
                fill.append(min(psnr(classical, truth), EXACT_DB))
                mixed.append([min(psnr(_mixed(ours, classical, thin, w), truth), EXACT_DB) for w in MIX_WEIGHTS])
    if not model:
        return None
    served = np.column_stack([mixed, model])  # per target, the frames of MIX_WEIGHTS then the model's
    gains = served - np.asarray(fill)[:, None]
    se = gains.std(axis=0, ddof=1) / np.sqrt(len(model)) if len(model) > 1 else np.zeros(gains.shape[1])
    return FillGuard(float(np.mean(model)), float(np.mean(fill)), len(model),
                     tuple(float(v) for v in served[:, :-1].mean(axis=0)), tuple(float(v) for v in se))
