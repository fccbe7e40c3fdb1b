"""Exact posed RGB-D test views for the bridge tests (a module of its own: several test
folders have a ``conftest``, so ``from conftest import ...`` depends on collection order)."""

from __future__ import annotations

import numpy as np

from models.cameras import K_from_hfov, look_at
from models.scene import Camera, Frame


def make_views(n: int = 2, width: int = 32, height: int = 24, depth: bool = True) -> list[Frame]:
    """``n`` posed RGB-D views of a checkerboard wall (the plane y = 0), cameras 3 m away on a small arc.

    Colours and depths are exact ray-plane intersections, so every view agrees with every other.
    """
    frames = []
    j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    for k in range(n):
        c2w = look_at([0.2 * k, -3.0, 1.0], [0.0, 0.0, 1.0])
        K = K_from_hfov(60.0, width, height)
        rays_cam = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)  # z = 1
        rays = rays_cam @ c2w[:3, :3].T
        t = -c2w[1, 3] / rays[..., 1]  # z-depth, since each camera-space ray has z = 1
        hit = c2w[:3, 3] + t[..., None] * rays
        cell = (np.floor(hit[..., 0] / 0.25) + np.floor(hit[..., 2] / 0.25)).astype(int)
        palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
        rgb = palette[cell % 3]
        cam = Camera(K=K, c2w=c2w, width=width, height=height)
        frames.append(Frame(rgb=rgb, camera=cam, depth=t.astype(np.float32) if depth else None, name=f"v{k}"))
    return frames
