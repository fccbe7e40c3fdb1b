"""Reference selection: the candidate that covers the target best wins."""

from __future__ import annotations

import numpy as np
import pytest
from anchor_views import orbit_views

from models.anchor import AnchorInputError, build_scene, select_reference
from models.anchor.reference import ReferenceIndex, reference_scores
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
