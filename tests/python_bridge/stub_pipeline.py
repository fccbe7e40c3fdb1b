"""A pipeline stand-in for server tests: no anchor, no model, controllable timing.

It honours the interface the server uses (``build``, ``render``, ``describe``,
``frame_size``) so the tests exercise the real server, protocol and client code while
deciding exactly when a render finishes (``gate``) or fails (a camera at x = 666).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from models.fill_guard import FillGuard
from python_bridge.pipeline import RenderResult
from python_bridge.scenes import BuiltScene

FAIL_X = 666.0  # a render whose camera sits at x = FAIL_X raises inside the pipeline
GUARD = FillGuard(model_psnr=24.5, fill_psnr=25.25, targets=6)  # what every measured stub guard decides: the fill


class StubPipeline:
    """Renders a flat image whose colour encodes the camera position (so tests can tell frames apart)."""

    frame_size = (32, 24)

    def __init__(self, render_delay_s: float = 0.0, gated: bool = False, build_delay_s: float = 0.0,
                 guard_window_s: float = 0.05) -> None:
        self.render_delay_s = render_delay_s
        self.build_delay_s = build_delay_s
        self.guard_window_s = guard_window_s
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.started = threading.Semaphore(0)  # released each time a render begins
        self.built_views: list[int] = []
        self.guards_measured: list[float] = []  # time.monotonic() of each fill guard measured to its end
        self.guard_windows: list[float] = []  # time.monotonic() of each guard window begun

    def describe(self) -> dict:
        return {"name": "stub", "frame_size": list(self.frame_size), "steps": [1], "provider": "none"}

    def build(self, frames: list, max_points: int = 0) -> BuiltScene:
        self.built_views.append(len(frames))
        time.sleep(self.build_delay_s)
        return BuiltScene(
            anchor=None,
            cloud=None,
            candidates=list(frames),
            points=sum(f.rgb.shape[0] * f.rgb.shape[1] for f in frames),
            build_ms=0.1,
        )

    def measure_fill_guard(self, scene: BuiltScene, before_window=None) -> None:
        """Three windows of ``guard_window_s`` each, as models.fill_guard runs them (``before_window`` first);
        decides for the fill with scores of its own (``GUARD``)."""
        for _ in range(3):
            if before_window is not None:
                before_window()
            self.guard_windows.append(time.monotonic())
            time.sleep(self.guard_window_s)
        scene.fill_guard = GUARD
        self.guards_measured.append(time.monotonic())

    def render(self, scene: BuiltScene, c2w, K=None, size=None, steps=None, seed=None) -> RenderResult:
        self.started.release()
        self.gate.wait(10.0)
        if self.render_delay_s:
            time.sleep(self.render_delay_s)
        if c2w[0, 3] == FAIL_X:
            raise RuntimeError("stub failure")
        w, h = size or self.frame_size
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[:] = np.clip(np.round(c2w[:3, 3] * 10 + 100), 0, 255).astype(np.uint8)
        K = K if K is not None else np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
        return RenderResult(rgb, K, c2w, 0, "stub", {"anchor_ms": 0.0})
