"""The per-frame path: anchor render -> reference pick -> generator -> decode.

``FramePipeline`` wraps ``models.anchor`` (offline build, online splatting, reference
selection, hole filling) and an optional :class:`python_bridge.engine.Engine`. Without an
engine it returns the anchor rendering with classical hole filling -- the clearly-logged
fallback that lets the server and ``worldfm demo`` run on a machine with no model.

The server, ``worldfm demo`` and ``worldfm render-path`` all render through this class, so
a frame rendered offline is the frame the server would send for the same pose and seed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from models.anchor import RenderOutput, build_scene, fill_holes, select_reference
from models.anchor.cloud import DEFAULT_MAX_POINTS
from models.anchor.mesh import keep_shading_threads
from models.anchor.styles import DEFAULT_STYLE, get_style, prepare_anchor
from models.cameras import scale_K
from models.fill_guard import guarded_frame, measure_fill_guard
from models.scene import Frame
from python_bridge.scenes import BuiltScene

log = logging.getLogger(__name__)

FALLBACK_FRAME_SIZE = (256, 256)  # (W, H) advertised when no model fixes the size
# Anchors of at most this many pixels render on the calling thread alone (see _anchor_threads).
SINGLE_THREAD_ANCHOR_PIXELS = 256 * 256


@contextlib.contextmanager
def _anchor_threads(pixels: int) -> Iterator[None]:
    """Render an anchor of ``pixels`` pixels with torch on this thread only, if it is small.

    Why: the anchor is ~200 small torch operations per frame. On a 2-core CPU with the
    server's sleeping OpenMP threads (``OMP_WAIT_POLICY=PASSIVE``, which keeps them from
    starving ONNX Runtime) each operation wakes the second thread, which costs more than it
    saves at 256x256. Measured 2026-12-03 on the 2-core VM: ``worldfm demo`` anchor stage 17 ms
    against 27 ms, 17.5-17.7 frames/s against 14.9-15.0; ``bench/bench_anchor.py --styles-only
    --threads 1`` vs ``2`` (100-view scene): mesh 27.6 against 37.0 ms at 256x256, but 70.0
    against 63.9 ms at 512x512, hence the size limit. torch's thread count is per calling
    thread (OpenMP), so other threads keep theirs; it is restored afterwards. The ``mesh``
    style's fused shading loop is one call, not ~200: it keeps the caller's thread count
    (``models.anchor.mesh.keep_shading_threads``). The push-pull hole filling (a few dozen
    small operations) runs the same way: ``worldfm demo`` fill stage 2.6 ms p50 (3.0-3.4 ms p95)
    against 3.4-3.8 ms (4.8-15.3 ms p95), three alternating runs each, 201-209 GFLOP/s; with
    the pyramid's finest level trimmed as well (``models.anchor.holes``) 2.3-2.8 ms against
    3.6-3.9 ms (192-197 GFLOP/s, a busier machine).
    """
    if pixels > SINGLE_THREAD_ANCHOR_PIXELS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with keep_shading_threads(before):
            yield
    finally:
        torch.set_num_threads(before)


def _filled(anchor: RenderOutput) -> np.ndarray:
    """``anchor``'s colours with its holes filled by push-pull, uint8 (H, W, 3), rendered under
    :func:`_anchor_threads` like the anchor itself (a few dozen small torch operations)."""
    with _anchor_threads(anchor.mask.numel()):
        return fill_holes(anchor.rgb, anchor.mask).numpy()


@dataclass
class RenderResult:
    """One rendered frame: ``rgb`` uint8 (H, W, 3), the camera it answers (K (3, 3) pixels,
    c2w (4, 4) metres), the reference candidate used, ``mode`` ("model" or "anchor") and
    per-stage ``timings`` in milliseconds."""

    rgb: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    reference: int | None
    mode: str
    timings: dict[str, float] = field(default_factory=dict)
    anchor: np.ndarray | None = None  # the anchor rendering (H, W, 3), for strips and debugging
    # anchor + hole filling (H, W, 3) and the pixels the anchor covers (H, W) where the frame's path
    # made them at the frame's size: the fill guard compares the two without rendering the anchor again
    filled: np.ndarray | None = None
    covered: np.ndarray | None = None


class _Stopwatch:
    """Collects named stage durations in milliseconds."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._t) * 1e3
        self._t = now


