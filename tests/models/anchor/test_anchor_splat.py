"""The torch splatting renderer against the point-by-point reference renderer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anchor_reference import reference_render

from models.anchor import AnchorInputError, PointCloud, render_cloud, render_views, to_device
from models.cameras import CameraError, K_from_hfov, look_at, project


def random_camera(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A camera near the origin looking at a random point, with off-centre intrinsics."""
    K = K_from_hfov(rng.uniform(40, 100), width, height)
    K[0, 2] += rng.uniform(-0.2, 0.2) * width
    K[1, 2] += rng.uniform(-0.2, 0.2) * height
    K[1, 1] *= rng.uniform(0.8, 1.2)
    eye = rng.normal(size=3)
    return K, look_at(eye, eye + rng.normal(size=3))


def random_cloud(rng: np.random.Generator, count: int, c2w: np.ndarray) -> PointCloud:
    """Points all around the camera (many behind it or outside the frustum), with exact duplicates
    at other colours (coincident depths) and points sharing one depth in one pixel."""
    xyz = c2w[:3, 3] + rng.normal(scale=3.0, size=(count, 3))
    dup = rng.integers(0, count, size=count // 10)
    xyz = np.concatenate([xyz, xyz[dup]]).astype(np.float32)
    rgb = rng.integers(0, 256, size=(len(xyz), 3), dtype=np.uint8)
    return PointCloud(xyz, rgb)


def away_from_edges(cloud: PointCloud, K: np.ndarray, c2w: np.ndarray, near: float) -> PointCloud:
    """Drop points within 1e-3 px of a pixel edge or 1e-6 m of the near plane, where float32
    (fast) and float64 (reference) may round to different sides; everything else must match."""
    uv, z = project(cloud.xyz, K, c2w)
    frac = np.abs(uv - np.round(uv))
    keep = ~np.any(frac < 1e-3, axis=1) & (np.abs(z - near) > 1e-6)
    return PointCloud(cloud.xyz[keep], cloud.rgb[keep])


def render_compiled(cloud: PointCloud, *args, **kwargs):
    """Render through the compiled kernels: the first render starts their background compile
    (and is served eagerly); wait for them, check they serve, render again."""
    from models.anchor import splat

    source = to_device(cloud, **({"chunk": kwargs.pop("chunk")} if "chunk" in kwargs else {}), compiled=True)
    render_cloud(source, *args, **kwargs)
    assert splat.compiled_kernels_settled(timeout=600)
    assert splat._compiled_project._fn is not None, "the compiled projection kernel is not serving"
    if kwargs.get("fill_gaps", True):
        assert splat._compiled_fill_gaps._fn is not None, "the gap filling loop is not serving"
    return render_cloud(source, *args, **kwargs)


def assert_matches_reference(cloud: PointCloud, K, c2w, width, height, radius, fill_gaps=False, near=1e-3,
                             compiled=False):
    render = render_compiled if compiled else render_cloud
    out = render(cloud, K, c2w, width, height, splat_radius=radius, fill_gaps=fill_gaps, near=near)
    rgb, mask, depth = reference_render(cloud.xyz, cloud.rgb, K, c2w, width, height, radius, fill_gaps, near)
    np.testing.assert_array_equal(out.mask.numpy(), mask)
    np.testing.assert_array_equal(out.rgb.numpy(), rgb)
    np.testing.assert_allclose(out.depth.numpy(), depth, rtol=1e-5, atol=1e-6)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [0, 1, 2])
@pytest.mark.parametrize("fill_gaps", [False, True])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_random_clouds_match_reference(seed, radius, fill_gaps, compiled):
    rng = np.random.default_rng(seed)
    width, height = [(40, 30), (33, 47), (64, 64), (1, 1)][seed]
    K, c2w = random_camera(rng, width, height)
    cloud = away_from_edges(random_cloud(rng, 3000, c2w), K, c2w, 1e-3)
    uv, z = project(cloud.xyz, K, c2w)
    assert (z < 0).any() and ((uv[:, 0] > width) & (z > 0)).any()  # the cases are really there
    out = assert_matches_reference(cloud, K, c2w, width, height, radius, fill_gaps, compiled=compiled)
    if width > 1:
        assert out.mask.any() and not out.mask.all()


