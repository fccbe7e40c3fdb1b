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
    fill_gaps: bool = False,
    near: float = 1e-3,
    gap_tolerance: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point by point z-buffer: (rgb uint8 [H, W, 3], mask bool [H, W], depth float64 [H, W]).

    1. A point with depth > near whose projection lies in pixel (row, col) of the image
       competes for that pixel; the nearest wins, of equal depths the one that came first.
    2. ``fill_gaps``: a pixel whose two neighbours along a row, column or diagonal are both
       nearer than (1 - gap_tolerance) times its depth (empty = infinitely far) takes the
       winner of its 3x3 neighbourhood (nearest, then first).
    3. Each pixel's winner also competes for the pixels up to ``splat_radius`` rows/cols away.
    """
    best = np.full((height, width), math.inf)
    owner = np.full((height, width), -1)
    uv, z = project(xyz, K, c2w) if len(xyz) else (np.zeros((0, 2)), np.zeros(0))
    for i in range(len(xyz)):
        if not z[i] > near:
            continue
        col, row = math.floor(uv[i, 0]), math.floor(uv[i, 1])
        if 0 <= col < width and 0 <= row < height and z[i] < best[row, col]:
            best[row, col], owner[row, col] = z[i], i

    def nearest_around(r: int, c: int, radius: int) -> tuple[float, int]:
        cands = [
            (best[rr, cc], owner[rr, cc])
            for rr in range(max(r - radius, 0), min(r + radius + 1, height))
            for cc in range(max(c - radius, 0), min(c + radius + 1, width))
            if owner[rr, cc] >= 0
        ]
        return min(cands) if cands else (math.inf, -1)

    if fill_gaps:
        filled_best, filled_owner = best.copy(), owner.copy()
        for r in range(height):
            for c in range(width):

                def depth_at(dr: int, dc: int) -> float:
                    rr, cc = r + dr, c + dc
                    return best[rr, cc] if 0 <= rr < height and 0 <= cc < width else math.inf

                limit = best[r, c] * (1 - gap_tolerance)
                if any(
                    depth_at(dr, dc) < limit and depth_at(-dr, -dc) < limit
                    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1))
                ):
                    filled_best[r, c], filled_owner[r, c] = nearest_around(r, c, 1)
        best, owner = filled_best, filled_owner
    if splat_radius:
        grown = [[nearest_around(r, c, splat_radius) for c in range(width)] for r in range(height)]
        best = np.array([[d for d, _ in row] for row in grown]).reshape(height, width)
        owner = np.array([[i for _, i in row] for row in grown]).reshape(height, width)
    mask = owner >= 0
    out_rgb = np.where(mask[..., None], rgb[np.maximum(owner, 0)] if len(xyz) else 0, 0).astype(np.uint8)
    return out_rgb, mask, np.where(mask, best, 0.0)
