"""Seeded generator of varied procedural scenes: indoor rooms and outdoor courtyards.

A scene is plain data (shapes, materials, lights) in our world frame: Z up, metres,
right-handed (see ``models.cameras``). The same ``(seed, kind)`` always yields the same scene,
so a dataset can be regenerated, or an interrupted one resumed, from its seed alone.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from datagen.procedural.shapes import Box, Cylinder, Enclosure, Ground, Room, Shape, Sphere

GENERATOR_VERSION = 1  # bump when the same seed would give a different scene
# Scene families. The first two are the original ones (their images are pinned by the tests);
# the rest are in ``families``: "room" and "courtyard" train, "hall" and "street" are held out
# of every training stage (other layouts, other textures) for the out-of-family evaluation.
KINDS = ("indoor", "outdoor", "room", "courtyard", "hall", "street")


@dataclass(frozen=True)
class Material:
    """Two linear-RGB colours blended by a pattern (see ``textures.PATTERNS``) plus a highlight.

    ``scale``: pattern cell size in metres. ``specular``: Blinn-Phong highlight strength in
    [0, 1]; ``shininess``: its exponent. ``salt`` decorrelates the noise of materials.
    ``image``: a photograph (``textures.PHOTOS``) instead of the colours, pattern "photo",
    tiled every ``scale`` metres and tinted by ``color_a``. ``macro``: strength of a
    brightness variation a few metres wide (stains, uneven light), 0 = none.
    """

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    pattern: str
    scale: float
    specular: float
    shininess: float
    salt: int
    image: str = ""
    macro: float = 0.0


@dataclass(frozen=True)
class PointLight:
    position: tuple[float, float, float]
    color: tuple[float, float, float]  # linear RGB irradiance at 1 m


@dataclass(frozen=True)
class SunLight:
    direction: tuple[float, float, float]  # unit vector from the scene towards the sun
    color: tuple[float, float, float]


@dataclass(frozen=True)
class ProceduralScene:
    """Everything the renderer needs, and the volume where cameras may stand.

    ``sky``: (horizon, zenith) linear RGB for rays that hit nothing, or ``None`` indoors.
    ``walk_lo``/``walk_hi``: corners of the axis-aligned box cameras must stay inside.
    """

    kind: str
    seed: int
    enclosure: Enclosure
    shapes: tuple[Shape, ...]
    materials: tuple[Material, ...]
    ambient: tuple[float, float, float]
    lights: tuple[PointLight | SunLight, ...]
    sky: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    walk_lo: tuple[float, float, float]
    walk_hi: tuple[float, float, float]

    def camera_ok(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(m,) bool: points inside the walkable box and at least ``margin`` metres from every shape."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        ok = np.all((p >= self.walk_lo) & (p <= self.walk_hi), axis=1)
        for shape in self.shapes:
            ok &= ~shape.contains(p, margin)
        return ok


def _color(rng: np.random.Generator, hue: float | None = None, sat=(0.2, 0.7), val=(0.3, 0.9)) -> tuple:
    """A random linear-RGB colour; ``hue`` in [0, 1) pins the hue (with a little jitter)."""
    h = rng.random() if hue is None else (hue + rng.normal(0, 0.03)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return (r**2.2, g**2.2, b**2.2)  # picked in display space, stored linear


def _shade(color: tuple, factor: float) -> tuple:
    return tuple(min(1.0, c * factor) for c in color)


class _Builder:
    """Accumulates materials and shapes while a scene is generated, and keeps floor space free."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.materials: list[Material] = []
        self.shapes: list[Shape] = []
        self.footprints: list[tuple[float, float, float]] = []  # (x, y, radius) on the floor

    def material(self, patterns: tuple[str, ...], scale=(0.2, 1.0), hue=None, specular_p=0.3, **color) -> int:
        rng = self.rng
        a = _color(rng, hue, **color)
        b = _shade(a, rng.uniform(0.35, 0.75)) if rng.random() < 0.7 else _color(rng, None, **color)
        shiny = rng.random() < specular_p
        self.materials.append(
            Material(
                color_a=a,
                color_b=b,
                pattern=str(rng.choice(patterns)),
                scale=float(rng.uniform(*scale)),
                specular=float(rng.uniform(0.3, 0.9)) if shiny else 0.0,
                shininess=float(rng.uniform(20, 120)),
                salt=int(rng.integers(1 << 20)),
            )
        )
        return len(self.materials) - 1

    def place(self, lo: tuple[float, float], hi: tuple[float, float], radius: float) -> tuple[float, float] | None:
        """A free floor spot for a footprint of ``radius`` inside [lo, hi], or None after 40 tries
        (at once, drawing nothing, when the footprint does not fit: e.g. a hall's aisle between
        wide pillars, which used to stop the scene with numpy's "high - low < 0")."""
        if lo[0] + radius > hi[0] - radius or lo[1] + radius > hi[1] - radius:
            return None
        for _ in range(40):
            x = self.rng.uniform(lo[0] + radius, hi[0] - radius)
            y = self.rng.uniform(lo[1] + radius, hi[1] - radius)
            if all(math.hypot(x - fx, y - fy) > radius + fr + 0.3 for fx, fy, fr in self.footprints):
                self.footprints.append((x, y, radius))
                return x, y
        return None

    def stairs(self, x: float, y: float, along_x: bool, steps: int, rise: float, run: float, width: float, mat: int):
        """Solid stairs climbing along +x (or +y) from (x, y): one box per step, floor to tread."""
        for k in range(steps):
            top = rise * (k + 1)
            offset = run * (k + 0.5)
            cx, cy = (x + offset, y) if along_x else (x, y + offset)
            half = (run / 2, width / 2, top / 2) if along_x else (width / 2, run / 2, top / 2)
            self.shapes.append(Box((cx, cy, top / 2), half, 0.0, mat))

    def furniture(self, lo: tuple[float, float], hi: tuple[float, float], ceiling: float, count: int) -> None:
        """Scatter ``count`` objects (boxes, spheres, cylinders, stacks, stairs) on the floor."""
        rng = self.rng
        for _ in range(count):
            kind = rng.choice(["box", "box", "sphere", "cylinder", "stack", "stairs"])
            if kind == "stairs":
                steps, rise, run, width = int(rng.integers(3, 7)), rng.uniform(0.15, 0.25), 0.32, rng.uniform(0.8, 1.6)
                along_x = bool(rng.random() < 0.5)
                length = steps * run
                spot = self.place(lo, hi, 0.5 * math.hypot(length, width))
                if spot is None:
                    continue
                start = (spot[0] - length / 2, spot[1]) if along_x else (spot[0], spot[1] - length / 2)
                self.stairs(*start, along_x, steps, rise, run, width, self.material(("tiles", "solid", "noise")))
                continue
            radius = rng.uniform(0.25, 0.9)
            spot = self.place(lo, hi, radius)
            if spot is None:
                continue
            x, y = spot
            mat = self.material(("solid", "checker", "stripes", "noise", "bricks", "tiles"), scale=(0.1, 0.5))
            if kind == "box" or kind == "stack":
                hx, hy = radius * rng.uniform(0.5, 0.7), radius * rng.uniform(0.5, 0.7)
                hz = rng.uniform(0.2, min(1.1, ceiling / 2 - 0.2))
                self.shapes.append(Box((x, y, hz), (hx, hy, hz), float(rng.uniform(0, math.pi)), mat))
                if kind == "stack":
                    r = min(hx, hy) * rng.uniform(0.5, 0.9)
                    top = self.material(("solid", "noise", "checker"), scale=(0.05, 0.3), specular_p=0.7)
                    self.shapes.append(Sphere((x, y, 2 * hz + r), r, top))
            elif kind == "sphere":
                r = radius * rng.uniform(0.6, 1.0)
                self.shapes.append(Sphere((x, y, r), r, mat))
            else:
                tall = rng.random() < 0.4
                r = radius * rng.uniform(0.3, 0.7)
                z1 = ceiling if tall else rng.uniform(0.4, 1.4)
                self.shapes.append(Cylinder((x, y), r, 0.0, z1, mat))


