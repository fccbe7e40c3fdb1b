"""Unprojection, depth filtering, fusion and PLY I/O of the scene cloud."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anchor_views import orbit_views, texture

from models.anchor import AnchorInputError, PointCloud, build_scene, load_ply, save_ply
from models.anchor.cloud import fuse_points, reliable_depth_mask, unproject_depth
from models.cameras import CameraError, K_from_hfov, look_at, project
from models.scene import Camera, Frame


def test_unproject_inverts_project():
    rng = np.random.default_rng(0)
    K = K_from_hfov(75, 20, 12)
    K[0, 2] += 1.7
    c2w = look_at(rng.normal(size=3), rng.normal(size=3))
    depth = rng.uniform(0.5, 9.0, size=(12, 20)).astype(np.float32)
    xyz = unproject_depth(depth, K, c2w).numpy().reshape(-1, 3)
    uv, z = project(xyz, K, c2w)
    cols, rows = np.meshgrid(np.arange(20) + 0.5, np.arange(12) + 0.5)
    np.testing.assert_allclose(uv, np.stack([cols.ravel(), rows.ravel()], 1), atol=1e-3)
    np.testing.assert_allclose(z, depth.ravel(), rtol=1e-5)


def test_reliable_mask_drops_edges_far_and_invalid_but_keeps_slopes():
    focal = 50.0
    depth = torch.full((10, 12), 2.0)
    depth[:, 6:] = 4.0  # a silhouette between columns 5 and 6
    depth += torch.arange(10)[:, None] * 0.01  # a gentle slope: 0.01 m per pixel << 20 footprints
    depth[0, 0] = 0.0  # no depth (sky)
    depth[9, 0] = 200.0  # beyond max_depth
    keep = reliable_depth_mask(depth, focal, max_depth=100.0)
    assert not keep[:, 5].any() and not keep[:, 6].any()
    assert keep[1:8, :5].all() and keep[1:8, 7:].all()
    assert not keep[0, 0] and not keep[9, 0]
    assert keep[0, 1] and keep[1, 0]  # a neighbour without depth is not an edge


def _reliable_reference(depth: np.ndarray, focal: float, max_depth: float, max_slope: float) -> np.ndarray:
    """reliable_depth_mask pixel by pixel, in float64: valid, and within max_slope footprints of
    every valid neighbour of its 3 x 3 neighbourhood."""
    h, w = depth.shape
    valid = (depth > 0) & (depth <= max_depth)
    keep = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            if not valid[i, j]:
                continue
            limit = float(depth[i, j]) * max_slope / focal
            near = [float(depth[a, b]) for a in range(max(i - 1, 0), min(i + 2, h))
                    for b in range(max(j - 1, 0), min(j + 2, w)) if valid[a, b]]
            keep[i, j] = all(abs(n - float(depth[i, j])) <= limit for n in near)
    return keep


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (9, 13), (40, 33)])
def test_reliable_mask_matches_a_pixel_by_pixel_reference(shape):
    rng = np.random.default_rng(sum(shape))
    kept = []
    for trial in range(4):
        depth = rng.uniform(0.5, 8.0, shape).astype(np.float32)
        depth[rng.random(shape) < 0.15] = 0.0  # no depth
        depth[rng.random(shape) < 0.05] = 150.0  # beyond max_depth
        if trial % 2:  # smooth surfaces with a few jumps: most samples kept, not only edges
            depth = np.where(depth > 0, np.float32(3.0) + np.cumsum(np.full(shape, 0.01, np.float32), 1), 0.0)
            depth[rng.random(shape) < 0.1] *= 2
        depth = depth.astype(np.float32)
        focal = float(rng.uniform(10, 400))
        got = reliable_depth_mask(torch.from_numpy(depth), focal, max_depth=100.0, max_slope=20.0).numpy()
        want = _reliable_reference(depth, focal, 100.0, 20.0)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
        kept.append(want)
    kept = np.stack(kept)
    assert kept.any() and (shape == (1, 1) or not kept.all())  # both outcomes were tested


def test_fusion_keeps_the_lowest_priority_sample_per_voxel_and_respects_the_cap():
    xyz = torch.tensor([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.5, 0.5, 0.5]])
    rgb = torch.tensor([[1, 1, 1], [2, 2, 2], [3, 3, 3]], dtype=torch.uint8)
    cloud, size = fuse_points(xyz, rgb, torch.tensor([3.0, 1.0, 2.0]), voxel_size=0.1)
    assert size == 0.1
    assert sorted(cloud.rgb[:, 0].tolist()) == [2, 3]
    np.testing.assert_array_equal(cloud.xyz[cloud.rgb[:, 0] == 2], xyz[1:2].numpy())
    grid = torch.stack(torch.meshgrid(*[torch.arange(20.0)] * 2, indexing="ij"), -1).reshape(-1, 2)
    plane = torch.cat([grid * 0.01, torch.zeros(400, 1)], 1)
    capped, grown = fuse_points(plane, torch.zeros(400, 3, dtype=torch.uint8), torch.ones(400), 0.001, max_points=50)
    assert len(capped) <= 50 and grown > 0.001


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cloud = PointCloud(rng.normal(size=(500, 3)).astype(np.float32), rng.integers(0, 256, (500, 3), dtype=np.uint8))
    save_ply(cloud, tmp_path / "c.ply")
    back = load_ply(tmp_path / "c.ply")
    np.testing.assert_array_equal(back.xyz, cloud.xyz)
    np.testing.assert_array_equal(back.rgb, cloud.rgb)
    assert (tmp_path / "c.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")


def test_ply_with_float_colours_and_without_colours(tmp_path):
    from plyfile import PlyData, PlyElement

    vertex = np.array(
        [(1.0, 2.0, 3.0, 1.0, 0.5, 0.0)], dtype=[(n, "f4") for n in ("x", "y", "z", "red", "green", "blue")]
    )
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "f.ply"))
    assert load_ply(tmp_path / "f.ply").rgb.tolist() == [[255, 128, 0]]
    bare = np.array([(1.0, 2.0, 3.0)], dtype=[(n, "f4") for n in "xyz"])
    PlyData([PlyElement.describe(bare, "vertex")]).write(str(tmp_path / "b.ply"))
    with pytest.raises(AnchorInputError, match="red"):
        load_ply(tmp_path / "b.ply")


def test_point_cloud_rejects_bad_arrays():
    with pytest.raises(AnchorInputError, match=r"\[N, 3\]"):
        PointCloud(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.uint8))
    with pytest.raises(AnchorInputError, match="same shape"):
        PointCloud(np.zeros((4, 3), np.float32), np.zeros((5, 3), np.uint8))
    with pytest.raises(AnchorInputError, match="uint8"):
        PointCloud(np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(AnchorInputError, match="finite"):
        PointCloud(np.full((4, 3), np.nan, np.float32), np.zeros((4, 3), np.uint8))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_a_source_view_re_renders_from_its_own_fused_cloud():
    from models.anchor import render_cloud

    for frame in orbit_views(3, width=128, height=96):
        cam = frame.camera
        scene = build_scene([frame])
        out = render_cloud(scene.cloud, cam.K, cam.c2w, cam.width, cam.height, fill_gaps=False)
        covered = out.mask.numpy()
        assert covered.mean() > 0.9  # all but the filtered silhouette pixels
        assert _psnr(out.rgb.numpy()[covered], frame.rgb[covered]) >= 35.0
        np.testing.assert_allclose(out.depth.numpy()[covered], frame.depth[covered], rtol=1e-4)


def test_multi_view_fusion_keeps_exact_samples_and_consistent_geometry():
    from models.anchor import render_cloud

    frames = orbit_views(12, width=128, height=96)
    scene = build_scene(frames)
    assert len(scene.frames) == 12 and len(scene.references) == 12
    assert len(scene.cloud) < sum(f.rgb.shape[0] * f.rgb.shape[1] for f in frames)  # overlaps merged
    # Fusion keeps real samples: every point still carries the colour of its own position.
    assert np.abs(texture(scene.cloud.xyz.astype(np.float64)).astype(int) - scene.cloud.rgb).max() <= 2
    for frame in frames[::4]:
        cam = frame.camera
        out = render_cloud(scene.cloud, cam.K, cam.c2w, cam.width, cam.height)
        covered = out.mask.numpy()
        assert covered.mean() > 0.99
        rel = np.abs(out.depth.numpy() - frame.depth)[covered] / frame.depth[covered]
        assert np.mean(rel < 0.1) > 0.99  # the right surface (box and wall differ by > 30 %) but at silhouettes


def _frame(depth: np.ndarray | None, K: np.ndarray | None = None) -> Frame:
    h, w = 6, 8
    cam = Camera(K=K_from_hfov(60, w, h) if K is None else K, c2w=np.eye(4), width=w, height=h)
    return Frame(rgb=np.zeros((h, w, 3), np.uint8), camera=cam, depth=depth, name="bad")


def test_build_rejects_unusable_views_with_reasons():
    with pytest.raises(AnchorInputError, match="at least one frame"):
        build_scene([])
    with pytest.raises(AnchorInputError, match="no depth map.*OnnxDepthEstimator"):
        build_scene([_frame(None)])
    with pytest.raises(AnchorInputError, match="'bad'.*no valid sample.*NaN"):
        build_scene([_frame(np.full((6, 8), np.nan, np.float32))])
    with pytest.raises(AnchorInputError, match="no valid sample"):
        build_scene([_frame(np.zeros((6, 8), np.float32))])
    with pytest.raises(AnchorInputError, match="no reliable depth sample"):
        build_scene([_frame(np.full((6, 8), 500.0, np.float32))])
    with pytest.raises(ValueError, match="depth must have shape"):
        _frame(np.ones((8, 6), np.float32))
    with pytest.raises(CameraError, match="another resolution"):
        _frame(np.ones((6, 8), np.float32), K=K_from_hfov(60, 64, 48))
    partial = np.ones((6, 8), np.float32)
    partial[0, :] = np.nan  # pixels without depth are allowed, just skipped
    assert 0 < len(build_scene([_frame(partial)]).cloud) < 48
