"""Procedural surface patterns evaluated at texture coordinates (metres along the surface).

Each pattern maps ``uv`` (n, 2) float32 to a blend weight ``w`` (n,) in [0, 1] between a
material's two colours; a little value noise on every pattern keeps large flat surfaces from
looking synthetic and gives the image features that matching and depth cues rely on.
"""

from __future__ import annotations

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
    raise ValueError(f"unknown texture pattern {pattern!r}; choose one of {PATTERNS}")
