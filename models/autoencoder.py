"""The latent space: diffusers autoencoders, loaded or configured, behind one small interface.

* ``load_autoencoder(folder)``: a diffusers ``AutoencoderKL`` from ``config.json`` +
  ``diffusion_pytorch_model.safetensors`` -- the format the published WorldFM VAE ships in
  (8x downsampling, 4 channels, scaling factor 0.13025).
* ``demo_autoencoder(kind)``: the untrained 16x autoencoder of our CPU demo model
  (256 px -> 16x16x8 latent). Default "tiny16", an ``AutoencoderTiny`` (the TAESD
  architecture) 16 channels wide: about 3x faster to encode and decode on CPU than the
  32-channel "tiny" or the small ``AutoencoderKL`` "kl" (docs/model.md), and the only one
  that leaves room for the DiT in a 100 ms frame. No pretrained weights exist for these
  shapes; the training stage trains them on our data (compare their PSNR there) and sets
  the scaling factor (1 / latent std) afterwards.
  16x rather than 8x downsampling cuts the DiT's tokens 4x, the lever CPU time follows.
* ``LatentEncoder`` / ``LatentDecoder``: image [-1, 1] <-> scaled latent, as modules with
  one tensor in and out (what ``models.export`` traces; see ``docs/model.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

PUBLISHED_SCALING_FACTOR = 0.13025
DEMO_LATENT_CHANNELS = 8
DEMO_DOWNSAMPLE = 16

# Channel widths are smallest at full resolution, where CPU convolution time goes.
DEMO_KL_CONFIG = dict(
    down_block_types=("DownEncoderBlock2D",) * 5,
    up_block_types=("UpDecoderBlock2D",) * 5,
    block_out_channels=(8, 16, 32, 64, 128),
    layers_per_block=1,
    latent_channels=DEMO_LATENT_CHANNELS,
    norm_num_groups=8,
    mid_block_add_attention=False,
    scaling_factor=1.0,
)
DEMO_TINY_CONFIG = dict(
    encoder_block_out_channels=(32,) * 5,
    decoder_block_out_channels=(32,) * 5,
    num_encoder_blocks=(1, 1, 1, 1, 1),
    num_decoder_blocks=(1, 1, 1, 1, 1),
    latent_channels=DEMO_LATENT_CHANNELS,
    scaling_factor=1.0,
)
# A quarter of the parameters, ~3x faster on CPU (docs/model.md): the default, as the one
# that fits the demo's frame budget -- if its reconstruction is good enough once trained.
DEMO_TINY16_CONFIG = dict(
    DEMO_TINY_CONFIG, encoder_block_out_channels=(16,) * 5, decoder_block_out_channels=(16,) * 5
)


def load_autoencoder(folder: str | Path) -> nn.Module:
    """A diffusers ``AutoencoderKL`` (or ``AutoencoderTiny``, per ``config.json``'s
    ``_class_name``) from a folder with ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    folder = Path(folder)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing; an autoencoder folder holds config.json and "
                "diffusion_pytorch_model.safetensors (e.g. the published WorldFM vae/ folder)"
            )
    class_name = json.loads((folder / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    cls = {"AutoencoderKL": AutoencoderKL, "AutoencoderTiny": AutoencoderTiny}.get(class_name)
    if cls is None:
        raise ValueError(f"{folder}/config.json names {class_name!r}; expected AutoencoderKL or AutoencoderTiny")
    return cls.from_pretrained(str(folder), local_files_only=True).eval()


DEMO_KINDS = ("tiny16", "tiny", "kl")


def demo_autoencoder(kind: str = "tiny16") -> nn.Module:
    """A freshly initialised 16x demo autoencoder: ``kind`` "tiny16" (AutoencoderTiny, 16
    channels, fastest), "tiny" (32 channels) or "kl" (small AutoencoderKL)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    if kind == "kl":
        return AutoencoderKL(**DEMO_KL_CONFIG)
    if kind == "tiny":
        return AutoencoderTiny(**DEMO_TINY_CONFIG)
    if kind == "tiny16":
        return AutoencoderTiny(**DEMO_TINY16_CONFIG)
    raise ValueError(f"unknown demo autoencoder kind {kind!r}; use one of {DEMO_KINDS}")


def downsample_factor(vae: nn.Module) -> int:
    """Image pixels per latent pixel of a diffusers autoencoder."""
    cfg = vae.config
    blocks = cfg.block_out_channels if hasattr(cfg, "block_out_channels") else cfg.encoder_block_out_channels
    return 2 ** (len(blocks) - 1)


def _scale_shift(vae: nn.Module) -> tuple[float, float]:
    cfg = vae.config
    return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)


class LatentEncoder(nn.Module):
    """image (B, 3, H, W) in [-1, 1] -> scaled latent (B, C, H/f, W/f).

    Uses the posterior mean of an ``AutoencoderKL`` (deterministic, so a reference
    latent can be cached and an exported graph has no random op); the published release
    samples the posterior instead, a difference of the posterior std (small for the KL VAE).
    """

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scale, self.shift = _scale_shift(vae)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.vae.encode(image)
        latent = out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latents
        return (latent - self.shift) * self.scale


class LatentDecoder(nn.Module):
    """scaled latent (B, C, h, w) -> image (B, 3, h*f, w*f), nominally in [-1, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scale, self.shift = _scale_shift(vae)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scale + self.shift).sample
