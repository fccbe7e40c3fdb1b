"""Slow, obviously-correct references for the anchor's fast paths (tests only)."""

from __future__ import annotations

import math

import numpy as np

from models.cameras import project


def reference_render(
    xyz: np.ndarray,
    rgb: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    splat_radius: int = 0,
    near: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point by point z-buffer: (rgb uint8 [H, W, 3], mask bool [H, W], depth float64 [H, W]).

    A point with depth > near whose projection lies in pixel (row, col) of the image
    covers every pixel up to ``splat_radius`` rows/cols away; a pixel keeps the nearest
    covering point, and of equal depths the one that came first.
    """
    out_rgb = np.zeros((height, width, 3), np.uint8)
    best = np.full((height, width), math.inf)
    owner = np.full((height, width), -1)
    if len(xyz) == 0:
        return out_rgb, owner >= 0, np.zeros((height, width))
    uv, z = project(xyz, K, c2w)
    for i in range(len(xyz)):
        if not z[i] > near:
            continue
        col, row = math.floor(uv[i, 0]), math.floor(uv[i, 1])
        if not (0 <= col < width and 0 <= row < height):
            continue
        for r in range(max(row - splat_radius, 0), min(row + splat_radius + 1, height)):
            for c in range(max(col - splat_radius, 0), min(col + splat_radius + 1, width)):
                if z[i] < best[r, c]:
                    best[r, c], owner[r, c] = z[i], i
                    out_rgb[r, c] = rgb[i]
    mask = owner >= 0
    return out_rgb, mask, np.where(mask, best, 0.0)