def test_coincident_points_keep_the_first():
    K, c2w = K_from_hfov(60, 16, 16), look_at([0, 0, 0], [0, 1, 0])
    xyz = np.array([[0, 2, 0], [0, 2, 0], [0, 3, 0], [0.01, 2, 0]], np.float32)
    rgb = np.array([[10, 0, 0], [20, 0, 0], [30, 0, 0], [40, 0, 0]], np.uint8)
    out = render_cloud(PointCloud(xyz, rgb), K, c2w, 16, 16)
    assert out.mask.sum() == 1  # all four land in one pixel
    assert out.rgb[out.mask].tolist() == [[10, 0, 0]]
    assert out.depth[out.mask].item() == pytest.approx(2.0)
    assert_matches_reference(PointCloud(xyz, rgb), K, c2w, 16, 16, 1)


def test_empty_cloud_and_one_point():
    K, c2w = K_from_hfov(60, 20, 10), look_at([0, 0, 0], [1, 0, 0])
    empty = PointCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    out = render_cloud(empty, K, c2w, 20, 10, splat_radius=1)
    assert out.rgb.shape == (10, 20, 3) and out.mask.shape == (10, 20) and out.depth.shape == (10, 20)
    assert not out.mask.any() and not out.rgb.any() and not out.depth.any()
    one = PointCloud(np.array([[3.0, 0.1, -0.2]], np.float32), np.array([[1, 2, 3]], np.uint8))
    out = assert_matches_reference(one, K, c2w, 20, 10, 1)
    assert out.mask.sum() == 9


def test_points_behind_or_beside_the_camera_are_not_drawn():
    K, c2w = K_from_hfov(60, 8, 8), look_at([0, 0, 0], [1, 0, 0])
    xyz = np.array([[-2, 0, 0], [0, 2, 0], [0.0005, 0, 0], [2, 0, 5]], np.float32)  # behind, beside, too near, above
    out = render_cloud(PointCloud(xyz, np.full((4, 3), 255, np.uint8)), K, c2w, 8, 8, splat_radius=2)
    assert not out.mask.any()


def test_batched_views_equal_single_views():
    rng = np.random.default_rng(7)
    width, height = 24, 18
    cams = [random_camera(rng, width, height) for _ in range(3)]
    cloud = random_cloud(rng, 4000, cams[0][1])
    device_cloud = to_device(cloud)
    batch = render_views(device_cloud, np.stack([k for k, _ in cams]), np.stack([p for _, p in cams]), width, height, 1)
    assert batch.rgb.shape == (3, height, width, 3)
    for i, (K, c2w) in enumerate(cams):
        single = render_cloud(device_cloud, K, c2w, width, height, splat_radius=1)
        assert torch.equal(batch.rgb[i], single.rgb)
        assert torch.equal(batch.mask[i], single.mask)
        assert torch.equal(batch.depth[i], single.depth)
    shared_k = render_views(device_cloud, cams[0][0], np.stack([cams[0][1], cams[1][1]]), width, height)
    assert torch.equal(shared_k.rgb[0], render_cloud(device_cloud, cams[0][0], cams[0][1], width, height).rgb)


def test_bad_cameras_are_rejected_with_reasons():
    cloud = PointCloud(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8))
    K512, c2w = K_from_hfov(60, 512, 512), np.eye(4)
    with pytest.raises(CameraError, match="another resolution"):
        render_cloud(cloud, K512, c2w, 256, 128)
    with pytest.raises(CameraError, match="4x4"):
        render_cloud(cloud, K_from_hfov(60, 8, 8), np.eye(3), 8, 8)
    with pytest.raises(AnchorInputError, match="one 4x4"):
        render_cloud(cloud, K_from_hfov(60, 8, 8), np.stack([c2w, c2w]), 8, 8)
    with pytest.raises(AnchorInputError, match="one K or one per pose"):
        render_views(to_device(cloud), np.stack([K512] * 3), np.stack([c2w] * 2), 512, 512)
    with pytest.raises(AnchorInputError, match="splat radius"):
        render_cloud(cloud, K_from_hfov(60, 8, 8), c2w, 8, 8, splat_radius=-1)


def test_gap_filling_closes_pinholes_without_growing_silhouettes():
    from models.anchor.cloud import unproject_depth

    K, c2w = K_from_hfov(60, 20, 20), np.eye(4)
    back = unproject_depth(np.full((20, 20), 5.0, np.float32), K, c2w).reshape(-1, 3).numpy()
    front_depth = np.full((20, 20), 2.0, np.float32)
    square = np.zeros((20, 20), bool)
    square[5:15, 5:15] = True
    holes = np.zeros((20, 20), bool)
    holes[9, 9:11] = True  # a two-pixel pinhole
    holes[11:13, 11:13] = True  # a 2 x 2 hole
    front = unproject_depth(front_depth, K, c2w).numpy()[square & ~holes]
    xyz = np.concatenate([front, back])
    rgb = np.concatenate([np.full((len(front), 3), 200, np.uint8), np.full((len(back), 3), 50, np.uint8)])
    cloud = PointCloud(xyz, rgb)
    plain = render_cloud(cloud, K, c2w, 20, 20, fill_gaps=False)
    assert (plain.rgb[torch.from_numpy(holes)][:, 0] == 50).all()  # background bleeds through
    filled = render_cloud(cloud, K, c2w, 20, 20, fill_gaps=True)
    assert (filled.rgb[torch.from_numpy(square)][:, 0] == 200).all()  # both holes closed
    assert filled.depth[12, 12] == pytest.approx(2.0)
    assert (filled.rgb[torch.from_numpy(~square)][:, 0] == 50).all()  # the square did not grow
    assert_matches_reference(cloud, K, c2w, 20, 20, 0, fill_gaps=True)


