"""The ``mesh`` anchor style: every source view's depth map as a continuous surface, resampled per pixel.

The point splatter gives each target pixel the colour of one fused sample that landed
*somewhere* in it: up to half a pixel off, which on detailed textures is most of the error
(docs/anchor.md, known limits). This style keeps the splatter for what it is good at --
which surface is visible, from the whole fused cloud -- and takes the colour from the
source views themselves:

* Each source view's reliable depth samples are the vertices of a grid mesh; a 2 x 2 block of
  samples whose depths agree within ``CONTINUITY`` (relative) is one bilinear patch, a block
  spanning a depth discontinuity or an unreliable sample is no patch (a hole, never a
  stretched skin).
* Per target pixel, the ray through its centre is cut at the splatted depth; that world
  point is projected into candidate source views: the view the winning fused point came
  from (the observation nearest its own camera, which fusion keeps) and the ``extra_views``
  views :func:`models.anchor.reference_scores` ranks best for this frame. A candidate
  counts where the point lies on one of its patches (inside the image, continuous block,
  depth agreeing within ``CONSISTENCY``); its colour is the bilinear sample of its image
  there -- exact sub-pixel registration instead of the nearest sample.
* Candidates that count are blended with weight ``(target footprint / source footprint)^2``
  clamped to at most 1: views that saw the surface at least as finely as the target weigh
  equally (averaging their interpolation errors), coarser ones less.
* A pixel no candidate explains keeps the splatted colour, unless the winner's own view
  sees *past* the point there (all its reliable samples around the projection are farther
  by more than ``CONSISTENCY``), or the one sample closest to the projection sees no surface
  (sky): then the pixel centre looks past a foreground silhouette that
  samples spilled over, and the pixel is left uncovered. Silhouettes stay tight.

Plain vectorised torch (gathers and element-wise arithmetic over the pixels), usable eagerly at
once on any device: no compile step stands between a scene build and its first frame. Eagerly
a frame costs 2.9-3.4x the point splat's (~200 torch calls over the pixels, each a memory pass;
docs/anchor.md, "What limits the eager shading"). With ``compiled=True`` (the
server) on the CPU, the visibility splat runs through the splatter's ``torch.compile``d kernels
and the per-pixel shading through :func:`models.anchor.fused_shading.fused_shade`, the same
arithmetic as one numba-compiled loop over the pixels; both are built on a background thread
(:class:`models.anchor.splat._Compiled`), eager until ready. The fused loop gives the eager
shading's bytes exactly, so a pose renders the same frame before and after the switch.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch

from models.anchor.build import AnchorScene
from models.anchor.cloud import DEFAULT_MAX_DEPTH, AnchorInputError, _depth_tensor, reliable_depth_mask
from models.anchor.reference import reference_scores
from models.anchor.splat import EMPTY_KEY, DeviceCloud, RenderOutput, _Compiled, key_depth, render_keys, to_device
from models.anchor.view_work import per_view
from models.cameras import scale_K, validate_c2w
from models.scene import Frame

__all__ = ["SourceViews", "prepare_mesh", "render_mesh", "mesh_faces", "patches", "shading_threads",
           "keep_shading_threads", "view_index_dtype", "CONTINUITY", "CONSISTENCY", "DEFAULT_EXTRA_VIEWS"]

CONTINUITY = 0.03  # relative depth spread above which a 2 x 2 block of samples is a discontinuity, not a patch
CONSISTENCY = 0.03  # relative depth disagreement above which a source view does not see the point
DEFAULT_EXTRA_VIEWS = 2  # best-ranked views blended per pixel (chosen by measurement, docs/anchor.md)
MIN_WEIGHT = 1e-12  # a blend's weights sum to at least this (float32), so that a tiny sum cannot overflow
MIP_LEVELS = 4  # colour pyramid levels per source view (1, 1/2, 1/4, 1/8 size): anti-aliasing down to 1/8
_LOW32 = 0xFFFFFFFF
NO_SURFACE = -1.0  # source depth table: the sample sees nothing (sky); 0 = a surface of unreliable depth
PATCH = 1  # byte 3 of a sample's packed colour in SourceViews.texel: its 2 x 2 block is a patch


@dataclass(frozen=True)
class SourceViews:
    """Everything the ``mesh`` style renders from, on one device.

    ``cloud``: the fused cloud for visibility; ``point_view`` [N + 1]: the source view of each
    cloud point (the extra entry serves empty pixels), in the smallest integer type that holds the
    view count (:func:`view_index_dtype`). The V source views' pixels lie
    in one flat buffer, view v from sample ``offset[v]`` (int64 [V]) row by row. ``texel`` int32
    [2 S] (S samples) interleaves each sample's two words: at ``2 s`` the bits of its float32
    z-depth in metres (0 = unreliable, ``NO_SURFACE`` = no surface: sky or beyond range), at
    ``2 s + 1`` its packed colour, bytes R, G, B and ``PATCH`` where the 2 x 2 block whose top-left
    sample this is forms a patch (all four reliable and continuous), else 0. Interleaved, a
    look-up's depth and colour of one sample share a cache line: the fused loop shaded 512x512
    frames 1.17x faster than from separate tables (see :mod:`models.anchor.fused_shading`).
    The colour pyramids' pixels follow the views' samples in the same buffer, as samples of depth
    0, so that colours are read the same way at every level.
    ``width``/``height``: int64 [V]; ``size``: (W, H) when every view shares it
    (then per-pixel look-ups of the size are skipped), else ``None``. ``focal`` float32 [V]: the
    smaller focal length (pixels). ``projection`` [V, 3, 4]: float64 NumPy, each view's
    ``K w2c`` (per-frame maps are composed from it in float64, :func:`_source_maps`). ``scene``:
    the built scene (reference ranking). ``mip``: (offset, width, height int64 [L V]):
    :func:`colour_pyramid` levels 1 .. L of every view, entry ``(level - 1) * V + v``, from sample
    ``offset`` of ``texel`` (anti-aliasing, :func:`_anti_alias`).
    ``extra_views``, ``splat_radius``, ``fused_shading``: render options fixed at preparation.
    """

    cloud: DeviceCloud
    point_view: torch.Tensor
    offset: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor
    size: tuple[int, int] | None
    texel: torch.Tensor
    focal: torch.Tensor
    projection: np.ndarray
    scene: AnchorScene
    mip: tuple[torch.Tensor, ...]
    extra_views: int = DEFAULT_EXTRA_VIEWS
    splat_radius: int = 0
    fused_shading: bool = False  # shade with the numba loop (compiled=True on the CPU)


def colour_pyramid(rgb: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """uint8 [H, W, 3] -> the image at levels 1 .. ``levels`` - 1 (uint8, each half the last, odd
    rows and columns dropped): every pixel the rounded mean of the 2 x 2 below it, in integers
    (so any implementation gets the same bytes). Stops before a level under 2 x 2."""
    out, prev = [], rgb
    for _ in range(levels - 1):
        h, w = prev.shape[0] // 2, prev.shape[1] // 2
        if min(h, w) < 2:
            break
        total = prev[: 2 * h, : 2 * w].astype(np.uint16).reshape(h, 2, w, 2, 3).sum((1, 3))
        prev = ((total + 2) // 4).astype(np.uint8)
        out.append(prev)
    return out


def _pack(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [..., 3] -> int32 [N] (bytes R, G, B, 0), row-major."""
    packed = np.pad(np.ascontiguousarray(rgb, np.uint8).reshape(-1, 3), ((0, 0), (0, 1)))
    return torch.from_numpy(packed.view(np.int32)[:, 0].copy())


