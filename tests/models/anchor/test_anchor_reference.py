"""Reference selection: the candidate that covers the target best wins."""

from __future__ import annotations

import numpy as np
import pytest
from anchor_views import orbit_views

from models.anchor import AnchorInputError, build_scene, reference, select_reference
from models.anchor.reference import GRID, ReferenceIndex, grid_coverage, reference_scores
from models.anchor.splat import compiled_kernels_settled
from models.cameras import CameraError, K_from_hfov, look_at


@pytest.fixture(scope="module")
def scene():
    return build_scene(orbit_views(8, width=64, height=48))


def test_a_candidate_is_chosen_for_its_own_pose(scene):
    for i, frame in enumerate(scene.frames):
        cam = frame.camera
        assert select_reference(scene, cam.K, cam.c2w, cam.width, cam.height) == i


def test_a_nearby_target_picks_the_nearest_similar_view(scene):
    cam = scene.frames[3].camera
    moved = cam.c2w.copy()
    moved[:3, 3] += 0.15 * cam.c2w[:3, 0]  # a small step sideways
    assert select_reference(scene, cam.K, moved, cam.width, cam.height) == 3
    # A target twice the size with the same field of view still picks by content.
    K2 = K_from_hfov(70.0, 128, 96)
    assert select_reference(scene, K2, moved, 128, 96) == 3


def test_scores_fall_for_a_view_that_looks_away(scene):
    cam = scene.frames[0].camera
    scores = reference_scores(scene.references, cam.K, cam.c2w, cam.width, cam.height)
    opposite = scores[4]  # the camera across the ring looks back at this one
    assert scores[0] > 0 and scores[0] == scores.max() and opposite < 0.5 * scores[0]


def test_nothing_visible_falls_back_to_the_nearest_camera(scene):
    cam = scene.frames[5].camera
    eye = cam.c2w[:3, 3] + np.array([0.0, 0.0, 100.0])  # far above the room
    looking_up = look_at(eye, eye + np.array([0.0, 0.0, 1.0]), up=(1.0, 0.0, 0.0))
    scores = reference_scores(scene.references, cam.K, looking_up, cam.width, cam.height)
    assert not scores.any()
    assert select_reference(scene, cam.K, looking_up, cam.width, cam.height) == 5


def test_bad_targets_and_empty_index_are_rejected(scene):
    cam = scene.frames[0].camera
    with pytest.raises(CameraError, match="another resolution"):
        select_reference(scene, K_from_hfov(60, 512, 512), cam.c2w, 64, 48)
    with pytest.raises(CameraError, match="rigid"):
        select_reference(scene, cam.K, np.diag([1.0, 1.0, -1.0, 1.0]), 64, 48)
    empty = ReferenceIndex.from_views([], np.zeros((0, 4, 3), np.float32), np.zeros(0))
    with pytest.raises(AnchorInputError, match="no reference candidates"):
        reference_scores(empty, cam.K, cam.c2w, 64, 48)


def test_scores_match_a_plain_projection_of_every_candidate_point(scene):
    """The per-frame projection (one [3, 3] x [3, N] product) against models.cameras.project, point by
    point: the same grid cells covered, hence the same scores, for targets of several sizes and poses."""
    from models.anchor.reference import GRID
    from models.cameras import project

    rng = np.random.default_rng(3)
    index = scene.references
    for _ in range(6):
        width, height = int(rng.integers(40, 200)), int(rng.integers(40, 200))
        K = K_from_hfov(rng.uniform(50, 90), width, height)
        K[0, 2] += rng.uniform(-0.1, 0.1) * width
        eye = rng.normal(scale=0.5, size=3)
        c2w = look_at(eye, eye + rng.normal(size=3))
        uv, z = project(index.points.reshape(-1, 3), K, c2w)
        coverage = np.zeros(len(index))
        for c in range(len(index)):
            sl = slice(c * index.points.shape[1], (c + 1) * index.points.shape[1])
            cells = {(int(np.floor(u * GRID / width)), int(np.floor(v * GRID / height)))
                     for (u, v), d in zip(uv[sl], z[sl]) if d > 0 and 0 <= u < width and 0 <= v < height}
            coverage[c] = len(cells) / GRID**2
        facing = np.clip(index.axes @ c2w[:3, 2], 0.0, None)
        nearness = 1.0 / (1.0 + np.linalg.norm(index.centres - c2w[:3, 3], axis=1) / np.maximum(index.depths, 1e-6))
        np.testing.assert_allclose(reference_scores(index, K, c2w, width, height), coverage * facing * nearness,
                                   rtol=0, atol=1e-12)


def test_a_repeated_ranking_is_computed_once_and_a_new_one_is_not_stale(scene):
    """The server ranks each frame twice with the same arguments (mesh anchor, reference): the
    second call returns the first's scores. Any other pose, size or scene is computed afresh, and
    the kept scores cannot be changed through the returned array."""
    cam = scene.frames[2].camera
    first = reference_scores(scene.references, cam.K, cam.c2w, cam.width, cam.height)
    assert reference_scores(scene.references, cam.K.copy(), cam.c2w.copy(), cam.width, cam.height) is first
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 0.0
    moved = cam.c2w.copy()
    moved[:3, 3] += 0.3 * cam.c2w[:3, 0]
    other = reference_scores(scene.references, cam.K, moved, cam.width, cam.height)
    assert other is not first and not np.array_equal(other, first)
    assert select_reference(scene, cam.K, cam.c2w, cam.width, cam.height) == 2  # recomputed, not the moved pose's
    again = reference_scores(scene.references, cam.K, cam.c2w, cam.width, cam.height)
    same_views = build_scene(orbit_views(8, width=64, height=48))  # another scene that happens to be equal
    theirs = reference_scores(same_views.references, cam.K, cam.c2w, cam.width, cam.height)
    assert theirs is not again and np.array_equal(theirs, first)
    wider = reference_scores(scene.references, cam.K, cam.c2w, cam.width + 32, cam.height)
    assert wider is not theirs and not np.array_equal(wider, first)


