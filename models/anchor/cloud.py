"""The scene point cloud: unproject posed RGB-D views, drop unreliable points, fuse, PLY I/O.

A :class:`PointCloud` is plain NumPy (``xyz`` float32 [N, 3] world metres, ``rgb`` uint8
[N, 3]) -- 15 bytes per point -- so it can be saved, sent and opened in MeshLab/Blender
through an ordinary binary PLY. Heavy per-pixel work (unprojection, edge filtering, voxel
fusion) runs in torch so that building from 100 views takes seconds, not minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from models.cameras import pixel_rays, validate_c2w
from models.scene import Frame

__all__ = [
    "PointCloud",
    "AnchorInputError",
    "unproject_depth",
    "reliable_depth_mask",
    "frame_points",
    "fuse_points",
    "fuse_indices",
    "save_ply",
    "load_ply",
]

DEFAULT_MAX_POINTS = 2_000_000
DEFAULT_MAX_DEPTH = 100.0  # metres; farther samples are few pixels wide and usually sky/noise
DEFAULT_MAX_SLOPE = 20.0  # neighbour jump, in pixel footprints, above which a pixel is an edge
MORTON_CELLS = 1024  # cells per axis of the grid that orders fused points along a Z-curve


class AnchorInputError(ValueError):
    """Input to the anchor (views, depth, clouds, cameras) that cannot be used; says why."""


@dataclass
class PointCloud:
    """A coloured point cloud: ``xyz`` float32 [N, 3] world metres, ``rgb`` uint8 [N, 3]."""

    xyz: np.ndarray
    rgb: np.ndarray

    def __post_init__(self) -> None:
        xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        rgb = np.asarray(self.rgb)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise AnchorInputError(f"point positions must have shape [N, 3]; got {xyz.shape}")
        if rgb.shape != xyz.shape:
            raise AnchorInputError(f"point colours must have the same shape as positions {xyz.shape}; got {rgb.shape}")
        if rgb.dtype != np.uint8:
            raise AnchorInputError(f"point colours must be uint8 0..255; got {rgb.dtype}")
        if not np.all(np.isfinite(xyz)):
            raise AnchorInputError("point positions must be finite; the cloud contains NaN or inf")
        self.xyz = xyz
        self.rgb = np.ascontiguousarray(rgb)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the positions and colours (15 per point)."""
        return int(self.xyz.nbytes + self.rgb.nbytes)


def _writable_tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    """``array`` as a torch tensor, copied only when needed (read-only arrays, e.g. decoded
    images, cannot be shared with torch)."""
    return torch.from_numpy(np.require(array, dtype, ["C_CONTIGUOUS", "WRITEABLE"]))