def patches(depth: torch.Tensor) -> torch.Tensor:
    """bool [H, W] from z-depth [H, W] (0 = unreliable): the 2 x 2 block with its top-left
    sample at (i, j) has four reliable samples within ``CONTINUITY`` of each other (False on
    the last row and column, which start no block)."""
    out = torch.zeros(depth.shape, dtype=torch.bool)
    if min(depth.shape) < 2:
        return out
    corners = torch.stack([depth[:-1, :-1], depth[:-1, 1:], depth[1:, :-1], depth[1:, 1:]])
    lo, hi = corners.amin(0), corners.amax(0)
    out[:-1, :-1] = (lo > 0) & (hi <= lo * (1 + CONTINUITY))
    return out


def prepare_mesh(
    scene: AnchorScene,
    device: str | torch.device = "cpu",
    compiled: bool = False,
    extra_views: int = DEFAULT_EXTRA_VIEWS,
    splat_radius: int = 0,
) -> SourceViews:
    """Lay ``scene`` (built by :func:`models.anchor.build_scene`) out for :func:`render_mesh`.

    ``compiled`` renders the visibility splat with the compiled kernel (the image is the
    same) and, on the CPU, shades with the fused loop (:mod:`models.anchor.fused_shading`,
    the same bytes again); the ``extra_views`` best-ranked source views are blended per
    pixel, the winning point's own view where none of them counts; ``splat_radius`` grows the visibility splat as the point style
    does (close-ups of sparse clouds).
    """
    if scene.sources is None:
        raise AnchorInputError(
            "the mesh anchor style needs the source views the cloud was built from; build the scene "
            "with models.anchor.build_scene (a bare point cloud, e.g. a PLY, renders with the points style)"
        )
    if extra_views < 0:
        raise AnchorInputError(f"extra_views must be >= 0; got {extra_views}")
    # computed once per view inside models.anchor.view_work.reuse_view_work (the fill guard's rebuilds)
    tables = [per_view(frame, "mesh tables", lambda i=i, frame=frame: _view_tables(frame, i))
              for i, frame in enumerate(scene.frames)]
    texel = [samples for samples, _ in tables]
    sizes = [(f.camera.width, f.camera.height) for f in scene.frames]
    sizes_t = torch.tensor(sizes, dtype=torch.int64).reshape(-1, 2)
    counts = sizes_t[:, 0] * sizes_t[:, 1]
    # Anti-aliasing: colour pyramids, levels 1.. of every view, after the views' samples (see _mip_colour).
    levels = min(len(pyramid) for _, pyramid in tables)
    mip_layout, start = [], int(counts.sum())
    for level in range(levels):
        for _, pyramid in tables:
            samples, width, height = pyramid[level]
            mip_layout.append((start, width, height))
            texel.append(samples)
            start += width * height
    layout = torch.tensor(mip_layout, dtype=torch.int64).reshape(-1, 3)
    point_view = torch.from_numpy(np.append(scene.sources[:, 0], 0).astype(view_index_dtype(len(scene.frames))))
    views = SourceViews(
        cloud=to_device(scene.cloud, device, compiled=compiled),
        point_view=point_view.to(device),
        offset=(torch.cumsum(counts, 0) - counts).to(device),
        width=sizes_t[:, 0].to(device),
        height=sizes_t[:, 1].to(device),
        size=sizes[0] if len(set(sizes)) == 1 else None,
        texel=torch.cat(texel).to(device),
        focal=torch.tensor([min(f.camera.K[0, 0], f.camera.K[1, 1]) for f in scene.frames], dtype=torch.float32,
                           device=device),
        projection=(np.stack([f.camera.K for f in scene.frames]).astype(np.float64)
                    @ np.linalg.inv(np.stack([f.camera.c2w for f in scene.frames]).astype(np.float64))[:, :3, :]),
        scene=scene,
        mip=(layout[:, 0].to(device), layout[:, 1].to(device), layout[:, 2].to(device)),
        extra_views=extra_views,
        splat_radius=splat_radius,
        fused_shading=compiled and torch.device(device).type == "cpu",
    )
    if views.fused_shading:  # start loading the fused loop now, beside the scene build: at the first
        # frame, numba's 0.2-0.3 s of Python (import, cache load) would hold up that frame's eager shading
        cam = scene.frames[0].camera
        K = scale_K(cam.K, (cam.width, cam.height), (1, 1))
        _fused_shade(*_shade_args(views, torch.full((1,), EMPTY_KEY, device=views.texel.device), K, cam.c2w, 1, 1))
    return views