def _indoor(rng: np.random.Generator, seed: int) -> ProceduralScene:
    b = _Builder(rng)
    size_x, size_y, height = rng.uniform(4.0, 9.0), rng.uniform(4.0, 9.0), rng.uniform(2.6, 3.6)
    floor = b.material(("checker", "tiles", "noise", "stripes"), scale=(0.3, 1.0), val=(0.3, 0.8))
    walls = [b.material(("bricks", "stripes", "solid", "noise", "tiles"), scale=(0.2, 0.8), specular_p=0.1) for _ in range(2)]
    ceiling = b.material(("solid", "noise"), scale=(0.5, 2.0), sat=(0.0, 0.15), val=(0.7, 0.95), specular_p=0.0)
    face_walls = [walls[int(rng.integers(2))] for _ in range(4)]
    room = Room((0.0, 0.0, 0.0), (size_x, size_y, height), (*face_walls, floor, ceiling))
    b.furniture((0.0, 0.0), (size_x, size_y), height, int(rng.integers(4, 10)))
    lights = []
    for _ in range(int(rng.integers(1, 3))):
        pos = (rng.uniform(0.5, size_x - 0.5), rng.uniform(0.5, size_y - 0.5), height - 0.25)
        warmth = rng.uniform(0.0, 0.25)
        power = rng.uniform(4.0, 9.0) * (size_x * size_y) / 40.0
        lights.append(PointLight(pos, (power, power * (1 - warmth / 2), power * (1 - warmth))))
    ambient = float(rng.uniform(0.08, 0.2))
    return ProceduralScene(
        kind="indoor",
        seed=seed,
        enclosure=room,
        shapes=tuple(b.shapes),
        materials=tuple(b.materials),
        ambient=(ambient, ambient, ambient * 1.05),
        lights=tuple(lights),
        sky=None,
        walk_lo=(0.4, 0.4, 0.9),
        walk_hi=(size_x - 0.4, size_y - 0.4, min(2.0, height - 0.4)),
    )


