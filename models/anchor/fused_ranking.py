"""Reference ranking's grid coverage as compiled loops over the candidates' points, by numba (CPU).

:func:`models.anchor.reference.grid_coverage` projects every candidate's sample points (256 each,
25 600 for 100 views) with ~20 NumPy passes, each allocating a 200 KB float64 temporary: 0.4-0.5
ms on the 2-core VM, 1.3-1.8 ms right after a 512x512 splat on the lent GPU machine's host
(docs/anchor.md), paid every frame by the server's reference pick and the ``mesh`` anchor's view
ranking. Here one loop maps each point to its grid cell and a second marks the cells: the first
has no branch and reads the points as three contiguous columns
(:attr:`models.anchor.reference.ReferenceIndex.columns`), so LLVM runs it in SIMD registers,
eight points per division on AVX-512 (4x faster than one point at a time on the 2-core VM).

The coverage is :func:`~models.anchor.reference.grid_coverage`'s exactly: the same float64
operations in the same order, each rounded once (numba fuses no multiply and add without
``fastmath``), so the server ranks the same views whether it has switched to these loops yet or
not. A test compares the two byte for byte. ``cache=True``: compiled once per machine, loaded
from disk after that (see :mod:`models.anchor.fused_shading`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from models.anchor.reference import GRID

if TYPE_CHECKING:
    from models.anchor.reference import ReferenceIndex

__all__ = ["grid_coverage_loop"]

_NOWHERE = -1  # a point's cell when it lands outside the target or behind its camera


@njit(cache=True, nogil=True, error_model="numpy")
def _cells(px, py, pz, w2c, K, width, height, grid, out):
    """out[i] = the grid cell (row * grid + column) point i lands in, or _NOWHERE. No branch in
    the body (the test becomes a select), so that the loop vectorises."""
    scale_x, scale_y = grid / width, grid / height
    g = np.float64(grid)
    r00, r01, r02, t0 = w2c[0, 0], w2c[0, 1], w2c[0, 2], w2c[0, 3]
    r10, r11, r12, t1 = w2c[1, 0], w2c[1, 1], w2c[1, 2], w2c[1, 3]
    r20, r21, r22, t2 = w2c[2, 0], w2c[2, 1], w2c[2, 2], w2c[2, 3]
    k00, k01, k02, k10, k11, k12 = K[0, 0], K[0, 1], K[0, 2], K[1, 0], K[1, 1], K[1, 2]
    for i in range(px.shape[0]):
        x0, y0, z0 = np.float64(px[i]), np.float64(py[i]), np.float64(pz[i])
        z = r20 * x0 + r21 * y0 + r22 * z0 + t2
        x = (r00 * x0 + r01 * y0 + r02 * z0 + t0) / z
        y = (r10 * x0 + r11 * y0 + r12 * z0 + t1) / z
        col = np.floor((k00 * x + k01 * y + k02) * scale_x)
        row = np.floor((k10 * x + k11 * y + k12) * scale_y)
        # NaN (a point on the camera's plane) fails every comparison: not seen
        seen = (z > 0) & (col >= 0) & (col < g) & (row >= 0) & (row < g)
        out[i] = np.int32(row * g + col if seen else np.float64(_NOWHERE))


@njit(cache=True, nogil=True, error_model="numpy")
def _coverage(px, py, pz, count, per, w2c, K, width, height, grid):
    cell = np.empty(px.shape[0], np.int32)
    _cells(px, py, pz, w2c, K, width, height, grid, cell)
    cells = grid * grid
    coverage = np.zeros(count)
    hit = np.zeros(cells, np.uint8)
    for c in range(count):
        hit[:] = 0
        for i in range(c * per, (c + 1) * per):
            if cell[i] != _NOWHERE:
                hit[cell[i]] = 1
        covered = 0
        for j in range(cells):
            covered += hit[j]
        coverage[c] = covered / cells
    return coverage


def grid_coverage_loop(index: ReferenceIndex, w2c: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """:func:`models.anchor.reference.grid_coverage`'s arguments and result, in compiled loops.

    The arguments reach the loops in one type signature whatever the callers' layouts (C-contiguous
    float64 maps): numba compiles a new machine-code version per signature, on the calling
    thread (seconds, mid-stream)."""
    count, per = index.points.shape[:2]
    px, py, pz = index.columns
    w2c, K = (np.ascontiguousarray(a, dtype=np.float64) for a in (w2c, K))
    return _coverage(px, py, pz, count, per, w2c, K, int(width), int(height), GRID)