def _view_tables(frame: Frame, index: int) -> tuple[torch.Tensor, list[tuple[torch.Tensor, int, int]]]:
    """One source view's part of :attr:`SourceViews.texel`: its samples (int32 [2 H W], depth and
    packed colour interleaved) and its colour pyramid's levels 1.. as (texels int32 [2 h w] of depth
    0, w, h). ``index`` names the view in errors."""
    cam = frame.camera
    d = raw = _depth_tensor(frame.depth, f"frame {index} ({frame.name!r})")
    # The samples the cloud was built from (build_scene's defaults); the rest are holes.
    d = torch.where(reliable_depth_mask(d, float(min(cam.K[0, 0], cam.K[1, 1]))), d, 0.0)
    # No surface at all (no depth, e.g. sky, or beyond the cloud's range): NO_SURFACE, which the
    # silhouette test reads as farther than anything; dropped samples (flying pixels) stay 0.
    nothing = (raw <= 0) | (raw > DEFAULT_MAX_DEPTH)
    depth = torch.where(nothing, NO_SURFACE, d).reshape(-1).to(torch.float32).view(torch.int32)
    colour = _pack(frame.rgb) | (patches(d).reshape(-1).to(torch.int32) * (PATCH << 24))
    levels = []
    for image in colour_pyramid(frame.rgb):
        packed = _pack(image)
        levels.append((torch.stack([torch.zeros_like(packed), packed], 1).reshape(-1), image.shape[1], image.shape[0]))
    return torch.stack([depth, colour], 1).reshape(-1), levels


