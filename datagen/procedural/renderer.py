"""Vectorised CPU ray caster for procedural scenes: RGB and metric z-depth per camera.

One primary ray per pixel centre by default (depth is exact at every pixel), or N x N rays
per pixel box-averaged for anti-aliased colour (:meth:`Renderer.render`'s ``supersample``);
textured Blinn-Phong shading, hard shadows from every light.

Speed comes from testing each shape only against rays that can reach it. Rays are kept
in 8 x 8-pixel tile order, so every run of ``CHUNK`` consecutive rays -- camera rays, or the
shadow rays of the lit points among them -- points in nearly one direction. Each chunk
gets a bounding cone (rays leaving one point: the camera, a point light) or a bounding
disc across the sun (parallel sun rays), and a shape is intersected only with the chunks
whose bound meets its bounding sphere.
"""

from __future__ import annotations

import numpy as np

from datagen.procedural.scenes import PointLight, ProceduralScene
from datagen.procedural.shapes import transform
from datagen.procedural.textures import pattern_weight, photo_albedo, value_noise
from models.cameras import pixel_rays
from models.scene import Camera, Frame

_TILE = 8
CHUNK = _TILE * _TILE  # rays per culling bound: one tile of camera rays
_SHADOW_BIAS = 2e-3  # metres kept free at both ends of a shadow ray (the surface itself)
_EXPOSURE = 1.6
# uint8 display value of linear y = (i / 4095)^2, gamma 2.2.
_GAMMA_LUT = np.round(255 * np.linspace(0.0, 1.0, 4096) ** (2 / 2.2)).astype(np.uint8)


