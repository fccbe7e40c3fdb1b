"""Analytic test scenes: exact RGB-D views of a textured room with a box inside (tests only).

Each pixel's ray is intersected with the geometry in closed form, independently of the
anchor code, so fused clouds and their renderings can be checked against ground truth.
"""

from __future__ import annotations

import numpy as np

from models.cameras import K_from_hfov, look_at
from models.scene import Camera, Frame

ROOM = (np.array([-4.0, -4.0, 0.0]), np.array([4.0, 4.0, 3.0]))  # seen from inside
BOX = (np.array([-0.6, -0.6, 0.0]), np.array([0.6, 0.6, 1.2]))  # seen from outside


def texture(points: np.ndarray) -> np.ndarray:
    """Smooth colour field uint8 [N, 3] of world points [N, 3] (metres)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    rgb = np.stack(
        [
            128 + 90 * np.sin(2.1 * x + 1.3 * y + 0.5),
            128 + 90 * np.sin(1.7 * y + 2.3 * z),
            128 + 90 * np.sin(2.5 * z + 1.1 * x + 1.0),
        ],
        axis=1,
    )
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _slabs(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ray parameters [N] of rays ``origin + t dirs`` through an axis box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - origin) / dirs
        t2 = (hi - origin) / dirs
    return np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)


def render_view(K: np.ndarray, c2w: np.ndarray, width: int, height: int, name: str = "") -> Frame:
    """Exact RGB and z-depth of the room for one pinhole camera (K without skew)."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    cam_dirs = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(cols)], -1)
    dirs = cam_dirs.reshape(-1, 3) @ c2w[:3, :3].T  # camera z component is 1, so t is z-depth
    origin = c2w[:3, 3]
    _, t_room = _slabs(origin, dirs, *ROOM)
    t_in, t_out = _slabs(origin, dirs, *BOX)
    hits_box = (t_in <= t_out) & (t_in > 0)
    t = np.where(hits_box, t_in, t_room)
    rgb = texture(origin + t[:, None] * dirs)
    return Frame(
        rgb=rgb.reshape(height, width, 3),
        camera=Camera(K=K, c2w=c2w, width=width, height=height),
        depth=t.reshape(height, width).astype(np.float32),
        name=name,
    )


def orbit_views(count: int, width: int = 64, height: int = 48, hfov: float = 70.0) -> list[Frame]:
    """``count`` views from a ring inside the room, all looking at the box."""
    K = K_from_hfov(hfov, width, height)
    frames = []
    for i in range(count):
        angle = 2 * np.pi * i / count
        eye = np.array([2.8 * np.cos(angle), 2.8 * np.sin(angle), 1.6])
        frames.append(render_view(K, look_at(eye, [0.0, 0.0, 0.6]), width, height, name=f"view{i:03d}"))
    return frames
