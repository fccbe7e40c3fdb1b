"""Camera plans: where to put the Unreal camera for each view, seeded and reproducible.

Plans are written in Unreal's own units because that is where users read positions from
(the editor's Details panel): points in centimetres, Unreal axes (X forward, Y right, Z up).
They are converted once, through :mod:`models.cameras`, and every planned view is a c2w in
our convention (OpenCV camera axes, metres, Z-up right-handed world).

Three shapes cover what training needs:

* ``orbit``: rings around a point of interest, every view looking at it -- wide baselines
  over the same content;
* ``waypoints``: a smooth (Catmull-Rom) walk through points, looking ahead or at a target
  -- the trajectories a player flies;
* ``random``: positions uniform in a box, random yaw and bounded pitch -- coverage.

Any plan can add ``neighbours`` per view: small random offsets of position and angle, so
the dataset holds small baselines next to the wide ones. A plan is a finite list of
*candidates*: the views asked for, then spares (between the orbit's or path's views, or
more random draws). Views whose captured depth shows them too close to geometry are
rejected at capture time and the next spare takes their place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.cameras import c2w_to_ue, look_at, ue_to_c2w

PLAN_KINDS = ("orbit", "waypoints", "random")


class PlanError(ValueError):
    """A plan that cannot be built; the message names the field."""


@dataclass(frozen=True)
class PlannedView:
    """One candidate pose. ``index`` is stable across runs (it names the view on disk)."""

    index: int
    c2w: np.ndarray  # (4, 4) our convention, metres
    group: int  # index of the base pose; neighbours share their base's group

    @property
    def name(self) -> str:
        return f"view_{self.index:05d}"


@dataclass(frozen=True)
class Plan:
    """Parameters of a plan (see the module docstring); lengths in cm, angles in degrees."""

    kind: str = "orbit"
    views: int = 24  # accepted views wanted (neighbours included)
    seed: int = 0
    # orbit
    center: tuple[float, float, float] = (0.0, 0.0, 100.0)
    radius: float = 500.0
    heights: tuple[float, ...] = (0.0,)  # ring heights above ``center``
    # waypoints
    points: tuple[tuple[float, float, float], ...] = ()
    target: tuple[float, float, float] | None = None  # None: look along the path
    # random
    bounds_min: tuple[float, float, float] = (-500.0, -500.0, 50.0)
    bounds_max: tuple[float, float, float] = (500.0, 500.0, 300.0)
    pitch_range: tuple[float, float] = (-30.0, 20.0)
    spare: float = 1.5  # candidates = views * spare; the extra ones replace rejected views
    # small baselines around every base view
    neighbours: int = 0
    neighbour_offset: float = 10.0
    neighbour_angle: float = 3.0

    def __post_init__(self) -> None:
        if self.kind not in PLAN_KINDS:
            raise PlanError(f"plan kind must be one of {PLAN_KINDS}; got {self.kind!r}")
        if self.views < 1:
            raise PlanError(f"plan views must be >= 1; got {self.views}")
        if self.spare < 1.0:
            raise PlanError(f"plan spare must be >= 1 (candidates per wanted view); got {self.spare}")
        if self.neighbours < 0:
            raise PlanError(f"plan neighbours must be >= 0; got {self.neighbours}")
        if self.kind == "orbit" and self.radius <= 0:
            raise PlanError(f"orbit radius must be > 0 cm; got {self.radius}")
        if self.kind == "waypoints" and len(self.points) < 2:
            raise PlanError(f"a waypoints plan needs at least 2 points; got {len(self.points)}")
        if self.kind == "random":
            lo, hi = np.asarray(self.bounds_min, float), np.asarray(self.bounds_max, float)
            if lo.shape != (3,) or hi.shape != (3,) or np.any(hi < lo):
                raise PlanError(f"random bounds must be 3 values with max >= min; got {lo} .. {hi}")
            if not -89.0 <= self.pitch_range[0] <= self.pitch_range[1] <= 89.0:
                raise PlanError(f"pitch_range must lie in [-89, 89] degrees, low <= high; got {self.pitch_range}")


def _ue_point(p_cm) -> np.ndarray:
    """An Unreal point (cm) in our world (metres), through the one conversion we have."""
    return ue_to_c2w(np.asarray(p_cm, dtype=np.float64), np.zeros(3))[:3, 3]


def _look_from(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    # Straight up/down has no defined yaw; nudge the target so look_at keeps the horizon level.
    d = target - eye
    if np.linalg.norm(d[:2]) < 1e-6 * max(1.0, np.linalg.norm(d)):
        target = target + np.array([1e-3, 0.0, 0.0])
    return look_at(eye, target)


def _phase(k: int) -> float:
    """k-th van der Corput number in base 2 (0, 1/2, 1/4, 3/4, ...): offsets of spare passes."""
    x, denom = 0.0, 1.0
    while k:
        denom *= 2.0
        x += (k & 1) / denom
        k >>= 1
    return x


def _orbit(plan: Plan, groups: int, count: int) -> list[np.ndarray]:
    """``count`` poses; the first ``groups`` spread evenly, spares fall between them."""
    center = _ue_point(plan.center)
    radius = plan.radius / 100.0
    rings = [h / 100.0 for h in plan.heights] or [0.0]
    per_ring = math.ceil(groups / len(rings))
    poses = []
    for k in range(count):
        slot, phase = k % groups, _phase(k // groups)
        ring = slot % len(rings)
        stagger = 0.5 * ring / len(rings)  # rings do not line up vertically
        angle = 2.0 * math.pi * (slot // len(rings) + phase + stagger) / per_ring
        eye = center + np.array([radius * math.cos(angle), radius * math.sin(angle), rings[ring]])
        poses.append(_look_from(eye, center))
    return poses


def _catmull_rom(points: np.ndarray, samples_per_segment: int = 64) -> np.ndarray:
    """Dense points (M, 3) on the uniform Catmull-Rom curve through ``points`` (N, 3)."""
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        out.append(
            0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    out.append(points[-1][None])
    return np.vstack(out)


def _waypoints(plan: Plan, groups: int, count: int) -> list[np.ndarray]:
    """``count`` poses along the path; the first ``groups`` evenly spaced, spares between them."""
    pts = np.stack([_ue_point(p) for p in plan.points])
    curve = _catmull_rom(pts)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    if arc[-1] <= 0:
        raise PlanError("waypoints plan: all points coincide; the path has zero length")
    step = arc[-1] / max(groups - 1, 1)
    target = None if plan.target is None else _ue_point(plan.target)
    poses = []
    for k in range(count):
        s = min((k % groups + _phase(k // groups)) * step, arc[-1])
        j = int(np.clip(np.searchsorted(arc, s, side="right") - 1, 0, len(curve) - 2))
        w = (s - arc[j]) / max(arc[j + 1] - arc[j], 1e-12)
        eye = curve[j] + w * (curve[j + 1] - curve[j])
        if target is not None:
            poses.append(_look_from(eye, target))
        else:
            ahead = curve[j + 1] - curve[j]
            poses.append(_look_from(eye, eye + ahead / max(np.linalg.norm(ahead), 1e-12)))
    return poses


def _random(plan: Plan, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    lo, hi = np.asarray(plan.bounds_min, float), np.asarray(plan.bounds_max, float)
    poses = []
    for _ in range(count):
        location = rng.uniform(lo, hi)
        yaw = rng.uniform(-180.0, 180.0)
        pitch = rng.uniform(*plan.pitch_range)
        poses.append(ue_to_c2w(location, np.array([pitch, yaw, 0.0])))
    return poses


def _neighbour(base: np.ndarray, plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """A small-baseline companion: shifted by up to ``neighbour_offset`` cm, turned a little."""
    location, (pitch, yaw, _) = c2w_to_ue(base)
    offset = rng.normal(size=3)
    offset *= rng.uniform(0.3, 1.0) * plan.neighbour_offset / max(np.linalg.norm(offset), 1e-12)
    pitch = float(np.clip(pitch + rng.uniform(-1, 1) * plan.neighbour_angle, -89.0, 89.0))
    yaw = yaw + rng.uniform(-1, 1) * plan.neighbour_angle
    return ue_to_c2w(location + offset, np.array([pitch, yaw, 0.0]))


def plan_views(plan: Plan) -> list[PlannedView]:
    """All candidate views of ``plan``, in capture order; the same list for the same plan.

    The first ``views`` candidates are the plan proper; ``spare - 1`` times as many follow,
    used only to replace rejected views.
    """
    rng = np.random.default_rng(plan.seed)
    per_group = plan.neighbours + 1
    groups = math.ceil(plan.views / per_group)
    count = math.ceil(groups * plan.spare)
    if plan.kind == "random":
        bases = _random(plan, count, rng)
    elif plan.kind == "orbit":
        bases = _orbit(plan, groups, count)
    else:
        bases = _waypoints(plan, groups, count)
    views: list[PlannedView] = []
    for g, base in enumerate(bases):
        views.append(PlannedView(len(views), base, g))
        for _ in range(plan.neighbours):
            views.append(PlannedView(len(views), _neighbour(base, plan, rng), g))
    return views
