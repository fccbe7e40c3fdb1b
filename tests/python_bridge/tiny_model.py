"""An untrained ``tiny`` exported-model folder that follows the export contract.

Real ONNX graphs exported with ``torch.onnx`` from small torch modules, so the engine,
pipeline and server run the same code path they will run on the real export; the outputs
are meaningless images. Replaced by the real ``tiny`` export once models/export.py lands.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

LATENT_CHANNELS = 4
DOWNSAMPLE = 8


class TinyEncoder(nn.Module):
    """image (B, 3, H, W) in [-1, 1] -> latent (B, C, H/8, W/8)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, LATENT_CHANNELS, DOWNSAMPLE, stride=DOWNSAMPLE)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(image)


class TinyGenerator(nn.Module):
    """Contract inputs -> latent (B, C, h, w): a conv over [x, masked anchor, reference] plus a pose bias.

    With ``cameras=False`` the poses are ignored, so the exporter drops those inputs (as it
    does for a real model without camera conditioning).
    """

    def __init__(self, steps: int, cameras: bool = True) -> None:
        super().__init__()
        self.steps = steps
        self.cameras = cameras
        self.mix = nn.Conv2d(3 * LATENT_CHANNELS, LATENT_CHANNELS, 3, padding=1)
        self.pose = nn.Linear(2 * (9 + 16), LATENT_CHANNELS)

    def forward(self, noise, anchor_latent, anchor_mask, ref_latent, ref_K, ref_c2w, tgt_K, tgt_c2w):
        mask = nn.functional.avg_pool2d(anchor_mask, DOWNSAMPLE)  # (B, 1, h, w)
        b = noise.shape[0]
        bias = 0.0
        if self.cameras:
            cams = torch.cat([ref_K.reshape(b, 9), ref_c2w.reshape(b, 16), tgt_K.reshape(b, 9), tgt_c2w.reshape(b, 16)], 1)
            bias = self.pose(cams)[:, :, None, None]  # (B, C, 1, 1)
        x = noise[:, 0]
        for i in range(self.steps):
            x = self.mix(torch.cat([x, anchor_latent * mask, ref_latent], 1)) + bias
            if i + 1 < self.steps:
                x = 0.5 * x + 0.1 * noise[:, i + 1]
        return x


class TinyDecoder(nn.Module):
    """latent (B, C, h, w) -> image (B, 3, 8h, 8w) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.ConvTranspose2d(LATENT_CHANNELS, 3, DOWNSAMPLE, stride=DOWNSAMPLE)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(latent))


def _export(module: nn.Module, args: tuple, names: list[str], output: str, path: Path) -> None:
    torch.onnx.export(
        module.eval(),
        args,
        str(path),
        input_names=names,
        output_names=[output],
        dynamic_axes={n: {0: "batch"} for n in names},
        opset_version=17,
        dynamo=False,
    )


def export_tiny(
    folder: Path,
    image_size: tuple[int, int] = (32, 32),
    steps: tuple[int, ...] = (1, 2),
    seed: int = 0,
    cameras: bool = True,
) -> Path:
    """Write the tiny model folder (manifest.json + four graphs) for H x W ``image_size``; returns it."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    c, lh, lw = LATENT_CHANNELS, h // DOWNSAMPLE, w // DOWNSAMPLE
    graphs = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    with torch.no_grad():
        _export(TinyEncoder(), (torch.zeros(1, 3, h, w),), ["image"], "latent", folder / graphs["encoder"])
        _export(TinyDecoder(), (torch.zeros(1, c, lh, lw),), ["latent"], "image", folder / graphs["decoder"])
        for s in steps:
            graphs[f"generator_{s}"] = f"generator_{s}step.onnx"
            args = (
                torch.zeros(1, s, c, lh, lw),
                torch.zeros(1, c, lh, lw),
                torch.ones(1, 1, h, w),
                torch.zeros(1, c, lh, lw),
                torch.eye(3)[None],
                torch.eye(4)[None],
                torch.eye(3)[None],
                torch.eye(4)[None],
            )
            names = ["noise", "anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w"]
            _export(TinyGenerator(s, cameras), args, names, "latent", folder / graphs[f"generator_{s}"])
    manifest = {
        "format": "worldfm-onnx",
        "version": 1,
        "name": "tiny-untrained",
        "config": {"note": "untrained test fixture"},
        "image_size": [h, w],
        "latent_shape": [c, lh, lw],
        "steps": list(steps),
        "opset": 17,
        "dtype": "fp32",
        "graphs": graphs,
        "sha256": {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in graphs.values()},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
