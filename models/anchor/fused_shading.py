"""The ``mesh`` style's per-pixel shading as one loop over the pixels, compiled by numba (CPU).

:func:`models.anchor.mesh._shade` shades with ~200 vectorised torch calls, each a memory pass
over every pixel (docs/anchor.md, "What limits the eager shading"): 2.9-3.4x the point splat
per frame on 2 cores, 1.07-1.21x at 256x256 and 1.35-1.47x at 512x512 with this loop
(``python bench/bench_anchor.py --styles-only``, 2026-12-04, docs/anchor.md). This module runs
the same arithmetic pixel by pixel in one compiled loop: a pixel's look-ups stay in registers,
pixels that nothing covers stop at once, the winning point's own view and the colour pyramid
are read only where they count. numba compiles it to machine code with LLVM (no C compiler
needed) and caches the result on disk (``cache=True``: ``__pycache__`` beside this file, or
numba's per-user cache where that is read-only), so only a machine's first process pays the
compile (a few seconds); later processes load it in a fraction of a second.

It releases the GIL (``nogil=True``), so the server's other threads keep running, and large
frames are shared over :func:`models.anchor.mesh.shading_threads` threads, the calling thread and a
pool's, in interleaved blocks of ``_BLOCK_PIXELS`` pixels.
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
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from models.anchor.mesh import CONSISTENCY, MIN_WEIGHT, PATCH, shading_threads
from models.anchor.splat import EMPTY_KEY

__all__ = ["fused_shade"]

_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_INF = np.float32(np.inf)
_ROUNDER = np.float32(1.5 * 2**23)
_HIGH_WORD = 1 if sys.byteorder == "little" else 0  # which float32 of an int64 key holds its high half
_SPLIT_PIXELS = 1 << 14  # pixels per thread below which splitting a frame costs more than it saves
_BLOCK_PIXELS = 1 << 12  # pixels a thread shades in a row before skipping the other threads' blocks


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ix(i):
    """An array index as unsigned. numba maps a negative signed index to one from the end, as
    Python does, with a compare and select at every read; every index in the loop is >= 0, and an
    unsigned one skips that. With the pyramid level found without library calls (below), the loop
    takes 9 % less time for the same bytes (16 frames of a 100-view scene alternating with the old
    loop, one thread, 2-core VM, 2026-12-04: medians 13.0 against 14.3 ms at 512x512, 3.5 against
    3.8 ms at 256x256). Cast at the read: numba's uint64 arithmetic with an int64 gives float64."""
    return np.uint64(i)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _lerp(a, b, w):
    """``a + w (b - a)``, as mesh._bilinear computes it (numba fuses no multiply and add)."""
    return w * (b - a) + a


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bilinear(c00, c01, c10, c11, fx, fy):
    return _lerp(_lerp(c00, c01, fx), _lerp(c10, c11, fx), fy)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _reliable(d):
    """A corner's depth where it is reliable (> 0), else inf: the nearest is the smallest."""
    return d if d > 0 else _INF


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _byte(x):
    """float32 -> uint8 as torch's round (half to even) and clamp to 0..255 do it: adding and
    taking away 1.5 * 2^23 rounds a float32 below 2^22 to an integer, ties to even, in two
    additions (np.rint is a library call per value here)."""
    return np.uint8(min(max((x + _ROUNDER) - _ROUNDER, np.float32(0)), np.float32(255)))


