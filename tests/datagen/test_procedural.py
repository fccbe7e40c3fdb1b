"""Procedural scenes: geometry against analytic answers and slow references, determinism,
valid camera paths, and the ``worldfm datagen procedural`` command end to end."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.dataset import find_scenes, read_scene
from datagen.procedural.renderer import Renderer
from datagen.procedural.scenes import Material, PointLight, ProceduralScene, SunLight, generate_scene
from datagen.procedural.shapes import Box, Cylinder, Ground, Room, Sphere
from datagen.procedural.trajectories import CLEARANCE, TRAJECTORIES, plan_cameras
from models.cameras import K_from_hfov, look_at, project
from models.scene import Camera
from python_bridge.cli import main

GREY = Material((0.5, 0.5, 0.5), (0.3, 0.3, 0.3), "checker", 0.5, 0.0, 10.0, 1)


def _scene(enclosure, shapes=(), kind="indoor", sky=None) -> ProceduralScene:
    return ProceduralScene(
        kind=kind, seed=0, enclosure=enclosure, shapes=tuple(shapes), materials=(GREY,),
        ambient=(0.2, 0.2, 0.2), lights=(PointLight((1.0, 1.0, 2.5), (3.0, 3.0, 3.0)),), sky=sky,
        walk_lo=(0.0, 0.0, 0.0), walk_hi=(1.0, 1.0, 1.0),
    )


def _pixel_rays(camera: Camera) -> np.ndarray:
    """World directions (H*W, 3) with camera-z = 1, straight from K^-1 (independent of the renderer)."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    return (camera.c2w[:3, :3] @ np.linalg.inv(camera.K) @ pix).T


def test_depth_of_a_wall_matches_the_plane_equation():
    room = Room((0.0, 0.0, 0.0), (10.0, 8.0, 6.0), (0,) * 6)
    eye = np.array([2.0, 3.5, 3.0])
    c2w = look_at(eye, eye + np.array([1.0, 0.15, 0.05]))  # a slightly turned view of the wall x = 10
    camera = Camera(K_from_hfov(30.0, 40, 30), c2w, 40, 30)
    frame = Renderer(_scene(room)).render(camera)
    rays = _pixel_rays(camera)
    expected = (10.0 - eye[0]) / rays[:, 0]  # z-depth: the ray's camera-z is 1
    assert np.allclose(frame.depth.ravel(), expected, rtol=1e-5, atol=1e-5)


def test_depth_of_the_ground_matches_the_plane_equation_and_sky_has_none():
    sky = ((0.7, 0.8, 0.9), (0.3, 0.4, 0.8))
    eye = np.array([0.5, -1.0, 2.0])
    camera = Camera(K_from_hfov(70.0, 48, 36), look_at(eye, eye + np.array([0.3, 1.0, -0.2])), 48, 36)
    frame = Renderer(_scene(Ground(30.0, 0), kind="outdoor", sky=sky)).render(camera)
    rays = _pixel_rays(camera)
    s = -eye[2] / rays[:, 2]
    hits = (s > 0) & np.all(np.abs(eye[:2] + s[:, None] * rays[:, :2]) <= 30.0, axis=1)
    depth = frame.depth.ravel()
    assert hits.any() and (~hits).any()  # the view holds both ground and sky
    assert np.allclose(depth[hits], s[hits], rtol=1e-5, atol=1e-5)
    assert np.all(depth[~hits] == 0)


