"""Procedural surface patterns evaluated at texture coordinates (metres along the surface).

Each pattern maps ``uv`` (n, 2) float32 to a blend weight ``w`` (n,) in [0, 1] between a
material's two colours; a little value noise on every pattern keeps large flat surfaces from
looking synthetic and gives the image features that matching and depth cues rely on.
Multi-scale patterns (``MULTISCALE_PATTERNS``) carry structure over six octaves, and
photographic textures (``PHOTOS``: images an installed package ships, licences recorded)
are tiled and mip-mapped (``photo_albedo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

PATTERNS = ("solid", "checker", "stripes", "bricks", "noise", "tiles")


_LATTICE = np.random.default_rng(0x5EED).random(256 * 256).astype(np.float32)  # fixed: part of the look


def _hash2(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Pseudo-random value in [0, 1) per integer lattice point (n,), from a 256 x 256 table.

    A table look-up is several times cheaper than integer hashing; the pattern repeats every
    256 cells, far beyond what one view shows. ``salt`` shifts the table per material.
    """
    return _LATTICE.take(((ix + salt) & 255) * 256 + ((iy + (salt >> 8)) & 255))


def value_noise(uv: np.ndarray, scale: float, salt: int, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1], (n,), with features about ``scale`` metres wide."""
    total = np.zeros(len(uv), np.float32)
    amp, norm = 1.0, 0.0
    q = uv / np.float32(scale)
    for octave in range(octaves):
        i = np.floor(q)
        f = q - i
        s = f * f * (3 - 2 * f)  # smoothstep keeps the lattice invisible
        salt_o = salt + 101 * octave
        # Table rows of x and x + 1, columns of y and y + 1: the corners share them.
        row0 = ((i[:, 0].astype(np.intp) + salt_o) & 255) * 256
        row1 = (row0 + 256) & 0xFFFF
        col0 = (i[:, 1].astype(np.intp) + (salt_o >> 8)) & 255
        col1 = (col0 + 1) & 255
        a, b = _LATTICE.take(row0 + col0), _LATTICE.take(row1 + col0)
        c, d = _LATTICE.take(row0 + col1), _LATTICE.take(row1 + col1)
        top = a + (b - a) * s[:, 0]
        bottom = c + (d - c) * s[:, 0]
        total += np.float32(amp) * (top + (bottom - top) * s[:, 1])
        norm += amp
        amp *= 0.5
        q = q * np.float32(2.03)
    return total / np.float32(norm)


def _mortar(coord: np.ndarray, width: float) -> np.ndarray:
    """1 on a thin line at every integer of ``coord`` (lines ``width`` cells wide), else 0."""
    f = coord - np.floor(coord)
    return ((f < width / 2) | (f > 1 - width / 2)).astype(np.float32)


def pattern_weight(pattern: str, uv: np.ndarray, scale: float, salt: int) -> np.ndarray:
    """Blend weight (n,) in [0, 1] of ``pattern`` with cells ``scale`` metres wide."""
    q = uv / np.float32(scale)
    grain = value_noise(uv, scale * 0.35, salt, octaves=2)
    if pattern == "solid":
        return 0.25 * grain
    if pattern == "checker":
        parity = (np.floor(q[:, 0]) + np.floor(q[:, 1])) % 2
        return 0.8 * parity + 0.2 * grain
    if pattern == "stripes":
        return 0.75 * (np.floor(q[:, 0] * 2) % 2) + 0.25 * grain
    if pattern == "bricks":
        row = np.floor(q[:, 1] * 2)  # bricks are twice as wide as tall
        course_u = q[:, 0] + 0.5 * (row % 2)
        mortar = np.maximum(_mortar(course_u, 0.06), _mortar(q[:, 1] * 2, 0.12))
        per_brick = _hash2(np.floor(course_u).astype(np.intp), row.astype(np.intp), salt)
        return np.maximum(mortar, 0.3 * per_brick + 0.15 * grain)
    if pattern == "noise":
        return value_noise(uv, scale, salt + 7, octaves=4)
    if pattern == "tiles":
        grout = np.maximum(_mortar(q[:, 0], 0.05), _mortar(q[:, 1], 0.05))
        per_tile = _hash2(np.floor(q[:, 0]).astype(np.intp), np.floor(q[:, 1]).astype(np.intp), salt)
        return np.maximum(grout, 0.35 * per_tile + 0.1 * grain)
    if pattern in MULTISCALE_PATTERNS:
        return multiscale_weight(pattern, uv, scale, salt)
    raise ValueError(f"unknown texture pattern {pattern!r}; choose one of {PATTERNS + MULTISCALE_PATTERNS}")


# ----------------------------------------------------------------------------- multi-scale patterns
# Newer patterns for the richer scene families; the legacy families above never draw them, so
# their images do not change. "marble" and "cells" are held out of every training family
# (scenes.HELD_OUT_PATTERNS): the out-of-family evaluation sees materials no stage trained on.

MULTISCALE_PATTERNS = ("plaster", "wood", "marble", "cells")


def _fbm(uv: np.ndarray, scale: float, salt: int, octaves: int) -> np.ndarray:
    """Fractal noise in [0, 1] spanning ``octaves`` octaves down from ``scale`` metres."""
    return value_noise(uv, scale, salt, octaves=octaves)


def _cells(q: np.ndarray, salt: int) -> np.ndarray:
    """Worley noise: distance (n,) from each point of the unit-cell grid ``q`` (n, 2) to the
    nearest of one jittered feature point per cell (3 x 3 neighbourhood), about 0..1."""
    base = np.floor(q)
    best = np.full(len(q), np.inf, np.float32)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            cx = (base[:, 0] + dx).astype(np.intp)
            cy = (base[:, 1] + dy).astype(np.intp)
            px = cx + _hash2(cx, cy, salt)
            py = cy + _hash2(cx, cy, salt + 77)
            d = (q[:, 0] - px) ** 2 + (q[:, 1] - py) ** 2
            best = np.minimum(best, d)
    return np.sqrt(best)


def multiscale_weight(pattern: str, uv: np.ndarray, scale: float, salt: int) -> np.ndarray:
    """Blend weight (n,) in [0, 1] of a multi-scale pattern: structure at ``scale`` metres,
    detail down to a fiftieth of it (six octaves), so surfaces keep texture both near and far."""
    q = uv / np.float32(scale)
    detail = _fbm(uv, scale * 0.25, salt + 3, octaves=5)
    if pattern == "plaster":  # blotches at the scale, trowel marks and grain below
        return 0.55 * _fbm(uv, scale, salt, octaves=6) + 0.45 * detail**2
    if pattern == "wood":  # rings around a wandering axis, fibres along the grain
        rings = q[:, 1] * 6.0 + 3.0 * _fbm(uv * np.float32([0.15, 1.0]), scale, salt, octaves=3)
        fibres = _fbm(uv * np.float32([0.05, 1.0]), scale * 0.1, salt + 9, octaves=3)
        return 0.6 * (rings - np.floor(rings)) ** 2 + 0.4 * fibres
    if pattern == "marble":  # veins: a sine of turbulent phase
        phase = q[:, 0] * 3.0 + q[:, 1] + 6.0 * _fbm(uv, scale, salt, octaves=6)
        return np.clip(0.8 * np.abs(np.sin(phase)) ** 0.3 + 0.2 * detail - 0.1, 0, 1)
    if pattern == "cells":  # stones / scales: dark borders between jittered cells
        d = _cells(q * 2.0, salt)
        return np.clip(1.0 - d * 1.6, 0, 1) * 0.7 + 0.3 * detail
    raise ValueError(f"unknown multi-scale pattern {pattern!r}; choose one of {MULTISCALE_PATTERNS}")


# ----------------------------------------------------------------------------- photographic textures


@dataclass(frozen=True)
class PhotoSource:
    """A photograph shipped inside an installed package, used as a tiling texture."""

    package: str  # the distribution that ships the file (a dependency of this project)
    module: str  # its import name, where the file lives
    path: str  # the file inside the module's folder
    licence: str


# scikit-image ships these in its wheel (skimage/data); licences as its skimage.data docstrings state.
PHOTOS: dict[str, PhotoSource] = {
    name: PhotoSource("scikit-image", "skimage", f"data/{file}", licence)
    for name, file, licence in (
        ("brick", "brick.png", "CC0 (CC0Textures Bricks25)"),
        ("grass", "grass.png", "CC0 (linolafett, DeviantArt)"),
        ("gravel", "gravel.png", "CC0 (CC0Textures Gravel04)"),
        ("camera", "camera.png", "CC0 (Lav Varshney)"),
        ("chelsea", "chelsea.png", "CC0 (Stefan van der Walt)"),
        ("coffee", "coffee.png", "CC0 (Rachel Michetti)"),
        ("astronaut", "astronaut.png", "public domain (NASA)"),
        ("coins", "coins.png", "no known copyright restrictions (Brooklyn Museum)"),
        ("cell", "cell.png", "CC0"),
        ("text", "text.png", "public domain"),
        ("rocket", "rocket.jpg", "public domain (SpaceX)"),
        ("hubble", "hubble_deep_field.jpg", "public domain (NASA)"),
        ("ihc", "ihc.png", "no known copyright restrictions"),
        ("retina", "retina.jpg", "CC0 (Wikimedia Commons)"),
        ("clock", "clock_motion.png", "public domain (Stefan van der Walt)"),
    )
}
TRAIN_PHOTOS = ("brick", "grass", "camera", "chelsea", "coffee", "astronaut", "coins", "cell", "text")
HELD_OUT_PHOTOS = ("gravel", "rocket", "hubble", "ihc", "retina", "clock")  # never in a training family
_MAX_SIDE = 512  # texels; larger photos are downsampled once at load


def photo_file(name: str) -> Path:
    """The file of photo ``name`` inside its installed package (raises a clear error if absent)."""
    import importlib.util

    source = PHOTOS[name]
    spec = importlib.util.find_spec(source.module)  # its folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"photographic texture {name!r} comes from the {source.package!r} package, which is "
                           f"not installed; pip install {source.package}")
    path = Path(next(iter(spec.submodule_search_locations))) / source.path
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the installed {source.package}; reinstall it")
    return path


@lru_cache(maxsize=None)
def photo_pyramid(name: str) -> tuple[np.ndarray, ...]:
    """Mip levels of photo ``name``: linear-RGB float32 (h, w, 3) arrays, each half the last,
    down to 4 texels, normalised to mean 1 (the material's tint sets the brightness)."""
    from PIL import Image

    with Image.open(photo_file(name)) as img:
        img = img.convert("RGB")
        if max(img.size) > _MAX_SIDE:
            img = img.resize((min(_MAX_SIDE, img.size[0]), min(_MAX_SIDE, img.size[1])), Image.Resampling.BOX)
        rgb = (np.asarray(img, np.float32) / 255.0) ** 2.2
    rgb *= 1.0 / max(float(rgb.mean()), 1e-3)
    levels = [np.ascontiguousarray(rgb)]
    while min(levels[-1].shape[:2]) >= 8:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w]
        levels.append(np.ascontiguousarray(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])))
    return tuple(levels)


