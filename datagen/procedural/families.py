"""Scene families that look more like the world: photographs on the surfaces, multi-scale
materials, clutter, other layouts and lighting.

Two families train and two are held out of every training stage, so that an evaluation can
ask how a model does on layouts *and* textures it never saw:

========== ========= ============================================================ ===========
family      role      layout                                                       textures
========== ========= ============================================================ ===========
room        training  a room with partition walls, tables, shelves, floor clutter  training
courtyard   training  a walled yard with buildings beyond, benches, planters, crates training
hall        held out  a long pillared hall with alcoves and a row of lamps          held out
street      held out  a street between two rows of facades, lamp posts, vehicles    held out
========== ========= ============================================================ ===========

Texture sets are disjoint: the training set draws from ``textures.TRAIN_PHOTOS`` and the
procedural patterns up to "wood"; the held-out set from ``textures.HELD_OUT_PHOTOS`` and the
"marble" and "cells" patterns. Each scene's folder records its family, texture set and the
photographs it uses, with their package, file, SHA-256 and licence (``texture_sources``).
Lighting varies per scene: warm to cool point lights, one to four of them, dim to bright
ambient; outdoors a low (warm) to high sun or an overcast sky.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datagen.procedural.scenes import (
    GROUND_EXTENT,
    Material,
    PointLight,
    ProceduralScene,
    SunLight,
    _Builder,
    _color,
)
from datagen.procedural.shapes import Box, Cylinder, Ground, Room, Sphere
from datagen.procedural.textures import HELD_OUT_PHOTOS, PATTERNS, PHOTOS, TRAIN_PHOTOS, photo_file


@dataclass(frozen=True)
class TextureSet:
    """What a family's surfaces may be made of: photographs and procedural patterns."""

    name: str
    photos: tuple[str, ...]
    patterns: tuple[str, ...]


TRAIN_TEXTURES = TextureSet("train", TRAIN_PHOTOS, (*PATTERNS, "plaster", "wood"))
HELD_OUT_TEXTURES = TextureSet("held-out", HELD_OUT_PHOTOS, ("marble", "cells"))
TRAINING_FAMILIES = ("indoor", "outdoor", "room", "courtyard")
HELD_OUT_FAMILIES = ("hall", "street")


def texture_set(kind: str) -> TextureSet | None:
    """The texture set of family ``kind`` (None for the two original families)."""
    if kind in ("room", "courtyard"):
        return TRAIN_TEXTURES
    if kind in HELD_OUT_FAMILIES:
        return HELD_OUT_TEXTURES
    return None


def texture_sources(scene: ProceduralScene) -> list[dict]:
    """The photographs a scene's materials use: name, package, file, SHA-256 and licence."""
    import hashlib

    out = []
    for name in sorted({m.image for m in scene.materials if m.image}):
        source = PHOTOS[name]
        digest = hashlib.sha256(photo_file(name).read_bytes()).hexdigest()
        out.append({"name": name, "package": source.package, "file": source.path, "sha256": digest,
                    "licence": source.licence})
    return out


def _material(b: _Builder, textures: TextureSet, photo_p: float, scale=(0.2, 1.0), photo_scale=(0.6, 3.0),
              specular_p: float = 0.2, **color) -> int:
    """A material of ``textures``: a tinted photograph with probability ``photo_p``, else a
    two-colour pattern; either with a random large-scale brightness variation."""
    rng = b.rng
    shiny = rng.random() < specular_p
    specular = float(rng.uniform(0.2, 0.7)) if shiny else 0.0
    common = dict(shininess=float(rng.uniform(20, 120)), salt=int(rng.integers(1 << 20)),
                  macro=float(rng.uniform(0.0, 0.5)), specular=specular)
    if rng.random() < photo_p:
        name = str(rng.choice(textures.photos))
        tint = _color(rng, None, sat=(0.0, 0.45), val=(0.55, 0.95))
        b.materials.append(Material(color_a=tint, color_b=tint, pattern="photo", scale=float(rng.uniform(*photo_scale)),
                                    image=name, **common))
    else:
        a = _color(rng, None, **color)
        c = tuple(min(1.0, x * rng.uniform(0.3, 0.8)) for x in a) if rng.random() < 0.6 else _color(rng, None, **color)
        b.materials.append(Material(color_a=a, color_b=c, pattern=str(rng.choice(textures.patterns)),
                                    scale=float(rng.uniform(*scale)), **common))
    return len(b.materials) - 1


