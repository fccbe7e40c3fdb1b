"""Camera plans: reproducible, where they should be, looking where they should look."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datagen.unrealcv.planning import Plan, PlanError, plan_views
from models.cameras import c2w_to_ue, validate_c2w


def _ue_forward(c2w):
    """Unit view direction in Unreal's world, from the pose converted back to Unreal."""
    _, (pitch, yaw, _) = c2w_to_ue(c2w)
    p, y = math.radians(pitch), math.radians(yaw)
    return np.array([math.cos(p) * math.cos(y), math.cos(p) * math.sin(y), math.sin(p)])


def test_orbit_views_sit_on_the_rings_and_look_at_the_centre_in_unreal_units():
    centre = np.array([120.0, -340.0, 80.0])
    plan = Plan(kind="orbit", views=12, center=tuple(centre), radius=250.0, heights=(0.0, 60.0))
    views = plan_views(plan)
    for view in views:
        validate_c2w(view.c2w)
        loc, (_, _, roll) = c2w_to_ue(view.c2w)
        assert abs(roll) < 1e-6
        assert np.hypot(*(loc - centre)[:2]) == pytest.approx(250.0, abs=1e-6)
        assert loc[2] - centre[2] in (pytest.approx(0.0, abs=1e-6), pytest.approx(60.0, abs=1e-6))
        to_centre = (centre - loc) / np.linalg.norm(centre - loc)
        assert _ue_forward(view.c2w) @ to_centre == pytest.approx(1.0, abs=1e-9)
    first = np.array([c2w_to_ue(v.c2w)[0] for v in views[:12]])
    assert len({tuple(np.round(p, 3)) for p in first}) == 12  # no two planned views coincide


def test_plans_are_reproducible_and_seeded():
    plan = Plan(kind="random", views=10, seed=3, neighbours=1)
    a, b = plan_views(plan), plan_views(plan)
    assert [v.name for v in a] == [v.name for v in b]
    assert all(np.array_equal(x.c2w, y.c2w) for x, y in zip(a, b))
    c = plan_views(Plan(kind="random", views=10, seed=4, neighbours=1))
    assert not np.allclose(a[0].c2w, c[0].c2w)


def test_random_views_stay_in_bounds_with_bounded_pitch():
    plan = Plan(kind="random", views=40, bounds_min=(-100, 0, 50), bounds_max=(300, 200, 150), pitch_range=(-20, 10))
    for view in plan_views(plan):
        loc, (pitch, _, roll) = c2w_to_ue(view.c2w)
        assert np.all(loc >= np.array([-100, 0, 50]) - 1e-6) and np.all(loc <= np.array([300, 200, 150]) + 1e-6)
        assert -20 - 1e-6 <= pitch <= 10 + 1e-6 and abs(roll) < 1e-6


def test_waypoints_run_from_first_to_last_point_looking_ahead():
    points = ((0.0, 0.0, 100.0), (400.0, 0.0, 100.0), (400.0, 400.0, 100.0))
    views = plan_views(Plan(kind="waypoints", views=9, points=points, spare=1.0))
    locs = np.array([c2w_to_ue(v.c2w)[0] for v in views])
    np.testing.assert_allclose(locs[0], points[0], atol=1e-6)
    np.testing.assert_allclose(locs[-1], points[-1], atol=1e-6)
    np.testing.assert_allclose(_ue_forward(views[0].c2w), [1, 0, 0], atol=0.05)  # starts along +X
    np.testing.assert_allclose(_ue_forward(views[-1].c2w), [0, 1, 0], atol=0.05)  # ends along +Y
    steps = np.linalg.norm(np.diff(locs, axis=0), axis=1)
    assert steps.max() / steps.min() < 1.3  # roughly even spacing along the curve


def test_waypoints_with_a_target_look_at_it():
    target = np.array([200.0, 200.0, 0.0])
    views = plan_views(Plan(kind="waypoints", views=5, points=((0, 0, 200), (400, 0, 200)), target=tuple(target)))
    for view in views:
        loc = c2w_to_ue(view.c2w)[0]
        assert _ue_forward(view.c2w) @ ((target - loc) / np.linalg.norm(target - loc)) == pytest.approx(1.0, abs=1e-9)


def test_neighbours_give_small_baselines_around_each_view():
    plan = Plan(kind="orbit", views=12, radius=500.0, neighbours=2, neighbour_offset=15.0, neighbour_angle=4.0)
    views = plan_views(plan)
    assert len(views) == math.ceil(12 / 3 * plan.spare) * 3
    for base_index in range(0, len(views), 3):
        base = views[base_index]
        for n in views[base_index + 1 : base_index + 3]:
            assert n.group == base.group
            offset_cm = np.linalg.norm(n.c2w[:3, 3] - base.c2w[:3, 3]) * 100
            assert 0 < offset_cm <= 15.0 + 1e-6
            angle = math.degrees(math.acos(np.clip(n.c2w[:3, 2] @ base.c2w[:3, 2], -1, 1)))
            assert angle <= 4.0 * math.sqrt(2) + 1e-6


def test_spare_views_fall_between_the_planned_ones():
    plan = Plan(kind="orbit", views=8, spare=2.0, radius=100.0)
    views = plan_views(plan)
    assert len(views) == 16
    yaws = [c2w_to_ue(v.c2w)[1][1] for v in views]
    planned, spare = np.sort(np.mod(yaws[:8], 360)), np.sort(np.mod(yaws[8:], 360))
    np.testing.assert_allclose(np.diff(planned), 45.0, atol=1e-6)
    np.testing.assert_allclose(np.mod(spare - planned, 360), 22.5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "spiral"}, "plan kind"), ({"views": 0}, "views"), ({"radius": 0}, "radius"),
     ({"kind": "waypoints", "points": ((0, 0, 0),)}, "at least 2 points"),
     ({"kind": "random", "bounds_min": (0, 0, 10), "bounds_max": (1, 1, 0)}, "bounds"),
     ({"kind": "random", "pitch_range": (-95, 0)}, "pitch_range"), ({"spare": 0.5}, "spare"),
     ({"neighbours": -1}, "neighbours")],
)
def test_bad_plans_say_what_is_wrong(kwargs, message):
    with pytest.raises(PlanError, match=message):
        Plan(**kwargs)
