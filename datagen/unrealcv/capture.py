"""Capture one scene from one running game: plan -> poses -> checked views -> dataset.

Per planned view: set the pose, read it back until the game reports it (camera 0 is the
player pawn, which moves on the next tick, may be pushed out of collision, and clamps pitch),
capture depth first and reject the view if it has depth holes (no depth where the camera
looks below the horizon: the ground is there, but UnrealCV 4.22+ renders depth only for mesh
actors annotated when the level started, so Landscape and foliage are missing), is too close
to geometry (a camera in a wall shows as near or missing depth) or sees too little surface,
then RGB (and optionally normals and object masks), read the pose again, check everything,
write it atomically.

Failures are handled per view, so a long capture survives them:

* a bad payload (corrupt PNG/npy, wrong size, all-black, NaN depth) -> capture again, up to
  ``retries`` times, then record the view as rejected;
* a lost connection or a timeout -> reconnect (with backoff; over the game's Unix socket
  when it has moved there) and redo the view from its pose, up to ``reconnects`` times per view;
* a transient ``error`` reply (render target not ready, pawn briefly missing) -> the
  connection resends the command with backoff, ``error_retries`` times;
* a missing command, a missing camera, a transient error that does not pass or a game that
  stays down -> stop with an error that says what to do.

Which views are done (written or rejected) lives in the dataset folder, so a rerun after a
crash continues where it stopped and never writes a view twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from datagen.unrealcv.connection import ConnectionLostError, UnrealCVConnection
from datagen.unrealcv.game import DEPTH_MODES, CameraInfo, GameCamera
from datagen.unrealcv.payloads import PayloadError, check_view
from datagen.unrealcv.planning import PlannedView
from datagen.unrealcv.sink import CaptureSink
from models.cameras import K_from_hfov, c2w_to_ue, pixel_rays, ue_to_c2w
from models.scene import Camera, Frame

log = logging.getLogger(__name__)

# A ray at least this far below the horizon must meet the ground in any level with one.
HORIZON_MARGIN_DEG = 2.0
DEPTH_HOLE_ADVICE = (
    "depth is missing where the camera looks down at the ground. UnrealCV 4.22+ (FusionCamSensor) renders "
    "depth only for actors whose mesh components it annotated when the level started, so a Landscape, "
    "foliage and actors spawned later are invisible to depth while the RGB shows them. In the level: "
    "replace the Landscape with a Static Mesh actor (export it as a mesh and place that), convert foliage "
    "instances to Static Mesh actors, and annotate actors spawned during play with "
    "`vset /object/<name>/color R G B`; or set [capture] max_depth_holes = 1 to keep such views with their "
    "wrong depth (docs/datagen.md)"
)


@dataclass(frozen=True)
class CaptureOptions:
    """What to capture and how strict to be. Lengths in cm (Unreal's unit), fractions in [0, 1]."""

    camera_id: int = 0
    size: tuple[int, int] | None = None  # set the capture resolution (W, H); None: the game's
    hfov_deg: float | None = None  # set the horizontal FOV; None: the game's
    depth_mode: str = "auto"  # auto | plane | distance (see game.GameCamera.probe)
    max_depth_holes: float = 0.01  # reject views with more pixels than this below the horizon and no depth
    normals: bool = False
    object_masks: bool = False
    min_clearance: float = 20.0  # cm; a view is too close when ...
    near_fraction: float = 0.05  # ... more than this fraction of its pixels is nearer
    min_valid_depth: float = 0.05  # reject views with less surface (sky, void) than this
    retries: int = 3  # extra captures of a view after a bad payload
    reconnects: int = 5  # reconnections allowed while capturing one view
    settle_polls: int = 5  # read-backs of the pose before accepting what the game reports
    pose_tolerance: float = 0.5  # cm and degrees: a read-back this close counts as arrived
    verify_pose_after: bool = True  # read the pose again after capturing: did the camera move?

    def __post_init__(self) -> None:
        if self.depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth_mode must be one of {DEPTH_MODES}; got {self.depth_mode!r}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be [width, height] in pixels; got {self.size}")
        if self.hfov_deg is not None and not 0 < self.hfov_deg < 180:
            raise ValueError(f"hfov_deg must be in (0, 180); got {self.hfov_deg}")
        for name in ("near_fraction", "min_valid_depth", "max_depth_holes"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a fraction in [0, 1]; got {getattr(self, name)}")
        for name in ("retries", "reconnects", "min_clearance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")


@dataclass
class CaptureStats:
    """Counts for the summary line; ``views`` are the views written by this run."""

    views: int = 0
    resumed: int = 0  # views already written by an earlier run
    rejected: int = 0
    retries: int = 0
    reconnects: int = 0
    pose_adjusted: int = 0  # views the game rendered away from the planned pose
    timeouts: int = 0  # requests without a reply in time (each cost a reconnect)
    stale_replies: int = 0  # replies to an earlier connection's requests, dropped
    error_retries: int = 0  # commands resent after a transient error reply
    transport: str = ""  # where the last connection went (tcp:host:port, unix:path)
    plugin: str = ""  # the plugin build, as probed
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items()))
        return (
            f"{self.views} views in {self.seconds:.1f} s ({self.views_per_s:.2f} views/s); "
            f"{self.resumed} already done, {self.rejected} rejected{f' ({why})' if why else ''}, "
            f"{self.retries} retries, {self.reconnects} reconnects ({self.timeouts} timeouts), "
            f"{self.error_retries} commands resent after transient errors, {self.stale_replies} stale replies "
            f"dropped, {self.pose_adjusted} poses moved by the game"
        )


