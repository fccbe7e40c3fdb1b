"""Online stage: render the scene cloud at target cameras with a z-buffer, in plain torch.

Every point is projected with one 3x4 matrix ``K [R | t]`` per view; each point writes a
64-bit key ``(float32 bits of its depth) << 32 | point index`` into its pixel with
``scatter_reduce(amin)``. Positive float32 values order like their bit patterns, so the
minimum key is the nearest point (ties: the lower point index) and carries its index --
one scatter, no sort, no per-point Python. Runs of consecutive points whose bounding box
lies outside the frustum are skipped before projection (clouds from ``build_scene`` are
stored along a Z-order curve, so runs are compact); the remaining points behind the near
plane or outside the image go to one spare slot instead of being compacted out
(compaction costs more than it saves). Two optional passes on the key image close
one- and two-pixel gaps in nearer surfaces (no silhouette grows) and grow each point to a
(2r+1)^2 square (``splat_radius``), nearest still winning.

The same code runs on CPU and CUDA; keep the cloud on the device with :func:`to_device`
once per scene and render many frames from it. On CPU, ``to_device(..., compiled=True)``
renders through compiled kernels: ``torch.compile`` fuses the projection's dozen element-wise
passes over the points into one loop, ~3.5x faster (bench/bench_anchor.py), and the gap filling
runs as a numba loop over the pixels (:mod:`models.anchor.fused_gaps`). Compiling needs a C++
compiler (numba: none) and seconds once per process or machine (more on a cold cache), so it
runs on a background thread: renders use the eager
kernels, with the same result, until the compiled ones are ready (the server's first frames
never wait for the compiler), and stay eager, with one warning, if compiling fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.anchor.cloud import AnchorInputError, PointCloud
from models.cameras import c2w_to_w2c, validate_c2w, validate_K

__all__ = [
    "DeviceCloud", "RenderOutput", "to_device", "projection_matrices", "render_keys", "render_views", "render_cloud",
    "key_depth", "EMPTY_KEY",
]

DEFAULT_NEAR = 1e-3  # metres; nearer points would divide by ~0
DEFAULT_CHUNK = 4096  # consecutive points per frustum-culling box
GAP_TOLERANCE = 0.03  # relative depth step that separates a nearer surface from the pixel's own
GAP_SAME_SURFACE = 0.05  # relative depth step within which a gap's two ends count as one surface
EMPTY_KEY = torch.iinfo(torch.int64).max  # a pixel no point reached
_LOW32 = 0xFFFFFFFF
_FLOAT_EXACT = 2**24  # float32 holds every integer below this: pixel indices are computed in float

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceCloud:
    """A cloud laid out for rendering: ``xyz_t`` float32 [3, N] world metres, ``rgba`` int32 [N + 1].

    Positions are stored transposed so projection is one dense [3, 3] x [3, N] product;
    colours as one int32 per point (the bytes R, G, B, 0), so that the per-pixel colour
    lookup is a 1-D gather, ~5x faster than gathering 3-byte rows; the last entry is the
    black that empty pixels read. ``corners`` float32 [C, 8, 3] are the (slightly padded)
    bounding-box corners of each run of ``chunk`` consecutive points, for frustum culling.
    16 bytes per point (+ 96 bytes per chunk). ``compiled``: render with the compiled
    kernels (CPU only; see the module docstring).
    """

    xyz_t: torch.Tensor
    rgba: torch.Tensor
    corners: torch.Tensor
    chunk: int
    compiled: bool = False

    def __len__(self) -> int:
        return int(self.xyz_t.shape[1])

    @property
    def device(self) -> torch.device:
        return self.xyz_t.device


@dataclass(frozen=True)
class RenderOutput:
    """Rendered views: ``rgb`` uint8 [B, H, W, 3] (0 where empty), ``mask`` bool [B, H, W]
    (a point covers the pixel), ``depth`` float32 [B, H, W] z-depth in metres (0 where empty).
    Single-view calls return the same fields without the leading B axis."""

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def to_device(
    cloud: PointCloud, device: str | torch.device = "cpu", chunk: int = DEFAULT_CHUNK, compiled: bool = False
) -> DeviceCloud:
    """Copy ``cloud`` to ``device`` in the layout :func:`render_views` wants.

    Culling works on runs of ``chunk`` consecutive points, so it pays off when the cloud
    is spatially ordered, as :func:`models.anchor.build_scene` writes it; any order renders
    the same image. ``compiled`` picks the compiled kernels (projection, gap filling) for a
    cloud on the CPU that will be rendered many times (the first render compiles); elsewhere
    it is ignored.
    """
    if len(cloud) >= 2**32:
        raise AnchorInputError(f"a cloud to render may hold at most 2^32 - 1 points; got {len(cloud)}")
    if chunk < 1:
        raise AnchorInputError(f"chunk must be >= 1 point; got {chunk}")
    xyz = torch.from_numpy(cloud.xyz)
    count = -(-len(cloud) // chunk)
    if count:
        runs = torch.nn.functional.pad(xyz.T, (0, count * chunk - len(cloud)), mode="replicate").T.reshape(
            count, chunk, 3
        )
        lo, hi = runs.min(dim=1).values, runs.max(dim=1).values
        # Padding keeps float32 rounding of points on a box face from escaping the test.
        pad = 1e-4 * (hi - lo).amax(dim=1, keepdim=True) + 1e-6 * (1.0 + torch.maximum(lo.abs(), hi.abs()))
        lo, hi = lo - pad, hi + pad
        pick = torch.tensor([[(i >> a) & 1 for a in range(3)] for i in range(8)], dtype=torch.bool)  # [8, 3]
        corners = torch.where(pick[None], hi[:, None, :], lo[:, None, :])
    else:
        corners = torch.zeros((0, 8, 3))
    return DeviceCloud(
        xyz_t=xyz.T.contiguous().to(device),
        rgba=torch.from_numpy(np.pad(cloud.rgb, ((0, 1), (0, 1))).view(np.int32)[:, 0]).to(device),
        corners=corners.to(device),
        chunk=chunk,
        compiled=compiled and torch.device(device).type == "cpu",
    )


def _visible_points(
    cloud: DeviceCloud, proj: torch.Tensor, width: int, height: int, near: float
) -> torch.Tensor | None:
    """Indices [M] of the points in chunks the view ``proj`` [3, 4] may draw, or ``None`` for all.

    A point is drawn iff ``z > near``, ``0 <= a < width z`` and ``0 <= b < height z`` for
    ``(a, b, z) = P [x, 1]`` -- linear in the point. A box whose 8 corners all break the
    same one of these inequalities holds no drawable point.
    """
    a, b, z = (cloud.corners @ proj[:, :3].T + proj[:, 3]).unbind(-1)  # [C, 8] each
    outside = (z <= near).all(-1) | (a < 0).all(-1) | (b < 0).all(-1)
    outside |= (a >= width * z).all(-1) | (b >= height * z).all(-1)
    if not bool(outside.any()):
        return None
    first = torch.nonzero(~outside)[:, 0] * cloud.chunk
    index = (first[:, None] + torch.arange(cloud.chunk, device=proj.device)).view(-1)
    return index[index < len(cloud)]


def projection_matrices(K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> np.ndarray:
    """``K @ w2c[:3]`` per view: float64 [B, 3, 4] from K [3, 3] or [B, 3, 3] and c2w [4, 4] or [B, 4, 4].

    Validates each camera for a ``width`` x ``height`` image (a K made for another
    resolution has its principal point outside the image and is rejected).
    """
    poses = validate_c2w(c2w).reshape(-1, 4, 4)
    k = np.asarray(K, dtype=np.float64)
    ks = k.reshape(-1, 3, 3) if k.ndim == 3 else k[None]
    if ks.shape[0] not in (1, poses.shape[0]):
        raise AnchorInputError(f"got {ks.shape[0]} intrinsics for {poses.shape[0]} poses; pass one K or one per pose")
    ks = np.stack([validate_K(one, width, height) for one in ks])
    return ks @ c2w_to_w2c(poses)[:, :3, :]


def _min_filter(keys: torch.Tensor, radius: int) -> torch.Tensor:
    """Minimum over a (2 radius + 1)^2 square window of keys [B, H, W], clipped at the borders.

    Separable 3-tap passes repeated ``radius`` times; each pass folds in the neighbour on
    either side along one axis, in place on a copy.
    """
    out = keys.clone()
    for _ in range(radius):
        for dim in (-1, -2):
            prev = out.clone()
            size = out.shape[dim]
            lo, hi = out.narrow(dim, 1, size - 1), out.narrow(dim, 0, size - 1)
            torch.minimum(lo, prev.narrow(dim, 0, size - 1), out=lo)
            torch.minimum(hi, prev.narrow(dim, 1, size - 1), out=hi)
    return out


def key_depth(keys: torch.Tensor) -> torch.Tensor:
    """Depth in metres (float32) stored in the high half of keys; garbage for empty keys."""
    return (keys >> 32).to(torch.int32).view(torch.float32)


def _fill_gaps(keys: torch.Tensor) -> torch.Tensor:
    """Give pixels seen through a gap in a nearer surface that surface's nearer point.

    keys [B, H, W]. A pixel (empty or not) is in a gap when, along some line through it
    (horizontal, vertical or either diagonal), it lies in a run of one or two pixels whose end
    pixels are both nearer than it by more than ``GAP_TOLERANCE`` and lie on one surface (their
    depths within ``GAP_SAME_SURFACE`` of each other). It then takes the nearer end's point (the
    nearest over every such run). This closes gaps one and two pixels wide in sparse surfaces
    and stops the background from showing through them. It leaves alone wider gaps (a real slit
    between two surfaces), silhouettes (nearer pixels on one side only) and the empty seams
    between a foreground and the background behind it (ends at different depths), so
    foreground edges do not grow.

    Why: a surface close to the camera, or seen at a grazing angle, is sampled more sparsely
    than the target's pixels; closing one-pixel gaps only, with the nearest point of the 3x3
    neighbourhood whatever its surface, it came out as a speckle of its own points and the
    background behind it, and foreground edges grew into the empty seams. Measured on the
    held-out views of ``worldfm eval`` (docs/anchor.md, "Gap filling"): mesh anchors' covered
    PSNR 35.76 -> 35.92 dB in family, 31.80 -> 32.30 dB out of family, coverage +0.9 %.
    Written as shifted views of padded images (any device); the server's compiled splat runs the
    same rule as a numba loop (models/anchor/fused_gaps.py: the same keys, 4x faster on a CPU).
    """
    pad = 2  # the farthest end looked at
    depth = torch.where(keys != EMPTY_KEY, key_depth(keys), torch.inf)
    height, width = depth.shape[-2:]
    padded_depth = torch.nn.functional.pad(depth, (pad, pad, pad, pad), value=torch.inf)
    # (not F.pad: its fill value goes through a float, and int64 max comes back as int64 min)
    padded_keys = keys.new_full((*keys.shape[:-2], height + 2 * pad, width + 2 * pad), EMPTY_KEY)
    padded_keys[..., pad:-pad, pad:-pad] = keys

    def shifted(padded: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        return padded[..., pad + dy : pad + dy + height, pad + dx : pad + dx + width]

    limit = depth * (1.0 - GAP_TOLERANCE)
    fill = torch.full_like(keys, EMPTY_KEY)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        for ahead, behind in ((1, 1), (1, 2), (2, 1)):  # the run's ends, in steps along the line
            end_a, end_b = shifted(padded_depth, ahead * dy, ahead * dx), shifted(padded_depth, -behind * dy, -behind * dx)
            far = torch.maximum(end_a, end_b)
            run = (far < limit) & (far <= torch.minimum(end_a, end_b) * (1.0 + GAP_SAME_SURFACE))
            ends = torch.minimum(shifted(padded_keys, ahead * dy, ahead * dx),
                                 shifted(padded_keys, -behind * dy, -behind * dx))
            fill = torch.minimum(fill, torch.where(run, ends, EMPTY_KEY))
    return torch.where(fill != EMPTY_KEY, fill, keys)


def _project(
    xyz_t: torch.Tensor, proj: torch.Tensor, index: torch.Tensor | None, width: int, height: int, near: float,
    offset: int, spare: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot [M] int64, key [M] int64) of points ``xyz_t`` [3, M] in the view ``proj`` [3, 4].

    ``slot`` is ``offset`` + the row-major pixel index, or ``spare`` for a point not drawn;
    ``key`` packs the depth bits over the point index (``index`` [M], or 0..M-1 when None).
    """
    hom = torch.addmm(proj[:, 3:], proj[:, :3], xyz_t)  # [3, M]
    z = hom[2]
    u = hom[0].div_(z)
    v = hom[1].div_(z)
    # NaN (z == 0) fails every comparison, so it is dropped too. In-place: each
    # temporary over M points costs about as much as the comparison itself.
    drawn = z > near
    drawn &= u >= 0
    drawn &= u < width
    drawn &= v >= 0
    drawn &= v < height
    # Row-major pixel index, exact in float32 below 2^24 pixels (checked by the caller).
    pix = v.floor_().mul_(width).add_(u.floor_()).to(torch.int64).add_(offset)
    pix.masked_fill_(~drawn, spare)
    key = z.view(torch.int32).to(torch.int64).bitwise_left_shift_(32)
    key.bitwise_or_(torch.arange(xyz_t.shape[1], device=xyz_t.device) if index is None else index)
    return pix, key