def _table(b: _Builder, textures: TextureSet, x: float, y: float, yaw: float) -> None:
    """A table (top and four legs) with a few small objects on it."""
    rng = b.rng
    hx, hy, h = rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.6), rng.uniform(0.65, 0.8)
    wood = _material(b, textures, 0.3, scale=(0.2, 0.6))
    b.shapes.append(Box((x, y, h - 0.025), (hx, hy, 0.025), yaw, wood))
    c, s = math.cos(yaw), math.sin(yaw)
    for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        lx, ly = sx * (hx - 0.05), sy * (hy - 0.05)
        b.shapes.append(Box((x + c * lx - s * ly, y + s * lx + c * ly, (h - 0.05) / 2), (0.03, 0.03, (h - 0.05) / 2),
                            yaw, wood))
    for _ in range(int(rng.integers(1, 4))):
        ox, oy = rng.uniform(-hx + 0.1, hx - 0.1), rng.uniform(-hy + 0.1, hy - 0.1)
        px, py = x + c * ox - s * oy, y + s * ox + c * oy
        _small_object(b, textures, px, py, h)


def _small_object(b: _Builder, textures: TextureSet, x: float, y: float, z: float) -> None:
    """A cup, box or ball standing at height ``z``."""
    rng = b.rng
    mat = _material(b, textures, 0.3, scale=(0.03, 0.15), specular_p=0.5)
    r = rng.uniform(0.04, 0.12)
    kind = rng.integers(3)
    if kind == 0:
        b.shapes.append(Cylinder((x, y), r, z, z + rng.uniform(0.08, 0.3), mat))
    elif kind == 1:
        b.shapes.append(Box((x, y, z + r), (r, r * rng.uniform(0.5, 1.5), r), float(rng.uniform(0, math.pi)), mat))
    else:
        b.shapes.append(Sphere((x, y, z + r), r, mat))


def _shelf(b: _Builder, textures: TextureSet, x: float, y: float, along_x: bool, height: float) -> None:
    """A shelf unit against a wall: sides, boards, and boxes on the boards."""
    rng = b.rng
    width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.25, 0.4)
    boards = int(rng.integers(3, 6))
    top = min(height - 0.3, rng.uniform(1.2, 2.2))
    mat = _material(b, textures, 0.2, scale=(0.2, 0.6))
    half = (width / 2, depth / 2) if along_x else (depth / 2, width / 2)
    for k in range(boards):
        z = 0.05 + k * (top - 0.05) / (boards - 1)
        b.shapes.append(Box((x, y, z), (*half, 0.02), 0.0, mat))
        if k < boards - 1 and rng.random() < 0.8:
            for _ in range(int(rng.integers(1, 4))):
                off = rng.uniform(-width / 2 + 0.1, width / 2 - 0.1)
                bx, by = (x + off, y) if along_x else (x, y + off)
                s = rng.uniform(0.05, 0.12)
                item = _material(b, textures, 0.4, scale=(0.03, 0.1))
                b.shapes.append(Box((bx, by, z + 0.02 + s), (s * 0.7, s * 0.7, s), 0.0, item))
    for sign in (-1, 1):
        sx, sy = (x + sign * width / 2, y) if along_x else (x, y + sign * width / 2)
        side = (0.02, depth / 2, top / 2) if along_x else (depth / 2, 0.02, top / 2)
        b.shapes.append(Box((sx, sy, top / 2), side, 0.0, mat))


def _lamps(rng: np.random.Generator, positions: list[tuple[float, float, float]], area: float) -> list[PointLight]:
    """Point lights at ``positions`` with a colour temperature drawn per scene, warm to cool, and
    a power that lights ``area`` square metres."""
    warmth = rng.uniform(-0.15, 0.35)  # > 0 warm (incandescent), < 0 cool (daylight LED)
    lights = []
    for pos in positions:
        power = rng.uniform(3.0, 10.0) * area / 40.0 / max(len(positions), 1) ** 0.5
        r, g, bl = 1.0 + 0.5 * min(0.0, warmth), 1.0 - 0.3 * abs(warmth), 1.0 - max(0.0, warmth)
        lights.append(PointLight(pos, (power * r, power * g, power * bl)))
    return lights