@pytest.mark.parametrize("centre", [(4.0, 3.9, 1.3), (3.0, 2.6, 0.8)])
def test_small_sphere_appears_where_project_puts_its_centre(centre):
    room = Room((0.0, 0.0, 0.0), (8.0, 8.0, 3.0), (0,) * 6)
    radius = 0.12
    eye = np.array([0.8, 3.0, 1.5])
    camera = Camera(K_from_hfov(60.0, 160, 120), look_at(eye, [5.0, 4.0, 1.0]), 160, 120)
    empty = Renderer(_scene(room)).render(camera)
    frame = Renderer(_scene(room, [Sphere(centre, radius, 0)])).render(camera)
    uv, z = project(np.array([centre]), camera.K, camera.c2w)
    assert 10 < uv[0, 0] < 150 and 10 < uv[0, 1] < 110  # the test's premise: well inside the view
    mask = frame.depth != empty.depth  # the sphere's pixels
    rows, cols = np.nonzero(mask)
    assert mask.sum() > 20
    centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
    assert np.linalg.norm(centroid - uv[0]) < 0.5
    assert frame.depth[mask].min() == pytest.approx(z[0] - radius, abs=0.01)  # z-depth of the front


def _marched_hit(shape, origins: np.ndarray, dirs: np.ndarray, step: float, far: float) -> np.ndarray:
    """Slow reference: first sample along each ray that lies inside the shape (inf if none)."""
    ts = np.arange(step, far, step)
    inside = np.stack([shape.contains(origins + t * dirs, 0.0) for t in ts])  # (steps, n)
    first = np.where(inside.any(0), ts[inside.argmax(0)], np.inf)
    return first


@pytest.mark.parametrize(
    "shape",
    [
        Box((0.2, -0.1, 0.5), (0.6, 0.3, 0.4), 0.7, 0),
        Box((0.0, 0.0, 0.0), (0.5, 0.5, 0.5), 0.0, 0),
        Sphere((0.1, 0.2, 0.3), 0.7, 0),
        Cylinder((0.1, -0.2), 0.5, -0.4, 0.6, 0),
    ],
    ids=["turned-box", "box", "sphere", "cylinder"],
)
def test_shape_intersection_matches_ray_marching(shape):
    rng = np.random.default_rng(3)
    n = 300
    origins = rng.uniform(-1, 1, (n, 3)) * 2.5
    origins[np.linalg.norm(origins, axis=1) < 1.6] *= 2.0  # start outside every test shape
    targets = rng.uniform(-0.9, 0.9, (n, 3))  # mostly at the shape, some misses
    dirs = targets - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    step = 2e-3
    t_fast = shape.intersect(origins.astype(np.float32), dirs.astype(np.float32))
    t_slow = _marched_hit(shape, origins, dirs, step, 8.0)
    assert np.isfinite(t_fast).sum() > n // 4 and (~np.isfinite(t_fast)).sum() > 0
    both = np.isfinite(t_fast) & np.isfinite(t_slow)
    # Grazing rays may be missed by the marcher or by float32 maths; they must be rare.
    assert (np.isfinite(t_fast) != np.isfinite(t_slow)).sum() <= 3
    assert np.all(t_slow[both] - t_fast[both] <= step + 1e-4)
    assert np.all(t_slow[both] - t_fast[both] >= -1e-4)


@pytest.mark.parametrize("kind", ["indoor", "outdoor"])
def test_culled_rendering_matches_brute_force_depth(kind):
    scene = generate_scene(11, kind)
    cameras, _ = plan_cameras(scene, 3, 61, 45)  # partial 8 x 8 tiles at the edges
    renderer = Renderer(scene)
    for camera in cameras:
        frame = renderer.render(camera)
        dirs, cos_axis, pixel = renderer.camera_rays(camera)
        world = dirs @ camera.c2w[:3, :3].T.astype(np.float32)
        origin = camera.c2w[:3, 3].astype(np.float32)
        t = np.min([scene.enclosure.intersect(origin, world)] + [s.intersect(origin, world) for s in scene.shapes], axis=0)
        brute = np.zeros(frame.depth.size, np.float32)
        brute[pixel] = np.where(np.isfinite(t), t * cos_axis, 0)
        assert np.allclose(frame.depth.ravel(), brute, atol=1e-5)


