"""The one camera convention: conversions on both sides of every boundary, and validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models import cameras
from models.cameras import CameraError

DATA = Path(__file__).resolve().parents[1] / "data"
_MIRROR_Y = np.array([1.0, -1.0, 1.0])


def _random_ue_poses(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    poses = []
    for _ in range(n):
        loc = rng.uniform(-5000, 5000, 3)
        rot = np.array([rng.uniform(-89.5, 89.5), rng.uniform(-179.9, 179.9), rng.uniform(-179.9, 179.9)])
        poses.append((loc, rot))
    return poses


def _random_c2w(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    c2w = np.eye(4)
    c2w[:3, :3] = q
    c2w[:3, 3] = rng.uniform(-10, 10, 3)
    return c2w


def test_ue_round_trip_random_poses() -> None:
    rng = np.random.default_rng(0)
    for loc, rot in _random_ue_poses(rng, 200):
        c2w = cameras.ue_to_c2w(loc, rot)
        cameras.validate_c2w(c2w)
        loc2, rot2 = cameras.c2w_to_ue(c2w)
        np.testing.assert_allclose(loc2, loc, atol=1e-8)
        np.testing.assert_allclose(rot2, rot, atol=1e-7)


def test_ours_to_ue_to_ours_random_poses() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        c2w = _random_c2w(rng)
        np.testing.assert_allclose(cameras.ue_to_c2w(*cameras.c2w_to_ue(c2w)), c2w, atol=1e-9)


@pytest.mark.parametrize(
    "rot, forward_ue",
    [
        ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),  # zero rotation looks down Unreal +X
        ((0.0, 90.0, 0.0), (0.0, 1.0, 0.0)),  # yaw turns toward Unreal +Y (right)
        ((90.0, 0.0, 0.0), (0.0, 0.0, 1.0)),  # positive pitch looks up
        ((0.0, 0.0, 45.0), (1.0, 0.0, 0.0)),  # roll leaves the view direction alone
    ],
)
def test_ue_rotation_semantics(rot: tuple[float, float, float], forward_ue: tuple[float, float, float]) -> None:
    c2w = cameras.ue_to_c2w(np.zeros(3), np.array(rot))
    # Our optical axis is column z; Unreal's world maps to ours by mirroring Y.
    np.testing.assert_allclose(c2w[:3, 2], np.array(forward_ue) * _MIRROR_Y, atol=1e-12)


def test_ue_point_projects_where_unreal_sees_it() -> None:
    """A point right of and above an Unreal camera's axis lands right of and above the image centre."""
    rng = np.random.default_rng(2)
    K = cameras.K_from_hfov(90.0, 640, 480)
    for loc, rot in _random_ue_poses(rng, 50):
        forward, right, up = cameras._ue_axes(*rot)
        point_ue = loc + 100.0 * (2.0 * forward + 0.3 * right + 0.2 * up)  # cm
        point_ours = point_ue * _MIRROR_Y / cameras.UE_CM_PER_M
        uv, z = cameras.project(point_ours[None], K, cameras.ue_to_c2w(loc, rot))
        assert z[0] == pytest.approx(2.0)
        np.testing.assert_allclose(uv[0], [320 + K[0, 0] * 0.15, 240 - K[1, 1] * 0.1], atol=1e-8)


