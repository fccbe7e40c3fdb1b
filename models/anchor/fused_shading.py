"""The ``mesh`` style's per-pixel shading as one loop over the pixels, compiled by numba (CPU).

:func:`models.anchor.mesh._shade` shades with ~200 vectorised torch calls, each a memory pass
over every pixel (docs/anchor.md, "What limits the eager shading"): 2.9-3.4x the point splat
per frame on 2 cores, 1.6-2.3x with this loop (``python bench/bench_anchor.py --styles-only``,
docs/anchor.md). This module runs the same arithmetic pixel by pixel in one compiled
loop: a pixel's look-ups stay in registers, pixels that nothing covers stop at once, the winning
point's own view and the colour pyramid are read only where they count. numba compiles it to machine code with
LLVM (no C compiler needed) and caches the result on disk (``cache=True``: ``__pycache__`` beside
this file, or numba's per-user cache where that is read-only), so only a machine's first process
pays the compile (a few seconds); later processes load it in a fraction of a second.

It releases the GIL (``nogil=True``), so the server's other threads keep running, and large
frames are split in row bands over :func:`models.anchor.mesh.shading_threads` threads: the
calling thread and a pool's.
Division follows IEEE rules (``error_model="numpy"``: x / 0 is inf or NaN, as in torch, with no Python
``ZeroDivisionError`` check per division, which cost a third of the loop).

The bytes are :func:`~models.anchor.mesh._shade`'s exactly: float32 throughout, the same
operations in the same order, each rounded once (numba fuses no multiply and add without
``fastmath``; the eager path avoids torch's fused ones), so a pose gives the same frame whether
the server has switched to this loop yet or not. Tests compare the two byte for byte and both
with the float64 reference rasteriser.
"""

from __future__ import annotations

import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from models.anchor.mesh import CONSISTENCY, MIN_WEIGHT, shading_threads
from models.anchor.splat import EMPTY_KEY, key_depth

__all__ = ["fused_shade"]

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_INF = np.float32(np.inf)
_ROUNDER = np.float32(1.5 * 2**23)
_BAND_PIXELS = 1 << 14  # pixels per thread below which splitting a frame costs more than it saves


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _lerp(a, b, w):
    """``a + w (b - a)``, as mesh._bilinear computes it (numba fuses no multiply and add)."""
    return w * (b - a) + a


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bilinear(c00, c01, c10, c11, fx, fy):
    return _lerp(_lerp(c00, c01, fx), _lerp(c10, c11, fx), fy)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _channel(packed, shift):
    return np.float32((packed >> shift) & 255)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _byte(x):
    """float32 -> uint8 as torch's round (half to even) and clamp to 0..255 do it: adding and
    taking away 1.5 * 2^23 rounds a float32 below 2^22 to an integer, ties to even, in two
    additions (np.rint is a library call per value here)."""
    return np.uint8(min(max((x + _ROUNDER) - _ROUNDER, np.float32(0)), np.float32(255)))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _look_up(view, maps, uz, vz, z, offset, width, height, rgba, depth, patch, consistency):
    """One target point (``uz``, ``vz``, ``z``) in source ``view``: (on_patch, r, g, b, u, v,
    source z, nearest reliable corner depth or inf, depth entry of the corner closest to the point
    or 0 outside) as mesh._look_up computes them."""
    m = 12 * view  # the view's 3 x 4 map, row-major (an index: a view of maps would count references)
    src_z = ((maps[m + 10] * z + maps[m + 8] * uz) + maps[m + 9] * vz) + maps[m + 11]  # mesh._look_up's order
    u = (((maps[m + 2] * z + maps[m + 0] * uz) + maps[m + 1] * vz) + maps[m + 3]) / src_z
    v = (((maps[m + 6] * z + maps[m + 4] * uz) + maps[m + 5] * vz) + maps[m + 7]) / src_z
    x, y = u - _HALF, v - _HALF
    x0, y0 = np.floor(x), np.floor(y)  # float: NaN and inf stay comparable (an int cast would not)
    w, h = width[view], height[view]
    # NaN (behind the source camera's plane) fails every comparison: not inside.
    if not (src_z > 0 and x0 >= 0 and y0 >= 0 and x0 < w - 1 and y0 < h - 1):
        return False, _INF, _INF, _INF, u, v, src_z, _INF, np.float32(0)
    fx, fy = x - x0, y - y0
    base = offset[view] + np.int64(y0) * w + np.int64(x0)
    d00, d01, d10, d11 = depth[base], depth[base + 1], depth[base + w], depth[base + w + 1]
    nearest = _INF
    for d in (d00, d01, d10, d11):
        if d > 0 and d < nearest:
            nearest = d
    closest = (d11 if fx >= _HALF else d10) if fy >= _HALF else (d01 if fx >= _HALF else d00)
    surface = _bilinear(d00, d01, d10, d11, fx, fy)
    on_patch = patch[base] and abs(src_z - surface) <= consistency * src_z
    if not on_patch:
        return False, _INF, _INF, _INF, u, v, src_z, nearest, closest
    c00, c01, c10, c11 = rgba[base], rgba[base + 1], rgba[base + w], rgba[base + w + 1]
    r = _bilinear(_channel(c00, 0), _channel(c01, 0), _channel(c10, 0), _channel(c11, 0), fx, fy)
    g = _bilinear(_channel(c00, 8), _channel(c01, 8), _channel(c10, 8), _channel(c11, 8), fx, fy)
    b = _bilinear(_channel(c00, 16), _channel(c01, 16), _channel(c10, 16), _channel(c11, 16), fx, fy)
    return True, r, g, b, u, v, src_z, nearest, closest


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _mip_colour(view, u, v, ratio, views, mip_offset, mip_width, mip_height, mip_rgba):
    """mesh._mip_colour for one pixel: the bilinear colour at pyramid level floor(log2 ratio),
    clamped to the levels there are, around level-0 source coordinates (``u``, ``v``)."""
    levels = mip_offset.shape[0] // views
    level = min(max(math.frexp(ratio)[1] - 1, 1), levels)  # floor(log2 ratio), exactly (as mesh)
    key = (level - 1) * views + view
    w, h = mip_width[key], mip_height[key]
    scale = np.float32(2.0 ** -level)
    x = min(max(u * scale - _HALF, np.float32(0)), np.float32(w - 1))
    y = min(max(v * scale - _HALF, np.float32(0)), np.float32(h - 1))
    x0 = min(np.floor(x), np.float32(w - 2))
    y0 = min(np.floor(y), np.float32(h - 2))
    fx, fy = x - x0, y - y0
    base = mip_offset[key] + np.int64(y0) * w + np.int64(x0)
    c00, c01, c10, c11 = mip_rgba[base], mip_rgba[base + 1], mip_rgba[base + w], mip_rgba[base + w + 1]
    return (_bilinear(_channel(c00, 0), _channel(c01, 0), _channel(c10, 0), _channel(c11, 0), fx, fy),
            _bilinear(_channel(c00, 8), _channel(c01, 8), _channel(c10, 8), _channel(c11, 8), fx, fy),
            _bilinear(_channel(c00, 16), _channel(c01, 16), _channel(c10, 16), _channel(c11, 16), fx, fy))


