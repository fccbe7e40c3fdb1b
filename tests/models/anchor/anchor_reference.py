"""Slow, obviously-correct references for the anchor's fast paths (tests only)."""

from __future__ import annotations

import math

import numpy as np
import torch

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
    gap_width: int = 2,
    same_surface: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point by point z-buffer: (rgb uint8 [H, W, 3], mask bool [H, W], depth float64 [H, W]).

    The rules are those of :func:`reference_zbuffer`.
    """
    best, owner = reference_zbuffer(xyz, K, c2w, width, height, splat_radius, fill_gaps, near, gap_tolerance,
                                    gap_width, same_surface)
    mask = owner >= 0
    out_rgb = np.where(mask[..., None], rgb[np.maximum(owner, 0)] if len(xyz) else 0, 0).astype(np.uint8)
    return out_rgb, mask, np.where(mask, best, 0.0)


def reference_zbuffer(
    xyz: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    splat_radius: int = 0,
    fill_gaps: bool = False,
    near: float = 1e-3,
    gap_tolerance: float = 0.03,
    gap_width: int = 2,
    same_surface: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Point by point z-buffer: (winner's depth float64 [H, W] (inf where empty), winner int [H, W] (-1)).

    1. A point with depth > near whose projection lies in pixel (row, col) of the image
       competes for that pixel; the nearest wins, of equal depths the one that came first.
    2. ``fill_gaps``: a pixel that lies, along a row, column or diagonal, in a run of at most
       ``gap_width`` pixels whose two end pixels are both nearer than (1 - gap_tolerance) times
       its depth (empty = infinitely far) and within ``same_surface`` (relative) of each other's
       depth takes the nearer end's winner, the nearest (then first) over all such runs.
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

                # ends a steps ahead and b behind: a run of a + b - 1 pixels through this one
                ends = []
                for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    for a in range(1, gap_width + 1):
                        for b in range(1, gap_width + 2 - a):
                            ra, ca, rb, cb = r + a * dr, c + a * dc, r - b * dr, c - b * dc
                            da, db = depth_at(a * dr, a * dc), depth_at(-b * dr, -b * dc)
                            if max(da, db) < limit and max(da, db) <= min(da, db) * (1 + same_surface):
                                ends += [(best[ra, ca], owner[ra, ca]), (best[rb, cb], owner[rb, cb])]
                if ends:
                    filled_best[r, c], filled_owner[r, c] = min(ends)
        best, owner = filled_best, filled_owner
    if splat_radius:
        grown = [[nearest_around(r, c, splat_radius) for c in range(width)] for r in range(height)]
        best = np.array([[d for d, _ in row] for row in grown]).reshape(height, width)
        owner = np.array([[i for _, i in row] for row in grown]).reshape(height, width)
    return best, owner


def reference_mesh_render(
    scene, K: np.ndarray, c2w: np.ndarray, width: int, height: int, extra_views: int,
    continuity: float = 0.03, consistency: float = 0.03, margin: float = 1e-4, mip_levels: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``mesh`` anchor style pixel by pixel in float64: (rgb uint8 [H, W, 3], mask bool [H, W],
    borderline bool [H, W]).

    For each pixel the point z-buffer (with gap filling) names the visible fused point; the ray
    through the pixel centre at that depth gives a world point X. Candidate source views: the
    ``extra_views`` best by ``reference_scores`` (score > 0); only where none of them matches, the
    winner's own view. In a candidate, X projects to (u, v); the four samples around it (centres
    at +0.5) must lie in the image, be reliable (``reliable_depth_mask``), agree within
    ``continuity`` of the smallest, and their bilinear depth must match X's within
    ``consistency``. Matching candidates are averaged bilinearly with weight
    min(1, (target footprint / source footprint)^2); where that footprint ratio r is 2 or more,
    the colour is the bilinear sample (clamped to the image) of the view's pyramid level
    min(floor(log2 r), last) instead, level l holding the rounded mean of each 2 x 2 block of
    level l - 1 (``mip_levels`` levels with 0, none under 2 x 2, as many for every view as the
    smallest view has). With none (the own view included), the pixel keeps the winner's
    colour, unless every reliable one of the own view's four samples around (u, v) lies farther
    than X by more than ``consistency``, or the one of the four closest to (u, v) sees no surface
    at all (no depth: sky; not a sample dropped as unreliable): then it is empty. ``borderline`` marks pixels where some test is within
    ``margin`` (relative) of its threshold, where float32 and float64 may decide differently.
    """
    from models.anchor.cloud import DEFAULT_MAX_DEPTH, reliable_depth_mask
    from models.anchor.reference import reference_scores

    cloud = scene.cloud
    best, owner = reference_zbuffer(cloud.xyz.astype(np.float64), K, c2w, width, height, fill_gaps=True)
    reliable, nothing = [], []
    for f in scene.frames:
        d = np.where(np.isfinite(f.depth) & (f.depth > 0), f.depth, 0).astype(np.float32)
        keep = reliable_depth_mask(torch.from_numpy(d), float(min(f.camera.K[0, 0], f.camera.K[1, 1]))).numpy()
        reliable.append(np.where(keep, d, 0.0).astype(np.float64))
        nothing.append((d <= 0) | (d > DEFAULT_MAX_DEPTH))  # no surface at all (sky), not a dropped sample
    pyramids = []
    for f in scene.frames:
        levels = [f.rgb.astype(np.int64)]
        while len(levels) < mip_levels and min(levels[-1].shape[:2]) // 2 >= 2:
            a = levels[-1]
            h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
            levels.append((a[0:h:2, 0:w:2] + a[1:h:2, 0:w:2] + a[0:h:2, 1:w:2] + a[1:h:2, 1:w:2] + 2) // 4)
        pyramids.append(levels)
    last = min(len(levels) for levels in pyramids) - 1
    extra = []
    if extra_views:
        scores = reference_scores(scene.references, K, c2w, width, height)
        extra = [int(v) for v in np.argsort(-scores, kind="stable")[:extra_views] if scores[v] > 0]
    rgb = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), bool)
    border = np.zeros((height, width), bool)
    focal_t = min(K[0, 0], K[1, 1])
    for i in range(height):
        for j in range(width):
            if owner[i, j] < 0:
                continue
            z = best[i, j]
            ray = np.linalg.solve(K, [j + 0.5, i + 0.5, 1.0]) * z
            x_world = c2w[:3, :3] @ ray + c2w[:3, 3]
            own = int(scene.sources[owner[i, j], 0])
            total, weight, sees_past, edge = np.zeros(3), 0.0, False, False
            for n, v in enumerate(extra + [own]):
                if n == len(extra) and weight > 0:
                    break  # a ranked view matched: the own view is not consulted
                f = scene.frames[v]
                depth = reliable[v]
                uv, zs = project(x_world[None], f.camera.K, f.camera.c2w)
                if not zs[0] > 0:
                    continue
                x, y = uv[0, 0] - 0.5, uv[0, 1] - 0.5
                x0, y0 = math.floor(x), math.floor(y)
                fx, fy = x - x0, y - y0
                edge |= min(fx, 1 - fx, fy, 1 - fy, abs(fx - 0.5), abs(fy - 0.5)) < margin
                if not (0 <= x0 < f.camera.width - 1 and 0 <= y0 < f.camera.height - 1):
                    continue
                corners = depth[y0 : y0 + 2, x0 : x0 + 2]
                if n == len(extra) and (corners > 0).any():
                    near_d = corners[corners > 0].min()
                    sees_past = near_d > zs[0] * (1 + consistency)
                    edge |= abs(near_d - zs[0] * (1 + consistency)) < margin * zs[0]
                if n == len(extra):  # the sample closest to (u, v) sees no surface at all
                    sees_past |= bool(nothing[v][y0 + int(fy >= 0.5), x0 + int(fx >= 0.5)])
                lo, hi = corners.min(), corners.max()
                edge |= abs(hi - lo * (1 + continuity)) < margin * hi
                if not (lo > 0 and hi <= lo * (1 + continuity)):
                    continue
                wts = np.array([[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]])
                surface = (wts * corners).sum()
                edge |= abs(abs(zs[0] - surface) - consistency * zs[0]) < margin * zs[0]
                if abs(zs[0] - surface) > consistency * zs[0]:
                    continue
                colour = (wts[..., None] * f.rgb[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)).sum((0, 1))
                focal_v = min(f.camera.K[0, 0], f.camera.K[1, 1])
                ratio = (z / focal_t) / (zs[0] / focal_v)
                w = min(1.0, ratio**2)
                if last >= 1 and ratio >= 1:
                    edge |= abs(math.log2(ratio) - round(math.log2(ratio))) < margin
                    level = min(math.floor(math.log2(ratio)), last)
                    if level >= 1:
                        image = pyramids[v][level]
                        lw, lh = image.shape[1], image.shape[0]
                        xl = min(max(uv[0, 0] / 2**level - 0.5, 0.0), lw - 1.0)
                        yl = min(max(uv[0, 1] / 2**level - 0.5, 0.0), lh - 1.0)
                        xl0, yl0 = min(math.floor(xl), lw - 2), min(math.floor(yl), lh - 2)
                        gx, gy = xl - xl0, yl - yl0
                        lw4 = np.array([[(1 - gx) * (1 - gy), gx * (1 - gy)], [(1 - gx) * gy, gx * gy]])
                        colour = (lw4[..., None] * image[yl0 : yl0 + 2, xl0 : xl0 + 2].astype(np.float64)).sum((0, 1))
                total += w * colour
                weight += w
            border[i, j] = edge
            if weight > 0:
                rgb[i, j] = np.clip(np.round(total / weight), 0, 255)
                mask[i, j] = True
            elif not sees_past:
                rgb[i, j] = cloud.rgb[owner[i, j]]
                mask[i, j] = True
    return rgb, mask, border
