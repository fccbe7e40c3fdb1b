"""Analytic shapes of the procedural scenes and their vectorised ray queries.

Every shape answers the same two questions on float32 NumPy arrays, world frame, metres:

* ``intersect(o, d) -> t``: distance along unit rays to the first surface hit beyond
  ``T_MIN``, ``inf`` where the ray misses. ``o`` is one origin (3,) or one per ray (n, 3);
  ``d`` is (n, 3) unit directions.
* ``surface(p) -> (normal (n, 3), uv (n, 2) metres, material (n,) int)``: outward unit
  normal, texture coordinates measured along the surface, and material index at hit points.

Objects (``Box``, ``Sphere``, ``Cylinder``) also answer ``contains(p, margin) -> (m,) bool``
(points inside the shape grown by ``margin`` metres, to keep cameras out of objects) and
``bound() -> (centre (3,), radius)``, a bounding sphere that lets the renderer skip rays that
cannot hit them. The enclosures (``Room`` seen from inside, ``Ground`` plane) are tested
against every ray and never occlude the lights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

T_MIN = 1e-4  # metres; hits closer than this are the ray's own surface (shadow-ray acne)
# Rays parallel to a face divide by zero: the infinities are the right answer, and the rare
# 0 * inf = NaN (a ray exactly in a face's plane) compares False, i.e. a miss.
_IEEE = {"divide": "ignore", "invalid": "ignore"}


_BLAS_ROWS = 8192  # rows per matrix product: small enough that OpenBLAS stays on one thread


def transform(v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``v @ m`` for ``v`` (n, 3) and ``m`` (3, 3), in blocks of rows.

    OpenBLAS runs larger products on several threads, whose spin-waiting costs 2-3x the
    whole render's CPU time on a busy 2-core machine; row blocks keep it single-threaded.
    """
    if len(v) <= _BLAS_ROWS:
        return v @ m
    out = np.empty((len(v), m.shape[1]), np.result_type(v, m))
    for start in range(0, len(v), _BLAS_ROWS):
        np.matmul(v[start : start + _BLAS_ROWS], m, out=out[start : start + _BLAS_ROWS])
    return out