def _chunked(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (ceil(n / CHUNK), CHUNK, k), padding the last chunk with copies of the last row."""
    pad = -len(x) % CHUNK
    if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return x.reshape(-1, CHUNK, x.shape[1])


def _chunk_rays(chunks: np.ndarray, n: int) -> np.ndarray:
    """Indices (m,) of the rays in chunks ``chunks`` (k,), rays numbered 0..n-1."""
    rays = (chunks[:, None] * CHUNK + np.arange(CHUNK)).ravel()
    return rays[rays < n]


def tile_order(width: int, height: int) -> np.ndarray:
    """Flat pixel indices (H*W,) listed tile by tile (8 x 8 tiles, row-major inside each).

    Rays handed to :meth:`Renderer.trace` in this order cull fastest (each chunk is one tile).
    """
    i, j = np.mgrid[0:height, 0:width]
    tiles_per_row = -(-width // _TILE)
    key = ((i // _TILE) * tiles_per_row + j // _TILE) * CHUNK + (i % _TILE) * _TILE + j % _TILE
    return np.argsort(key.ravel(), kind="stable")


def subpixel_offsets(supersample: int) -> list[tuple[float, float]]:
    """The (du, dv) offsets in pixels, from the pixel centre, of an N x N regular sub-pixel grid:
    (k - (N - 1) / 2) / N for k = 0..N-1 on each axis, raster order.

    N must be odd and positive: then the grid's middle sample is the pixel centre itself (offset
    exactly 0), which is the ray the depth map and every point cloud built from it assume.
    """
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ValueError(f"supersample must be a positive odd integer (1 = one ray per pixel, 3 = 3 x 3 rays "
                         f"per pixel, ...); got {supersample!r}")
    if supersample % 2 == 0:
        raise ValueError(f"supersample must be odd; got {supersample}: an even grid has no ray through the pixel "
                         f"centre, where depth is measured; use {supersample - 1} or {supersample + 1}")
    half = supersample // 2
    steps = [(k - half) / supersample for k in range(supersample)]
    return [(du, dv) for dv in steps for du in steps]


class Renderer:
    """Renders one ``ProceduralScene`` from any ``Camera``; build once per scene, reuse per view."""

    def __init__(self, scene: ProceduralScene):
        self.scene = scene
        bounds = [shape.bound() for shape in scene.shapes]
        self._centres = np.array([c for c, _ in bounds], np.float32).reshape(-1, 3)  # (P, 3)
        self._radii = np.array([r for _, r in bounds], np.float32)  # (P,)
        mats = scene.materials
        self._color_a = np.array([m.color_a for m in mats], np.float32)  # (M, 3) linear RGB
        self._color_b = np.array([m.color_b for m in mats], np.float32)
        self._specular = np.array([m.specular for m in mats], np.float32)  # (M,)
        self._shininess = np.array([m.shininess for m in mats], np.float32)
        self._rays: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def camera_rays(self, camera: Camera, offset: tuple[float, float] = (0.0, 0.0)
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera rays in tile order: unit directions in camera axes (H*W, 3), their
        optical-axis cosines (H*W,), and the flat pixel index of each ray (H*W,).

        Pixel (i, j) looks through (u, v) = (j + 0.5, i + 0.5), our pixel-centre convention,
        shifted by ``offset`` = (du, dv) pixels for a sub-pixel sample.
        Cached per intrinsics and offset, since every view of a trajectory shares them.
        """
        key = (camera.K.tobytes(), camera.width, camera.height, offset)
        if key not in self._rays:
            order = tile_order(camera.width, camera.height)
            d = pixel_rays(camera.K, camera.width, camera.height, offset).reshape(-1, 3)[order]
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            self._rays[key] = (d.astype(np.float32), d[:, 2].astype(np.float32), order)
        return self._rays[key]

    def _closest(self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, ids: np.ndarray) -> None:
        """Lower ``t`` (n,) / set ``ids`` (n,) in place where rays from ``origin`` hit a shape first.

        A ray can hit a shape only inside the cone from ``origin`` around its bounding
        sphere; a chunk of rays is tested only if its own bounding cone meets that cone.
        Shapes are visited nearest first so rays already stopped in front are skipped.
        """
        if len(self._radii) == 0 or len(dirs) == 0:
            return
        rel = self._centres - origin.astype(np.float32)  # (P, 3)
        dist = np.sqrt((rel * rel).sum(1))
        inside = dist <= self._radii
        shape_axis = rel / np.maximum(dist, 1e-9)[:, None]
        shape_half = np.where(inside, np.pi, np.arcsin(np.minimum(self._radii / np.maximum(dist, 1e-9), 1)))
        chunks = _chunked(dirs)  # (C, CHUNK, 3)
        axis = chunks.sum(1)
        axis /= np.maximum(np.sqrt((axis * axis).sum(1)), 1e-9)[:, None]  # (C, 3)
        spread = chunks[..., 0] * axis[:, 0:1] + chunks[..., 1] * axis[:, 1:2] + chunks[..., 2] * axis[:, 2:3]
        chunk_half = np.arccos(np.clip(spread.min(1), -1, 1))  # (C,)
        cos_between = shape_axis[:, 0:1] * axis[:, 0] + shape_axis[:, 1:2] * axis[:, 1] + shape_axis[:, 2:3] * axis[:, 2]
        between = np.arccos(np.clip(cos_between, -1, 1))  # (P, C) angle between the cone axes
        meets = between <= shape_half[:, None] + chunk_half[None, :] + 1e-4
        near = np.where(inside, 0.0, dist - self._radii)
        for p in np.argsort(near):
            cand = _chunk_rays(np.flatnonzero(meets[p]), len(dirs))
            cand = cand[t[cand] > near[p]]
            if cand.size == 0:
                continue
            tp = self.scene.shapes[p].intersect(origin, dirs[cand])
            closer = tp < t[cand]
            t[cand[closer]] = tp[closer]
            ids[cand[closer]] = p

    def _sun_blocked(self, points: np.ndarray, sun: np.ndarray) -> np.ndarray:
        """(n,) bool: whether a shape lies between each point (n, 3) and the sun (unit (3,)).

        Works across the sun: a shape can shade only points within its radius of its
        centre there; chunks of points are bounded by discs and tested as a whole.
        """
        blocked = np.zeros(len(points), bool)
        if len(self._radii) == 0 or len(points) == 0:
            return blocked
        helper = np.array([1.0, 0.0, 0.0], np.float32) if abs(sun[0]) < 0.9 else np.array([0.0, 1.0, 0.0], np.float32)
        e1 = np.cross(sun, helper)
        e1 /= np.linalg.norm(e1)
        frame = np.stack([e1, np.cross(sun, e1), sun], axis=1)  # (3, 3): columns across, across, along the sun
        chunks = _chunked(transform(points, frame))  # (C, CHUNK, 3)
        centre = chunks[..., :2].mean(1)  # (C, 2)
        radius = np.sqrt(((chunks[..., :2] - centre[:, None]) ** 2).sum(-1).max(1))  # (C,)
        lowest = chunks[..., 2].min(1)  # (C,) nearest-to-ground point along the sun
        cq = transform(self._centres, frame)  # (P, 3)
        gap = np.sqrt(((cq[:, None, :2] - centre[None]) ** 2).sum(-1))  # (P, C)
        meets = (gap <= self._radii[:, None] + radius[None, :] + 1e-4) & ((cq[:, 2] + self._radii)[:, None] > lowest)
        for p in np.flatnonzero(meets.any(axis=1)):
            cand = _chunk_rays(np.flatnonzero(meets[p]), len(points))
            cand = cand[~blocked[cand]]
            if cand.size == 0:
                continue
            t = self.scene.shapes[p].intersect(points[cand], np.broadcast_to(sun, (cand.size, 3)))
            blocked[cand[np.isfinite(t)]] = True
        return blocked

    def _surfaces(self, points: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normals (n, 3), uv (n, 2) and material ids (n,) at hit points; ``ids`` -1 = enclosure."""
        normal = np.empty_like(points)
        uv = np.empty((len(points), 2), np.float32)
        mat = np.empty(len(points), np.int64)
        for p in np.flatnonzero(np.bincount(ids + 1)) - 1:
            sel = np.flatnonzero(ids == p)
            shape = self.scene.enclosure if p < 0 else self.scene.shapes[p]
            normal[sel], uv[sel], mat[sel] = shape.surface(points[sel])
        return normal, uv, mat

    def _albedo(self, uv: np.ndarray, mat: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Linear-RGB albedo (n, 3) from each point's material: its pattern, or its photograph
        (filtered to ``footprint`` (n,), each pixel's size on the surface in metres)."""
        out = np.empty((len(uv), 3), np.float32)
        for m in np.flatnonzero(np.bincount(mat)):
            sel = np.flatnonzero(mat == m)
            material = self.scene.materials[m]
            if material.image:
                shift = np.float32(material.scale / 1024) * np.float32([material.salt & 1023, (material.salt >> 10) & 1023])
                out[sel] = np.minimum(photo_albedo(material.image, uv[sel] + shift, material.scale, footprint[sel])
                                      * self._color_a[m], 1.0)
            else:
                w = pattern_weight(material.pattern, uv[sel], material.scale, material.salt)[:, None]
                out[sel] = self._color_a[m] * (1 - w) + self._color_b[m] * w
            if material.macro:
                stain = value_noise(uv[sel], 2.5, material.salt + 11, octaves=2)
                out[sel] *= (1.0 + material.macro * (2.0 * stain - 1.0))[:, None]
        return out

    def _shade(self, points: np.ndarray, view: np.ndarray, normal: np.ndarray, mat: np.ndarray, albedo: np.ndarray) -> np.ndarray:
        """Linear radiance (n, 3): ambient + Blinn-Phong per light, each light's shadow included.

        Diffuse terms run on whole arrays (cheaper than gathering subsets); shadow rays only
        for points facing the light, highlights only on shiny materials.
        """
        scene = self.scene
        sky_facing = 0.75 + 0.25 * normal[:, 2:3]  # cheap hemisphere ambient: floors brighter
        color = albedo * (np.asarray(scene.ambient, np.float32) * sky_facing)
        shiny = np.flatnonzero(self._specular[mat] > 0)
        for light in scene.lights:
            if isinstance(light, PointLight):
                pos = np.asarray(light.position, np.float32)
                to_light = pos - points
                dist = np.sqrt(np.einsum("ij,ij->i", to_light, to_light))
                ldir = to_light / np.maximum(dist, 1e-6)[:, None]
                strength = 1.0 / (dist * dist + 1.0)
            else:
                ldir = np.broadcast_to(np.asarray(light.direction, np.float32), points.shape)
                strength = np.ones(len(points), np.float32)
            ndl = np.maximum(np.einsum("ij,ij->i", normal, ldir), 0)
            lit = np.flatnonzero(ndl > 0)
            if isinstance(light, PointLight):
                hit = np.full(len(lit), -1)
                self._closest(pos, -ldir[lit], dist[lit] - _SHADOW_BIAS, hit)
                ndl[lit[hit >= 0]] = 0
            else:
                ndl[lit[self._sun_blocked(points[lit] + _SHADOW_BIAS * normal[lit], ldir[0])]] = 0
            light_rgb = np.asarray(light.color, np.float32)
            color += albedo * ((ndl * strength)[:, None] * light_rgb)
            on = shiny[ndl[shiny] > 0]
            half = ldir[on] - view[on]
            half /= np.maximum(np.sqrt(np.einsum("ij,ij->i", half, half)), 1e-6)[:, None]
            ndh = np.maximum(np.einsum("ij,ij->i", normal[on], half), 0)
            highlight = self._specular[mat[on]] * ndh ** self._shininess[mat[on]] * strength[on]
            color[on] += highlight[:, None] * light_rgb
        return color

    def _sky(self, dirs: np.ndarray) -> np.ndarray:
        """Linear sky radiance (n, 3) for rays that hit nothing: a horizon-to-zenith gradient."""
        if self.scene.sky is None:
            return np.zeros((len(dirs), 3), np.float32)
        horizon, zenith = (np.asarray(c, np.float32) for c in self.scene.sky)
        w = np.clip(dirs[:, 2:3], 0, 1) ** 0.6
        return horizon * (1 - w) + zenith * w

    def trace(self, origin: np.ndarray, dirs: np.ndarray, pixel_angle: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shade rays from ``origin`` (3,) along unit world directions ``dirs`` (n, 3).

        ``pixel_angle``: the angle one ray's sample spans (radians: 1 / focal length in pixels,
        over N when N x N rays share a pixel), to which photographic textures are filtered; 0
        samples them at full resolution.

        Returns display RGB uint8 (n, 3), the distance to the first hit in metres (n,; inf
        where nothing is hit: sky) and what was hit (n,; shape index, -1 for the enclosure
        or nothing). Consecutive rays should point alike (see :func:`tile_order`): that is
        what makes culling fast, the results do not depend on the order.
        """
        origin = np.asarray(origin, np.float32)
        dirs = np.asarray(dirs, np.float32)
        t = self.scene.enclosure.intersect(origin, dirs)
        ids = np.full(len(dirs), -1)
        self._closest(origin, dirs, t, ids)
        hit = np.flatnonzero(np.isfinite(t))
        points = origin + t[hit, None] * dirs[hit]
        normal, uv, mat = self._surfaces(points, ids[hit])
        view = dirs[hit]
        # Shade the side facing the camera (the back of a thin face is never lit from behind).
        facing = np.einsum("ij,ij->i", normal, view) > 0
        normal[facing] *= -1
        radiance = np.zeros((len(dirs), 3), np.float32)
        # A pixel's size on the surface: its angular size at this distance,
        # stretched at grazing angles; photographs are filtered to it (no aliasing).
        footprint = t[hit] * np.float32(pixel_angle) / np.maximum(-np.einsum("ij,ij->i", normal, view), 0.2)
        radiance[hit] = self._shade(points, view, normal, mat, self._albedo(uv, mat, footprint))
        if len(hit) < len(dirs):
            miss = np.flatnonzero(~np.isfinite(t))
            radiance[miss] = self._sky(dirs[miss])
        # Exponential tone curve, then display gamma through a table indexed by sqrt(value)
        # (fine steps in the darks, no per-pixel pow).
        tone = np.sqrt(1.0 - np.exp(-_EXPOSURE * radiance))
        rgb = _GAMMA_LUT[(tone * (len(_GAMMA_LUT) - 1) + 0.5).astype(np.intp)]
        return rgb, t, ids

    def render(self, camera: Camera, name: str = "", supersample: int = 1) -> Frame:
        """The view of ``camera``: RGB uint8 (H, W, 3) and z-depth float32 (H, W), 0 for sky.

        ``supersample`` N (odd): N x N rays per pixel on a regular sub-pixel grid
        (:func:`subpixel_offsets`), their display colours box-averaged and rounded, as a camera
        integrates light over the pixel's area, so fine textures seen from afar do not alias.
        Photographs are filtered to each ray's own footprint (1/N of a pixel). Depth stays the
        one ray through the pixel centre (the grid's middle ray), exactly what N = 1 gives.
        Costs about N^2 times N = 1; rays are traced one sub-pixel grid position at a time, so
        memory stays that of N = 1.
        """
        offsets = subpixel_offsets(supersample)
        rot = camera.c2w[:3, :3].astype(np.float32)
        origin = camera.c2w[:3, 3].astype(np.float32)
        pixel_angle = 1.0 / (supersample * float(camera.K[0, 0]))
        total = np.zeros((camera.width * camera.height, 3), np.uint32)  # sum of the display colours
        for offset in offsets:
            dirs_cam, cos_axis, pixel = self.camera_rays(camera, offset)
            traced, t, _ = self.trace(origin, transform(dirs_cam, rot.T), pixel_angle)
            total[pixel] += traced  # back to raster order
            if offset == (0.0, 0.0):  # the pixel-centre ray
                hit = np.flatnonzero(np.isfinite(t))
                depth = np.zeros(len(t), np.float32)
                depth[pixel[hit]] = t[hit] * cos_axis[hit]
        # Round to nearest in integers; no tie rule needed: the mean of N^2 (odd) integers is never half-way.
        count = len(offsets)
        rgb = ((2 * total + count) // (2 * count)).astype(np.uint8)
        shape = (camera.height, camera.width)
        return Frame(rgb=rgb.reshape(*shape, 3), depth=depth.reshape(shape), camera=camera, name=name)