class FramePipeline:
    """Renders frames of built scenes, with the model (``engine``) or the anchor fallback.

    ``steps`` is the default generator step count (the smallest the model has unless set).
    ``splat_radius`` (pixels) grows each point to a square when rendering the anchor: 0 keeps
    renders at the source resolution exact; 1 closes pinholes when the camera flies closer
    than the source views were taken, at the price of a one-pixel dilation.
    ``anchor_style`` (a ``models.anchor.styles`` name) renders the anchor; default: the one the
    model's manifest names (what it was trained on), else ``models.anchor.styles.DEFAULT_STYLE``.
    Compiled anchor kernels take over from the eager ones once ready and render the same bytes
    (a pose and seed give the same frame whenever they render; offline rendering relies on it),
    the ``mesh`` style's fused shading loop included (``models/anchor/fused_shading.py``).
    """

    def __init__(self, engine=None, steps: int | None = None, splat_radius: int = 0,
                 anchor_style: str | None = None) -> None:
        self.engine = engine
        self.splat_radius = splat_radius
        manifest_style = getattr(getattr(engine, "manifest", None), "anchor_style", None)
        self.anchor_style = get_style(anchor_style or manifest_style or DEFAULT_STYLE).name
        if engine is None:
            log.warning("no model loaded: frames are the point-cloud anchor with hole filling (fallback mode)")
            self.steps = None
        else:
            self.steps = steps or min(engine.steps)
            if self.steps not in engine.steps:
                raise ValueError(
                    f"model {engine.manifest.name} has {list(engine.steps)}-step generators, not {self.steps}"
                )

    @property
    def frame_size(self) -> tuple[int, int]:
        """(W, H) of frames when a request does not ask for a size."""
        if self.engine is None:
            return FALLBACK_FRAME_SIZE
        h, w = self.engine.image_size
        return w, h

    def describe(self) -> dict:
        """Model info for ``welcome``: the model's description, or the fallback's."""
        if self.engine is None:
            return {"name": "anchor-fallback", "frame_size": list(self.frame_size), "steps": [], "provider": "none"}
        return {**self.engine.describe(), "default_steps": self.steps}

    def build(self, frames: list[Frame], max_points: int = DEFAULT_MAX_POINTS) -> BuiltScene:
        """Offline stage: fuse the views into the anchor cloud (at most ``max_points``) and keep
        them as reference candidates.

        The anchor renders in ``anchor_style`` with compiled kernels where the style has them,
        once they are ready; one render here, off the render path, starts their background
        compile (first scene of a process only) and pays the eager kernels' first-call costs,
        so the first frame waits for neither. ``stages``: ``fuse_ms`` (views -> cloud),
        ``prepare_ms`` (the style's device layout, that first render).
        """
        clock = _Stopwatch()
        anchor = build_scene(frames, max_points=max_points)
        clock.lap("fuse_ms")
        cloud = prepare_anchor(anchor, self.anchor_style, "cpu", compiled=True, splat_radius=self.splat_radius)
        cam = anchor.frames[0].camera
        cloud.render(cam.K, cam.c2w, cam.width, cam.height)
        clock.lap("prepare_ms")
        return BuiltScene(
            anchor=anchor,
            cloud=cloud,
            candidates=list(anchor.frames),
            points=len(anchor.cloud),
            build_ms=sum(clock.timings.values()),
            stages=clock.timings,
        )

    def default_K(self, scene: BuiltScene, size: tuple[int, int]) -> np.ndarray:
        """Intrinsics for a request without K: the first candidate's, rescaled to ``size`` (W, H)."""
        cam = scene.candidates[0].camera
        return scale_K(cam.K, (cam.width, cam.height), size)

    def render(
        self,
        scene: BuiltScene,
        c2w: np.ndarray,
        K: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
        steps: int | None = None,
        seed: int | None = None,
    ) -> RenderResult:
        """One frame at camera (K (3, 3) pixels of ``size`` (W, H), c2w (4, 4) metres).

        ``seed`` fixes the generator noise (the same seed gives the same frame); without it
        the noise is fresh each call.
        """
        size = size or self.frame_size
        K = self.default_K(scene, size) if K is None else K
        clock = _Stopwatch()
        guard = scene.fill_guard
        if self.engine is None or (guard is not None and not guard.use_model):
            return self._fill_frame(scene, K, c2w, size, clock)
        return self._generate(scene, K, c2w, size, self.steps if steps is None else steps, seed, clock,
                              model_weight=None if guard is None else guard.weight)

    def measure_fill_guard(self, scene: BuiltScene, before_window: Callable[[], None] | None = None) -> None:
        """Measure ``scene``'s fill guard (:mod:`models.fill_guard`): leave each run of a few of its
        views out of a cloud in turn, render them with the model and as anchor + hole filling, and
        from then on serve whichever, or whichever mix of the two, came closer to the views (part
        of the offline stage, like :meth:`build`, or between frames; nothing without a model).
        ``before_window`` runs before each window and may wait, or raise to abandon the
        measurement (the model keeps serving).

        The model's frames are made with its fewest steps (1 for demo-256), whatever this
        pipeline's default: every command that measures the guard on the same views (a server,
        ``worldfm render-path --steps 2 --fill-guard``) then decides alike."""
        if self.engine is None:
            return
        steps = min(self.engine.steps)

        def render_both(anchor, targets: list[Frame]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            part = BuiltScene(anchor=anchor, cloud=prepare_anchor(anchor, self.anchor_style, "cpu", compiled=True,
                                                                  splat_radius=self.splat_radius),
                              candidates=list(anchor.frames), points=len(anchor.cloud), build_ms=0.0)
            out = []
            for seed, t in enumerate(targets):
                cam = t.camera
                size = (cam.width, cam.height)
                model = self._generate(part, cam.K, cam.c2w, size, steps, seed, _Stopwatch())
                fill = model if model.filled is not None else self._fill_frame(part, cam.K, cam.c2w, size, _Stopwatch())
                out.append((model.rgb, fill.filled, fill.covered))
            return out

        start = time.perf_counter()
        try:
            scene.fill_guard = measure_fill_guard(scene.anchor.frames, render_both, before_window=before_window)
        except (ValueError, RuntimeError) as exc:  # e.g. a window whose remaining views build no cloud
            log.warning("fill guard not measured (%s); the model serves this scene", exc)
            return
        if scene.fill_guard is None:
            log.info("fill guard: too few views to leave any out; the model serves")
        else:
            log.info("%s; decided %.1f s after its measurement began (pauses waited for included)",
                     scene.fill_guard.describe(), time.perf_counter() - start)

    def _fill_frame(self, scene: BuiltScene, K, c2w, size, clock: _Stopwatch) -> RenderResult:
        """The anchor with its holes filled by push-pull, at ``size``: the frame without a model,
        or where the scene's fill guard chose it."""
        with _anchor_threads(size[0] * size[1]):
            anchor = scene.cloud.render(K, c2w, size[0], size[1])
        clock.lap("anchor_ms")
        index = int(select_reference(scene.anchor, K, c2w, size[0], size[1], compiled=True))  # reported, not used
        clock.lap("reference_ms")
        out = _filled(anchor)
        clock.lap("fill_ms")
        return RenderResult(out, K, c2w, index, "anchor", clock.timings, anchor=anchor.rgb.numpy(), filled=out,
                            covered=anchor.mask.numpy())

    def _generate(self, scene: BuiltScene, K, c2w, size, steps, seed, clock: _Stopwatch,
                  model_weight: float | None = None) -> RenderResult:
        """The model's frame; with ``model_weight`` (the scene's fill guard decided), its holes as
        the guard serves them (:func:`models.fill_guard.guarded_frame`), mixed at the model's size
        before any resize (the guard measured them at its views' size, the same for views made
        at the model's size)."""
        engine = self.engine
        if steps not in engine.steps:
            raise ValueError(f"this model has {list(engine.steps)}-step generators; {steps} steps was asked")
        h, w = engine.image_size
        K_model = scale_K(K, size, (w, h))
        with _anchor_threads(w * h):
            anchor = scene.cloud.render(K_model, c2w, w, h)
        anchor_rgb, mask = anchor.rgb.numpy(), anchor.mask.numpy()
        clock.lap("anchor_ms")
        index = int(select_reference(scene.anchor, K_model, c2w, w, h, compiled=True))
        ref = scene.candidates[index]
        ref_K = scale_K(ref.camera.K, (ref.camera.width, ref.camera.height), (w, h))
        ref_latent, _ = scene.reference_latent(index, lambda: engine.encode(_resize(ref.rgb, (w, h))))
        clock.lap("reference_ms")
        # the filled anchor feeds an anchor decoder, and the encoder too for a model trained on it
        filled = None
        if engine.decoder_uses_anchor or engine.manifest.anchor_filled:
            filled = _filled(anchor)
            clock.lap("fill_ms")
        anchor_latent = engine.encode(filled if engine.manifest.anchor_filled else anchor_rgb)
        clock.lap("encode_ms")
        rng = np.random.default_rng(seed)
        latent = engine.generate(steps, anchor_latent, mask, ref_latent, ref_K, ref.camera.c2w, K_model, c2w, rng)
        clock.lap("generate_ms")
        if engine.decoder_uses_anchor:
            rgb = engine.decode(latent, filled, mask)
        else:
            rgb = engine.decode(latent)
        clock.lap("decode_ms")
        if model_weight is not None:
            filled = _filled(anchor) if filled is None else filled
            rgb = guarded_frame(rgb, filled, mask, model_weight)
            clock.lap("mix_ms")
        if (w, h) != tuple(size):
            rgb = _resize(rgb, size)
            anchor_rgb = _resize(anchor_rgb, size)
            filled = mask = None  # anchor + hole filling at the frame's size is not a resize of this one
            clock.lap("resize_ms")
        return RenderResult(rgb, K, c2w, index, "model", clock.timings, anchor=anchor_rgb, filled=filled,
                            covered=mask if filled is not None else None)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> (size[1], size[0], 3); area filter when shrinking, linear when growing."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    shrink = size[0] < rgb.shape[1]
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