def _sun_and_sky(rng: np.random.Generator) -> tuple[tuple, tuple, tuple]:
    """(lights, ambient, sky) of an outdoor scene: a sun from low and warm to high and white,
    or an overcast sky (no direct light, bright grey ambient)."""
    if rng.random() < 0.2:  # overcast
        grey = float(rng.uniform(0.45, 0.7))
        sky = _color(rng, 0.6, sat=(0.0, 0.08), val=(0.7, 0.9))
        return (), (grey, grey, grey * 1.05), (sky, _shade(sky, 0.9))
    elevation = math.radians(rng.uniform(8, 70))
    azimuth = rng.uniform(0, 2 * math.pi)
    direction = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    low = max(0.0, 1.0 - math.degrees(elevation) / 30.0)  # 1 at the horizon, 0 from 30 degrees up
    sun = rng.uniform(1.8, 2.8)
    colour = (sun, sun * (0.95 - 0.25 * low), sun * (0.85 - 0.45 * low))
    hue = 0.6 - 0.5 * low * rng.random()
    horizon = _color(rng, hue % 1.0, sat=(0.1, 0.3 + 0.3 * low), val=(0.75, 0.95))
    zenith = _color(rng, 0.6, sat=(0.4, 0.7), val=(0.5, 0.85))
    ambient = float(rng.uniform(0.15, 0.35))
    return (SunLight(direction, colour),), (ambient * 0.9, ambient * 0.95, ambient * 1.1), (horizon, zenith)


def _shade(color: tuple, factor: float) -> tuple:
    return tuple(min(1.0, c * factor) for c in color)


def _room(rng: np.random.Generator, seed: int) -> ProceduralScene:
    """Training family: a furnished room, partly divided by partition walls."""
    tx = TRAIN_TEXTURES
    b = _Builder(rng)
    sx, sy, h = rng.uniform(4.5, 10.0), rng.uniform(4.5, 10.0), rng.uniform(2.5, 4.0)
    floor = _material(b, tx, 0.5, scale=(0.3, 1.2), val=(0.25, 0.8))
    walls = [_material(b, tx, 0.5, scale=(0.2, 1.0), specular_p=0.05) for _ in range(int(rng.integers(1, 4)))]
    ceiling = _material(b, tx, 0.15, scale=(0.5, 2.0), sat=(0.0, 0.15), val=(0.7, 0.95), specular_p=0.0)
    room = Room((0.0, 0.0, 0.0), (sx, sy, h), (*[walls[int(rng.integers(len(walls)))] for _ in range(4)], floor, ceiling))
    for _ in range(int(rng.integers(0, 3))):  # partition walls from one wall into the room
        along_x = bool(rng.random() < 0.5)
        length = rng.uniform(1.0, 0.5 * (sx if along_x else sy))
        tall = h if rng.random() < 0.6 else rng.uniform(1.0, 1.6)
        mat = walls[int(rng.integers(len(walls)))]
        if along_x:
            y = rng.uniform(1.5, sy - 1.5)
            x = length / 2 if rng.random() < 0.5 else sx - length / 2
            b.shapes.append(Box((x, y, tall / 2), (length / 2, 0.06, tall / 2), 0.0, mat))
            b.footprints.append((x, y, length / 2))
        else:
            x = rng.uniform(1.5, sx - 1.5)
            y = length / 2 if rng.random() < 0.5 else sy - length / 2
            b.shapes.append(Box((x, y, tall / 2), (0.06, length / 2, tall / 2), 0.0, mat))
            b.footprints.append((x, y, length / 2))
    for _ in range(int(rng.integers(0, 3))):
        spot = b.place((0.0, 0.0), (sx, sy), 0.9)
        if spot is not None:
            _table(b, tx, *spot, float(rng.uniform(0, math.pi)))
    for _ in range(int(rng.integers(0, 3))):
        along_x = bool(rng.random() < 0.5)
        if along_x:
            x, y = rng.uniform(1.0, sx - 1.0), (0.25 if rng.random() < 0.5 else sy - 0.25)
        else:
            x, y = (0.25 if rng.random() < 0.5 else sx - 0.25), rng.uniform(1.0, sy - 1.0)
        _shelf(b, tx, x, y, along_x, h)
        b.footprints.append((x, y, 0.8))
    b.furniture((0.0, 0.0), (sx, sy), h, int(rng.integers(2, 6)))
    for _ in range(int(rng.integers(3, 10))):  # floor clutter
        spot = b.place((0.0, 0.0), (sx, sy), 0.15)
        if spot is not None:
            _small_object(b, tx, *spot, 0.0)
    n = int(rng.integers(1, 5))
    lamps = [(rng.uniform(0.5, sx - 0.5), rng.uniform(0.5, sy - 0.5), h - 0.25) for _ in range(n)]
    ambient = float(rng.uniform(0.04, 0.22))
    return ProceduralScene(
        kind="room", seed=seed, enclosure=room, shapes=tuple(b.shapes), materials=tuple(b.materials),
        ambient=(ambient, ambient, ambient * 1.05), lights=tuple(_lamps(rng, lamps, sx * sy)), sky=None,
        walk_lo=(0.4, 0.4, 0.9), walk_hi=(sx - 0.4, sy - 0.4, min(2.0, h - 0.4)),
    )


