"""Training pairs: camera-consistent augmentation, anchors built without the target, the cache."""

from __future__ import annotations

import numpy as np
import torch
from training_fixtures import IMAGE_SIZE, procedural_scenes, tiny_codec

from models.cameras import crop_K, look_at, mirror_camera, project
from models.pairs import PairConfig, PairDataset, build_scene_samples

K = np.array([[50.0, 0, 30.0], [0, 55.0, 34.0], [0, 0, 1]])


def _points(rng: np.random.Generator, c2w: np.ndarray, n: int = 20) -> np.ndarray:
    """World points in front of the camera ``c2w``."""
    local = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2, 5, n)], 1)
    return local @ c2w[:3, :3].T + c2w[:3, 3]


def test_mirrored_camera_sees_the_flipped_image_of_the_mirrored_world():
    rng = np.random.default_rng(0)
    c2w = look_at(np.array([1.0, -2.0, 0.5]), np.array([0.2, 1.0, 0.3]))
    pts = _points(rng, c2w)
    uv, z = project(pts, K, c2w)
    k2, c2w2 = mirror_camera(K, c2w, 64)
    uv2, z2 = project(pts * np.array([-1.0, 1.0, 1.0]), k2, c2w2)
    np.testing.assert_allclose(uv2[:, 0], 64 - uv[:, 0], atol=1e-9)
    np.testing.assert_allclose(uv2[:, 1], uv[:, 1], atol=1e-9)
    np.testing.assert_allclose(z2, z, atol=1e-9)
    assert np.linalg.det(c2w2[:3, :3]) > 0


def test_relative_pose_is_mirrored_consistently():
    """The relative pose of two mirrored cameras is the mirror of their relative pose."""
    a = look_at(np.array([0.0, 0, 0]), np.array([1.0, 2, 0]))
    b = look_at(np.array([0.5, 0.3, 0.1]), np.array([2.0, 2, 0.4]))
    _, a2 = mirror_camera(K, a, 64)
    _, b2 = mirror_camera(K, b, 64)
    m = np.diag([-1.0, 1, 1, 1])
    np.testing.assert_allclose(np.linalg.inv(a2) @ b2, m @ np.linalg.inv(a) @ b @ m, atol=1e-9)


def test_crop_K_maps_pixels_into_the_resized_crop():
    rng = np.random.default_rng(1)
    c2w = look_at(np.zeros(3), np.array([0.0, 1.0, 0.0]))
    pts = _points(rng, c2w)
    uv, _ = project(pts, K, c2w)
    box = (7, 11, 40, 40)
    uv2, _ = project(pts, crop_K(K, box, 64), c2w)
    np.testing.assert_allclose(uv2, (uv - np.array(box[:2])) * 64 / 40, atol=1e-9)


def test_wider_left_out_window_leaves_more_of_the_target_uncovered():
    """The anchor is rendered from a cloud without the target's window: leaving out more
    neighbours must lower the anchor's coverage of the target (it would be ~1 if the
    target view itself were in the cloud)."""
    scene = procedural_scenes(2, 8)[0]
    encoder, _ = tiny_codec()
    base = dict(image_size=IMAGE_SIZE, crop_prob=0.0, flip_prob=0.0)
    narrow = build_scene_samples(scene, 0, encoder, PairConfig(window=1, **base))
    wide = build_scene_samples(scene, 0, encoder, PairConfig(window=4, **base))
    cover_narrow = narrow["anchor_mask"].float().mean()
    cover_wide = wide["anchor_mask"].float().mean()
    assert cover_wide < cover_narrow
    assert cover_narrow < 0.999
    # references are never the target or another view of its left-out window
    for j, refs in enumerate(wide["refs"]):
        window = {4 * (j // 4) + i for i in range(4)}
        assert not window & {int(r) for r in refs if r >= 0}


class _Pool8(torch.nn.Module):
    """An "encoder" that keeps the image readable: 8x8 mean pooling, (B, 3, H, W) -> (B, 3, H/8, W/8)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images, 8)


def test_filled_anchor_samples_differ_only_in_the_holes_of_the_anchor():
    """``anchor_filled`` encodes the anchor with its holes filled: latent cells the cloud covers
    whole are unchanged, cells it leaves empty whole are black (-1) raw and coloured filled;
    every other tensor of the samples is the same."""
    scene = procedural_scenes(2, 8)[0]
    base = {"image_size": IMAGE_SIZE, "crop_prob": 0.0, "flip_prob": 0.0, "window": 4}
    raw = build_scene_samples(scene, 0, _Pool8(), PairConfig(**base))
    filled = build_scene_samples(scene, 0, _Pool8(), PairConfig(anchor_filled=True, **base))
    for key in raw.keys() - {"anchor_latent"}:
        assert torch.equal(raw[key], filled[key]), key
    cover = torch.nn.functional.avg_pool2d(raw["anchor_mask"].float(), 8)  # (S, 1, h, w) share covered
    whole, empty = (cover == 1).expand_as(raw["anchor_latent"]), (cover == 0).expand_as(raw["anchor_latent"])
    assert empty.any() and whole.any()
    assert torch.equal(raw["anchor_latent"][whole], filled["anchor_latent"][whole])
    assert (raw["anchor_latent"][empty] == -1).all()
    assert (filled["anchor_latent"][empty] > -1).all()


def test_flipped_samples_hold_mirrored_images_and_cameras():
    scene = procedural_scenes(2, 8)[0]
    encoder, _ = tiny_codec()
    plain = build_scene_samples(scene, 0, encoder, PairConfig(image_size=IMAGE_SIZE, crop_prob=0.0, flip_prob=0.0))
    flipped = build_scene_samples(scene, 0, encoder, PairConfig(image_size=IMAGE_SIZE, crop_prob=0.0, flip_prob=1.0))
    assert torch.equal(flipped["anchor_mask"], plain["anchor_mask"].flip(-1))
    k, c2w = mirror_camera(plain["tgt_K"][0].numpy(), plain["tgt_c2w"][0].numpy(), IMAGE_SIZE)
    np.testing.assert_allclose(flipped["tgt_c2w"][0].numpy(), c2w, atol=1e-6)
    np.testing.assert_allclose(flipped["tgt_K"][0].numpy(), k, atol=1e-5)


def test_dataset_items_and_cache(pair_dataset, pair_cache):
    item = pair_dataset[3]
    assert item["target_latent"].shape == (4, 8, 8) and item["anchor_mask"].shape == (1, IMAGE_SIZE, IMAGE_SIZE)
    assert len(list(pair_cache.glob("*.safetensors"))) == 2
    encoder, _ = tiny_codec()
    again = PairDataset(procedural_scenes(2, 8), encoder, PairConfig(image_size=IMAGE_SIZE), pair_cache)
    for key, value in pair_dataset.scenes[1].items():
        assert torch.equal(again.scenes[1][key], value), key
