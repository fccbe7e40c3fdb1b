"""Reference selection: for a target camera, pick the source view that best covers it.

The model gets one real photo of the scene (the reference) beside the anchor rendering;
the most useful one shows what the target camera sees. Each candidate keeps a few hundred
of its own reliable world points. Per target frame we project all of them at once and
score each candidate by the share of a coarse grid over the target image its visible
points cover, weighted by how similarly it faces (cosine of the angle between optical
axes) and how near it stands (distance relative to its typical depth). Occlusion is not
tested: cheap enough per frame (0.5 ms for 100 candidates on a 2-core CPU, 0.25 ms with
``compiled=True``), and a candidate behind a wall rarely covers the target's grid anyway.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.anchor.cloud import AnchorInputError
from models.anchor.splat import _Compiled
from models.cameras import c2w_to_w2c, validate_c2w, validate_K
from models.scene import Camera

if TYPE_CHECKING:
    from models.anchor.build import AnchorScene

__all__ = ["ReferenceIndex", "reference_scores", "select_reference", "grid_coverage", "GRID"]

GRID = 16  # the target image is split into GRID x GRID cells for the coverage score


@dataclass(frozen=True)
class ReferenceIndex:
    """What selection needs per candidate, precomputed at build time.

    ``points``: float32 [C, S, 3] world metres, S reliable points of each candidate's own
    view; ``centres``: float64 [C, 3] camera centres; ``axes``: float64 [C, 3] unit
    optical axes; ``depths``: float64 [C] median depth of each candidate's points (metres).
    """

    points: np.ndarray
    centres: np.ndarray
    axes: np.ndarray
    depths: np.ndarray

    @classmethod
    def from_views(cls, cameras: list[Camera], points: np.ndarray, depths: np.ndarray) -> "ReferenceIndex":
        """Index ``cameras`` with their sample points [C, S, 3] and median depths [C]."""
        if points.ndim != 3 or points.shape[0] != len(cameras) or points.shape[2] != 3:
            raise AnchorInputError(f"candidate points must have shape [{len(cameras)}, S, 3]; got {points.shape}")
        poses = np.stack([cam.c2w for cam in cameras]) if cameras else np.zeros((0, 4, 4))
        return cls(
            points=np.asarray(points, dtype=np.float32),
            centres=poses[:, :3, 3],
            axes=poses[:, :3, 2],
            depths=np.asarray(depths, dtype=np.float64),
        )

    @functools.cached_property
    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z of every candidate's points (float32 [C S] each, contiguous), made at first use:
        the layout the compiled ranking loop vectorises over (models.anchor.fused_ranking), and the
        eager one converts without a strided pass each frame (0.45 against 0.55 ms a ranking)."""
        return tuple(np.ascontiguousarray(axis) for axis in self.points.reshape(-1, 3).T)

    def __len__(self) -> int:
        return int(self.points.shape[0])


