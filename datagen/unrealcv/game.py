"""The UnrealCV commands we use, for one camera of one game, and what their replies mean.

Two command sets exist (read in github.com/unrealcv/unrealcv, ``CameraHandler.cpp``):

* ``FusionCamSensor`` builds -- branches ``4.22`` to ``4.27`` (VersionName ``0.3.10``) and
  ``5.2`` (``1.0.1``): ``fov``, ``size``, ``depth`` is z-depth;
* ``GTCaptureComponent`` builds -- branch ``master`` and releases 0.3.x (``0.3.10``): no
  ``fov`` or ``size`` (a catch-all ``vget /camera/[uint]/[str]`` answers them with
  ``error Unrecognized capture mode ...``), ``horizontal_fieldofview`` instead, the size only in
  ``vget /unrealcv/status``, and ``depth`` is the distance to the camera centre
  (unrealcv/unrealcv#84). Its ``plane_depth npy`` exists but answers an empty payload unless
  the build enables that capture mode (commented out of ``SupportedModes`` in ServerConfig.cpp).

The version string cannot tell them apart (4.27 and master both say ``0.3.10``), so
:meth:`GameCamera.probe` asks for ``fov`` and falls back to the 0.3.x commands when it is missing.

==========================================  ===========================================
``vset /camera/N/location X Y Z``           cm, Unreal world; camera 0 moves the player pawn
``vset /camera/N/rotation P Y R``           degrees, pitch yaw roll (``FRotator`` order)
``vget /camera/N/location`` / ``rotation``  ``"%.3f %.3f %.3f"``, read back after every set
``vget /camera/N/fov``                      horizontal FOV ``"%f"`` (0.3.x:
                                            ``horizontal_fieldofview``, ``"%.3f"``)
``vget /camera/N/size``                     ``"W H"`` (0.3.x: ``Width``/``Height`` lines of
                                            ``vget /unrealcv/status``)
``vget /camera/N/lit png``                  RGBA PNG
``vget /camera/N/depth npy``                ``'<f4'`` (H, W) cm, half-float precision
``vget /camera/N/normal png``               optional; RGBA PNG
``vget /camera/N/object_mask png``          optional; RGBA PNG, one colour per object
==========================================  ===========================================
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from datagen.unrealcv.connection import CommandError, MissingCommandError, UnrealCVConnection
from datagen.unrealcv.payloads import PayloadError, decode_npy, decode_png_rgb, depth_from_npy

log = logging.getLogger(__name__)

DEPTH_MODES = ("auto", "plane", "distance")


@dataclass(frozen=True)
class PluginInfo:
    """Which UnrealCV build the game runs, as far as its replies tell."""

    version: str  # VersionName of UnrealCV.uplugin (`vget /unrealcv/version`), "unknown" if missing
    legacy: bool  # 0.3.x GTCaptureComponent commands (branch master) rather than FusionCamSensor ones

    def describe(self) -> str:
        kind = "0.3.x GTCaptureComponent commands" if self.legacy else "FusionCamSensor commands"
        return f"UnrealCV {self.version}, {kind}"


@dataclass(frozen=True)
class CameraInfo:
    """What the game reports about the capture camera. ``width``/``height`` 0: unknown yet."""

    width: int
    height: int
    hfov_deg: float
    depth_command: str  # "depth" or "plane_depth"
    depth_is_distance: bool  # the depth payload is distance to the camera centre
    plugin: PluginInfo = PluginInfo("unknown", False)


def _floats(reply: str, count: int, command: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in reply.split()], dtype=np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise CommandError(command, f"expected {count} numbers, got {reply!r}")
    return values


class GameCamera:
    """Commands for camera ``camera_id`` of the game behind ``conn``."""

    def __init__(self, conn: UnrealCVConnection, camera_id: int = 0):
        self.conn = conn
        self.camera_id = camera_id
        self._prefix = f"/camera/{camera_id}"

    def probe(
        self, depth_mode: str = "auto", size: tuple[int, int] | None = None, hfov_deg: float | None = None
    ) -> CameraInfo:
        """Find out which plugin build this is, apply ``size``/``hfov_deg`` (None: keep the
        game's), and read resolution, FOV and which depth command to use and what it means."""
        if depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth mode must be one of {DEPTH_MODES}; got {depth_mode!r}")
        self.get_pose()  # a camera id the game lacks fails here, with the plugin's own words
        try:
            version = self.conn.request_text("vget /unrealcv/version").strip()
        except MissingCommandError:
            version = "unknown"
        hfov, legacy = self._hfov()
        plugin = PluginInfo(version, legacy)
        log.info("%s", plugin.describe())
        if hfov_deg is not None:
            command = "horizontal_fieldofview" if legacy else "fov"
            self.conn.request_text(f"vset {self._prefix}/{command} {hfov_deg:.6f}")
            hfov, _ = self._hfov()
        if size is not None:
            if legacy:
                raise CommandError(
                    f"vset {self._prefix}/size", "0.3.x plugins cannot change the capture size while running: "
                    "start the game with -UnrealCVWidth=W -UnrealCVHeight=H (or set Width/Height in unrealcv.ini) "
                    "and drop [capture] size",
                )
            self.conn.request_text(f"vset {self._prefix}/size {size[0]} {size[1]}")
        width, height = self._size(legacy)
        if depth_mode != "auto":
            return CameraInfo(width, height, hfov, "depth", depth_mode == "distance", plugin)
        if legacy and self._has_plane_depth():
            command, distance = "plane_depth", False
        else:
            command, distance = "depth", legacy
        log.info("depth from `%s npy` (%s)", command, "distance to the camera centre" if distance else "z-depth")
        return CameraInfo(width, height, hfov, command, distance, plugin)

    def _has_plane_depth(self) -> bool:
        """Whether a 0.3.x build's `plane_depth npy` returns an array (it is empty unless enabled)."""
        try:
            reply = self.conn.request(f"vget {self._prefix}/plane_depth npy")
            return decode_npy(reply, "plane_depth npy").ndim >= 2
        except (MissingCommandError, PayloadError):
            return False

    def _size(self, legacy: bool) -> tuple[int, int]:
        """(W, H) from ``size``, else from ``vget /unrealcv/status``, else (0, 0): unknown."""
        if not legacy:
            command = f"vget {self._prefix}/size"
            try:
                w, h = _floats(self.conn.request_text(command), 2, command)
                return int(w), int(h)
            except MissingCommandError:
                pass
        try:
            status = self.conn.request_text("vget /unrealcv/status")
            w = re.search(r"^Width:\s*(\d+)", status, re.M)
            h = re.search(r"^Height:\s*(\d+)", status, re.M)
            if w and h:
                return int(w.group(1)), int(h.group(1))
        except MissingCommandError:
            pass
        log.warning("the game reports no capture size; taking it from the first image")
        return 0, 0

    def _hfov(self) -> tuple[float, bool]:
        """(horizontal FOV in degrees, whether only the 0.3.x `horizontal_fieldofview` has it)."""
        missing = None
        for legacy, what in ((False, "fov"), (True, "horizontal_fieldofview")):
            command = f"vget {self._prefix}/{what}"
            try:
                fov = float(_floats(self.conn.request_text(command), 1, command)[0])
            except MissingCommandError as exc:
                missing = missing or exc
                continue
            if not 0.0 < fov < 180.0:
                raise CommandError(command, f"horizontal FOV must be in (0, 180) degrees; got {fov}")
            return fov, legacy
        raise missing

    def set_pose(self, location_cm: np.ndarray, rotation_pyr: np.ndarray) -> None:
        x, y, z = (float(v) for v in location_cm)
        p, yaw, r = (float(v) for v in rotation_pyr)
        # Plain decimals: the plugin's [float] pattern is [-+]?\d*[.]?\d+ (no exponent).
        self.conn.request_text(f"vset {self._prefix}/location {x:.4f} {y:.4f} {z:.4f}")
        self.conn.request_text(f"vset {self._prefix}/rotation {p:.4f} {yaw:.4f} {r:.4f}")

    def get_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(location cm (3,), rotation pitch/yaw/roll degrees (3,)) as the game has it now."""
        loc_cmd, rot_cmd = f"vget {self._prefix}/location", f"vget {self._prefix}/rotation"
        return _floats(self.conn.request_text(loc_cmd), 3, loc_cmd), _floats(self.conn.request_text(rot_cmd), 3, rot_cmd)

    def lit(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return decode_png_rgb(self._binary("lit png"), "lit png")

    def depth(self, info: CameraInfo, K: np.ndarray) -> np.ndarray:
        """(H, W) float32 z-depth in metres, 0 where nothing was hit."""
        return depth_from_npy(self._binary(f"{info.depth_command} npy"), distance_to_centre=info.depth_is_distance, K=K)

    def normal(self) -> np.ndarray:
        return decode_png_rgb(self._binary("normal png"), "normal png")

    def object_mask(self) -> np.ndarray:
        return decode_png_rgb(self._binary("object_mask png"), "object_mask png")

    def _binary(self, what: str) -> str | bytes:
        reply = self.conn.request(f"vget {self._prefix}/{what}")
        if isinstance(reply, str) and reply in ("ok", ""):
            raise PayloadError(f"{what}: got {reply!r} instead of data")
        return reply