def test_shadow_ray_culling_matches_brute_force():
    """Shadow rays are incoherent bundles (random points): culling must still miss nothing."""
    scene = generate_scene(4, "outdoor")
    renderer = Renderer(scene)
    rng = np.random.default_rng(0)
    lo, hi = np.array(scene.walk_lo), np.array(scene.walk_hi)
    points = rng.uniform(lo - [0, 0, 1.0], hi, (3000, 3)).astype(np.float32)
    sun = np.asarray(scene.lights[0].direction, np.float32)
    brute = np.zeros(len(points), bool)
    for shape in scene.shapes:
        brute |= np.isfinite(shape.intersect(points, np.broadcast_to(sun, points.shape)))
    assert 0 < brute.sum() < len(points)
    assert np.array_equal(renderer._sun_blocked(points, sun), brute)
    # Rays leaving one point (a point light) towards the same points.
    light = np.array([0.3, -0.2, 2.5], np.float32)
    dirs = points - light
    dist = np.linalg.norm(dirs, axis=1)
    dirs /= dist[:, None]
    t, ids = dist.copy(), np.full(len(points), -1)
    renderer._closest(light, dirs, t, ids)
    t_brute = np.min([dist] + [s.intersect(light, dirs) for s in scene.shapes], axis=0)
    assert np.array_equal(t, t_brute)


def test_same_seed_same_scene_and_images_other_seed_differs():
    a, b, c = generate_scene(7, "outdoor"), generate_scene(7, "outdoor"), generate_scene(8, "outdoor")
    assert a == b
    assert a != c
    cams_a, info_a = plan_cameras(a, 2, 48, 32)
    cams_b, info_b = plan_cameras(b, 2, 48, 32)
    assert info_a == info_b
    frame_a, frame_b = Renderer(a).render(cams_a[1]), Renderer(b).render(cams_b[1])
    assert np.array_equal(frame_a.rgb, frame_b.rgb) and np.array_equal(frame_a.depth, frame_b.depth)
    frame_c = Renderer(c).render(plan_cameras(c, 2, 48, 32)[0][1])
    assert not np.array_equal(frame_a.rgb, frame_c.rgb)


def test_scenes_have_varied_shapes_materials_and_lights():
    scenes = [generate_scene(s, k) for s in range(6) for k in ("indoor", "outdoor")]
    shape_types = {type(s) for sc in scenes for s in sc.shapes}
    patterns = {m.pattern for sc in scenes for m in sc.materials}
    assert shape_types == {Box, Sphere, Cylinder}
    assert len(patterns) >= 5
    assert any(m.specular > 0 for sc in scenes for m in sc.materials)
    assert {type(light) for sc in scenes for light in sc.lights} == {PointLight, SunLight}


@pytest.mark.parametrize("trajectory", TRAJECTORIES)
@pytest.mark.parametrize("kind", ["indoor", "outdoor"])
def test_cameras_stay_in_free_space(kind, trajectory):
    for seed in range(4):
        scene = generate_scene(seed, kind)
        cameras, info = plan_cameras(scene, 12, 32, 32, trajectory)
        assert len(cameras) == 12 and info["trajectory"] in TRAJECTORIES
        eyes = np.array([c.c2w[:3, 3] for c in cameras])
        assert scene.camera_ok(eyes, CLEARANCE).all()
        if isinstance(scene.enclosure, Room):
            assert np.all((eyes > scene.enclosure.lo) & (eyes < scene.enclosure.hi))


def test_baselines_range_from_small_to_large():
    baselines = [plan_cameras(generate_scene(s, k), 8, 16, 16)[1]["baseline_m"] for s in range(10) for k in ("indoor", "outdoor")]
    assert min(baselines) < 0.5 and max(baselines) > 2.0


def test_cli_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["datagen", "procedural", "--scenes", "2", "--views", "3", "--size", "32", "--out", str(out), "--seed", "5"]
    assert main(args) == 0
    assert "6 views rendered, 0 already done" in capsys.readouterr().out
    scenes = find_scenes(out)
    assert [p.name for p in scenes] == ["scene_00000", "scene_00001"]
    kinds = []
    for path in scenes:
        scene = read_scene(path)
        assert len(scene) == 3 and scene.frames[0].rgb.shape == (32, 32, 3)
        kinds.append(scene.meta["generator"]["kind"])
    assert kinds == ["indoor", "outdoor"]  # --kind mixed alternates
    assert main(args) == 0
    assert "0 views rendered, 6 already done" in capsys.readouterr().out
    assert main([*args[:-2], "--seed", "6"]) == 1  # other settings into the same folder: refused
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["datagen", "procedural", "--kind", "attic"])


