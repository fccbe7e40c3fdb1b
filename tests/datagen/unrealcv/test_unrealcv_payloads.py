"""Decoding UnrealCV payloads and converting its depth, against slow references."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from fake_unrealcv_server import cnpy_bytes, png_bytes
from PIL import Image

from datagen.unrealcv.payloads import (
    PayloadError,
    check_view,
    decode_npy,
    decode_png_rgb,
    depth_from_npy,
    ray_lengths,
)
from models.cameras import K_from_hfov


def test_png_rgba_with_empty_alpha_keeps_its_colours():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # UnrealCV's lit alpha carries no colour
    np.testing.assert_array_equal(decode_png_rgb(png_bytes(rgba)), rgba[..., :3])


def test_text_reply_instead_of_an_image_is_a_payload_error():
    # The client hands over bodies that happen to be valid UTF-8 as str.
    with pytest.raises(PayloadError, match="not a readable PNG"):
        decode_png_rgb("ok")
    with pytest.raises(PayloadError, match="not a readable .npy"):
        decode_npy("1.0 2.0")


@pytest.mark.parametrize("payload", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, b"ok"])
def test_unreadable_png_raises_payload_error(payload):
    with pytest.raises(PayloadError):
        decode_png_rgb(payload)


def test_other_image_formats_are_refused():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="BMP")
    with pytest.raises(PayloadError, match="expected a PNG"):
        decode_png_rgb(buf.getvalue())


def test_cnpy_payload_reads_back_exactly():
    depth = np.random.default_rng(1).uniform(10, 5000, (6, 9)).astype(np.float32)
    data = cnpy_bytes(depth)
    assert (len(data) - depth.nbytes) % 16 == 0  # cnpy pads its header to 16 bytes
    np.testing.assert_array_equal(decode_npy(data), depth)


def test_npy_with_pickled_objects_is_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PayloadError):
        decode_npy(buf.getvalue())
    with pytest.raises(PayloadError):
        decode_npy(pickle.dumps([1, 2, 3]))


def test_depth_is_metres_and_empty_space_is_zero():
    K = K_from_hfov(90.0, 4, 2)
    cm = np.array([[150.0, 65504.0, np.inf, -1.0], [0.0, 1.0, 65000.5, 2500.0]], np.float32)
    depth = depth_from_npy(cnpy_bytes(cm), distance_to_centre=False, K=K)
    np.testing.assert_allclose(depth, [[1.5, 0, 0, 0], [0, 0.01, 0, 25.0]], rtol=1e-6)
    assert depth.dtype == np.float32


def test_depth_with_nan_or_colour_channels_is_a_payload_error():
    K = K_from_hfov(90.0, 3, 3)
    with pytest.raises(PayloadError, match="NaN"):
        depth_from_npy(cnpy_bytes(np.full((3, 3), np.nan)), distance_to_centre=False, K=K)
    with pytest.raises(PayloadError, match=r"\(H, W\)"):
        depth_from_npy(cnpy_bytes(np.ones((3, 3, 3))), distance_to_centre=False, K=K)


def _slow_ray_lengths(K, width, height):
    out = np.zeros((height, width))
    Kinv = np.linalg.inv(K)
    for i in range(height):
        for j in range(width):
            out[i, j] = np.linalg.norm(Kinv @ [j + 0.5, i + 0.5, 1.0])
    return out


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (16, 9)])
def test_ray_lengths_match_the_slow_reference(size):
    rng = np.random.default_rng(size[0])
    w, h = size
    K = np.array([[rng.uniform(0.5, 20), rng.uniform(-1, 1), rng.uniform(0.1, w - 0.1)],
                  [0, rng.uniform(0.5, 20), rng.uniform(0.1, h - 0.1)], [0, 0, 1]])
    np.testing.assert_allclose(ray_lengths(K, w, h), _slow_ray_lengths(K, w, h), rtol=1e-6)


def test_distance_to_centre_becomes_z_depth():
    # A fronto-parallel wall 3 m away: z-depth 3 everywhere, distance grows off-axis.
    K = K_from_hfov(100.0, 8, 6)
    distance_cm = 300.0 * _slow_ray_lengths(K, 8, 6)
    depth = depth_from_npy(cnpy_bytes(distance_cm), distance_to_centre=True, K=K)
    np.testing.assert_allclose(depth, 3.0, rtol=1e-5)


def test_check_view_catches_size_and_black_frames():
    rgb, depth = np.full((4, 6, 3), 9, np.uint8), np.ones((4, 6), np.float32)
    check_view(rgb, depth, 6, 4)
    with pytest.raises(PayloadError, match="lit image is 6x4, the camera is 8x4"):
        check_view(rgb, depth, 8, 4)
    with pytest.raises(PayloadError, match="depth is 3x2"):
        check_view(rgb, np.ones((2, 3), np.float32), 6, 4)
    with pytest.raises(PayloadError, match="all black"):
        check_view(np.zeros_like(rgb), depth, 6, 4)