def test_ue_roll_matches_unreal_rotation_order() -> None:
    """Unreal's factor form of ``FRotationMatrix``: Roll * Pitch * Yaw on row vectors."""

    def rot_x(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def rot_y_pitch(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rot_z(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])

    rng = np.random.default_rng(3)
    for _, (p, y, r) in _random_ue_poses(rng, 20):
        rows = rot_x(math.radians(r)) @ rot_y_pitch(math.radians(p)) @ rot_z(math.radians(y))
        forward, right, up = cameras._ue_axes(p, y, r)
        np.testing.assert_allclose(np.stack([forward, right, up]), rows, atol=1e-12)


def test_opengl_round_trip_and_axes() -> None:
    rng = np.random.default_rng(4)
    for _ in range(100):
        c2w = _random_c2w(rng)
        gl = cameras.c2w_to_opengl(c2w)
        np.testing.assert_allclose(cameras.opengl_to_c2w(gl), c2w, atol=1e-12)
        np.testing.assert_allclose(gl[:3, 2], -c2w[:3, 2])  # OpenGL looks down -z
        np.testing.assert_allclose(gl[:3, 1], -c2w[:3, 1])  # and y points up
        np.testing.assert_allclose(gl[:3, 3], c2w[:3, 3])
    batch = np.stack([_random_c2w(rng) for _ in range(5)])
    np.testing.assert_allclose(cameras.opengl_to_c2w(cameras.c2w_to_opengl(batch)), batch, atol=1e-12)


def test_fov_round_trip_and_values() -> None:
    K = cameras.K_from_hfov(90.0, 256, 128)
    np.testing.assert_allclose(K, [[128, 0, 128], [0, 128, 64], [0, 0, 1]], atol=1e-12)
    for hfov in (10.0, 60.0, 90.0, 120.0, 170.0):
        assert cameras.hfov_from_K(cameras.K_from_hfov(hfov, 640, 480), 640) == pytest.approx(hfov)


def test_scale_K_keeps_rays() -> None:
    """The same normalised image position sees the same ray after a resize."""
    K = np.array([[320.0, 0, 256], [0, 320, 256], [0, 0, 1]])
    K2 = cameras.scale_K(K, (512, 512), (504, 504))
    for frac in ((0.0, 0.0), (0.5, 0.5), (1.0, 0.25)):
        ray1 = np.linalg.solve(K, [frac[0] * 512, frac[1] * 512, 1.0])
        ray2 = np.linalg.solve(K2, [frac[0] * 504, frac[1] * 504, 1.0])
        np.testing.assert_allclose(ray1, ray2, atol=1e-12)


def test_project_matches_pinhole_model() -> None:
    rng = np.random.default_rng(5)
    K = np.array([[300.0, 0, 160], [0, 280, 120], [0, 0, 1]])
    c2w = _random_c2w(rng)
    cam_pts = np.column_stack([rng.uniform(-1, 1, 20), rng.uniform(-1, 1, 20), rng.uniform(0.5, 5, 20)])
    world = cam_pts @ c2w[:3, :3].T + c2w[:3, 3]
    uv, z = cameras.project(world, K, c2w)
    np.testing.assert_allclose(z, cam_pts[:, 2], atol=1e-9)
    np.testing.assert_allclose(uv[:, 0], 300 * cam_pts[:, 0] / cam_pts[:, 2] + 160, atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], 280 * cam_pts[:, 1] / cam_pts[:, 2] + 120, atol=1e-9)


def test_w2c_is_inverse() -> None:
    rng = np.random.default_rng(6)
    batch = np.stack([_random_c2w(rng) for _ in range(8)])
    np.testing.assert_allclose(cameras.c2w_to_w2c(batch) @ batch, np.broadcast_to(np.eye(4), batch.shape), atol=1e-12)


def test_look_at_points_the_camera() -> None:
    c2w = cameras.look_at([1.0, 2.0, 1.5], [4.0, -2.0, 1.0])
    uv, z = cameras.project(np.array([[4.0, -2.0, 1.0], [4.0, -2.0, 2.0]]), cameras.K_from_hfov(90, 100, 100), c2w)
    np.testing.assert_allclose(uv[0], [50, 50], atol=1e-9)
    assert uv[1, 1] < 50 and uv[1, 0] == pytest.approx(50)  # a point above the target: straight up in the image
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
    with pytest.raises(CameraError, match="parallel"):
        cameras.look_at([0, 0, 0], [0, 0, 1])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((4, 4), np.nan), "finite"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), r"det\(R\)=-1"),
        (np.diag([2.0, 1.0, 1.0, 1.0]), "orthonormal"),
        (np.eye(3), "4x4"),
        (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "last row"),
    ],
)
def test_validate_c2w_rejects(bad: np.ndarray, message: str) -> None:
    with pytest.raises(CameraError, match=message):
        cameras.validate_c2w(bad)


