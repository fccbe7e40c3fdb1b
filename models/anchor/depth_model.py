"""Depth for photos that come without it: any ONNX monocular depth model behind one signature.

No weights ship. A user exports the model of their choice (Depth Anything V2, MoGe-2,
Metric3D ...) to ONNX so that it follows this contract:

* one input, float32 ``[1, 3, H, W]``: RGB in 0..1, channels first (bake any mean/std
  normalisation into the export, or pass ``mean``/``std`` here);
* first output, float32 ``[1, 1, h, w]``, ``[1, h, w]`` or ``[h, w]``: per-pixel
  metric z-depth in metres (``kind="depth"``) or relative inverse depth
  (``kind="disparity"``, larger = nearer, as Depth Anything's relative models give).

``H``/``W`` are the model's own if its input shape is static, else ``input_size``, else
the photo's size; the output is resized back to the photo with bilinear interpolation.

Metric scale: ``depth = scale * output`` for ``kind="depth"`` (``scale=1`` trusts a
metric model), ``depth = scale / output`` for ``kind="disparity"`` -- a relative model's
unknown scale is then the user's ``scale`` (e.g. from one measured distance), and its
unknown shift is ignored. Non-positive or non-finite outputs become "no depth" (0).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.anchor.cloud import AnchorInputError
from models.scene import Frame

__all__ = ["OnnxDepthEstimator", "DEPTH_KINDS"]

DEPTH_KINDS = ("depth", "disparity")


class OnnxDepthEstimator:
    """Estimates z-depth in metres [H, W] float32 for uint8 RGB photos [H, W, 3] with an ONNX model."""

    def __init__(
        self,
        model_path: str | Path | None,
        kind: str = "depth",
        scale: float = 1.0,
        input_size: tuple[int, int] | None = None,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        providers: list[str] | None = None,
    ) -> None:
        """``model_path``: the ONNX file; ``kind``: ``"depth"`` or ``"disparity"``;
        ``scale``: metric scale (see module doc); ``input_size``: ``(W, H)`` fed to a model
        with dynamic spatial axes; ``mean``/``std``: per-channel normalisation applied to
        the 0..1 input; ``providers``: ONNX Runtime providers (default: CPU)."""
        if model_path is None:
            raise AnchorInputError(
                "no depth model given: this photo has no depth map, so an ONNX depth model is needed "
                "(input float32 [1, 3, H, W] RGB 0..1, output metric depth or disparity); export one "
                "yourself, e.g. Depth Anything V2 or MoGe-2, and pass its path (see docs/anchor.md)"
            )
        path = Path(model_path)
        if not path.is_file():
            raise AnchorInputError(f"depth model {path} does not exist; pass the path of an exported .onnx file")
        if kind not in DEPTH_KINDS:
            raise AnchorInputError(f"depth model kind must be one of {DEPTH_KINDS}; got {kind!r}")
        if not (np.isfinite(scale) and scale > 0):
            raise AnchorInputError(f"depth scale must be a positive number; got {scale}")
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise AnchorInputError(
                f"depth model {path} must take one [1, 3, H, W] input; got {[(i.name, i.shape) for i in inputs]}"
            )
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        self.model_size = (w, h) if isinstance(h, int) and isinstance(w, int) else input_size
        self.kind = kind
        self.scale = float(scale)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Depth float32 [H, W] in metres (0 = no estimate) for ``rgb`` uint8 [H, W, 3]."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise AnchorInputError(f"depth estimation needs a uint8 [H, W, 3] RGB image; got {rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32) / 255.0
        image = ((image - self.mean) / self.std)[None]
        if self.model_size is not None and self.model_size != (width, height):
            image = F.interpolate(image, size=self.model_size[::-1], mode="bilinear", align_corners=False)
        raw = self.session.run(None, {self.input_name: image.numpy()})[0]
        out = torch.from_numpy(np.asarray(raw, dtype=np.float32))
        if out.ndim not in (2, 3, 4) or out.shape[:-2].numel() != 1:
            raise AnchorInputError(
                f"depth model output must be [1, 1, h, w], [1, h, w] or [h, w]; got {tuple(out.shape)}"
            )
        out = out.reshape(1, 1, *out.shape[-2:])
        if out.shape[-2:] != (height, width):
            out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        out = out[0, 0]
        valid = torch.isfinite(out) & (out > 0)
        depth = self.scale * out if self.kind == "depth" else self.scale / torch.where(valid, out, 1.0)
        return torch.where(valid, depth, 0.0).numpy()

    def complete(self, frame: Frame) -> Frame:
        """``frame`` with its depth estimated (a frame that already has depth is returned as is)."""
        if frame.depth is not None:
            return frame
        return replace(frame, depth=self(frame.rgb))
