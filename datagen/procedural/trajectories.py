"""Camera paths through a procedural scene: orbit, forward walk, random look-around.

Every path is drawn from a seeded generator with a baseline (how far the cameras spread)
from centimetres to metres, so the dataset covers both small and large view changes. Every
camera centre is checked with ``ProceduralScene.camera_ok``: inside the walkable volume
(the room, the courtyard) and at least ``CLEARANCE`` metres from every object.
"""

from __future__ import annotations

import math

import numpy as np

from datagen.procedural.scenes import KINDS, ProceduralScene
from models.cameras import K_from_hfov, look_at
from models.scene import Camera

TRAJECTORIES = ("orbit", "walk", "look_around")
CLEARANCE = 0.3  # metres between a camera centre and any surface
_TRIES = 60
_LOOK_AHEAD = 1.5  # metres of free space a walking camera keeps in front of it


class TrajectoryError(RuntimeError):
    """No valid camera path could be found in a scene."""


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _direction(yaw: float, pitch: float) -> np.ndarray:
    return np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])


def _spread(eyes: np.ndarray) -> float:
    """Largest distance (metres) between two camera centres (n, 3): the path's baseline."""
    return float(np.linalg.norm(eyes[:, None] - eyes[None], axis=-1).max())


def _free_point(scene: ProceduralScene, rng: np.random.Generator) -> np.ndarray:
    lo, hi = np.asarray(scene.walk_lo), np.asarray(scene.walk_hi)
    for _ in range(500):
        p = rng.uniform(lo, hi)
        if scene.camera_ok(p, CLEARANCE)[0]:
            return p
    raise TrajectoryError(f"scene seed {scene.seed} ({scene.kind}) has no free camera position; try another seed")


def _orbit(scene: ProceduralScene, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], float] | None:
    """Cameras on a horizontal arc, all looking at one target point."""
    lo, hi = np.asarray(scene.walk_lo), np.asarray(scene.walk_hi)
    for _ in range(_TRIES):
        target = rng.uniform(lo, hi)
        target[2] = rng.uniform(0.4, 1.2)
        radius = rng.uniform(0.8, 0.5 * float(min(hi[0] - lo[0], hi[1] - lo[1])) + 0.8)
        span = _log_uniform(rng, 15.0, 360.0)
        start, height = rng.uniform(0, 2 * math.pi), rng.uniform(lo[2], hi[2])
        angles = start + np.radians(np.linspace(0.0, span, n, endpoint=span < 359.0))
        eyes = np.stack([target[0] + radius * np.cos(angles), target[1] + radius * np.sin(angles), np.full(n, height)], 1)
        if scene.camera_ok(eyes, CLEARANCE).all():
            return [look_at(e, target) for e in eyes], _spread(eyes)
    return None


def _walk(scene: ProceduralScene, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], float] | None:
    """Cameras moving forward along a gently curving path, looking roughly where they go."""
    for _ in range(_TRIES):
        start = _free_point(scene, rng)
        length = _log_uniform(rng, 0.2, 6.0)
        yaw0, turn = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(-60, 60))
        pitch = math.radians(rng.uniform(-15, 5))
        s = np.linspace(0.0, 1.0, n)
        yaws = yaw0 + turn * s
        step = length / max(n - 1, 1)
        heading = np.stack([np.cos(yaws), np.sin(yaws), np.zeros(n)], 1)
        eyes = start + np.concatenate([np.zeros((1, 3)), np.cumsum(heading[:-1] * step, axis=0)])
        ahead = eyes + heading * _LOOK_AHEAD  # room to see where it goes, not a wall at arm's length
        if not (scene.camera_ok(eyes, CLEARANCE).all() and scene.camera_ok(ahead, 0.0).all()):
            continue
        jitter = np.radians(rng.normal(0, 3, size=(n, 2)))
        poses = [look_at(e, e + _direction(y + jy, pitch + jp)) for e, y, (jy, jp) in zip(eyes, yaws, jitter)]
        return poses, _spread(eyes)
    return None


def _look_around(scene: ProceduralScene, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], float]:
    """Cameras scattered within a ball of random radius, each looking in a random direction."""
    centre = _free_point(scene, rng)
    radius = _log_uniform(rng, 0.03, 1.5)
    eyes: list[np.ndarray] = []
    while len(eyes) < n:
        for _ in range(_TRIES):
            offset = rng.normal(size=3)
            offset *= radius * rng.random() ** (1 / 3) / max(np.linalg.norm(offset), 1e-9)
            eye = centre + offset * np.array([1.0, 1.0, 0.5])
            if scene.camera_ok(eye, CLEARANCE)[0]:
                break
        else:
            eye = centre  # the centre is free by construction
        eyes.append(eye)
    poses = [look_at(e, e + _direction(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(-30, 15)))) for e in eyes]
    return poses, _spread(np.array(eyes))


def plan_cameras(
    scene: ProceduralScene, n: int, width: int, height: int, trajectory: str | None = None
) -> tuple[list[Camera], dict]:
    """``n`` valid cameras through ``scene`` and a description of the path.

    Deterministic in ``(scene.seed, scene.kind, n)``. ``trajectory`` forces one of
    ``TRAJECTORIES``; by default one is drawn. A path that cannot fit (e.g. a wide orbit in a
    cluttered room) falls back to a look-around. The description holds ``trajectory``,
    ``baseline_m`` (largest distance between two cameras of the path) and ``hfov_deg``.
    """
    if n < 1:
        raise ValueError(f"need at least one camera; got n={n}")
    if trajectory is not None and trajectory not in TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {TRAJECTORIES}; got {trajectory!r}")
    rng = np.random.default_rng([scene.seed, KINDS.index(scene.kind), n, 0x7A])
    hfov = float(rng.uniform(55.0, 85.0))
    chosen = trajectory or str(rng.choice(TRAJECTORIES))
    planned = None
    if chosen == "orbit":
        planned = _orbit(scene, rng, n)
    elif chosen == "walk":
        planned = _walk(scene, rng, n)
    if planned is None:
        chosen = "look_around"
        planned = _look_around(scene, rng, n)
    poses, baseline = planned
    K = K_from_hfov(hfov, width, height)
    cameras = [Camera(K=K, c2w=c2w, width=width, height=height) for c2w in poses]
    return cameras, {"trajectory": chosen, "baseline_m": round(baseline, 4), "hfov_deg": round(hfov, 3)}