def grid_coverage(index: ReferenceIndex, w2c: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 [C]: per candidate of ``index``, the share of the ``GRID`` x ``GRID`` cells over a
    ``width`` x ``height`` target that its points land in, in front of the camera. ``w2c`` float64
    [3, 4], ``K`` float64 [3, 3] pixels.

    Each camera coordinate is ``r0 x + r1 y + r2 z + t`` in float64, one rounding per operation,
    left to right, not a BLAS product (whose fused multiply-adds and threads depend on the
    machine): :func:`models.anchor.fused_ranking.grid_coverage_loop` repeats it bit for bit.
    """
    count, per = index.points.shape[:2]
    px, py, pz = (axis.astype(np.float64) for axis in index.columns)
    x, y, z = (w2c[i, 0] * px + w2c[i, 1] * py + w2c[i, 2] * pz + w2c[i, 3] for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = x / z, y / z
    col = np.floor((K[0, 0] * x + K[0, 1] * y + K[0, 2]) * (GRID / width))
    row = np.floor((K[1, 0] * x + K[1, 1] * y + K[1, 2]) * (GRID / height))
    seen = (z > 0) & (col >= 0) & (col < GRID) & (row >= 0) & (row < GRID)
    owner = np.repeat(np.arange(count), per)[seen]
    cell = owner * GRID * GRID + (row[seen] * GRID + col[seen]).astype(np.int64)
    hit = np.bincount(cell, minlength=count * GRID * GRID).reshape(count, GRID * GRID) > 0
    return hit.mean(axis=1)


def _fused(_: object) -> object:
    """The compiled loop for :class:`_Compiled`: imported here, so that numba loads only in
    processes that rank with it (see models.anchor.mesh._fused)."""
    from models.anchor.fused_ranking import grid_coverage_loop

    return grid_coverage_loop


# Eager until numba has loaded (or compiled) the loop on a background thread. Held while frames
# stream (models.anchor.splat.compiles_held), unlike the mesh's shading loop: loading it from
# numba's disk cache takes ~0.4 s of a first frame's CPU, for ~0.5 ms a frame later.
_grid_coverage = _Compiled(grid_coverage, build=_fused, hold=True, label="reference ranking loop (numba)")

# The latest call's arguments and scores: (index, K, c2w, width, height, scores).
_latest: tuple | None = None


def reference_scores(index: ReferenceIndex, K: np.ndarray, c2w: np.ndarray, width: int, height: int,
                     compiled: bool = False) -> np.ndarray:
    """Score [C] of every candidate for the target camera (higher is better, 0 = useless), read-only.

    ``K`` [3, 3] pixels and ``c2w`` [4, 4] metres describe a ``width`` x ``height`` target.
    ``compiled`` (the server) counts the grid cells with the numba loop once a background thread
    has it ready, eagerly until then: the same scores either way.
    A call with the latest call's arguments returns its scores again: the server ranks each
    frame twice (the ``mesh`` anchor's views, then the reference). (One tuple, replaced whole:
    threads calling with other arguments only miss.)
    """
    global _latest
    latest = _latest
    if (latest is not None and latest[0] is index and latest[3:5] == (width, height)
            and np.array_equal(latest[1], K) and np.array_equal(latest[2], c2w)):
        return latest[5]
    scores = _scores(index, K, c2w, width, height, compiled)
    scores.setflags(write=False)
    _latest = (index, np.array(K, dtype=np.float64), np.array(c2w, dtype=np.float64), width, height, scores)
    return scores


def _scores(index: ReferenceIndex, K: np.ndarray, c2w: np.ndarray, width: int, height: int,
            compiled: bool) -> np.ndarray:
    """:func:`reference_scores`, computed."""
    if len(index) == 0:
        raise AnchorInputError("the scene has no reference candidates; build it from at least one view")
    pose = validate_c2w(c2w)
    k = validate_K(K, width, height)
    coverage = (_grid_coverage if compiled else grid_coverage)(index, c2w_to_w2c(pose)[:3], k, width, height)
    facing = np.clip(index.axes @ pose[:3, 2], 0.0, None)
    distance = np.linalg.norm(index.centres - pose[:3, 3], axis=1)
    nearness = 1.0 / (1.0 + distance / np.maximum(index.depths, 1e-6))
    return coverage * facing * nearness


def select_reference(scene: "AnchorScene", K: np.ndarray, c2w: np.ndarray, width: int, height: int,
                     compiled: bool = False) -> int:
    """Index into ``scene.frames`` of the best reference view for the target camera.

    ``K`` [3, 3] pixels, ``c2w`` [4, 4] metres, target image ``width`` x ``height``;
    ``compiled``: see :func:`reference_scores`. Ties
    go to the lower index; when no candidate's points are visible at all (every score is
    0), the candidate whose camera centre is nearest wins.
    """
    scores = reference_scores(scene.references, K, c2w, width, height, compiled)
    if scores.max() > 0:
        return int(np.argmax(scores))
    centre = validate_c2w(c2w)[:3, 3]
    return int(np.argmin(np.linalg.norm(scene.references.centres - centre, axis=1)))