_KEPT_SHADING_THREADS: ContextVar[int | None] = ContextVar("worldfm_shading_threads", default=None)


def shading_threads() -> int:
    """Threads the fused shading loop (:mod:`models.anchor.fused_shading`) may split a frame over:
    the count :func:`keep_shading_threads` gave, else torch's intra-op thread count."""
    return _KEPT_SHADING_THREADS.get() or torch.get_num_threads()


@contextlib.contextmanager
def keep_shading_threads(count: int) -> Iterator[None]:
    """Inside, the fused shading loop may use ``count`` threads whatever torch's count is.

    Why: the server holds torch to one thread for anchors of up to 256x256
    (python_bridge/pipeline.py ``_anchor_threads``), as eager torch's ~200 small operations per
    frame would each wake a sleeping OpenMP thread. The loop wakes its threads once
    per frame, which pays at 256x256 too: ``worldfm demo`` on the 2-core VM (181-187 GFLOP/s,
    three alternating pairs of 96-frame runs, 2026-12-03) gave an anchor stage of 10.5-11.7 ms
    p50 on two threads against 12.9-14.2 ms on one, 18.4-19.9 against 17.4-19.3 frames/s; beside a
    busy-loop process (two pairs) about the same (anchor p50 14.3 and 14.7 ms on two threads, 15.3
    and 13.5 ms on one). Callers that hold torch to one thread for their own reasons (a batch
    worker's CPU share: two threads there cost a quarter of its frame rate, docs/scaling.md) keep one.
    """
    token = _KEPT_SHADING_THREADS.set(count)
    try:
        yield
    finally:
        _KEPT_SHADING_THREADS.reset(token)


def view_index_dtype(views: int) -> type:
    """The NumPy integer type of :attr:`SourceViews.point_view` for ``views`` source views: int16
    up to 32767 views, else int32. Why: each covered pixel reads its winning point's view at a
    random index of the 1.9 M-point table (100 views of 256x256); at 2 bytes a point that table
    stays in cache, at 8 it fights the source tables for it. The fused loop shaded 1.23x / 1.10x
    faster at 256 / 512 px with int16 than with int64 (100-view scene, 24 cycled poses,
    alternating, 2-core VM at 176-183 GFLOP/s, 2026-12-03; same bytes)."""
    return np.int16 if views <= np.iinfo(np.int16).max else np.int32


def _source_maps(views: SourceViews, K: np.ndarray, c2w: np.ndarray) -> torch.Tensor:
    """float32 [12, V]: per source view (a column), the 3 x 4 map (row-major) from a target point
    ``[u z, v z, z, 1]`` (pixel ``(u, v)`` at target z-depth ``z``) to its source homogeneous
    pixel ``[u' z', v' z', z']``: ``K_v w2c_v c2w_t diag(K_t^-1, 1)``, composed in float64
    (``K_v w2c_v`` once per scene, :attr:`SourceViews.projection`)."""
    target = np.eye(4)
    target[:3, :3] = np.linalg.inv(K)
    maps = views.projection @ (c2w @ target)
    return torch.from_numpy(np.ascontiguousarray(maps.reshape(-1, 12).T, dtype=np.float32)).to(views.texel.device)


def _channels(packed: torch.Tensor) -> list[torch.Tensor]:
    """float32 R, G, B of colours packed as int32 (bytes R, G, B, 0), one tensor per channel,
    through a byte view (one conversion pass)."""
    rgb = packed.view(torch.uint8).view(*packed.shape, 4).to(torch.float32)
    return [rgb[..., c] for c in range(3)]