class Rejected(Exception):
    """The view is unusable for training (not a transport fault); record it and move on.

    ``kind`` groups rejections in the summary; the message adds the details.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class CapturedView:
    """A checked view plus the optional extra channels, (H, W, 3) uint8 each."""

    frame: Frame
    extras: dict[str, np.ndarray]


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


class SceneCapture:
    """Captures planned views from one game into one scene folder (``sink``, which knows
    which views are done)."""

    def __init__(self, conn: UnrealCVConnection, sink: CaptureSink, options: CaptureOptions = CaptureOptions()):
        self.conn = conn
        self.sink = sink
        self.options = options
        self.game = GameCamera(conn, options.camera_id)
        self.stats = CaptureStats()
        self.info: CameraInfo | None = None

    def _with_reconnects(self, step: Callable[[], object]) -> object:
        """Run ``step``; after a lost connection reconnect and run it again from the start."""
        for attempt in range(self.options.reconnects + 1):
            try:
                return step()
            except ConnectionLostError as exc:
                if attempt == self.options.reconnects:
                    raise
                self.stats.reconnects += 1
                log.warning("%s; reconnecting", exc)
                self.conn.connect()
        raise AssertionError("unreachable")

    def prepare(self) -> CameraInfo:
        """Connect, find the plugin build, apply size/FOV settings, and read what the camera is."""
        opts = self.options
        self.info = self._with_reconnects(lambda: self.game.probe(opts.depth_mode, opts.size, opts.hfov_deg))
        self.stats.plugin = self.info.plugin.describe()
        return self.info

    def _sync_connection_stats(self) -> None:
        conn, stats = self.conn, self.stats
        stats.timeouts, stats.stale_replies = conn.timeouts, conn.stale_replies
        stats.error_retries, stats.transport = conn.error_retries, conn.transport

    def run(
        self,
        views: list[PlannedView],
        wanted: int,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> CaptureStats:
        """Capture ``views`` in order until ``wanted`` views are in the sink (or views run out).

        ``progress(n)`` is called as views are done; setting ``stop`` ends the run after the
        view in hand (the folder stays resumable).
        """
        start = time.perf_counter()
        try:
            self._run(views, wanted, progress, stop)
        finally:
            self._sync_connection_stats()
            self.stats.seconds = time.perf_counter() - start
        return self.stats

    def _run(
        self,
        views: list[PlannedView],
        wanted: int,
        progress: Callable[[int], None] | None,
        stop: threading.Event | None,
    ) -> None:
        if self.info is None:
            self.prepare()
        done = self.sink.done()  # name -> True (written) / False (rejected)
        accepted = sum(done.values())
        self.stats.resumed = accepted
        if progress and accepted:
            progress(accepted)
        for view in views:
            if accepted >= wanted or (stop is not None and stop.is_set()):
                break
            if view.name in done:
                continue
            try:
                captured = self._with_reconnects(lambda: self._capture_checked(view))
            except Rejected as why:
                if why.kind == "depth holes" and "depth holes" not in self.stats.reasons:
                    log.warning("%s: %s", view.name, DEPTH_HOLE_ADVICE)
                self.stats.rejected += 1
                self.stats.reasons[why.kind] = self.stats.reasons.get(why.kind, 0) + 1
                self.sink.reject(view.name, str(why))
                log.info("%s rejected: %s", view.name, why)
                continue
            self.sink.write(view.name, captured.frame, captured.extras, view.group)
            accepted += 1
            self.stats.views += 1
            if progress:
                progress(1)

    def _capture_checked(self, view: PlannedView) -> CapturedView:
        """Capture with retries on bad payloads; raises :class:`Rejected` for unusable views."""
        problem = None
        for attempt in range(self.options.retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                return self._capture_once(view)
            except PayloadError as exc:
                problem = exc
                log.info("%s: bad capture (%s); retrying", view.name, exc)
        raise Rejected("invalid capture", f"{problem} (after {self.options.retries} retries)")

    def _settle(self, location: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Set the pose and poll it back; returns the pose the game reports."""
        self.game.set_pose(location, rotation)
        tol = self.options.pose_tolerance
        for _ in range(max(self.options.settle_polls, 1)):
            got_loc, got_rot = self.game.get_pose()
            if np.all(np.abs(got_loc - location) <= tol) and np.all(_angle_diff(got_rot, rotation) <= tol):
                return got_loc, got_rot
        self.stats.pose_adjusted += 1
        log.info("the game put the camera at %s / %s instead of %s / %s", got_loc, got_rot, location, rotation)
        return got_loc, got_rot

    def _capture_once(self, view: PlannedView) -> CapturedView:
        opts, info = self.options, self.info
        location, rotation = c2w_to_ue(view.c2w)
        got_loc, got_rot = self._settle(location, rotation)
        c2w = ue_to_c2w(got_loc, got_rot)
        if info.width <= 0:  # the game did not report its size: learn it from one image
            h, w = self.game.lit().shape[:2]
            self.info = info = CameraInfo(w, h, info.hfov_deg, info.depth_command, info.depth_is_distance)
        K = K_from_hfov(info.hfov_deg, info.width, info.height)
        depth = self.game.depth(info, K)
        if depth.shape == (info.height, info.width):  # a wrong size is a payload fault, below
            self._check_depth_holes(depth, c2w, K)
            self._check_clearance(depth)
        rgb = self.game.lit()
        check_view(rgb, depth, info.width, info.height)
        extras = {}
        if opts.normals:
            extras["normal"] = self.game.normal()
        if opts.object_masks:
            extras["object_mask"] = self.game.object_mask()
        for name, image in extras.items():
            if image.shape != rgb.shape:
                raise PayloadError(f"{name} is {image.shape[1]}x{image.shape[0]}, the camera is {info.width}x{info.height}")
        if opts.verify_pose_after:
            end_loc, end_rot = self.game.get_pose()
            tol = opts.pose_tolerance
            if np.any(np.abs(end_loc - got_loc) > tol) or np.any(_angle_diff(end_rot, got_rot) > tol):
                raise PayloadError(
                    f"the camera moved during the capture ({got_loc} -> {end_loc} cm): a falling or "
                    "player-driven pawn? capture with a spawned camera instead (docs/datagen.md)"
                )
        camera = Camera(K=K, c2w=c2w, width=info.width, height=info.height)
        return CapturedView(Frame(rgb=rgb, camera=camera, depth=depth, name=view.name), extras)

    def _check_depth_holes(self, depth: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> None:
        """Reject a view whose depth is missing below the horizon, where the RGB shows ground."""
        h, w = depth.shape
        rays = pixel_rays(K, w, h) @ c2w[:3, :3].T  # (H, W, 3) in our Z-up world
        down = rays[..., 2] < -np.sin(np.radians(HORIZON_MARGIN_DEG)) * np.linalg.norm(rays, axis=-1)
        holes = float(np.mean(down & (depth <= 0)))
        if holes > self.options.max_depth_holes:
            raise Rejected(
                "depth holes", f"{holes:.1%} of the pixels look below the horizon and have no depth "
                f"(max_depth_holes {self.options.max_depth_holes:.1%})",
            )

    def _check_clearance(self, depth: np.ndarray) -> None:
        valid = depth > 0
        if valid.mean() < self.options.min_valid_depth:
            raise Rejected("too little surface", f"{valid.mean():.1%} of pixels have depth (sky or void)")
        near = float(np.mean(valid & (depth < self.options.min_clearance / 100.0)))
        if near > self.options.near_fraction:
            raise Rejected("too close to geometry", f"{near:.1%} of pixels nearer than {self.options.min_clearance:g} cm")