def test_cli_output_does_not_depend_on_worker_count(tmp_path):
    base = ["datagen", "procedural", "--scenes", "2", "--views", "4", "--size", "24", "--seed", "9"]
    assert main([*base, "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    for name in ("scene_00000", "scene_00001"):
        one = (tmp_path / "one" / name / "transforms.json").read_text()
        assert one == (tmp_path / "two" / name / "transforms.json").read_text()  # same poses, same file hashes


def _render_digest(kind: str, index: int, views: int, size: int, base_seed: int) -> str:
    """SHA-256 of the pixels (RGB uint8, depth as the stored uint16 millimetres) that
    ``worldfm datagen procedural`` renders for scene ``index`` of a run: the decoded arrays,
    not the PNG bytes, so an encoder change elsewhere does not move it."""
    import hashlib

    from datagen.dataset import encode_depth
    from datagen.procedural.cli import scene_seed

    scene = generate_scene(scene_seed(base_seed, index), kind)
    cameras, _ = plan_cameras(scene, views, size, size)
    renderer, digest = Renderer(scene), hashlib.sha256()
    for camera in cameras:
        frame = renderer.render(camera)
        digest.update(frame.rgb.tobytes())
        digest.update(encode_depth(frame.depth).tobytes())
    return digest.hexdigest()


# The model card's figures (models/weights/demo-256/MODEL_CARD.md) are measured on data this
# renderer makes. A change that moves any of these digests changes the card's data: regenerate
# it with the card's datagen commands, rerun the card's commands, update the card, then these.
PINNED_RENDERS = {
    ("indoor", 0): "a3208b65a6490e234c65c3239f5d12d0354d0d32745186fb36f96b60e08ce19b",
    ("outdoor", 1): "93a583e3241ba4094ef2cf741065ad8863a0251b6931b5f906b5ef8d8a07f108",
    ("room", 2): "e560c461908b9080efddb75afc680353900a199fdf55363334ec79b43d855eec",
    ("hall", 3): "11350f0059ed91e74b68caec57de109ea589a883749e29ab420ae17ef24f164c",
}


@pytest.mark.parametrize(("kind", "index"), sorted(PINNED_RENDERS))
def test_renderer_output_is_pinned(kind, index):
    digest = _render_digest(kind, index, views=3, size=48, base_seed=100000)
    assert digest == PINNED_RENDERS[kind, index], (
        f"the procedural renderer's output changed ({kind} scene {index}: {digest}); regenerate the model card's "
        "data and figures with its commands (models/weights/demo-256/MODEL_CARD.md), then update PINNED_RENDERS"
    )


# ----------------------------------------------------------------------------- richer families

NEW_FAMILIES = ("room", "courtyard", "hall", "street")


@pytest.mark.parametrize("kind", NEW_FAMILIES)
def test_new_families_keep_cameras_free_and_draw_only_their_texture_set(kind):
    from datagen.procedural.families import HELD_OUT_FAMILIES, HELD_OUT_TEXTURES, TRAIN_TEXTURES, texture_set

    expected = HELD_OUT_TEXTURES if kind in HELD_OUT_FAMILIES else TRAIN_TEXTURES
    assert texture_set(kind) is expected
    photos, patterns = set(), set()
    for seed in range(5):
        scene = generate_scene(seed, kind)
        assert scene == generate_scene(seed, kind)  # deterministic
        cameras, _ = plan_cameras(scene, 10, 32, 32)
        assert scene.camera_ok(np.array([c.c2w[:3, 3] for c in cameras]), CLEARANCE).all()
        photos |= {m.image for m in scene.materials if m.image}
        patterns |= {m.pattern for m in scene.materials if not m.image}
    assert photos and photos <= set(expected.photos)
    # Held-out families may use the legacy patterns only for lamp glass and leaves ("solid", "noise").
    assert (patterns - {"solid", "noise"}) <= set(expected.patterns)


def test_held_out_textures_are_disjoint_from_training_ones():
    from datagen.procedural.families import HELD_OUT_TEXTURES, TRAIN_TEXTURES

    assert not set(HELD_OUT_TEXTURES.photos) & set(TRAIN_TEXTURES.photos)
    assert not set(HELD_OUT_TEXTURES.patterns) & set(TRAIN_TEXTURES.patterns)


def test_photo_mip_mapping_matches_texels_up_close_and_the_mean_far_away():
    from datagen.procedural.textures import photo_albedo, photo_pyramid

    level0 = photo_pyramid("brick")[0]
    h, w = level0.shape[:2]
    scale = 2.0  # metres per tile along the longer side
    texel = scale / max(h, w)
    rows, cols = np.array([3, 100, h - 2]), np.array([5, 77, w - 3])
    uv = np.stack([(cols + 0.5) * texel, (rows + 0.5) * texel], 1).astype(np.float32)
    near = photo_albedo("brick", uv, scale, np.full(3, texel * 0.5, np.float32))
    assert np.allclose(near, level0[rows, cols], atol=1e-5)  # at texel centres: the texel itself
    far = photo_albedo("brick", uv, scale, np.full(3, scale * 100, np.float32))
    assert np.allclose(far, level0.mean((0, 1)), rtol=0.05)  # a pixel covering many tiles: the average
    # Mirrored tiling: no seam where one tile meets the next.
    edge = np.float32([[w * texel - 1e-4, 10.5 * texel], [w * texel + 1e-4, 10.5 * texel]])
    a, b = photo_albedo("brick", edge, scale, np.full(2, texel * 0.5, np.float32))
    assert np.allclose(a, b, atol=1e-3)


def test_cli_records_family_texture_set_and_photo_sources(tmp_path):
    from datagen.procedural.textures import HELD_OUT_PHOTOS, PHOTOS

    out = tmp_path / "ood"
    assert main(["datagen", "procedural", "--kind", "held-out", "--scenes", "2", "--views", "2", "--size", "32",
                 "--out", str(out), "--workers", "1"]) == 0
    families = []
    for path in find_scenes(out):
        generator = read_scene(path).meta["generator"]
        families.append(generator["kind"])
        assert generator["texture_set"] == "held-out"
        assert generator["photos"]
        for photo in generator["photos"]:
            assert photo["name"] in HELD_OUT_PHOTOS and photo["licence"] == PHOTOS[photo["name"]].licence
            assert photo["package"] == "scikit-image" and len(photo["sha256"]) == 64
    assert families == ["hall", "street"]


def test_cli_runs_in_one_process_do_not_share_scenes(tmp_path):
    # Without worker processes the command renders in this process; a second run with other
    # settings must not reuse the first run's scene or cameras.
    base = ["datagen", "procedural", "--scenes", "1", "--views", "2", "--workers", "1"]
    assert main([*base, "--size", "24", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--size", "16", "--kind", "outdoor", "--out", str(tmp_path / "b")]) == 0
    scene = read_scene(tmp_path / "b" / "scene_00000")
    assert scene.frames[0].rgb.shape == (16, 16, 3) and scene.meta["generator"]["kind"] == "outdoor"


@pytest.mark.parametrize("seed", [47, 48, 55, 56])
def test_hall_scenes_with_an_aisle_too_narrow_for_benches_still_generate(seed):
    """These halls' pillars leave an aisle narrower than a bench's footprint: the placement used
    to ask numpy for a spot in an empty range and stopped the whole dataset with a traceback."""
    scene = generate_scene(seed, "hall")
    assert scene.kind == "hall" and scene.shapes
