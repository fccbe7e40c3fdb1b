"""bench/anchor_scenes.py: the photo-textured rooms docs/anchor.md measures the anchor styles on.

The bench is not run by CI, so a change to the procedural renderer's hooks once broke it
unnoticed (``_albedo`` gained an argument). This renders one tiny scene of each set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[3] / "bench"))

import anchor_scenes  # noqa: E402


def test_photo_rooms_change_only_the_albedo():
    """The out-of-family room is the in-family renderer's room with photographs for albedo: the same
    cameras and depth maps, other colours."""
    photos = anchor_scenes.load_photos()
    photo_scene = anchor_scenes.held_out_scene(0, photo=True, views=2, size=24, photos=photos)
    from datagen.procedural.renderer import Renderer
    from datagen.procedural.scenes import generate_scene
    from datagen.procedural.trajectories import plan_cameras

    room = generate_scene(anchor_scenes.OUT_OF_FAMILY_SEED, "indoor")  # held_out_scene(0, photo=True)'s room
    cameras, _ = plan_cameras(room, 2, 24, 24)
    plain = [Renderer(room).render(cam, name=f"{i:05d}") for i, cam in enumerate(cameras)]
    assert len(photo_scene.frames) == 2
    for photo, base in zip(photo_scene.frames, plain):
        assert photo.rgb.shape == (24, 24, 3) and photo.rgb.dtype == np.uint8
        np.testing.assert_array_equal(photo.depth, base.depth)
        np.testing.assert_array_equal(photo.camera.c2w, base.camera.c2w)
        assert np.abs(photo.rgb.astype(int) - base.rgb).mean() > 5  # the photographs show