@pytest.mark.parametrize(
    "K, size, message",
    [
        ([[-100.0, 0, 50], [0, 100, 50], [0, 0, 1]], None, "positive"),
        ([[100.0, 0, 50], [0, 0, 50], [0, 0, 1]], None, "positive"),
        ([[100.0, 0, np.inf], [0, 100, 50], [0, 0, 1]], None, "finite"),
        ([[320.0, 0, 256], [0, 320, 256], [0, 0, 1]], (128, 128), "another resolution"),
        ([[1.0, 0], [0, 1]], None, "3x3"),
    ],
)
def test_validate_K_rejects(K: list, size: tuple[int, int] | None, message: str) -> None:
    with pytest.raises(CameraError, match=message):
        cameras.validate_K(np.array(K), *(size or (None, None)))


def test_unreal_inputs_must_be_finite() -> None:
    with pytest.raises(CameraError, match="finite"):
        cameras.ue_to_c2w(np.array([0.0, np.nan, 0.0]), np.zeros(3))
    with pytest.raises(CameraError, match="FOV"):
        cameras.K_from_hfov(0.0, 10, 10)


def test_published_worldfm_poses_are_valid() -> None:
    meta = json.loads((DATA / "worldfm-demo" / "meta.json").read_text())
    poses = cameras.validate_c2w(np.array(meta["c2w"]))
    assert poses.shape == (30, 4, 4)


def test_shared_vectors_are_current() -> None:
    """The JSON the C++ core tests against must agree with this module, on both sides."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_camera_vectors", DATA / "make_camera_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    published = json.loads((DATA / "camera_vectors.json").read_text())
    fresh = module.build_vectors()
    assert len(published["poses"]) == len(fresh["poses"]) >= 10
    for pub, new in zip(published["poses"], fresh["poses"]):
        np.testing.assert_allclose(pub["c2w"], new["c2w"], atol=published["tolerance"])
        np.testing.assert_allclose(pub["c2w_opengl"], new["c2w_opengl"], atol=published["tolerance"])
        loc, rot = cameras.c2w_to_ue(np.array(pub["c2w"]))
        np.testing.assert_allclose(loc, pub["ue_location_cm"], atol=1e-7)
        np.testing.assert_allclose(rot, pub["ue_rotation_pitch_yaw_roll_deg"], atol=1e-7)
    for pub in published["fov"]:
        np.testing.assert_allclose(pub["K"], cameras.K_from_hfov(pub["hfov_deg"], pub["width"], pub["height"]))


def test_pixel_rays_hit_their_pixel_centres() -> None:
    K = np.array([[200.0, 0.0, 60.0], [0.0, 180.0, 45.0], [0.0, 0.0, 1.0]])
    rays = cameras.pixel_rays(K, 120, 90)
    assert rays.shape == (90, 120, 3)
    np.testing.assert_allclose(rays[..., 2], 1.0)
    uv, z = cameras.project(rays.reshape(-1, 3) * 3.0, K, np.eye(4))
    v, u = np.divmod(np.arange(90 * 120), 120)
    np.testing.assert_allclose(uv, np.column_stack([u + 0.5, v + 0.5]), atol=1e-9)
    np.testing.assert_allclose(z, 3.0)


def test_one_pose_and_batched_validation_agree() -> None:
    """validate_c2w codes one check twice (plain floats for one pose, numpy for a batch):
    same verdict and message, on rigid poses and on each way of breaking one, near the tolerance too."""

    def outcome(m: np.ndarray) -> str:
        try:
            cameras.validate_c2w(m)
            return "ok"
        except CameraError as exc:
            return str(exc).replace("c2w[0]", "c2w")

    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        pose = _random_c2w(rng)
        shear = np.eye(4)
        shear[0, 1] = rng.choice([5e-5, 2e-4])
        moved = pose.copy()
        moved[3, 2] = rng.choice([5e-5, 1e-3])
        for m in (pose, pose @ np.diag([1.0, 1.0, -1.0, 1.0]), pose @ np.diag([1 + rng.choice([5e-5, 3e-4]), 1, 1, 1]),
                  pose @ shear, moved):
            single = outcome(m)
            assert single == outcome(m[None])
            seen.add(single.split(" ")[1] if single != "ok" else "ok")
    assert seen == {"ok", "last", "rotation", "must"}  # rigid, bad last row, not orthonormal, reflection