@pytest.mark.parametrize("seed", range(3))
def test_the_gap_filling_loop_gives_the_torch_rules_keys(seed):
    """The compiled path's numba loop (models/anchor/fused_gaps.py) against splat._fill_gaps on key
    images of a few surfaces at nearby depths (one within 5 % of another, one not), random gaps,
    empty pixels and equal depths under different point indices, two images per batch."""
    from models.anchor import splat
    from models.anchor.fused_gaps import fused_fill_gaps

    rng = np.random.default_rng(seed)
    shape = (2, 23, 31)
    levels = np.array([1.0, 1.02, 1.04, 1.3, 2.0, 2.05], np.float32)
    depth = levels[rng.integers(0, len(levels), shape)]
    depth[rng.random(shape) < 0.3] = np.inf  # empty
    index = rng.integers(0, 50, shape)  # small range: equal depths under several indices
    bits = torch.from_numpy(depth).view(torch.int32).to(torch.int64)
    keys = torch.where(torch.from_numpy(np.isfinite(depth)), (bits << 32) | torch.from_numpy(index), splat.EMPTY_KEY)
    expected = splat._fill_gaps(keys)
    assert (expected != keys).sum() > 20  # many pixels are filled
    assert torch.equal(fused_fill_gaps(keys), expected)


def test_gap_filling_leaves_slits_wider_than_two_pixels_open():
    """Two surfaces three pixels apart: the background between them is real, and stays whole
    (closing only the middle column would draw a line of foreground that is not there); two
    pixels apart, the slit counts as a gap in one surface and closes."""
    from models.anchor.cloud import unproject_depth

    K, c2w = K_from_hfov(60, 20, 20), np.eye(4)
    back = unproject_depth(np.full((20, 20), 5.0, np.float32), K, c2w).reshape(-1, 3).numpy()
    for slit, closes in ((slice(8, 11), False), (slice(8, 10), True)):
        front_mask = np.zeros((20, 20), bool)
        front_mask[3:17, 3:17] = True
        front_mask[:, slit] = False
        front = unproject_depth(np.full((20, 20), 2.0, np.float32), K, c2w).numpy()[front_mask]
        cloud = PointCloud(np.concatenate([front, back]), np.concatenate(
            [np.full((len(front), 3), 200, np.uint8), np.full((len(back), 3), 50, np.uint8)]))
        filled = render_cloud(cloud, K, c2w, 20, 20, fill_gaps=True)
        between = filled.rgb[3:17, slit, 0]
        assert (between == (200 if closes else 50)).all(), (slit, between)
        assert_matches_reference(cloud, K, c2w, 20, 20, 0, fill_gaps=True)


def test_frustum_culling_of_ordered_chunks_changes_nothing():
    from models.anchor.cloud import spatial_order
    from models.anchor.splat import _visible_points, projection_matrices

    rng = np.random.default_rng(11)
    width, height = 30, 20
    K, c2w = random_camera(rng, width, height)
    cloud = away_from_edges(random_cloud(rng, 6000, c2w), K, c2w, 1e-3)
    order = spatial_order(torch.from_numpy(cloud.xyz)).numpy()
    ordered = PointCloud(cloud.xyz[order], cloud.rgb[order])
    chunked = to_device(ordered, chunk=32)
    proj = torch.as_tensor(projection_matrices(K, c2w, width, height), dtype=torch.float32)
    kept = _visible_points(chunked, proj[0], width, height, 1e-3)
    assert kept is not None and 0 < len(kept) < 0.7 * len(ordered)  # culling really drops chunks
    uv, z = project(ordered.xyz, K, c2w)
    drawable = np.flatnonzero((z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height))
    assert set(drawable) <= set(kept.tolist())  # and never a drawable point
    for radius, gaps in ((0, False), (1, True)):
        culled = render_cloud(chunked, K, c2w, width, height, splat_radius=radius, fill_gaps=gaps)
        whole = render_cloud(
            to_device(ordered, chunk=len(ordered)), K, c2w, width, height, splat_radius=radius, fill_gaps=gaps
        )
        assert torch.equal(culled.rgb, whole.rgb) and torch.equal(culled.depth, whole.depth)
    assert_matches_reference(ordered, K, c2w, width, height, 1, fill_gaps=True)
    compiled = render_compiled(ordered, K, c2w, width, height, 1, True, chunk=32)
    assert torch.equal(compiled.rgb, culled.rgb) and torch.equal(compiled.depth, culled.depth)