def _depth_tensor(depth: np.ndarray, name: str) -> torch.Tensor:
    """Depth [H, W] as float32 torch with invalid samples (NaN, inf, <= 0) set to 0."""
    d = np.asarray(depth, np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        raise AnchorInputError(
            f"{name}: depth has no valid sample (every value is NaN, inf or <= 0); "
            "check the depth units/channel, or leave this view out of the scene"
        )
    return torch.from_numpy(np.where(valid, d, np.float32(0)))


def unproject_depth(depth: np.ndarray | torch.Tensor, K: np.ndarray, c2w: np.ndarray) -> torch.Tensor:
    """World points [H, W, 3] (metres, float32) of every pixel centre of a z-depth map.

    ``depth``: [H, W] z-depth along the optical axis in metres; pixel ``(i, j)`` is at
    ``(u, v) = (j + 0.5, i + 0.5)`` as ``models.cameras`` defines. This is the inverse of
    ``models.cameras.project`` (tests check the round trip). Invalid depth gives garbage
    points; mask them with :func:`reliable_depth_mask`.
    """
    d = torch.as_tensor(depth, dtype=torch.float32)
    h, w = d.shape
    pose = validate_c2w(c2w)
    rays = torch.as_tensor(pixel_rays(K, w, h), dtype=torch.float32)  # [H, W, 3], z == 1
    rot = torch.as_tensor(pose[:3, :3], dtype=torch.float32)
    t = torch.as_tensor(pose[:3, 3], dtype=torch.float32)
    return (rays * d[..., None]) @ rot.T + t


def reliable_depth_mask(
    depth: torch.Tensor,
    focal_px: float,
    max_depth: float = DEFAULT_MAX_DEPTH,
    max_slope: float = DEFAULT_MAX_SLOPE,
) -> torch.Tensor:
    """Bool [H, W]: samples worth keeping from a z-depth map [H, W] (metres, 0 = invalid).

    Drops invalid (<= 0) and far (> ``max_depth``) samples and "flying pixels": a sample
    whose 3x3 neighbours differ from it by more than ``max_slope`` pixel footprints
    (``depth / focal_px``) sits on a silhouette, where sensors and estimators interpolate
    between foreground and background, or on a surface seen at a grazing angle
    (under ~atan(1 / max_slope), about 3 degrees by default). Invalid neighbours (sky) do
    not count as discontinuities.
    """
    d = np.ascontiguousarray(depth.numpy(), np.float32)
    valid = (d > 0) & (d <= max_depth)
    # 3 x 3 neighbourhood max / min of the valid samples, by OpenCV's morphology: 1.5 against 24 ms for torch's
    # max_pool2d on a 512x512 map (2-core VM, 2026-12-04, same bytes); its default border counts for
    # nothing, as the pooling's padding did
    neighbourhood = np.ones((3, 3), np.uint8)
    neigh_max = cv2.dilate(np.where(valid, d, np.float32(0)), neighbourhood)
    neigh_min = cv2.erode(np.where(valid, d, np.float32(np.inf)), neighbourhood)
    jump = np.maximum(neigh_max - d, d - neigh_min)
    return torch.from_numpy(valid & (jump <= d * np.float32(max_slope / focal_px)))


def frame_points(
    frame: Frame,
    max_depth: float = DEFAULT_MAX_DEPTH,
    max_slope: float = DEFAULT_MAX_SLOPE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reliable points of one RGB-D frame: world xyz [M, 3] float32, rgb [M, 3] uint8, depth [M]
    and the row-major pixel index [M] int64 each point was unprojected from.

    Raises :class:`AnchorInputError` when the frame has no depth or no valid depth sample.
    """
    name = f"frame {frame.name!r}" if frame.name else "frame"
    if frame.depth is None:
        raise AnchorInputError(
            f"{name} has no depth map; estimate one first with "
            "models.anchor.depth_model.OnnxDepthEstimator (see docs/anchor.md)"
        )
    depth = _depth_tensor(frame.depth, name)
    cam = frame.camera
    keep = reliable_depth_mask(depth, float(min(cam.K[0, 0], cam.K[1, 1])), max_depth, max_slope)
    xyz = unproject_depth(depth, cam.K, cam.c2w)[keep]
    rgb = _writable_tensor(frame.rgb, np.uint8)[keep]
    return xyz, rgb, depth[keep], torch.nonzero(keep.view(-1))[:, 0]


def fuse_points(
    xyz: torch.Tensor,
    rgb: torch.Tensor,
    priority: torch.Tensor,
    voxel_size: float,
    max_points: int = DEFAULT_MAX_POINTS,
) -> tuple[PointCloud, float]:
    """Keep one sample per voxel, the one with the lowest ``priority``; returns (cloud, voxel size).

    ``xyz`` [N, 3] metres, ``rgb`` [N, 3] uint8, ``priority`` [N] float32 >= 0 -- the build
    passes the sample's depth in its own view, so each voxel keeps its most detailed
    observation (an actual sample, not a blurred average: colours and positions stay exact).
    If more than ``max_points`` voxels are occupied, the voxel size grows until they fit.
    The cloud comes out in :func:`spatial_order`, which lets the renderer cull it in chunks.
    """
    keep, voxel_size = fuse_indices(xyz, priority, voxel_size, max_points)
    return PointCloud(xyz[keep].numpy(), rgb[keep].numpy()), voxel_size


def fuse_indices(
    xyz: torch.Tensor, priority: torch.Tensor, voxel_size: float, max_points: int = DEFAULT_MAX_POINTS
) -> tuple[torch.Tensor, float]:
    """:func:`fuse_points` as indices: (kept samples [M] int64 in spatial order, voxel size used).

    The build keeps them to know which view and pixel every fused point came from.
    """
    if voxel_size <= 0 or not math.isfinite(voxel_size):
        raise AnchorInputError(f"voxel size must be a positive number of metres; got {voxel_size}")
    if max_points < 1:
        raise AnchorInputError(f"max_points must be >= 1; got {max_points}")
    n = xyz.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64), voxel_size
    if n >= 2**31:
        raise AnchorInputError(f"too many samples to fuse at once ({n}); build from fewer views")
    lo = xyz.min(dim=0).values
    # Priority (non-negative float32) bits order like the values; the low half keeps the sample.
    tag = (priority.contiguous().view(torch.int32).to(torch.int64) << 32) | torch.arange(n)
    while True:
        cell = ((xyz - lo) / voxel_size).to(torch.int64)
        dims = cell.max(dim=0).values + 1
        if float(dims.prod()) >= 2**62:
            raise AnchorInputError(
                f"scene extent {((dims - 1) * voxel_size).tolist()} m is too large for voxel size "
                f"{voxel_size:g} m; pass a larger voxel_size"
            )
        voxel = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
        ids, inverse = torch.unique(voxel, return_inverse=True)
        if ids.numel() <= max_points:
            break
        # Occupied voxels of a surface scale like 1 / size^2.
        voxel_size *= max(1.05, math.sqrt(ids.numel() / max_points))
    best = torch.full((ids.numel(),), torch.iinfo(torch.int64).max, dtype=torch.int64)
    best.scatter_reduce_(0, inverse, tag, "amin")
    keep = best & 0xFFFFFFFF
    return keep[spatial_order(xyz[keep])], voxel_size


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits after each of the low 10 bits of int64 ``v`` (for Morton codes)."""
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    return (v | (v << 2)) & 0x09249249


def spatial_order(xyz: torch.Tensor) -> torch.Tensor:
    """Permutation [N] that sorts points [N, 3] along a Z-order (Morton) curve on a 1024^3 grid.

    Consecutive points then lie close together at every scale, so the renderer can cull
    runs of them against the view frustum by their bounding boxes (see
    ``models.anchor.splat``). Ties keep their order (stable sort).
    """
    if xyz.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    lo = xyz.min(dim=0).values
    extent = float((xyz.max(dim=0).values - lo).max()) or 1.0
    cell = ((xyz - lo) * (MORTON_CELLS / extent)).to(torch.int64).clamp_(0, MORTON_CELLS - 1)
    code = _spread_bits(cell[:, 0]) | (_spread_bits(cell[:, 1]) << 1) | (_spread_bits(cell[:, 2]) << 2)
    return torch.sort(code, stable=True).indices


def save_ply(cloud: PointCloud, path: str | Path, faces: np.ndarray | None = None) -> None:
    """Write ``cloud`` as a binary little-endian PLY (``x y z`` float, ``red green blue`` uchar).

    ``faces`` int [F, 3] (vertex indices, counter-clockwise seen from the side that was
    observed) adds a ``face`` element (``vertex_indices``): a mesh MeshLab and Blender open as
    such; :func:`load_ply` reads its vertices as a cloud.
    """
    from plyfile import PlyData, PlyElement

    vertex = np.empty(
        len(cloud),
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    for axis, name in enumerate("xyz"):
        vertex[name] = cloud.xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertex[name] = cloud.rgb[:, channel]
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= len(cloud))):
            raise AnchorInputError(f"faces must be [F, 3] indices of the {len(cloud)} vertices; got {faces.shape}")
        face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"},
                                            val_types={"vertex_indices": "i4"}))
    PlyData(elements, text=False, byte_order="<").write(str(path))


def load_ply(path: str | Path) -> PointCloud:
    """Read a PLY with a ``vertex`` element holding ``x y z`` and ``red green blue``.

    Colours may be uchar (0..255) or float (0..1), as MeshLab and Blender write them.
    """
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise AnchorInputError(f"{path}: PLY has no 'vertex' element; is it a point cloud?")
    vertex = ply["vertex"].data
    names = vertex.dtype.names or ()
    missing = [n for n in ("x", "y", "z", "red", "green", "blue") if n not in names]
    if missing:
        raise AnchorInputError(f"{path}: PLY vertices lack properties {missing}; need x y z red green blue")
    xyz = np.stack([vertex[n] for n in "xyz"], axis=1).astype(np.float32)
    rgb = np.stack([vertex[n] for n in ("red", "green", "blue")], axis=1)
    if rgb.dtype.kind == "f":
        rgb = np.clip(np.round(rgb * 255.0), 0, 255)
    return PointCloud(xyz, rgb.astype(np.uint8))