@dataclass
class _Lookup:
    """A target pixel's point looked up in one source view (per pixel, [P] each)."""

    colour: list[torch.Tensor]  # float32 [P] per channel R, G, B: bilinear colour (garbage where not on_patch)
    on_patch: torch.Tensor  # bool: the point lies on one of the view's patches
    u: torch.Tensor  # float32: the point's source pixel coordinates (the image spans [0, W] x [0, H])
    v: torch.Tensor
    z: torch.Tensor  # float32: the point's z-depth in the source camera
    nearest: torch.Tensor | None  # float32: nearest reliable depth of the four samples around it (inf = none/outside)
    closest: torch.Tensor | None = None  # float32: depth table entry of the sample closest to it (0 = outside)


def _bilinear(corner: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """[P] from the four corners [4, P] (top-left, top-right, bottom-left, bottom-right): along x
    on the top and bottom rows, then along y, each step ``a + w (b - a)`` in separate float32
    operations. Not torch.lerp: its vectorised loop fuses a multiply and an add (one rounding)
    and its tail does not, which no other implementation can repeat bit for bit; the fused loop
    (models.anchor.fused_shading) must give these bytes exactly."""
    left, right = corner[0::2], corner[1::2]  # [2, P]: top and bottom rows
    rows = (right - left).mul_(fx).add_(left)
    return (rows[1] - rows[0]).mul_(fy).add_(rows[0])


def _look_up(tables: tuple[torch.Tensor, ...], size: tuple, view: torch.Tensor, m: torch.Tensor,
             q: tuple[torch.Tensor, ...], want_nearest: bool) -> _Lookup:
    """Project target points ``q = (u z, v z, z)`` [P] each into source ``view`` ([P] per pixel, or
    one, [1]) through maps ``m`` ([12, P] per pixel, or [12, 1]) and sample it there.

    ``tables`` = (offset, texel) of :class:`SourceViews`; ``size`` = (width, height,
    corner steps [4, 1]) when every view shares it, else (width [V], height [V], None).
    """
    offset, texel = tables
    uz, vz, z = q

    def row(k: int) -> torch.Tensor:  # m[4k:4k+4] . (uz, vz, z, 1), one rounding per operation (see _bilinear)
        return (m[4 * k + 2] * z).add_(m[4 * k] * uz).add_(m[4 * k + 1] * vz).add_(m[4 * k + 3])

    src_z = row(2)
    u, v = row(0).div_(src_z), row(1).div_(src_z)
    x, y = u - 0.5, v - 0.5  # pixel-centre coordinates: sample (i, j) sits at (j, i)
    width, height, steps = size
    if steps is None:  # views of several sizes: this pixel's view's
        width, height = width.index_select(0, view.view(-1)), height.index_select(0, view.view(-1))
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x.sub_(x0), y.sub_(y0)
    # NaN (behind the source camera's plane) fails every comparison: not inside.
    inside = (src_z > 0) & (x0 >= 0) & (y0 >= 0) & (x0 < width - 1) & (y0 < height - 1)
    # In integers: a float32 row * width + column is inexact beyond 2^24 pixels (4096 x 4096 views).
    base = torch.where(inside, y0, 0.0).to(torch.int64).mul_(width).add_(torch.where(inside, x0, 0.0).to(torch.int64))
    base += offset.index_select(0, view.view(-1))  # (not offset[view]: a 0-dim index would leave the kernel)
    # The four corners, [4, P]: one broadcast add where every view shares the size.
    index = base + steps if steps is not None else torch.stack([base, base + 1, base + width, base + width + 1])
    index = index * 2  # sample s's depth at 2 s, its colour at 2 s + 1
    corner = texel.take(index).view(torch.float32)
    packed = texel.take(index.add_(1))
    surface = _bilinear(corner, fx, fy)
    on_patch = (packed[0] >> 24 == PATCH).logical_and_(inside)  # packed[0]: the block's top-left sample
    on_patch &= (src_z - surface).abs_() <= CONSISTENCY * src_z
    colour = [_bilinear(c, fx, fy) for c in _channels(packed)]
    nearest = closest = None
    if want_nearest:  # the nearest reliable sample of the four (inf where none is, or the point is outside)
        nearest = torch.where(corner > 0, corner, torch.inf).amin(0)
        nearest = torch.where(inside, nearest, torch.inf)
        # the depth of the sample closest to the point (0 where outside): which side of an edge it lies
        k = ((fy >= 0.5).to(torch.int64) * 2 + (fx >= 0.5).to(torch.int64)).view(1, -1)
        closest = torch.where(inside, corner.gather(0, k.expand(1, corner.shape[1]))[0], 0.0)
    return _Lookup(colour, on_patch, u, v, src_z, nearest, closest)


def _mip_colour(mip: tuple[torch.Tensor, ...], texel: torch.Tensor, views: int, view: torch.Tensor,
                u: torch.Tensor, v: torch.Tensor, level: torch.Tensor) -> list[torch.Tensor]:
    """R, G, B float32 [P]: bilinear colour at pyramid ``level`` (int64 [P], >= 1) of source ``view``
    ([P] or [1]) around source pixel coordinates (``u``, ``v``) [P] of level 0, clamped to the image.
    ``mip`` = (offset, width, height) of :class:`SourceViews`, entry ``(level - 1) * views + view``,
    into its ``texel``."""
    offset, width, height = mip
    key = (level - 1) * views + view
    w, h = width.take(key), height.take(key)
    scale = torch.exp2(-level.to(torch.float32))  # exact: a level-l pixel spans 2^l level-0 pixels
    x = torch.minimum((u * scale - 0.5).clamp_(min=0.0), (w - 1).to(torch.float32))
    y = torch.minimum((v * scale - 0.5).clamp_(min=0.0), (h - 1).to(torch.float32))
    x0 = torch.minimum(torch.floor(x), (w - 2).to(torch.float32))
    y0 = torch.minimum(torch.floor(y), (h - 2).to(torch.float32))
    fx, fy = x - x0, y - y0
    base = offset.take(key) + y0.to(torch.int64) * w + x0.to(torch.int64)
    corner = texel.take(torch.stack([base, base + 1, base + w, base + w + 1]).mul_(2).add_(1))  # colour words
    return [_bilinear(c, fx, fy) for c in _channels(corner)]


def _anti_alias(found: _Lookup, counts: torch.Tensor, ratio: torch.Tensor, view: torch.Tensor,
                mip: tuple[torch.Tensor, ...], texel: torch.Tensor, views: int) -> list[torch.Tensor]:
    """``found.colour`` with every pixel that ``counts`` (bool [P]) and whose target footprint
    covers 2^l >= 2 source pixels across (``ratio`` = target footprint / source footprint)
    resampled at pyramid level l (at most the last): a far surface averages the texels its pixel
    covers instead of picking one, so textures seen from afar do not shimmer from frame to frame
    (docs/anchor.md)."""
    colour = found.colour
    levels = mip[0].shape[0] // views
    if levels == 0:
        return colour
    index = (counts & (ratio >= 2)).nonzero().view(-1)  # only the minified pixels (few in close-ups)
    if index.numel() == 0:
        return colour
    u, v, r = (t.index_select(0, index) for t in (found.u, found.v, ratio))
    level = (torch.frexp(r).exponent - 1).clamp_(1, levels).to(torch.int64)  # floor(log2 r), exactly
    fine = _mip_colour(mip, texel, views, view.index_select(0, index) if view.numel() > 1 else view, u, v, level)
    return [c.index_copy(0, index, f) for c, f in zip(colour, fine)]


def _shade(keys: torch.Tensor, centre_u: torch.Tensor, centre_v: torch.Tensor, target_focal: torch.Tensor,
           maps_t: torch.Tensor, extra: torch.Tensor, extra_on: torch.Tensor, point_view: torch.Tensor,
           splat_rgba: torch.Tensor, tables: tuple[torch.Tensor, ...], focal: torch.Tensor,
           size: tuple, mip: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The per-pixel part of :func:`render_mesh`, from the visibility keys [P] (flat): (rgb uint8
    [P, 3], mask bool [P], depth float32 [P]).

    ``centre_u``/``centre_v`` [P]: pixel centres; ``target_focal``: 0-dim, the target's smaller
    focal length; ``maps_t`` [12, V]: :func:`_source_maps`; ``extra`` int64 [E]: the
    frame's best-ranked views, tried first, those with ``extra_on`` (bool [E]) False left out (E is
    ``extra_views`` in every frame); ``mip``: :attr:`SourceViews.mip`.
    :func:`models.anchor.fused_shading.fused_shade` takes the same arguments and gives the same
    bytes in one compiled loop (each operation rounded once here too: see :func:`_bilinear`).
    """
    covered = keys != EMPTY_KEY
    winner = torch.where(covered, keys & _LOW32, splat_rgba.shape[0] - 1)
    z = torch.where(covered, key_depth(keys), 0.0)
    q = (centre_u * z, centre_v * z, z)
    footprint = z / target_focal  # target pixel footprint (metres) at the point
    views = tables[0].shape[0]
    weight = torch.zeros_like(z)
    total = [torch.zeros_like(z) for _ in range(3)]  # per channel, [P] each
    for e in range(extra.shape[0]):  # the frame's best-ranked views
        view = extra[e : e + 1]  # [1]: broadcasts like a scalar
        found = _look_up(tables, size, view, maps_t.index_select(1, view), q, want_nearest=False)
        on_patch = found.on_patch & extra_on[e]
        ratio = footprint * focal.index_select(0, view) / found.z  # target footprint / source footprint
        w = torch.where(on_patch, ratio.square().clamp_(max=1.0), 0.0)  # ratio^2, at most 1: finer views weigh alike
        for t, c in zip(total, _anti_alias(found, on_patch, ratio, view, mip, tables[1], views)):
            t += w * c
        weight += w
    # Where none of them explains the pixel, the winning point's own view decides (a subset: the
    # look-ups of a view that changes from pixel to pixel are the slow ones, docs/anchor.md).
    rest = (covered & ~(weight > 0)).nonzero().view(-1)
    own = point_view.index_select(0, winner.index_select(0, rest)).long()
    first = _look_up(tables, size, own, maps_t.index_select(1, own), tuple(t.index_select(0, rest) for t in q),
                     want_nearest=True)
    ratio = footprint.index_select(0, rest) * focal.index_select(0, own) / first.z
    w = torch.where(first.on_patch, ratio.square().clamp_(max=1.0), 0.0)
    for t, c in zip(total, _anti_alias(first, first.on_patch, ratio, own, mip, tables[1], views)):
        t.index_copy_(0, rest, w * c)  # none of the views above counted there: w c is the whole sum
    weight.index_copy_(0, rest, w)
    blended = weight > 0
    sees_past = torch.isfinite(first.nearest) & (first.nearest > first.z * (1 + CONSISTENCY))
    # Or the sample closest to the point sees no surface (sky): the silhouette lies between it and
    # the foreground, and nearest-sample says the pixel centre is past it. Sky samples have no depth,
    # so the test above never fires against the sky: foreground spilled onto it kept its colour.
    # (Reading a *farther* closest sample so too misfires on steep slopes, where samples one pixel
    # apart differ by more than CONSISTENCY; measured +0.04 dB more for 0.1 % less coverage.)
    sees_past |= first.closest < 0
    hidden = torch.zeros_like(covered).index_copy_(0, rest, sees_past)
    mask = covered & (blended | ~hidden)
    splat = _channels(splat_rgba.index_select(0, winner))
    share = weight.clamp(min=MIN_WEIGHT)
    rgb = [torch.where(mask, torch.where(blended, t / share, s).round_().clamp_(0, 255), 0.0).to(torch.uint8)
           for t, s in zip(total, splat)]
    return torch.stack(rgb, -1), mask, torch.where(mask, z, 0.0)


def _fused(_: object) -> object:
    """The fused loop for :class:`_Compiled`: imported here, so that numba loads (0.2 s) only in
    processes that shade with it; numba compiles it, or loads it from its disk cache, at its first call."""
    from models.anchor.fused_shading import fused_shade

    return fused_shade


# Not held while frames stream (compiles_held): numba loads the loop from its disk cache in ~0.3 s,
# and compiles it (~3 s, once per machine) mostly outside the GIL, in LLVM.
_fused_shade = _Compiled(_shade, build=_fused, hold=False, label="mesh shading loop (numba)")


@functools.lru_cache(maxsize=4)
def _pixel_centres(width: int, height: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 [H W] each: u and v of every pixel centre, row-major (per frame size, cached)."""
    pixel = torch.arange(height * width, device=device)
    return (pixel % width).to(torch.float32) + 0.5, (pixel // width).to(torch.float32) + 0.5


@functools.lru_cache(maxsize=4)
def _corner_steps(width: int, device: torch.device) -> torch.Tensor:
    """int64 [4, 1]: sample index steps from a 2 x 2 block's top-left sample to its four corners
    in views ``width`` samples wide (per size, cached)."""
    return torch.tensor([0, 1, width, width + 1], device=device).view(4, 1)


def render_mesh(views: SourceViews, K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> RenderOutput:
    """Render one view of a prepared scene: K [3, 3] pixels, c2w [4, 4] metres -> rgb [H, W, 3]
    uint8, mask [H, W] bool, depth [H, W] float32 (metres, 0 where empty). See the module doc."""
    c2w = validate_c2w(c2w)
    keys = render_keys(views.cloud, K, c2w, width, height, views.splat_radius)[0].view(-1)
    shade = _fused_shade if views.fused_shading else _shade
    rgb, mask, depth = shade(*_shade_args(views, keys, K, c2w, width, height))
    return RenderOutput(rgb=rgb.view(height, width, 3), mask=mask.view(height, width),
                        depth=depth.view(height, width))


def _shade_args(views: SourceViews, keys: torch.Tensor, K: np.ndarray, c2w: np.ndarray, width: int,
                height: int) -> tuple:
    """:func:`_shade`'s arguments for the visibility ``keys`` [H W] of a ``width`` x ``height`` view."""
    device = keys.device
    extra = np.zeros(views.extra_views, np.int64)  # the best-ranked views; padding (view 0) is switched off
    extra_on = np.zeros(views.extra_views, bool)
    if views.extra_views:
        scores = reference_scores(views.scene.references, K, c2w, width, height, compiled=views.fused_shading)
        best = np.argsort(-scores, kind="stable")[: views.extra_views]
        extra[: len(best)], extra_on[: len(best)] = best, scores[best] > 0
    if views.size is not None:  # one size for all views: no per-pixel size look-ups
        size = (*views.size, _corner_steps(views.size[0], device))
    else:
        size = (views.width, views.height, None)
    return (keys, *_pixel_centres(width, height, device),
            torch.tensor(float(min(K[0, 0], K[1, 1])), dtype=torch.float32, device=device),
            _source_maps(views, np.asarray(K, np.float64), c2w),
            torch.from_numpy(extra).to(device), torch.from_numpy(extra_on).to(device),
            views.point_view, views.cloud.rgba, (views.offset, views.texel), views.focal,
            size, views.mip)


def mesh_faces(scene: AnchorScene) -> np.ndarray:
    """Triangles int32 [F, 3] over the cloud's points: the patches of the source views, for export.

    Each patch (see :func:`patches`) whose corners all survived fusion as points of its own view
    gives two triangles, counter-clockwise as its camera saw them (front faces towards the
    observed side). Where fusion kept another view's samples, the surface stays points only:
    a mesh of the fused cloud, not of every view (which would repeat each surface per view).
    """
    if scene.sources is None:
        raise AnchorInputError("mesh faces need the source views the cloud was built from (models.anchor.build_scene)")
    faces = []
    for v, frame in enumerate(scene.frames):
        cam = frame.camera
        own = np.flatnonzero(scene.sources[:, 0] == v)
        if own.size == 0:
            continue
        vertex = np.full(cam.width * cam.height, -1, np.int64)
        vertex[scene.sources[own, 1]] = own
        d = _depth_tensor(frame.depth, f"frame {v} ({frame.name!r})")
        d = torch.where(reliable_depth_mask(d, float(min(cam.K[0, 0], cam.K[1, 1]))), d, 0.0)
        top_left = np.flatnonzero(patches(d).numpy().reshape(-1))
        tl, tr = vertex[top_left], vertex[top_left + 1]
        bl, br = vertex[top_left + cam.width], vertex[top_left + cam.width + 1]
        whole = (tl >= 0) & (tr >= 0) & (bl >= 0) & (br >= 0)
        # Image axes point right and down: tl -> bl -> br turns counter-clockwise on screen.
        faces += [np.stack([tl, bl, br], 1)[whole], np.stack([tl, br, tr], 1)[whole]]
    return np.concatenate(faces).astype(np.int32) if faces else np.zeros((0, 3), np.int32)