def test_compiled_projection_falls_back_to_eager_once(monkeypatch, caplog):
    from models.anchor import splat

    calls = []

    def broken_compile(fn, **kwargs):
        def run(*args):
            calls.append(args)
            raise RuntimeError("no C++ compiler\nsecond line")

        return run

    # an earlier test's kernels may still be compiling in the background: let them finish with
    # the real compiler before it is replaced here
    assert splat.compiled_kernels_settled(timeout=600)
    monkeypatch.setattr(torch, "compile", broken_compile)
    # fresh kernels, so the failure does not leak into other tests' compiled renders
    monkeypatch.setattr(splat, "_compiled_project", splat._Compiled(splat._project))
    monkeypatch.setattr(splat, "_compiled_fill_gaps", splat._Compiled(splat._fill_gaps))
    rng = np.random.default_rng(5)
    K, c2w = random_camera(rng, 20, 16)
    cloud = random_cloud(rng, 500, c2w)
    with caplog.at_level("WARNING", logger="models.anchor.splat"):
        first = render_cloud(to_device(cloud, compiled=True), K, c2w, 20, 16)  # starts the (failing) compiles
        assert splat.compiled_kernels_settled(timeout=60)
        second = render_cloud(to_device(cloud, compiled=True), K, c2w, 20, 16)
    eager = render_cloud(cloud, K, c2w, 20, 16)
    assert len(calls) == 2  # each kernel (projection, gap filling) tried once, then eager for good
    assert sorted(r.getMessage() for r in caplog.records) == [  # one per kernel, each compiled on its own thread
        f"compiled splatting kernel {name} unavailable (RuntimeError: no C++ compiler); rendering with the eager kernel"
        for name in ("_fill_gaps", "_project")
    ]
    for out in (first, second):
        assert torch.equal(out.rgb, eager.rgb) and torch.equal(out.depth, eager.depth)
    assert not to_device(cloud, "meta", compiled=True).compiled  # CPU only


def test_a_process_ending_while_a_kernel_compiles_waits_for_it(tmp_path):
    """A process that ended while torch compiled in a daemon thread aborted inside torch (exit
    134) or lost the compile; the compile thread is joined at exit instead."""
    import subprocess
    import sys

    marker = tmp_path / "compiled"
    script = f"""
import time, numpy as np, torch
from models.anchor import PointCloud, render_cloud, to_device
from models.cameras import K_from_hfov

def slow_compile(fn, **kwargs):  # stands in for the compiler: seconds of work, then the kernel
    time.sleep(2.0)
    open({str(marker)!r}, "w").close()
    return fn

torch.compile = slow_compile
cloud = PointCloud(np.zeros((4, 3), np.float32) + [0, 0, 2], np.zeros((4, 3), np.uint8))
render_cloud(to_device(cloud, compiled=True), K_from_hfov(60.0, 16, 16), np.eye(4), 16, 16)
"""  # ends at once, the compile still running
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert marker.exists()


def test_a_kernel_not_held_builds_while_compiles_are_held():
    """compiles_held keeps torch.compile (seconds of both cores) away from a stream; a kernel made
    with hold=False (the mesh style's fused loop, which numba loads from its disk cache in a
    fraction of a second) builds at its first call even so, and the held one waits."""
    from models.anchor import splat

    built = []

    def build(fn):
        built.append(fn)
        return lambda x: fn(x) + 100  # tells the built kernel's results from the eager ones

    def eager(x):
        return x + 1

    def other(x):
        return x + 2

    free = splat._Compiled(eager, build=build, hold=False)
    held = splat._Compiled(other, build=build)
    with splat.compiles_held():
        assert free(1) == 2 and held(1) == 3  # eager until built
        assert free.settled.wait(10) and not held.settled.is_set()
        assert free(1) == 102 and held(1) == 3
        assert built == [eager]
    assert splat.start_held_compiles() >= 1 and held.settled.wait(10)
    assert held(1) == 103 and built == [eager, other]