def _bilinear_mirror(level: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, 3) of ``level`` at texel coordinates (s, t), mirrored-repeat tiling
    (no seams where tiles meet)."""
    h, w = level.shape[:2]

    def wrap(i: np.ndarray, n: int) -> np.ndarray:
        i = np.mod(i, 2 * n)
        return np.where(i < n, i, 2 * n - 1 - i)

    s0, t0 = np.floor(s - 0.5), np.floor(t - 0.5)
    fs, ft = (s - 0.5 - s0)[:, None], (t - 0.5 - t0)[:, None]
    s0, t0 = s0.astype(np.intp), t0.astype(np.intp)
    x0, x1, y0, y1 = wrap(s0, w), wrap(s0 + 1, w), wrap(t0, h), wrap(t0 + 1, h)
    flat = level.reshape(-1, 3)
    top = flat[y0 * w + x0] * (1 - fs) + flat[y0 * w + x1] * fs
    bottom = flat[y1 * w + x0] * (1 - fs) + flat[y1 * w + x1] * fs
    return top * (1 - ft) + bottom * ft


def photo_albedo(name: str, uv: np.ndarray, scale: float, footprint: np.ndarray) -> np.ndarray:
    """Linear RGB (n, 3) of photo ``name`` tiled every ``scale`` metres (its longer side), with
    trilinear mip-mapping: ``footprint`` (n,) is each pixel's size on the surface in metres, so
    a far or grazing surface shows the photo filtered, not aliased (one ray per pixel; with
    supersampling, each ray's share of the pixel)."""
    levels = photo_pyramid(name)
    h, w = levels[0].shape[:2]
    texel = scale / max(h, w)  # metres per texel of level 0
    lod = np.clip(np.log2(np.maximum(footprint / texel, 1e-6)), 0, len(levels) - 1)
    lo = np.floor(lod).astype(np.intp)
    out = np.empty((len(uv), 3), np.float32)
    for k in np.unique(lo):
        sel = np.flatnonzero(lo == k)
        f = (lod[sel] - k)[:, None]
        samples = []
        for j in (k, min(k + 1, len(levels) - 1)):
            lh, lw = levels[j].shape[:2]
            samples.append(_bilinear_mirror(levels[j], uv[sel, 0] / texel * lw / w, uv[sel, 1] / texel * lh / h))
        out[sel] = samples[0] * (1 - f) + samples[1] * f
    return out
