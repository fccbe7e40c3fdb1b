"""Camera paths for offline rendering (``worldfm render-path``) and the demo flythrough.

A path file is JSON in the project convention (``models.cameras``)::

    {
      "width": 256, "height": 256,          # optional when K is given: then (2 cx, 2 cy)
      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   # or "hfov_deg": 60 (needs width/height)
      "fps": 24,                             # optional, for the MP4 (default 24)
      "c2w": [[[...4x4...]], ...]            # N camera-to-world matrices, metres, OpenCV axes
    }

The published WorldFM ``meta.json`` (``name``, ``image``, ``K``, ``c2w``) is a valid path
file as it stands: its frame size is the one K implies, as in ``datagen.worldfm_meta``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from models.cameras import CameraError, K_from_hfov, validate_c2w, validate_K


class CameraPathError(ValueError):
    """A path file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CameraPath:
    """``poses`` (N, 4, 4) c2w metres, shared intrinsics ``K`` (3, 3) pixels of ``size`` (W, H)."""

    poses: np.ndarray
    K: np.ndarray
    size: tuple[int, int]
    fps: float = 24.0

    def __len__(self) -> int:
        return len(self.poses)


def load_camera_path(path: str | Path) -> CameraPath:
    """Read a path file (our format or a WorldFM meta.json); every pose and K is validated."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CameraPathError(f"cannot read camera path {path}: {exc}") from None
    if not isinstance(data, dict) or "c2w" not in data:
        raise CameraPathError(f"{path}: a camera path is a JSON object with a 'c2w' list of 4x4 matrices")
    try:
        poses = validate_c2w(np.asarray(data["c2w"], dtype=np.float64), "c2w").reshape(-1, 4, 4)
        if "K" in data:
            K = validate_K(np.asarray(data["K"], dtype=np.float64))
            implied = (int(round(2 * K[0, 2])), int(round(2 * K[1, 2])))
            size = (int(data.get("width", implied[0])), int(data.get("height", implied[1])))
            K = validate_K(K, *size)
        elif "hfov_deg" in data and "width" in data and "height" in data:
            size = (int(data["width"]), int(data["height"]))
            K = K_from_hfov(float(data["hfov_deg"]), *size)
        else:
            raise CameraPathError(f"{path}: give 'K' (3x3 pixels) or 'hfov_deg' with 'width' and 'height'")
        fps = float(data.get("fps", 24.0))
    except CameraError as exc:
        raise CameraPathError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CameraPathError):
            raise
        raise CameraPathError(f"{path}: malformed field ({exc})") from None
    if not len(poses):
        raise CameraPathError(f"{path}: the path has no poses")
    if not 0 < fps <= 240:
        raise CameraPathError(f"{path}: fps must be in (0, 240]; got {fps}")
    return CameraPath(poses, K, size, fps)


def save_camera_path(path: str | Path, camera_path: CameraPath) -> None:
    """Write ``camera_path`` in the format :func:`load_camera_path` reads."""
    Path(path).write_text(
        json.dumps(
            {
                "width": camera_path.size[0],
                "height": camera_path.size[1],
                "K": camera_path.K.tolist(),
                "fps": camera_path.fps,
                "c2w": camera_path.poses.tolist(),
            },
            indent=1,
        )
    )


def render_path(
    path: CameraPath,
    render: Callable[[np.ndarray, int], np.ndarray],
    video: str | Path,
    seed: int = 0,
    frames_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Render every pose of ``path`` and stream the frames into the MP4 ``video``; returns the frame count.

    ``render(c2w, seed)`` returns the RGB uint8 (H, W, 3) frame at pose ``c2w``; pose i gets
    seed ``seed + i``, so a run is frame-accurate and repeatable, whichever renders it
    (``worldfm render-path`` through an in-process pipeline, ``worldfm view`` through the
    server). With ``frames_dir`` each frame is also written as ``frame_00000.png`` ....
    ``progress(done, total)`` is called after each frame. Frames are not kept in memory.
    """
    import imageio.v2 as imageio

    with imageio.get_writer(video, fps=path.fps, quality=8, macro_block_size=1) as writer:
        for i, c2w in enumerate(path.poses):
            rgb = render(c2w, seed + i)
            if frames_dir is not None:
                imageio.imwrite(Path(frames_dir) / f"frame_{i:05d}.png", rgb)
            writer.append_data(rgb)
            if progress is not None:
                progress(i + 1, len(path))
    return len(path)


def interpolate_poses(keyframes: np.ndarray, n: int) -> np.ndarray:
    """``n`` poses (n, 4, 4) along keyframe poses (K, 4, 4): positions linear, rotations slerped.

    Evenly spaced in keyframe index, passing through every keyframe; the first and last
    output poses are the first and last keyframes.
    """
    keys = validate_c2w(keyframes, "keyframes").reshape(-1, 4, 4)
    if n < 1:
        raise ValueError(f"need at least one pose; got n={n}")
    if len(keys) == 1:
        return np.repeat(keys, n, axis=0)
    knots = np.arange(len(keys), dtype=np.float64)
    t = np.linspace(0.0, knots[-1], n)
    out = np.tile(np.eye(4), (n, 1, 1))
    for axis in range(3):
        out[:, axis, 3] = np.interp(t, knots, keys[:, axis, 3])
    for i, ti in enumerate(t):
        k = min(int(ti), len(keys) - 2)
        r0, r1 = keys[k, :3, :3], keys[k + 1, :3, :3]
        # Geodesic (slerp) step: rotate r0 by the fraction (ti - k) of the relative rotation's axis-angle.
        axis_angle, _ = cv2.Rodrigues(r0.T @ r1)
        step, _ = cv2.Rodrigues(axis_angle * (ti - k))
        out[i, :3, :3] = r0 @ step
    return out
