"""The WorldFM meta.json reader on the published demo input (with our own 504 x 504 image)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.worldfm_meta import WorldFMMetaError, read_worldfm_meta
from models.cameras import validate_c2w

DEMO = Path(__file__).resolve().parents[1] / "data" / "worldfm-demo" / "meta.json"


def _demo(tmp_path: Path, size=(504, 504), **edits) -> Path:
    """A copy of the published meta.json beside a made-up mario.png of ``size=(W, H)``."""
    meta = json.loads(DEMO.read_text())
    meta.update(edits)
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(meta))
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "mario.png")
    return path


def test_published_demo_rescales_K_to_the_504_image_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="datagen.worldfm_meta"):
        demo = read_worldfm_meta(_demo(tmp_path))
    assert "512x512" in caplog.text and "504x504" in caplog.text
    assert demo.name == "mario" and demo.image.shape == (504, 504, 3)
    assert np.allclose(demo.K_as_written, [[320, 0, 256], [0, 320, 256], [0, 0, 1]])
    assert np.allclose(demo.K, [[315, 0, 252], [0, 315, 252], [0, 0, 1]])
    assert demo.c2w.shape == (30, 4, 4)
    assert np.allclose(demo.c2w, json.loads(DEMO.read_text())["c2w"])
    cameras = demo.cameras()
    assert len(cameras) == 30 and all(c.width == c.height == 504 for c in cameras)
    ref = demo.reference_frame()
    assert ref.depth is None and np.allclose(ref.camera.c2w, np.eye(4))


def test_image_of_Ks_own_size_keeps_K_without_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="datagen.worldfm_meta"):
        demo = read_worldfm_meta(_demo(tmp_path, size=(512, 512)))
    assert caplog.text == ""
    assert np.array_equal(demo.K, demo.K_as_written)


def test_single_pose_becomes_a_path_of_one(tmp_path):
    first = json.loads(DEMO.read_text())["c2w"][0]
    demo = read_worldfm_meta(_demo(tmp_path, size=(512, 512), c2w=first))
    assert demo.c2w.shape == (1, 4, 4)
    validate_c2w(demo.c2w)


def test_other_aspect_ratio_needs_k_size(tmp_path):
    path = _demo(tmp_path, size=(640, 360))
    with pytest.raises(WorldFMMetaError, match="aspect ratio.*k_size"):
        read_worldfm_meta(path)
    demo = read_worldfm_meta(path, k_size=(512, 512))
    assert np.allclose(demo.K, [[400, 0, 320], [0, 225, 180], [0, 0, 1]])


def test_invalid_inputs_raise_clear_errors(tmp_path):
    poses = json.loads(DEMO.read_text())["c2w"]
    poses[3][0][0] = float("nan")
    with pytest.raises(WorldFMMetaError, match="c2w must be finite"):
        read_worldfm_meta(_demo(tmp_path, c2w=poses))
    with pytest.raises(WorldFMMetaError, match="focal lengths must be positive"):
        read_worldfm_meta(_demo(tmp_path, K=[[-320, 0, 256], [0, 320, 256], [0, 0, 1]]))
    with pytest.raises(WorldFMMetaError, match="lacks"):
        path = _demo(tmp_path)
        meta = json.loads(path.read_text())
        del meta["K"]
        path.write_text(json.dumps(meta))
        read_worldfm_meta(path)
    path = _demo(tmp_path)
    (tmp_path / "mario.png").unlink()
    with pytest.raises(WorldFMMetaError, match="cannot read its image"):
        read_worldfm_meta(path)