@njit(cache=True, nogil=True, error_model="numpy")
def _shade_band(start, stop, centre_u, centre_v, keys, depth_of_key, empty_key, target_focal, maps, extra, extra_on,
                point_view, splat_rgba, offset, width, height, rgba, depth, patch, focal,
                mip_offset, mip_width, mip_height, mip_rgba, consistency, past, min_weight,
                out_rgb, out_mask, out_depth):
    """Pixels ``start`` .. ``stop`` - 1 (row-major) of mesh._shade, written into the outputs."""
    views = offset.shape[0]
    anti_alias = mip_offset.shape[0] // views > 0
    low32 = np.int64(0xFFFFFFFF)
    for p in range(start, stop):
        out_rgb[p, 0] = out_rgb[p, 1] = out_rgb[p, 2] = 0
        out_mask[p] = False
        out_depth[p] = 0
        key = keys[p]
        if key == empty_key:
            continue
        z = depth_of_key[p]
        uz, vz = centre_u[p] * z, centre_v[p] * z
        footprint = z / target_focal
        weight = np.float32(0)
        tr = tg = tb = np.float32(0)
        for e in range(extra.shape[0]):  # the frame's best-ranked views first: the same tables for every pixel
            if not extra_on[e]:
                continue
            view = extra[e]
            found, r, g, b, u, v, src_z, _, _ = _look_up(view, maps, uz, vz, z, offset, width, height, rgba, depth,
                                                      patch, consistency)
            if not found:
                continue
            ratio = footprint * focal[view] / src_z
            w = min(ratio * ratio, _ONE)
            if anti_alias and ratio >= 2:
                r, g, b = _mip_colour(view, u, v, ratio, views, mip_offset, mip_width, mip_height, mip_rgba)
            tr += w * r
            tg += w * g
            tb += w * b
            weight += w
        if not weight > 0:  # none explains the pixel: the winning point's own view decides
            own = point_view[key & low32]
            on_patch, r, g, b, u, v, src_z, nearest, closest = _look_up(own, maps, uz, vz, z, offset, width, height,
                                                                       rgba, depth, patch, consistency)
            if on_patch:
                ratio = footprint * focal[own] / src_z
                weight = min(ratio * ratio, _ONE)
                if anti_alias and ratio >= 2:
                    r, g, b = _mip_colour(own, u, v, ratio, views, mip_offset, mip_width, mip_height, mip_rgba)
                tr, tg, tb = weight * r, weight * g, weight * b
            if not weight > 0 and ((nearest < _INF and nearest > src_z * past) or closest < 0):
                continue  # the pixel centre looks past a foreground edge (or at the sky) that other views spilled over
        if weight > 0:
            share = max(weight, min_weight)
            out_rgb[p, 0], out_rgb[p, 1], out_rgb[p, 2] = _byte(tr / share), _byte(tg / share), _byte(tb / share)
        else:
            packed = splat_rgba[key & low32]
            out_rgb[p, 0], out_rgb[p, 1], out_rgb[p, 2] = packed & 255, (packed >> 8) & 255, (packed >> 16) & 255
        out_mask[p] = True
        out_depth[p] = z


