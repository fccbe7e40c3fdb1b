"""Offline stage: build a scene's anchor (fused cloud + reference candidates) from posed RGB-D views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.anchor.cloud import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_SLOPE,
    AnchorInputError,
    PointCloud,
    frame_points,
    fuse_indices,
)
from models.anchor.reference import ReferenceIndex
from models.anchor.view_work import per_view
from models.scene import Frame

__all__ = ["AnchorScene", "build_scene", "DEFAULT_POINTS_PER_CANDIDATE"]

DEFAULT_POINTS_PER_CANDIDATE = 256
# Auto voxel size: this fraction of the median pixel footprint (depth / focal). Below one
# footprint, so each view keeps its own detail and only overlapping views are merged.
VOXEL_FOOTPRINT_FRACTION = 0.5


@dataclass
class AnchorScene:
    """A scene's explicit 3-D anchor.

    ``cloud``: the fused global point cloud. ``frames``: the source views, kept as
    reference candidates (their RGB and cameras; index = candidate id). ``references``:
    what :func:`models.anchor.select_reference` needs per candidate. ``voxel_size``: the
    fusion voxel edge in metres actually used (grown if the cloud had to be capped).
    ``sources``: int32 [N, 2], for every cloud point the frame it was unprojected from and
    its row-major pixel index there (what the ``mesh`` anchor style resamples); ``None``
    for a scene made from a bare cloud.
    """

    cloud: PointCloud
    frames: list[Frame]
    references: ReferenceIndex
    voxel_size: float
    sources: np.ndarray | None = None


def build_scene(
    frames: Sequence[Frame],
    voxel_size: float | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    max_depth: float = DEFAULT_MAX_DEPTH,
    max_slope: float = DEFAULT_MAX_SLOPE,
    points_per_candidate: int = DEFAULT_POINTS_PER_CANDIDATE,
    seed: int = 0,
) -> AnchorScene:
    """Unproject, filter and fuse ``frames`` (each with depth) into an :class:`AnchorScene`.

    ``voxel_size`` (metres): fusion grid edge; ``None`` picks half the median pixel
    footprint, which removes duplicates where views overlap but keeps every view's
    detail. ``max_points`` caps the cloud (the voxel grows until it fits). ``max_depth``
    (metres) and ``max_slope`` (see :func:`models.anchor.cloud.reliable_depth_mask`)
    drop unreliable samples. ``points_per_candidate`` reliable points per view are kept
    for reference selection, drawn with ``seed``.
    """
    if not frames:
        raise AnchorInputError("build_scene needs at least one frame")
    if points_per_candidate < 1:
        raise AnchorInputError(f"points_per_candidate must be >= 1; got {points_per_candidate}")
    generator = torch.Generator().manual_seed(seed)
    xyzs, rgbs, depths, footprints, sources = [], [], [], [], []
    samples = np.empty((len(frames), points_per_candidate, 3), dtype=np.float32)
    median_depths = np.empty(len(frames))
    for i, frame in enumerate(frames):
        # computed once per view inside models.anchor.view_work.reuse_view_work (the fill guard's rebuilds)
        xyz, rgb, depth, pixel = per_view(frame, ("points", max_depth, max_slope),
                                          lambda frame=frame: frame_points(frame, max_depth, max_slope))
        if xyz.shape[0] == 0:
            raise AnchorInputError(
                f"frame {i} ({frame.name!r}) keeps no reliable depth sample after filtering "
                f"(max_depth={max_depth} m, max_slope={max_slope}); check its depth or leave it out"
            )
        pick = torch.randint(xyz.shape[0], (points_per_candidate,), generator=generator)
        samples[i] = xyz[pick].numpy()
        median = float(depth.median())
        median_depths[i] = median
        footprints.append(median / float(min(frame.camera.K[0, 0], frame.camera.K[1, 1])))
        xyzs.append(xyz)
        rgbs.append(rgb)
        depths.append(depth)
        sources.append(torch.stack([torch.full_like(pixel, i), pixel], 1))
    if voxel_size is None:
        voxel_size = VOXEL_FOOTPRINT_FRACTION * float(np.median(footprints))
    xyz = torch.cat(xyzs)
    keep, used = fuse_indices(xyz, torch.cat(depths), voxel_size, max_points)
    cloud = PointCloud(xyz[keep].numpy(), torch.cat(rgbs)[keep].numpy())
    references = ReferenceIndex.from_views([f.camera for f in frames], samples, median_depths)
    return AnchorScene(cloud=cloud, frames=list(frames), references=references, voxel_size=used,
                       sources=torch.cat(sources)[keep].to(torch.int32).numpy())