def candidates(points: np.ndarray) -> ReferenceIndex:
    """An index of candidates whose sample points [C, S, 3] are ``points``, all at the origin facing +z."""
    count = points.shape[0]
    return ReferenceIndex(points=points.astype(np.float32), centres=np.zeros((count, 3)),
                          axes=np.tile([0.0, 0.0, 1.0], (count, 1)), depths=np.ones(count))


def random_targets(rng: np.random.Generator, count: int):
    """(K, w2c [3, 4], width, height) of random targets around the origin, float64 C-contiguous."""
    for _ in range(count):
        width, height = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        K = K_from_hfov(rng.uniform(20, 120), width, height)
        K[:2, 2] += rng.uniform(-0.3, 0.3, 2) * (width, height)
        K[0, 1] = rng.choice([0.0, rng.uniform(-2, 2)])  # skew too
        eye = rng.normal(scale=1.5, size=3)
        yield K, np.ascontiguousarray(np.linalg.inv(look_at(eye, eye + rng.normal(size=3)))[:3]), width, height


def test_the_compiled_loop_counts_the_eager_cells_bit_for_bit():
    """models.anchor.fused_ranking against grid_coverage on random candidates and targets: points in
    front of, behind and beside the camera, outside the frustum, exactly at the camera's depth 0,
    one candidate, one point each, targets of one pixel and of odd sizes."""
    from models.anchor.fused_ranking import grid_coverage_loop

    rng = np.random.default_rng(11)
    for count, per in [(1, 1), (1, 300), (7, 1), (40, 64), (3, 2000)]:
        index = candidates(rng.normal(scale=3.0, size=(count, per, 3)))
        for K, w2c, width, height in random_targets(rng, 12):
            eager = grid_coverage(index, w2c, K, width, height)
            loop = grid_coverage_loop(index, w2c, K, width, height)
            assert loop.dtype == eager.dtype == np.float64 and loop.shape == (count,)
            assert np.array_equal(loop, eager)
    # a point on the camera's plane (z = 0) and one behind it cover nothing, in both
    on_plane = candidates(np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, -2.0]]]))
    K = K_from_hfov(60, 32, 32)
    w2c = np.ascontiguousarray(np.eye(4)[:3])
    assert grid_coverage(on_plane, w2c, K, 32, 32)[0] == grid_coverage_loop(on_plane, w2c, K, 32, 32)[0] == 0.0
    # every cell of the grid, once each: full coverage
    u, v = np.meshgrid((np.arange(GRID) + 0.5) * 2, (np.arange(GRID) + 0.5) * 2)
    rays = np.linalg.inv(K_from_hfov(60, 2 * GRID, 2 * GRID)) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    grid_points = candidates((rays.T * 3.0)[None])
    full = K_from_hfov(60, 2 * GRID, 2 * GRID)
    assert grid_coverage(grid_points, w2c, full, 2 * GRID, 2 * GRID)[0] == 1.0
    assert grid_coverage_loop(grid_points, w2c, full, 2 * GRID, 2 * GRID)[0] == 1.0


def test_compiled_ranking_gives_the_eager_scores_with_one_loop_signature(scene):
    """``compiled=True`` (the server) ranks with the numba loop once a background thread has it,
    with the eager scores exactly; candidates and targets of any shape and layout reach the loop
    with one argument signature (a new one would compile on the frame's thread)."""
    from models.anchor import fused_ranking

    cam = scene.frames[1].camera
    reference._latest = None
    reference_scores(scene.references, cam.K, cam.c2w, cam.width, cam.height, compiled=True)  # starts the build
    assert compiled_kernels_settled(timeout=600)
    assert reference._grid_coverage._fn is not None, "the ranking loop is not serving"
    rng = np.random.default_rng(5)
    for i, frame in enumerate(scene.frames):
        K, c2w = frame.camera.K, frame.camera.c2w.copy()
        c2w[:3, 3] += rng.normal(scale=0.2, size=3)
        K = [K.astype(np.float32), np.round(K).astype(np.int64), np.asfortranarray(K), K][i % 4]
        c2w = [c2w, np.asfortranarray(c2w)][i % 2]
        reference._latest = None
        eager = reference_scores(scene.references, K, c2w, cam.width, cam.height)
        reference._latest = None
        compiled = reference_scores(scene.references, K, c2w, cam.width, cam.height, compiled=True)
        assert np.array_equal(compiled, eager)
        assert select_reference(scene, K, c2w, cam.width, cam.height, compiled=True) == int(np.argmax(eager)) or \
            eager.max() == 0
    assert len(fused_ranking._coverage.signatures) == 1, fused_ranking._coverage.signatures