def _view_sizes(size: tuple, views: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 [V] width and height of every source view from mesh._shade's ``size`` argument."""
    width, height, steps = size
    if steps is not None:  # one size for every view
        return np.full(views, width, np.int64), np.full(views, height, np.int64)
    return width.numpy(), height.numpy()


def _loop_args(keys: torch.Tensor, centre_u: torch.Tensor, centre_v: torch.Tensor, target_focal: torch.Tensor,
               maps_t: torch.Tensor, extra: torch.Tensor, extra_on: torch.Tensor, point_view: torch.Tensor,
               splat_rgba: torch.Tensor, tables: tuple[torch.Tensor, ...], focal: torch.Tensor, size: tuple,
               mip: tuple[torch.Tensor, ...]) -> tuple:
    """:func:`_shade_band`'s arguments after ``start`` and ``stop`` from :func:`fused_shade`'s, the
    three outputs (allocated here) last."""
    offset, rgba, depth, patch = tables
    n = keys.shape[0]
    out_rgb = np.empty((n, 3), np.uint8)
    out_mask = np.empty(n, np.bool_)
    out_depth = np.empty(n, np.float32)
    maps = maps_t.numpy().T.reshape(-1)  # view v's map at 12 v .. 12 v + 11
    args = (centre_u.numpy(), centre_v.numpy(), keys.numpy(), key_depth(keys).numpy(), EMPTY_KEY,
            np.float32(target_focal.item()), maps, extra.numpy(), extra_on.numpy(), point_view.numpy(),
            splat_rgba.numpy(), offset.numpy(), *_view_sizes(size, offset.shape[0]), rgba.numpy(), depth.numpy(),
            patch.numpy(), focal.numpy(), *(t.numpy() for t in mip), np.float32(CONSISTENCY),
            np.float32(1 + CONSISTENCY), np.float32(MIN_WEIGHT), out_rgb, out_mask, out_depth)
    # Every array C-contiguous (a no-op for nearly all): numba compiles one machine-code version per
    # argument layout, and a scene whose arrays happen to be laid out otherwise (the pyramid layout's
    # column views, which a scene of views too small for a pyramid lacks; per-view sizes) would compile
    # another on the render thread, ~3 s.
    return tuple(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in args)


def fused_shade(keys: torch.Tensor, centre_u: torch.Tensor, centre_v: torch.Tensor, target_focal: torch.Tensor,
                maps_t: torch.Tensor, extra: torch.Tensor, extra_on: torch.Tensor, point_view: torch.Tensor,
                splat_rgba: torch.Tensor, tables: tuple[torch.Tensor, ...], focal: torch.Tensor,
                size: tuple, mip: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """:func:`models.anchor.mesh._shade` with the same arguments and results, in one compiled loop
    (CPU tensors only)."""
    args = _loop_args(keys, centre_u, centre_v, target_focal, maps_t, extra, extra_on, point_view, splat_rgba,
                      tables, focal, size, mip)
    out_rgb, out_mask, out_depth = args[-3:]
    n = keys.shape[0]
    threads = shading_threads()
    bands = min(threads, n // _BAND_PIXELS)
    if bands < 2:
        _shade_band(0, n, *args)
    else:
        # This thread shades the first band itself while pool threads shade the others. Handing every
        # band to the pool and waiting was slower (a 100-view scene's frames, 2-core VM at 199
        # GFLOP/s, 2026-12-03: 5.6 against 4.0 ms at 256x256, 16.7 against 12.2 ms at 512x512, one
        # band 6.0 / 22.4 ms; likely the woken workers start on the waker's core and share it until
        # the scheduler moves one); `python bench/bench_anchor.py --styles-only` mesh/points at 256x256
        # 1.56-1.59x against 1.78x (docs/anchor.md).
        first, *rest = itertools.pairwise(int(b) for b in np.linspace(0, n, bands + 1))
        pool = _threads(bands - 1)
        jobs = [pool.submit(_shade_band, a, b, *args) for a, b in rest]
        try:
            _shade_band(*first, *args)
        finally:
            for job in jobs:
                job.result()
    return torch.from_numpy(out_rgb), torch.from_numpy(out_mask), torch.from_numpy(out_depth)


@functools.cache
def _threads(count: int) -> ThreadPoolExecutor:
    """The threads that shade a large frame's bands (one pool per thread count, kept for the process)."""
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="worldfm-shade")
