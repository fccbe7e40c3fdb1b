"""The UnrealCV commands we use, for one camera of one game, and what their replies mean.

Targets the UnrealCV plugin's ``FusionCamSensor`` command set (1.x, and the 4.22 / 4.27 /
5.x branches of github.com/unrealcv/unrealcv), with fall-backs for the older 0.3.x builds:

==========================================  ===========================================
``vset /camera/N/location X Y Z``           cm, Unreal world; camera 0 moves the player pawn
``vset /camera/N/rotation P Y R``           degrees, pitch yaw roll (``FRotator`` order)
``vget /camera/N/location`` / ``rotation``  ``"%.3f %.3f %.3f"``, read back after every set
``vget /camera/N/fov``                      horizontal FOV, ``"%f"`` (0.3.x:
                                            ``horizontal_fieldofview``)
``vget /camera/N/size``                     ``"W H"`` (older: ``Width``/``Height`` lines of
                                            ``vget /unrealcv/status``)
``vget /camera/N/lit png``                  RGBA PNG
``vget /camera/N/depth npy``                z-depth, cm (0.3.x: distance to the camera centre;
                                            its ``plane_depth npy`` is z-depth)
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
from datagen.unrealcv.payloads import PayloadError, decode_png_rgb, depth_from_npy

log = logging.getLogger(__name__)

DEPTH_MODES = ("auto", "plane", "distance")


@dataclass(frozen=True)
class CameraInfo:
    """What the game reports about the capture camera. ``width``/``height`` 0: unknown yet."""

    width: int
    height: int
    hfov_deg: float
    depth_command: str  # "depth" or "plane_depth"
    depth_is_distance: bool  # the depth payload is distance to the camera centre


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

    def configure(self, size: tuple[int, int] | None, hfov_deg: float | None) -> None:
        """Set the capture resolution and/or horizontal FOV (``None`` keeps the game's)."""
        if size is not None:
            self.conn.request_text(f"vset {self._prefix}/size {size[0]} {size[1]}")
        if hfov_deg is not None:
            self.conn.request_text(f"vset {self._prefix}/fov {hfov_deg:g}")

    def probe(self, depth_mode: str = "auto") -> CameraInfo:
        """Read resolution, FOV and which depth command/meaning this plugin build has."""
        if depth_mode not in DEPTH_MODES:
            raise ValueError(f"depth mode must be one of {DEPTH_MODES}; got {depth_mode!r}")
        width, height = self._size()
        hfov = self._hfov()
        if depth_mode == "auto":
            try:  # only 0.3.x builds have it; there `depth` is the distance to the camera centre
                self.conn.request(f"vget {self._prefix}/plane_depth npy")
                command = "plane_depth"
            except MissingCommandError:
                command = "depth"
            log.info("depth from `%s npy` (z-depth along the optical axis)", command)
            return CameraInfo(width, height, hfov, command, False)
        return CameraInfo(width, height, hfov, "depth", depth_mode == "distance")

    def _size(self) -> tuple[int, int]:
        """(W, H) from ``size``, else from ``vget /unrealcv/status``, else (0, 0): unknown."""
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

    def _hfov(self) -> float:
        """Horizontal FOV in degrees from ``fov`` (1.x), else ``horizontal_fieldofview`` (0.3.x)."""
        missing = None
        for command in (f"vget {self._prefix}/fov", f"vget {self._prefix}/horizontal_fieldofview"):
            try:
                fov = float(_floats(self.conn.request_text(command), 1, command)[0])
            except MissingCommandError as exc:
                missing = missing or exc
                continue
            if not 0.0 < fov < 180.0:
                raise CommandError(command, f"horizontal FOV must be in (0, 180) degrees; got {fov}")
            return fov
        raise missing

    def set_pose(self, location_cm: np.ndarray, rotation_pyr: np.ndarray) -> None:
        x, y, z = (float(v) for v in location_cm)
        p, yaw, r = (float(v) for v in rotation_pyr)
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