GROUND_EXTENT = 30.0  # metres; keeps every visible surface within the 65.5 m of 16-bit mm depth


def _outdoor(rng: np.random.Generator, seed: int) -> ProceduralScene:
    b = _Builder(rng)
    half_x, half_y = rng.uniform(6.0, 13.0), rng.uniform(6.0, 13.0)
    # Matte ground and walls: a sun highlight on a whole plane would wash out the image.
    ground = b.material(("noise", "bricks", "tiles", "checker"), scale=(0.3, 1.5), val=(0.25, 0.7), specular_p=0.0)
    wall_mat = b.material(("bricks", "stripes", "noise", "tiles"), scale=(0.3, 1.0), specular_p=0.0)
    wall_h, thick = rng.uniform(2.0, 5.0), 0.4
    # Perimeter walls; one side may have a gate so the camera sees out.
    gate_side = int(rng.integers(4)) if rng.random() < 0.6 else -1
    sides = [
        ((0.0, -half_y - thick / 2), (half_x + thick, thick / 2)),
        ((0.0, half_y + thick / 2), (half_x + thick, thick / 2)),
        ((-half_x - thick / 2, 0.0), (thick / 2, half_y)),
        ((half_x + thick / 2, 0.0), (thick / 2, half_y)),
    ]
    for side, ((cx, cy), (hx, hy)) in enumerate(sides):
        if side != gate_side:
            b.shapes.append(Box((cx, cy, wall_h / 2), (hx, hy, wall_h / 2), 0.0, wall_mat))
            continue
        gate = rng.uniform(1.5, 3.0) / 2
        along_x = hx > hy
        length = hx if along_x else hy
        for sign in (-1.0, 1.0):
            piece = (length - gate) / 2
            centre = sign * (gate + piece)
            c = (cx + centre, cy) if along_x else (cx, cy + centre)
            h = (piece, hy) if along_x else (hx, piece)
            b.shapes.append(Box((*c, wall_h / 2), (*h, wall_h / 2), 0.0, wall_mat))
    # Buildings beyond the walls.
    for _ in range(int(rng.integers(2, 6))):
        ang = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(max(half_x, half_y) + 4.0, GROUND_EXTENT - 6.0)
        hx, hy, hz = rng.uniform(2, 5), rng.uniform(2, 5), rng.uniform(4, 14) / 2
        mat = b.material(("bricks", "tiles", "stripes", "solid"), scale=(0.5, 2.0), specular_p=0.0)
        b.shapes.append(Box((dist * math.cos(ang), dist * math.sin(ang), hz), (hx, hy, hz), float(rng.uniform(0, math.pi)), mat))
    # Trees: a trunk and a canopy.
    for _ in range(int(rng.integers(0, 4))):
        spot = b.place((-half_x, -half_y), (half_x, half_y), 1.0)
        if spot is None:
            continue
        trunk_h = rng.uniform(1.5, 3.0)
        bark = b.material(("stripes", "noise"), scale=(0.1, 0.3), hue=0.08, val=(0.2, 0.45), specular_p=0.0)
        leaves = b.material(("noise",), scale=(0.2, 0.6), hue=0.3, sat=(0.4, 0.8), val=(0.25, 0.6), specular_p=0.0)
        b.shapes.append(Cylinder(spot, rng.uniform(0.12, 0.25), 0.0, trunk_h, bark))
        b.shapes.append(Sphere((*spot, trunk_h + 0.6), rng.uniform(0.8, 1.2), leaves))
    b.furniture((-half_x, -half_y), (half_x, half_y), 6.0, int(rng.integers(3, 8)))
    elevation, azimuth = math.radians(rng.uniform(20, 65)), rng.uniform(0, 2 * math.pi)
    sun_dir = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    sun = rng.uniform(1.8, 2.6)
    horizon = _color(rng, 0.58, sat=(0.1, 0.3), val=(0.8, 0.95))
    zenith = _color(rng, 0.6, sat=(0.4, 0.7), val=(0.6, 0.85))
    ambient = float(rng.uniform(0.2, 0.35))
    return ProceduralScene(
        kind="outdoor",
        seed=seed,
        enclosure=Ground(GROUND_EXTENT, ground),
        shapes=tuple(b.shapes),
        materials=tuple(b.materials),
        ambient=(ambient * 0.9, ambient * 0.95, ambient * 1.1),
        lights=(SunLight(sun_dir, (sun, sun * 0.95, sun * 0.85)),),
        sky=(horizon, zenith),
        walk_lo=(-half_x + 0.5, -half_y + 0.5, 1.0),
        walk_hi=(half_x - 0.5, half_y - 0.5, 3.0),
    )


def generate_scene(seed: int, kind: str = "indoor") -> ProceduralScene:
    """The scene of ``seed`` and ``kind`` (one of ``KINDS``); deterministic."""
    if kind not in KINDS:
        raise ValueError(f"scene kind must be one of {KINDS}; got {kind!r}")
    rng = np.random.default_rng([GENERATOR_VERSION, seed, KINDS.index(kind)])
    if kind == "indoor":
        return _indoor(rng, seed)
    if kind == "outdoor":
        return _outdoor(rng, seed)
    from datagen.procedural import families  # it builds on this module's types

    return families.BUILDERS[kind](rng, seed)