def _slabs(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit distances (n,), (n,) of rays through the axis-aligned slab box [lo, hi].

    Per-axis columns instead of ``.max(axis=1)``: NumPy reduces short rows slowly.
    """
    t_near = t_far = None
    with np.errstate(**_IEEE):
        for a in range(3):
            inv = 1.0 / d[:, a]
            t1 = (lo[a] - o[:, a]) * inv
            t2 = (hi[a] - o[:, a]) * inv
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = near if t_near is None else np.maximum(t_near, near)
            t_far = far if t_far is None else np.minimum(t_far, far)
    return t_near, t_far


def _face_frame(axis: np.ndarray, sign: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal (n, 3) and texture coordinates (n, 2) on axis-aligned faces.

    ``axis`` (n,) is the axis each face is perpendicular to, ``sign`` (n,) its normal's
    direction along it, ``q`` (n, 3) the point measured from the faces' corner; the texture
    runs along the two axes the face spans (x, y on floors; the horizontal one and z on walls).
    """
    normal = np.stack([(axis == k) * sign for k in range(3)], axis=1).astype(np.float32)
    uv = np.stack([np.where(axis == 0, q[:, 1], q[:, 0]), np.where(axis == 2, q[:, 1], q[:, 2])], axis=1)
    return normal, uv


def _largest(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index 0, 1 or 2 of the largest of three (n,) arrays, elementwise (no slow row reduction)."""
    return np.where(a >= b, np.where(a >= c, 0, 2), np.where(b >= c, 1, 2))


def _as_rows(o: np.ndarray, n: int) -> np.ndarray:
    """Origin(s) as (n, 3) or (1, 3), broadcastable against (n, 3) directions."""
    o = np.asarray(o, dtype=np.float32)
    return o.reshape(1, 3) if o.ndim == 1 else o.reshape(n, 3)


@dataclass(frozen=True)
class Box:
    """A box turned by ``yaw`` radians about +Z around its ``center``; ``half`` sizes in metres."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    material: int

    def _rot(self) -> np.ndarray:
        """Local-to-world rotation (3, 3); columns are the box axes in the world."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)

    def bound(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, np.float32), float(np.linalg.norm(self.half))

    def _local(self, p: np.ndarray) -> np.ndarray:
        return transform(p - np.asarray(self.center, np.float32), self._rot())

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        o = _as_rows(o, len(d)) - np.asarray(self.center, np.float32)
        if self.yaw != 0.0:
            rot = self._rot()
            o, d = transform(o, rot), transform(d, rot)
        t_near, t_far = _slabs(o, d, -np.asarray(self.half, np.float32), np.asarray(self.half, np.float32))
        t = np.where(t_near > T_MIN, t_near, t_far)
        return np.where((t_near <= t_far) & (t_far > T_MIN), t, np.float32(np.inf))

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = np.asarray(self.half, np.float32)
        pl = self._local(p)
        rel = np.abs(pl / h)  # 1 on the face a point lies on
        axis = _largest(rel[:, 0], rel[:, 1], rel[:, 2])
        sign = np.sign(np.choose(axis, (pl[:, 0], pl[:, 1], pl[:, 2])))
        normal_local, uv = _face_frame(axis, sign, pl + h)
        return transform(normal_local, self._rot().T), uv, np.full(len(p), self.material)

    def contains(self, p: np.ndarray, margin: float) -> np.ndarray:
        pl = self._local(np.asarray(p, np.float32).reshape(-1, 3))
        return np.all(np.abs(pl) <= np.asarray(self.half, np.float32) + margin, axis=1)


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: int

    def bound(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, np.float32), float(self.radius)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = _as_rows(o, len(d)) - np.asarray(self.center, np.float32)
        b = np.einsum("ij,ij->i", np.broadcast_to(oc, d.shape), d)
        c = np.einsum("ij,ij->i", oc, oc) - np.float32(self.radius**2)
        disc = b * b - c
        sq = np.sqrt(np.maximum(disc, 0))
        t0, t1 = -b - sq, -b + sq
        t = np.where(t0 > T_MIN, t0, t1)
        return np.where((disc >= 0) & (t > T_MIN), t, np.inf).astype(np.float32)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = (p - np.asarray(self.center, np.float32)) / np.float32(self.radius)
        r = np.float32(self.radius)
        uv = np.stack([r * np.arctan2(n[:, 1], n[:, 0]), r * np.arcsin(np.clip(n[:, 2], -1, 1))], axis=1)
        return n, uv, np.full(len(p), self.material)

    def contains(self, p: np.ndarray, margin: float) -> np.ndarray:
        p = np.asarray(p, np.float32).reshape(-1, 3)
        return np.linalg.norm(p - np.asarray(self.center, np.float32), axis=1) <= self.radius + margin


@dataclass(frozen=True)
class Cylinder:
    """An upright capped cylinder: axis along +Z through ``center_xy``, from ``z0`` to ``z1``."""

    center_xy: tuple[float, float]
    radius: float
    z0: float
    z1: float
    material: int

    def bound(self) -> tuple[np.ndarray, float]:
        cx, cy = self.center_xy
        half_h = (self.z1 - self.z0) / 2
        return np.array([cx, cy, self.z0 + half_h], np.float32), math.hypot(self.radius, half_h)

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        o = _as_rows(o, len(d))
        ox = o[:, 0] - np.float32(self.center_xy[0])
        oy = o[:, 1] - np.float32(self.center_xy[1])
        oz = o[:, 2]
        dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - np.float32(self.radius**2)
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0))
        best = np.full(len(d), np.inf, np.float32)
        with np.errstate(**_IEEE):
            for t in ((-b - sq) / a, (-b + sq) / a):
                z = oz + t * dz
                ok = (disc >= 0) & (t > T_MIN) & (z >= self.z0) & (z <= self.z1)
                best = np.where(ok & (t < best), t, best)
            for zc in (self.z0, self.z1):
                t = (np.float32(zc) - oz) / dz
                px, py = ox + t * dx, oy + t * dy
                ok = (t > T_MIN) & (px * px + py * py <= np.float32(self.radius**2))
                best = np.where(ok & (t < best), t, best)
        return best.astype(np.float32)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rx = p[:, 0] - np.float32(self.center_xy[0])
        ry = p[:, 1] - np.float32(self.center_xy[1])
        rad = np.sqrt(rx * rx + ry * ry)
        to_cap = np.minimum(np.abs(p[:, 2] - self.z0), np.abs(p[:, 2] - self.z1))
        on_side = np.abs(rad - self.radius) < to_cap
        safe = np.maximum(rad, np.float32(1e-9))
        cap_sign = np.where(p[:, 2] > (self.z0 + self.z1) / 2, 1.0, -1.0).astype(np.float32)
        zeros = np.zeros_like(rad)
        normal = np.where(
            on_side[:, None],
            np.stack([rx / safe, ry / safe, zeros], axis=1),
            np.stack([zeros, zeros, cap_sign], axis=1),
        )
        side_uv = np.stack([np.float32(self.radius) * np.arctan2(ry, rx), p[:, 2] - self.z0], axis=1)
        uv = np.where(on_side[:, None], side_uv, np.stack([rx, ry], axis=1))
        return normal, uv, np.full(len(p), self.material)

    def contains(self, p: np.ndarray, margin: float) -> np.ndarray:
        p = np.asarray(p, np.float32).reshape(-1, 3)
        rad = np.hypot(p[:, 0] - self.center_xy[0], p[:, 1] - self.center_xy[1])
        return (rad <= self.radius + margin) & (p[:, 2] >= self.z0 - margin) & (p[:, 2] <= self.z1 + margin)


@dataclass(frozen=True)
class Room:
    """An axis-aligned room seen from inside: ``lo``/``hi`` corners, one material per face.

    Faces are numbered ``2 * axis + (1 if the face is at hi else 0)``: -x, +x, -y, +y,
    floor, ceiling.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    face_materials: tuple[int, int, int, int, int, int]

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        # From inside, the first wall hit is where the ray leaves the box.
        _, t = _slabs(_as_rows(o, len(d)), d, np.asarray(self.lo, np.float32), np.asarray(self.hi, np.float32))
        return np.where(t > T_MIN, t, np.float32(np.inf))

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = np.asarray(self.lo, np.float32), np.asarray(self.hi, np.float32)
        q = p - lo
        to_hi = hi - p
        gap = np.minimum(q, to_hi)  # (n, 3) distance to the nearer wall of each axis
        axis = _largest(-gap[:, 0], -gap[:, 1], -gap[:, 2])
        at_hi = np.choose(axis, (to_hi[:, 0] < q[:, 0], to_hi[:, 1] < q[:, 1], to_hi[:, 2] < q[:, 2]))
        normal, uv = _face_frame(axis, np.where(at_hi, -1.0, 1.0), q)  # normals point into the room
        material = np.asarray(self.face_materials)[2 * axis + at_hi]
        return normal, uv, material


@dataclass(frozen=True)
class Ground:
    """The plane z = 0 within ``|x|, |y| <= extent`` metres of the origin; beyond it is sky."""

    extent: float
    material: int

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        o = _as_rows(o, len(d))
        with np.errstate(**_IEEE):
            t = -o[:, 2] / d[:, 2]
            x, y = o[:, 0] + t * d[:, 0], o[:, 1] + t * d[:, 1]
        ok = (t > T_MIN) & (np.abs(x) <= self.extent) & (np.abs(y) <= self.extent)
        return np.where(ok, t, np.inf).astype(np.float32)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        normal = np.zeros_like(p)
        normal[:, 2] = 1.0
        return normal, p[:, :2].copy(), np.full(len(p), self.material)


Shape = Box | Sphere | Cylinder
Enclosure = Room | Ground