_KERNELS: list[_Compiled] = []  # every compiled kernel made, for compiled_kernels_settled
_COMPILE_SWITCH_INTERVAL = 5e-5  # s: the GIL time slice while a kernel compiles (Python's default: 5e-3)
_compiling = [0, 0.0]  # compiles running, the switch interval to restore when none is
_compiling_lock = threading.Lock()


def _short_gil_slices(change: int) -> None:
    """Shorten the GIL's time slice while any kernel compiles (``change`` +1 at a compile's start,
    -1 at its end). The compiler runs Python for a second or more; an eager render on the
    caller's thread gives the GIL up in each of its ~100 torch calls and waits up to one slice
    to get it back: with Python's 5 ms slices the mesh style's first frame took ~0.75 s
    instead of ~30 ms (bench/bench_anchor.py, "first frame")."""
    with _compiling_lock:
        if change > 0 and _compiling[0] == 0:
            _compiling[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_compiling[1], _COMPILE_SWITCH_INTERVAL))
        _compiling[0] += change
        if _compiling[0] == 0:
            sys.setswitchinterval(_compiling[1])


class _Compiled:
    """``torch.compile(fn)`` (or ``build(fn)``, another compiler's kernel with ``fn``'s arguments
    and results), compiled on a background thread so that no caller waits for it.

    The first call starts the compiler on a copy of its arguments (or, while
    :func:`compiles_held` is active and ``hold`` is true, keeps that copy for
    :func:`start_held_compiles`) and, like
    every call until the compiled kernel has run once, returns ``fn``'s own result: the same numbers, seconds
    sooner (a cold compile takes 10+ s on a 2-core CPU; inductor caches its output on disk,
    so later processes compile in a few seconds). The compiler thread runs at a lower CPU
    priority, so on a small machine it takes the time frames leave over. After any compiler
    failure ``fn`` serves for good, with one warning. ``label`` names the kernel in those log
    lines (default: the splatting kernel ``fn``).
    """

    def __init__(self, fn: Callable, build: Callable[[Callable], Callable] | None = None, hold: bool = True,
                 label: str | None = None) -> None:
        _KERNELS.append(self)
        self._eager = fn
        self._label = label or f"splatting kernel {fn.__name__}"
        self._build = build  # how to compile fn, when not torch.compile (the numba loops of the mesh and gaps)
        self._hold = hold  # wait for start_held_compiles while compiles are held (False: builds cheap enough not to)
        self._fn: Callable | None = None  # the compiled kernel, once it has run
        self._started = False
        self._held: tuple | None = None  # the example of a first call made while compiles are held
        self._lock = threading.Lock()
        self.settled = threading.Event()  # set once the compiled kernel serves, or failed

    def __call__(self, *args):
        fn = self._fn
        if fn is not None:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 -- compilers fail in many ways; every one means "use eager"
                self._fail(exc)
        elif not self._started:
            if _holding[0] and self._hold:
                if self._held is None:
                    self._held = _copy(args)
            else:
                self._start(_copy(args))
        return self._eager(*args)

    def _start(self, example: tuple) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._held = None
        # Not a daemon: a process that ends while torch compiles in a daemon thread aborts inside
        # torch ("terminate called without an active exception", exit code 134); Python joins a
        # non-daemon thread before it shuts down, so the compile finishes (and is cached) first.
        threading.Thread(target=self._compile, args=(example,), name="worldfm-compile", daemon=False).start()

    def _compile(self, example: tuple) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: this thread only
        except (AttributeError, OSError):
            pass  # elsewhere it competes at normal priority
        t0 = time.perf_counter()
        _short_gil_slices(+1)
        try:
            fn = self._build(self._eager) if self._build else torch.compile(self._eager, dynamic=True)
            fn(*example)
            self._fn = fn
            log.info("compiled %s ready after %.1f s", self._label, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 -- see __call__
            self._fail(exc)
        finally:
            _short_gil_slices(-1)
            self.settled.set()

    def _fail(self, exc: Exception) -> None:
        self._fn = None
        self._started = True  # never again
        # warn before settling: a waiter on ``settled`` may stop listening to the log at once
        log.warning("compiled %s unavailable (%s: %s); rendering with the eager kernel", self._label,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        self.settled.set()


def _fused_gaps(_: object) -> object:
    """The gap filling's numba loop for :class:`_Compiled` (models/anchor/fused_gaps.py): imported
    here, so that numba loads only in processes that render with compiled kernels."""
    from models.anchor.fused_gaps import fused_fill_gaps

    return fused_fill_gaps


_compiled_project = _Compiled(_project)
# Not held while frames stream, as the mesh shading loop: numba loads it from its disk cache in a
# fraction of a second and compiles it (seconds, once per machine) mostly outside the GIL.
_compiled_fill_gaps = _Compiled(_fill_gaps, build=_fused_gaps, hold=False, label="gap filling loop (numba)")


def _copy(args: tuple) -> tuple:
    """The compiler's own example arguments: the caller may reuse or free its tensors meanwhile."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


_holding = [0]  # how many holders (compiles_held) are active; guarded by _holding_lock
_holding_lock = threading.Lock()


@contextlib.contextmanager
def compiles_held() -> Iterator[None]:
    """While active, a compiled kernel's first call does not start its compile: it renders
    eagerly and keeps its arguments until :func:`start_held_compiles`.

    Why: a compile takes seconds of both cores (3 s with a warm cache on this project's 2-core
    VM, 10+ cold) and runs beside the frames. A server that starts it at its first frame
    slows exactly the frames a user is watching: ``python bench/bench_stream.py`` measured
    11.5 frames/s (p95 187 ms) compiling at once against 19.4 (p95 58 ms) holding the compile,
    while the compiled kernels save ~2 ms of a ~50 ms frame at 256x256 (2026-12-03). So the
    server holds compiles back and starts them when no frame has been asked for a while
    (``ServerConfig.compile_when_idle_s``).
    """
    with _holding_lock:
        _holding[0] += 1
    try:
        yield
    finally:
        with _holding_lock:
            _holding[0] -= 1


def start_held_compiles() -> int:
    """Start the background compile of every kernel held by :func:`compiles_held`; returns how
    many started (cheap when none waits: for an idle loop)."""
    started = 0
    for kernel in _KERNELS:
        example = kernel._held
        if example is not None and not kernel._started:
            kernel._start(example)
            started += 1
    return started


def compiled_kernels_settled(timeout: float | None = None) -> bool:
    """Wait up to ``timeout`` s for every compiled kernel started so far to serve (or to have
    failed over to eager); True when none is still compiling. For benchmarks and tests."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for kernel in _KERNELS:  # the splatter's and other anchor styles' (e.g. models.anchor.mesh)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if kernel._started and not kernel.settled.wait(left):
            return False
    return True


def _draw_view(
    cloud: DeviceCloud, proj: torch.Tensor, width: int, height: int, near: float, flat: torch.Tensor, offset: int
) -> None:
    """Z-buffer one view (``proj`` [3, 4]) into ``flat[offset : offset + H * W]`` by ``scatter_reduce(amin)``.

    Points not drawn go to the last slot of ``flat``, which is never read.
    """
    index = _visible_points(cloud, proj, width, height, near)
    if index is not None and index.numel() == 0:
        return
    xyz_t = cloud.xyz_t if index is None else cloud.xyz_t.index_select(1, index)
    project = _compiled_project if cloud.compiled else _project
    pix, key = project(xyz_t, proj, index, width, height, near, offset, flat.numel() - 1)
    flat.scatter_reduce_(0, pix, key, "amin")


def render_keys(
    cloud: DeviceCloud,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    splat_radius: int = 0,
    fill_gaps: bool = True,
    near: float = DEFAULT_NEAR,
) -> torch.Tensor:
    """The z-buffer of :func:`render_views`: int64 keys [B, H, W], ``EMPTY_KEY`` where no point lands.

    A key packs the winner's depth (float32 bits, high half; :func:`key_depth` decodes it)
    over its point index (low half, ``key & 0xFFFFFFFF``). Other anchor styles start from it.
    """
    if width <= 0 or height <= 0:
        raise AnchorInputError(f"image size must be positive; got {width}x{height}")
    if splat_radius < 0:
        raise AnchorInputError(f"splat radius must be >= 0 pixels; got {splat_radius}")
    proj = torch.as_tensor(projection_matrices(K, c2w, width, height), dtype=torch.float32, device=cloud.device)
    views, hw = proj.shape[0], height * width
    if hw >= _FLOAT_EXACT:
        raise AnchorInputError(f"a {width}x{height} view exceeds {_FLOAT_EXACT} pixels; render smaller views")
    flat = torch.full((views * hw + 1,), EMPTY_KEY, dtype=torch.int64, device=cloud.device)
    for view in range(views):  # one view at a time: each culls its own chunks
        _draw_view(cloud, proj[view], width, height, near, flat, view * hw)
    keys = flat[:-1].view(views, height, width)
    if fill_gaps:
        keys = (_compiled_fill_gaps if cloud.compiled else _fill_gaps)(keys)
    if splat_radius:
        keys = _min_filter(keys, splat_radius)
    return keys


def render_views(
    cloud: DeviceCloud,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    splat_radius: int = 0,
    fill_gaps: bool = True,
    near: float = DEFAULT_NEAR,
) -> RenderOutput:
    """Render ``cloud`` at B cameras: K [3, 3] (shared) or [B, 3, 3] pixels, c2w [B, 4, 4] metres.

    A point covers the pixel its projection falls in (pixel ``(i, j)`` spans
    ``[j, j+1) x [i, i+1)`` in ``(u, v)``); the nearest point with ``z > near`` wins, and
    equal depths go to the lower point index. ``fill_gaps`` then lets pixels that a nearer
    surface encloses take that surface's point (see :func:`_fill_gaps`; no silhouette
    grows). ``splat_radius`` r > 0 finally lets each point cover the pixels up to r away
    (a square), nearest still winning. Returns :class:`RenderOutput` with a leading B axis.
    """
    keys = render_keys(cloud, K, c2w, width, height, splat_radius, fill_gaps, near)
    views = keys.shape[0]
    mask = keys != EMPTY_KEY
    # Empty pixels read the black sentinel colour stored after the last point.
    index = torch.where(mask, keys & _LOW32, len(cloud)).view(-1)
    rgb = cloud.rgba.index_select(0, index).view(torch.uint8).view(views, height, width, 4)[..., :3].contiguous()
    depth = torch.where(mask, key_depth(keys), 0.0)
    return RenderOutput(rgb=rgb, mask=mask, depth=depth)


def render_cloud(
    cloud: PointCloud | DeviceCloud,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    splat_radius: int = 0,
    fill_gaps: bool = True,
    near: float = DEFAULT_NEAR,
    device: str | torch.device | None = None,
) -> RenderOutput:
    """Render one view: K [3, 3] pixels, c2w [4, 4] metres -> rgb [H, W, 3], mask [H, W], depth [H, W].

    A :class:`PointCloud` is copied to ``device`` (default CPU) on every call; for
    per-frame rendering convert it once with :func:`to_device`. See :func:`render_views`.
    """
    if isinstance(cloud, PointCloud):
        cloud = to_device(cloud, device or "cpu")
    elif device is not None and torch.device(device) != cloud.device:
        raise AnchorInputError(f"cloud lives on {cloud.device}, not {device}; convert it with to_device")
    if np.ndim(c2w) == 3:
        raise AnchorInputError(f"render_cloud takes one 4x4 c2w; got shape {np.shape(c2w)} (use render_views)")
    out = render_views(cloud, K, c2w, width, height, splat_radius, fill_gaps, near)
    return RenderOutput(rgb=out.rgb[0], mask=out.mask[0], depth=out.depth[0])
