"""Anti-aliased procedural renders (``Renderer.render(..., supersample=N)``,
``worldfm datagen procedural --supersample N``): the N x N sub-pixel colours are averaged,
depth stays the pixel-centre ray, and the one-ray renders are untouched (those are pinned by
``test_procedural.test_renderer_output_is_pinned``, which renders with the default)."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.dataset import find_scenes, read_scene
from datagen.procedural.cli import scene_seed
from datagen.procedural.renderer import Renderer, subpixel_offsets
from datagen.procedural.scenes import Material, ProceduralScene, generate_scene
from datagen.procedural.shapes import Room
from datagen.procedural.trajectories import plan_cameras
from models.cameras import K_from_hfov, look_at, scale_K
from models.scene import Camera
from python_bridge.cli import main


def _big_camera_average(renderer: Renderer, camera: Camera, n: int) -> np.ndarray:
    """Reference anti-aliased RGB: one ray per pixel of an n-times larger image of the same view
    (its K rescaled by ``scale_K``, so its pixel centres are the sub-pixel grid), then the mean
    of each n x n block, rounded. Reaches the sub-pixel rays through the intrinsics, not through
    ``supersample``."""
    big = Camera(scale_K(camera.K, (camera.width, camera.height), (n * camera.width, n * camera.height)),
                 camera.c2w, n * camera.width, n * camera.height)
    rgb = renderer.render(big).rgb.astype(np.float64).reshape(camera.height, n, camera.width, n, 3)
    return np.round(rgb.mean((1, 3))).astype(np.uint8)


@pytest.mark.parametrize(("kind", "index"), [("room", 2), ("hall", 3), ("outdoor", 1)])
def test_supersampled_colour_is_the_mean_of_the_subpixel_rays_and_depth_is_unchanged(kind, index):
    scene = generate_scene(scene_seed(100000, index), kind)  # photo-textured (room, hall) and patterned
    cameras, _ = plan_cameras(scene, 2, 32, 24)
    renderer = Renderer(scene)
    for camera in cameras:
        one, three = renderer.render(camera), renderer.render(camera, supersample=3)
        assert np.array_equal(three.depth, one.depth)  # the centre sub-sample is the pixel-centre ray
        # Bit-exact on this machine: both ways compute the same real ray directions, and photos
        # are filtered to the same sub-pixel footprint (1 / (3 f)).
        assert np.array_equal(three.rgb, _big_camera_average(renderer, camera, 3))
        assert not np.array_equal(three.rgb, one.rgb)


def _stripe_wall_scene(pattern: str) -> ProceduralScene:
    """A room whose walls carry a black-and-white pattern of 0.1 m cells, evenly lit (ambient only)."""
    material = Material((0.9, 0.9, 0.9), (0.05, 0.05, 0.05), pattern, 0.1, 0.0, 10.0, 1)
    return ProceduralScene(
        kind="indoor", seed=0, enclosure=Room((0.0, 0.0, 0.0), (20.0, 8.0, 6.0), (0,) * 6), shapes=(),
        materials=(material,), ambient=(0.6, 0.6, 0.6), lights=(), sky=None,
        walk_lo=(0.0, 0.0, 0.0), walk_hi=(1.0, 1.0, 1.0),
    )


@pytest.mark.parametrize("pattern", ["stripes", "checker"])
def test_supersampling_tames_a_fine_pattern_seen_from_afar(pattern):
    # The far wall is ~19 m away: one pixel spans ~0.7 m, seven stripe periods, so one ray per
    # pixel picks black or white at random while a camera would see the mean grey.
    eye = np.array([1.0, 4.0, 3.0])
    camera = Camera(K_from_hfov(50.0, 24, 16), look_at(eye, eye + np.array([1.0, 0.2, -0.1])), 24, 16)
    renderer = Renderer(_stripe_wall_scene(pattern))
    one, three, reference = (renderer.render(camera, supersample=n).rgb.astype(np.float64) for n in (1, 3, 9))
    error_one, error_three = np.abs(one - reference).mean(), np.abs(three - reference).mean()
    assert error_one > 20  # the one-ray image aliases badly (measured ~40 levels)
    assert error_three < 0.5 * error_one  # measured ~0.15-0.25 of it


def test_subpixel_grid_is_centred_and_odd_sizes_only():
    assert subpixel_offsets(1) == [(0.0, 0.0)]
    grid = np.array(subpixel_offsets(3))
    assert grid.shape == (9, 2) and (0.0, 0.0) in subpixel_offsets(3)
    assert np.allclose(np.unique(grid), [-1 / 3, 0.0, 1 / 3]) and np.allclose(grid.mean(0), 0.0)
    camera = Camera(K_from_hfov(60.0, 8, 8), look_at(np.array([1.0, 1.0, 1.0]), np.array([3.0, 1.0, 1.0])), 8, 8)
    renderer = Renderer(_stripe_wall_scene("stripes"))
    for bad, says in ((2, "must be odd"), (0, "positive odd"), (-3, "positive odd"), (3.0, "positive odd")):
        with pytest.raises(ValueError, match=says):
            renderer.render(camera, supersample=bad)


def test_cli_supersample_renders_records_and_refuses_bad_values(tmp_path, capsys):
    base = ["datagen", "procedural", "--kind", "room", "--scenes", "1", "--views", "2", "--size", "16",
            "--seed", "3", "--workers", "1"]
    assert main([*base, "--out", str(tmp_path / "aa"), "--supersample", "3"]) == 0
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    anti_aliased, plain = (read_scene(find_scenes(tmp_path / name)[0]) for name in ("aa", "plain"))
    assert anti_aliased.meta["generator"]["supersample"] == 3
    assert "supersample" not in plain.meta["generator"]  # one-ray folders keep today's metadata
    scene = generate_scene(anti_aliased.meta["seed"], "room")
    renderer = Renderer(scene)
    for frame in anti_aliased.frames:
        assert np.array_equal(frame.rgb, renderer.render(frame.camera, supersample=3).rgb)
    # Resuming the anti-aliased folder with one ray per pixel would mix two kinds of image: refused.
    assert main([*base, "--out", str(tmp_path / "aa")]) == 1
    assert "other settings" in capsys.readouterr().err
    for bad in ("2", "0", "-1"):
        assert main([*base, "--out", str(tmp_path / f"bad{bad}"), "--supersample", bad]) == 2
        assert "--supersample" in capsys.readouterr().err
        assert not (tmp_path / f"bad{bad}").exists()
