"""The pluggable ONNX depth step, with tiny models exported by the test itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from models.anchor import AnchorInputError, OnnxDepthEstimator, build_scene
from models.cameras import K_from_hfov
from models.scene import Camera, Frame


class _RedIsNear(torch.nn.Module):
    """Depth 1 + 3 * (1 - red) metres; or, as disparity, its inverse."""

    def __init__(self, disparity: bool) -> None:
        super().__init__()
        self.disparity = disparity

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        depth = 1.0 + 3.0 * (1.0 - image[:, :1])
        return 1.0 / depth if self.disparity else depth


def _export(tmp_path, name: str, disparity: bool = False, static_size: tuple[int, int] | None = None) -> str:
    path = tmp_path / f"{name}.onnx"
    h, w = static_size or (16, 16)
    dynamic = None if static_size else {"image": {2: "h", 3: "w"}, "depth": {2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _RedIsNear(disparity),
            (torch.rand(1, 3, h, w),),
            str(path),
            input_names=["image"],
            output_names=["depth"],
            dynamic_axes=dynamic,
            dynamo=False,
        )
    return str(path)


def _photo(h: int = 12, w: int = 20) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w).round().astype(np.uint8)[None, :]
    return rgb


def _expected(rgb: np.ndarray) -> np.ndarray:
    return 1.0 + 3.0 * (1.0 - rgb[..., 0] / 255.0)


def test_metric_and_disparity_models_give_metres(tmp_path):
    rgb = _photo()
    metric = OnnxDepthEstimator(_export(tmp_path, "metric"))
    np.testing.assert_allclose(metric(rgb), _expected(rgb), rtol=1e-5)
    doubled = OnnxDepthEstimator(_export(tmp_path, "metric2"), scale=2.0)
    np.testing.assert_allclose(doubled(rgb), 2 * _expected(rgb), rtol=1e-5)
    inverse = OnnxDepthEstimator(_export(tmp_path, "disp", disparity=True), kind="disparity", scale=0.5)
    np.testing.assert_allclose(inverse(rgb), 0.5 * _expected(rgb), rtol=1e-5)


def test_static_model_size_is_resized_to_and_from(tmp_path):
    rgb = np.full((12, 20, 3), 255, np.uint8)  # uniform, so resizing changes nothing
    est = OnnxDepthEstimator(_export(tmp_path, "static", static_size=(8, 10)))
    assert est.model_size == (10, 8)
    depth = est(rgb)
    assert depth.shape == (12, 20)
    np.testing.assert_allclose(depth, 1.0, rtol=1e-5)


def test_a_photo_without_depth_seeds_a_scene(tmp_path):
    rgb = _photo(24, 32)
    frame = Frame(rgb=rgb, camera=Camera(K=K_from_hfov(60, 32, 24), c2w=np.eye(4), width=32, height=24))
    with pytest.raises(AnchorInputError, match="no depth map"):
        build_scene([frame])
    completed = OnnxDepthEstimator(_export(tmp_path, "m")).complete(frame)
    scene = build_scene([completed])
    assert len(scene.cloud) > 0.8 * 24 * 32
    assert np.all(scene.cloud.xyz[:, 2] >= 1.0 - 1e-4) and np.all(scene.cloud.xyz[:, 2] <= 4.0 + 1e-4)


def test_missing_or_bad_models_say_what_is_needed(tmp_path):
    with pytest.raises(AnchorInputError, match=r"no depth model given.*\[1, 3, H, W\].*Depth Anything"):
        OnnxDepthEstimator(None)
    with pytest.raises(AnchorInputError, match="does not exist"):
        OnnxDepthEstimator(tmp_path / "missing.onnx")
    path = _export(tmp_path, "ok")
    with pytest.raises(AnchorInputError, match="kind"):
        OnnxDepthEstimator(path, kind="normals")
    with pytest.raises(AnchorInputError, match="scale"):
        OnnxDepthEstimator(path, scale=0.0)
    with pytest.raises(AnchorInputError, match=r"uint8 \[H, W, 3\]"):
        OnnxDepthEstimator(path)(np.zeros((4, 4), np.uint8))