def _courtyard(rng: np.random.Generator, seed: int) -> ProceduralScene:
    """Training family: a walled yard with benches, planters and crates, buildings beyond."""
    tx = TRAIN_TEXTURES
    b = _Builder(rng)
    hx, hy = rng.uniform(6.0, 12.0), rng.uniform(6.0, 12.0)
    ground = _material(b, tx, 0.6, scale=(0.3, 1.5), photo_scale=(1.0, 4.0), val=(0.25, 0.7), specular_p=0.0)
    wall = _material(b, tx, 0.5, scale=(0.3, 1.0), specular_p=0.0)
    wall_h, thick = rng.uniform(2.0, 5.0), 0.4
    gate = int(rng.integers(4)) if rng.random() < 0.7 else -1
    for side in range(4):
        along_x = side < 2
        length = hx if along_x else hy
        offset = (hy if along_x else hx) + thick / 2
        sign = -1.0 if side % 2 == 0 else 1.0
        pieces = [(-length, length)]
        if side == gate:
            g = rng.uniform(1.5, 3.0) / 2
            pieces = [(-length, -g), (g, length)]
        for lo, hi in pieces:
            mid, half = (lo + hi) / 2, (hi - lo) / 2
            c = (mid, sign * offset) if along_x else (sign * offset, mid)
            e = (half, thick / 2) if along_x else (thick / 2, half)
            b.shapes.append(Box((*c, wall_h / 2), (*e, wall_h / 2), 0.0, wall))
    for _ in range(int(rng.integers(2, 6))):
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(max(hx, hy) + 4.0, GROUND_EXTENT - 6.0)
        size = (rng.uniform(2, 5), rng.uniform(2, 5), rng.uniform(4, 14) / 2)
        b.shapes.append(Box((dist * math.cos(ang), dist * math.sin(ang), size[2]), size, float(rng.uniform(0, math.pi)),
                            _material(b, tx, 0.5, scale=(0.5, 2.0), photo_scale=(2.0, 6.0), specular_p=0.0)))
    for _ in range(int(rng.integers(1, 5))):  # benches
        spot = b.place((-hx, -hy), (hx, hy), 1.0)
        if spot is not None:
            yaw = float(rng.uniform(0, math.pi))
            mat = _material(b, tx, 0.3, scale=(0.1, 0.4), specular_p=0.0)
            b.shapes.append(Box((*spot, 0.42), (0.8, 0.22, 0.04), yaw, mat))
            b.shapes.append(Box((*spot, 0.19), (0.7, 0.15, 0.19), yaw, mat))
    for _ in range(int(rng.integers(1, 5))):  # planters with a shrub
        spot = b.place((-hx, -hy), (hx, hy), 0.7)
        if spot is not None:
            r = rng.uniform(0.3, 0.6)
            pot = _material(b, tx, 0.4, scale=(0.1, 0.4), specular_p=0.0)
            leaves = b.material(("noise",), scale=(0.1, 0.4), hue=0.3, sat=(0.4, 0.8), val=(0.2, 0.55), specular_p=0.0)
            b.shapes.append(Cylinder(spot, r, 0.0, 0.5, pot))
            b.shapes.append(Sphere((*spot, 0.5 + r * 0.8), r * 1.1, leaves))
    for _ in range(int(rng.integers(2, 8))):  # crates and clutter
        spot = b.place((-hx, -hy), (hx, hy), 0.4)
        if spot is not None:
            s = rng.uniform(0.15, 0.4)
            b.shapes.append(Box((*spot, s), (s, s * rng.uniform(0.7, 1.3), s), float(rng.uniform(0, math.pi)),
                                _material(b, tx, 0.5, scale=(0.05, 0.3), specular_p=0.0)))
    b.furniture((-hx, -hy), (hx, hy), 6.0, int(rng.integers(1, 5)))
    lights, ambient, sky = _sun_and_sky(rng)
    return ProceduralScene(
        kind="courtyard", seed=seed, enclosure=Ground(GROUND_EXTENT, ground), shapes=tuple(b.shapes),
        materials=tuple(b.materials), ambient=ambient, lights=lights, sky=sky,
        walk_lo=(-hx + 0.5, -hy + 0.5, 1.0), walk_hi=(hx - 0.5, hy - 0.5, 3.0),
    )