@njit(cache=True, nogil=True, error_model="numpy")
def _shade_blocks(first, stride, block, stop, centre_u, centre_v, keys, key_words, empty_key, target_focal, maps,
                  extra, extra_on, point_view, splat_rgba, offset, width, height, texel_depth, texel_byte, focal,
                  mip_offset, mip_width, mip_height, patch_flag, consistency, past, min_weight,
                  out_rgb, out_mask, out_depth):
    """The pixels (row-major) of mesh._shade in blocks ``first``, ``first + stride``, ... of
    ``block`` pixels each, below pixel ``stop``, written into the outputs.

    Each pixel tries its candidate views in one loop, the frame's best-ranked views first, then
    (only where none of them counted) the winning point's own view; mesh._look_up,
    mesh._anti_alias and mesh._mip_colour are written out in it once, by hand. Why not as helper
    functions: numba counts references to every array passed to one (two atomic operations per
    array per call, even inlined), and that made the loop 2.6x slower (512x512 frames of a
    100-view scene, 2-core VM, 2026-12-03: 20.6 against 7.9 ms for the same look-ups, same sums).
    """
    views = offset.shape[0]
    extras = extra.shape[0]
    levels = mip_offset.shape[0] // views
    low32 = np.int64(0xFFFFFFFF)
    for base in range(first * block, stop, stride * block):
        for p in range(base, min(base + block, stop)):
            q = _ix(p)
            out_rgb[q, 0] = out_rgb[q, 1] = out_rgb[q, 2] = 0
            out_mask[q] = False
            out_depth[q] = 0
            key = keys[q]
            if key == empty_key:
                continue
            z = key_words[_ix(2 * p + _HIGH_WORD)]  # splat.key_depth: the key's high half, a float32 depth in metres
            uz, vz = centre_u[q] * z, centre_v[q] * z
            footprint = z / target_focal
            weight = np.float32(0)
            tr = tg = tb = np.float32(0)
            hidden = False
            for c in range(extras + 1):
                if c < extras:  # the frame's best-ranked views first: the same tables for every pixel
                    if not extra_on[_ix(c)]:
                        continue
                    view = extra[_ix(c)]
                elif weight > 0:
                    break
                else:  # none explains the pixel: the winning point's own view decides
                    view = np.int64(point_view[_ix(key & low32)])
                # mesh._look_up: the point in the view's pixels (the view's 3 x 4 map, row-major, in mesh's order)
                m = 12 * view
                src_z = ((maps[_ix(m + 10)] * z + maps[_ix(m + 8)] * uz) + maps[_ix(m + 9)] * vz) + maps[_ix(m + 11)]
                u = ((((maps[_ix(m + 2)] * z + maps[_ix(m + 0)] * uz) + maps[_ix(m + 1)] * vz) + maps[_ix(m + 3)])
                     / src_z)
                v = ((((maps[_ix(m + 6)] * z + maps[_ix(m + 4)] * uz) + maps[_ix(m + 5)] * vz) + maps[_ix(m + 7)])
                     / src_z)
                x, y = u - _HALF, v - _HALF
                x0, y0 = np.floor(x), np.floor(y)  # float: NaN and inf stay comparable (an int cast would not)
                w, h = width[_ix(view)], height[_ix(view)]
                # NaN (behind the source camera's plane) fails every comparison: not inside.
                if not (src_z > 0 and x0 >= 0 and y0 >= 0 and x0 < w - 1 and y0 < h - 1):
                    continue
                fx, fy = x - x0, y - y0
                # mesh.SourceViews.texel, as float32 words (texel_depth) and as bytes (texel_byte): sample s's
                # depth is word 2 s, its colour word 2 s + 1 (bytes R, G, B, patch flag)
                i, row = 2 * (offset[_ix(view)] + np.int64(y0) * w + np.int64(x0)), 2 * w
                d00, d01 = texel_depth[_ix(i)], texel_depth[_ix(i + 2)]
                d10, d11 = texel_depth[_ix(i + row)], texel_depth[_ix(i + row + 2)]
                if c == extras:  # the own view only: does its pixel centre look past a foreground edge (or at the sky)
                    # that other views spilled over? (the nearest reliable corner is farther, or the closest
                    # corner is sky)
                    nearest = min(_reliable(d00), _reliable(d01), _reliable(d10), _reliable(d11))
                    closest = (d11 if fx >= _HALF else d10) if fy >= _HALF else (d01 if fx >= _HALF else d00)
                    hidden = (nearest < _INF and nearest > src_z * past) or closest < 0
                surface = _bilinear(d00, d01, d10, d11, fx, fy)
                if not (texel_byte[_ix(4 * i + 7)] == patch_flag and abs(src_z - surface) <= consistency * src_z):
                    continue
                ratio = footprint * focal[_ix(view)] / src_z  # target footprint / source footprint
                if levels > 0 and ratio >= 2:  # mesh._mip_colour: minified, the pyramid level floor(log2 ratio)
                    # level = floor(log2 ratio) up to the last, and scale = 2^-level, by halving (exact):
                    # no library call (frexp, exp2), whose register spills cost every minified look-up
                    level, scale, rest = 1, _HALF, ratio * np.float32(0.25)
                    while level < levels and rest >= _ONE:
                        level, scale, rest = level + 1, scale * _HALF, rest * _HALF
                    if ratio == _INF:  # frexp(inf) gives exponent 0 (glibc, as torch.frexp), clamped to 1
                        level, scale = 1, _HALF
                    k = (level - 1) * views + view
                    w, h = mip_width[_ix(k)], mip_height[_ix(k)]
                    x = min(max(u * scale - _HALF, np.float32(0)), np.float32(w - 1))
                    y = min(max(v * scale - _HALF, np.float32(0)), np.float32(h - 1))
                    x0 = min(np.floor(x), np.float32(w - 2))
                    y0 = min(np.floor(y), np.float32(h - 2))
                    fx, fy = x - x0, y - y0
                    i, row = 2 * (mip_offset[_ix(k)] + np.int64(y0) * w + np.int64(x0)), 2 * w
                top, under = 4 * i + 4, 4 * (i + row) + 4  # the colour bytes of the top-left corner, the one below
                share = min(ratio * ratio, _ONE)  # finer views weigh alike
                tr += share * _bilinear(np.float32(texel_byte[_ix(top)]),
                                        np.float32(texel_byte[_ix(top + 8)]),
                                        np.float32(texel_byte[_ix(under)]),
                                        np.float32(texel_byte[_ix(under + 8)]), fx, fy)
                tg += share * _bilinear(np.float32(texel_byte[_ix(top + 1)]),
                                        np.float32(texel_byte[_ix(top + 9)]),
                                        np.float32(texel_byte[_ix(under + 1)]),
                                        np.float32(texel_byte[_ix(under + 9)]), fx, fy)
                tb += share * _bilinear(np.float32(texel_byte[_ix(top + 2)]),
                                        np.float32(texel_byte[_ix(top + 10)]),
                                        np.float32(texel_byte[_ix(under + 2)]),
                                        np.float32(texel_byte[_ix(under + 10)]), fx, fy)
                weight += share
            if weight > 0:
                share = max(weight, min_weight)
                out_rgb[q, 0], out_rgb[q, 1], out_rgb[q, 2] = _byte(tr / share), _byte(tg / share), _byte(tb / share)
            elif hidden:
                continue
            else:
                packed = splat_rgba[_ix(key & low32)]
                out_rgb[q, 0], out_rgb[q, 1], out_rgb[q, 2] = packed & 255, (packed >> 8) & 255, (packed >> 16) & 255
            out_mask[q] = True
            out_depth[q] = z


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
    """:func:`_shade_blocks`'s arguments after ``stop`` from :func:`fused_shade`'s, the
    three outputs (allocated here) last."""
    offset, texel = tables
    texel = texel.numpy()
    n = keys.shape[0]
    out_rgb = np.empty((n, 3), np.uint8)
    out_mask = np.empty(n, np.bool_)
    out_depth = np.empty(n, np.float32)
    maps = maps_t.numpy().T.reshape(-1)  # view v's map at 12 v .. 12 v + 11
    keys = keys.numpy()
    # the keys' 32-bit halves as float32 (no copy): the loop reads each key's depth there, instead of
    # a pass over the frame making a depth array first (splat.key_depth)
    args = (centre_u.numpy(), centre_v.numpy(), keys, keys.view(np.float32), EMPTY_KEY,
            np.float32(target_focal.item()), maps, extra.numpy(), extra_on.numpy(), point_view.numpy(),
            splat_rgba.numpy(), offset.numpy(), *_view_sizes(size, offset.shape[0]), texel.view(np.float32),
            texel.view(np.uint8), focal.numpy(), *(t.numpy() for t in mip), np.uint8(PATCH), np.float32(CONSISTENCY),
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
    threads = min(shading_threads(), n // _SPLIT_PIXELS)
    if threads < 2:
        _shade_blocks(0, 1, n, n, *args)
    else:
        # Each thread shades every threads-th block of pixels: two halves of a frame differ in work by
        # 20-33 % outdoors (sky above, ground below: the slower half sets the frame's time), by 4 %
        # in the bench's rooms.
        # This thread shades its own blocks while pool threads shade the others. Handing every
        # share to the pool and waiting was slower (a 100-view scene's frames, 2-core VM at 199
        # GFLOP/s, 2026-12-03: 5.6 against 4.0 ms at 256x256, 16.7 against 12.2 ms at 512x512, one
        # thread 6.0 / 22.4 ms; likely the woken workers start on the waker's core and share it until
        # the scheduler moves one); `python bench/bench_anchor.py --styles-only` mesh/points at 256x256
        # 1.56-1.59x against 1.78x (docs/anchor.md).
        pool = _threads(threads - 1)
        jobs = [pool.submit(_shade_blocks, t, threads, _BLOCK_PIXELS, n, *args) for t in range(1, threads)]
        try:
            _shade_blocks(0, threads, _BLOCK_PIXELS, n, *args)
        finally:
            for job in jobs:
                job.result()
    return torch.from_numpy(out_rgb), torch.from_numpy(out_mask), torch.from_numpy(out_depth)


@functools.cache
def _threads(count: int) -> ThreadPoolExecutor:
    """The threads that shade a large frame's blocks (one pool per thread count, kept for the process)."""
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix="worldfm-shade")