def _hall(rng: np.random.Generator, seed: int) -> ProceduralScene:
    """Held-out family: a long hall with two rows of pillars, wall alcoves and a row of lamps."""
    tx = HELD_OUT_TEXTURES
    b = _Builder(rng)
    length, width, h = rng.uniform(11.0, 17.0), rng.uniform(5.0, 7.5), rng.uniform(3.2, 5.0)
    floor = _material(b, tx, 0.5, scale=(0.4, 1.5), val=(0.25, 0.8), specular_p=0.3)
    wall = _material(b, tx, 0.6, scale=(0.3, 1.2), specular_p=0.0)
    ceiling = _material(b, tx, 0.3, scale=(0.5, 2.0), sat=(0.0, 0.2), val=(0.6, 0.9), specular_p=0.0)
    room = Room((0.0, 0.0, 0.0), (length, width, h), (wall, wall, wall, wall, floor, ceiling))
    pillar = _material(b, tx, 0.5, scale=(0.2, 0.8), specular_p=0.2)
    spacing = rng.uniform(2.2, 3.5)
    inset = rng.uniform(1.1, 1.6)
    round_pillars = bool(rng.random() < 0.5)
    r = rng.uniform(0.18, 0.35)
    for x in np.arange(spacing, length - 1.0, spacing):
        for y in (inset, width - inset):
            if round_pillars:
                b.shapes.append(Cylinder((float(x), y), r, 0.0, h, pillar))
            else:
                b.shapes.append(Box((float(x), y, h / 2), (r, r, h / 2), 0.0, pillar))
            b.footprints.append((float(x), y, r))
    alcove = _material(b, tx, 0.5, scale=(0.2, 0.8), specular_p=0.0)
    for x in np.arange(spacing / 2, length - 1.0, spacing):  # wall piers between the alcoves
        for y in (0.15, width - 0.15):
            if rng.random() < 0.7:
                b.shapes.append(Box((float(x), y, h / 2), (0.3, 0.15, h / 2), 0.0, alcove))
    for _ in range(int(rng.integers(2, 7))):  # benches and plinths in the aisle
        spot = b.place((1.0, inset + r + 0.5), (length - 1.0, width - inset - r - 0.5), 0.5)
        if spot is not None:
            s = rng.uniform(0.2, 0.5)
            mat = _material(b, tx, 0.4, scale=(0.05, 0.3))
            b.shapes.append(Box((*spot, s), (s, s, s), float(rng.uniform(0, math.pi)), mat))
            if rng.random() < 0.5:
                b.shapes.append(Sphere((*spot, 2 * s + 0.15), 0.15, _material(b, tx, 0.3, scale=(0.03, 0.1),
                                                                              specular_p=0.8)))
    lamps = [(float(x), width / 2, h - 0.3) for x in np.linspace(1.5, length - 1.5, int(rng.integers(2, 5)))]
    ambient = float(rng.uniform(0.05, 0.2))
    return ProceduralScene(
        kind="hall", seed=seed, enclosure=room, shapes=tuple(b.shapes), materials=tuple(b.materials),
        ambient=(ambient, ambient, ambient), lights=tuple(_lamps(rng, lamps, length * width)), sky=None,
        walk_lo=(0.5, 0.5, 0.9), walk_hi=(length - 0.5, width - 0.5, min(2.2, h - 0.4)),
    )


def _street(rng: np.random.Generator, seed: int) -> ProceduralScene:
    """Held-out family: a street along x between two rows of facades with doors and windows,
    lamp posts and parked vehicles."""
    tx = HELD_OUT_TEXTURES
    b = _Builder(rng)
    half_w, half_l = rng.uniform(4.0, 7.0), rng.uniform(12.0, 20.0)
    ground = _material(b, tx, 0.6, scale=(0.4, 1.5), photo_scale=(1.5, 4.0), val=(0.2, 0.6), specular_p=0.0)
    trim = _material(b, tx, 0.3, scale=(0.1, 0.4), sat=(0.0, 0.3), val=(0.1, 0.4), specular_p=0.4)
    for sign in (-1.0, 1.0):
        x = -half_l
        while x < half_l:
            width = rng.uniform(3.0, 7.0)
            depth, height = rng.uniform(4.0, 8.0), rng.uniform(4.0, 14.0)
            facade = _material(b, tx, 0.6, scale=(0.3, 1.2), photo_scale=(2.0, 6.0), specular_p=0.0)
            cy = sign * (half_w + depth / 2)
            b.shapes.append(Box((x + width / 2, cy, height / 2), (width / 2 - 0.05, depth / 2, height / 2), 0.0, facade))
            front = sign * half_w - sign * 0.05  # windows and a door stand 5 cm proud of the facade
            for z in np.arange(2.8, height - 1.0, rng.uniform(2.6, 3.4)):
                for wx in np.arange(x + 0.9, x + width - 0.6, rng.uniform(1.4, 2.2)):
                    b.shapes.append(Box((float(wx), front, float(z)), (0.35, 0.05, 0.6), 0.0, trim))
            b.shapes.append(Box((x + width / 2, front, 1.1), (0.5, 0.05, 1.1), 0.0, trim))
            x += width
    post = _material(b, tx, 0.0, scale=(0.1, 0.3), sat=(0.0, 0.2), val=(0.1, 0.3), specular_p=0.6)
    glow = b.material(("solid",), scale=(0.1, 0.2), sat=(0.0, 0.2), val=(0.9, 1.0), specular_p=0.0)
    for x in np.arange(-half_l + 3.0, half_l - 2.0, rng.uniform(6.0, 10.0)):
        y = (half_w - 0.6) * (1 if rng.random() < 0.5 else -1)
        b.shapes.append(Cylinder((float(x), y), 0.07, 0.0, 4.0, post))
        b.shapes.append(Sphere((float(x), y, 4.15), 0.2, glow))
        b.footprints.append((float(x), y, 0.3))
    for _ in range(int(rng.integers(1, 5))):  # vehicles along the kerbs
        spot = (float(rng.uniform(-half_l + 2.5, half_l - 2.5)), (half_w - 1.6) * (1 if rng.random() < 0.5 else -1))
        if all(math.hypot(spot[0] - fx, spot[1] - fy) > fr + 2.5 for fx, fy, fr in b.footprints):
            b.footprints.append((*spot, 2.0))
            body = _material(b, tx, 0.2, scale=(0.5, 1.0), specular_p=0.9)
            b.shapes.append(Box((spot[0], spot[1], 0.55), (2.0, 0.85, 0.35), 0.0, body))
            b.shapes.append(Box((spot[0] - 0.2, spot[1], 1.1), (1.1, 0.75, 0.25), 0.0, trim))
    lights, ambient, sky = _sun_and_sky(rng)
    return ProceduralScene(
        kind="street", seed=seed, enclosure=Ground(GROUND_EXTENT, ground), shapes=tuple(b.shapes),
        materials=tuple(b.materials), ambient=ambient, lights=lights, sky=sky,
        walk_lo=(-half_l + 1.0, -half_w + 0.8, 1.0), walk_hi=(half_l - 1.0, half_w - 0.8, 2.5),
    )


BUILDERS = {"room": _room, "courtyard": _courtyard, "hall": _hall, "street": _street}

