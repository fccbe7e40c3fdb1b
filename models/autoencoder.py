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
* ``FastDecoder``: a narrow decoder (diffusers' ``DecoderTiny``, the TAESD decoder) trained
  afterwards for the latent space of an existing autoencoder. The decoder is the largest
  per-frame cost of the demo model on CPU; replacing it keeps the latent space -- and so
  every DiT trained in it -- unchanged. Stored as ``config.json`` + ``model.safetensors``,
  tied to its autoencoder by the SHA-256 of that autoencoder's weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.model_folder import file_sha256

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


def demo_autoencoder(kind: str = "tiny16", latent_channels: int = DEMO_LATENT_CHANNELS) -> nn.Module:
    """A freshly initialised 16x demo autoencoder: ``kind`` "tiny16" (AutoencoderTiny, 16
    channels, fastest), "tiny" (32 channels) or "kl" (small AutoencoderKL), with
    ``latent_channels`` per latent cell (more carry more detail through the 16x
    bottleneck at almost no cost in speed: only the last encoder and first decoder layer,
    and the DiT's patch embedding and output layer, grow)."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    if kind == "kl":
        return AutoencoderKL(**{**DEMO_KL_CONFIG, "latent_channels": latent_channels})
    if kind == "tiny":
        return AutoencoderTiny(**{**DEMO_TINY_CONFIG, "latent_channels": latent_channels})
    if kind == "tiny16":
        return AutoencoderTiny(**{**DEMO_TINY16_CONFIG, "latent_channels": latent_channels})
    raise ValueError(f"unknown demo autoencoder kind {kind!r}; use one of {DEMO_KINDS}")


def downsample_factor(vae: nn.Module) -> int:
    """Image pixels per latent pixel of a diffusers autoencoder."""
    cfg = vae.config
    blocks = cfg.block_out_channels if hasattr(cfg, "block_out_channels") else cfg.encoder_block_out_channels
    return 2 ** (len(blocks) - 1)


def autoencoder_sha256(folder: str | Path) -> str:
    """SHA-256 of an autoencoder folder's weights: the identity of its latent space."""
    return file_sha256(Path(folder) / "diffusion_pytorch_model.safetensors")


def _scale_shift(vae: nn.Module) -> tuple[float, float]:
    cfg = vae.config
    return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)


def encode_unscaled(vae: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(latent of ``image`` before scaling, posterior): an ``AutoencoderKL``'s posterior mean
    and posterior, or an ``AutoencoderTiny``'s (deterministic) latent and None."""
    out = vae.encode(image)
    posterior = getattr(out, "latent_dist", None)
    return (out.latents if posterior is None else posterior.mode()), posterior


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
        return (encode_unscaled(self.vae, image)[0] - self.shift) * self.scale


class LatentDecoder(nn.Module):
    """scaled latent (B, C, h, w) -> image (B, 3, h*f, w*f), nominally in [-1, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.scale, self.shift = _scale_shift(vae)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scale + self.shift).sample


FAST_DECODER_WIDTH = 16
FAST_DECODER_FILES = ("config.json", "model.safetensors")


def fast_decoder_blocks(downsample: int) -> tuple[int, ...]:
    """Blocks per resolution of a :class:`FastDecoder` upsampling ``downsample``x, lowest first.

    Blocks at low resolution cost little, a block at full resolution costs most: for 16x,
    (3, 3, 3, 2, 1), 16 channels wide, decodes a 256 px frame in ~9 ms in ONNX Runtime on 2
    CPU cores, against ~49 ms for the demo KL decoder (docs/model.md).
    """
    levels = downsample.bit_length()  # log2(downsample) + 1 resolutions
    if downsample < 2 or downsample != 1 << (levels - 1):
        raise ValueError(f"a fast decoder upsamples by a power of two >= 2; got {downsample}")
    return (3,) * (levels - 2) + (2, 1)


class FastDecoder(nn.Module):
    """scaled latent (B, C, h, w) -> image (B, 3, h*f, w*f) in [-1, 1], f = 2**(len(num_blocks) - 1).

    Input is the *scaled* latent of the autoencoder it was trained for (what the DiT
    produces), so it drops in where :class:`LatentDecoder` was.
    """

    def __init__(self, latent_channels: int, num_blocks: tuple[int, ...], width: int = FAST_DECODER_WIDTH,
                 autoencoder_sha256: str = ""):
        super().__init__()
        from diffusers.models.autoencoders.vae import DecoderTiny

        self.config = {"_class_name": "FastDecoder", "latent_channels": latent_channels,
                       "num_blocks": list(num_blocks), "width": width, "autoencoder_sha256": autoencoder_sha256}
        self.decoder = DecoderTiny(in_channels=latent_channels, out_channels=3, num_blocks=tuple(num_blocks),
                                   block_out_channels=(width,) * len(num_blocks), upsampling_scaling_factor=2,
                                   act_fn="relu", upsample_fn="nearest")

    @classmethod
    def from_config(cls, config: dict) -> FastDecoder:
        return cls(config["latent_channels"], tuple(config["num_blocks"]), config["width"],
                   config["autoencoder_sha256"])

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config["num_blocks"]) - 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    def save(self, folder: str | Path) -> None:
        _save_decoder(self, folder)


def _save_decoder(decoder: nn.Module, folder: str | Path) -> None:
    """``folder/config.json`` (``decoder.config``) + ``folder/model.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(decoder.config, indent=2) + "\n")


ANCHOR_TRUST_INIT = 3.0  # initial logit of the anchor weight: sigmoid(3) = 0.95, close to the classical fill


class AnchorDecoder(nn.Module):
    """(scaled latent (B, C, h, w), anchor (B, 3, H, W) in [-1, 1], anchor_mask (B, 1, H, W)) -> image.

    ``anchor`` is the point-cloud rendering at the target with its holes filled by push-pull
    (:func:`models.anchor.fill_holes`), ``anchor_mask`` 1 where points cover the pixel. The
    latent is decoded as by :class:`FastDecoder`; a small full-resolution head (dilated
    convolutions, ~17 px receptive field) sees the decoded image beside anchor and mask and
    predicts a per-pixel weight ``a`` and correction ``delta``:
    ``out = w * anchor + (1 - w) * (decoded + delta)`` with ``w = max(a, anchor_mask)``, so
    pixels the cloud covers keep the anchor exactly. (Learning ``a`` there as well left a
    few per cent of the view-dependent decoded image in them, and sequences flickered more:
    consistency 1.73x ground truth against 1.46x pinned, at the same PSNR; docs/model.md.)

    Why: the exact colours of covered pixels are in the anchor, at full resolution, while
    a 16x latent cannot hold them (the demo autoencoder reconstructs at ~22 dB). The
    published model decodes the latent alone; this decoder keeps the latent's content for
    the holes and the anchor's detail where the cloud is. The head starts (zero weights,
    ``ANCHOR_TRUST_INIT`` bias) at ~95 % anchor in the holes, i.e. near the classical fill,
    and training moves it where the decoded latent is better.
    """

    def __init__(self, latent_channels: int, num_blocks: tuple[int, ...], width: int = FAST_DECODER_WIDTH,
                 autoencoder_sha256: str = "", head_width: int = 16):
        super().__init__()
        self.base = FastDecoder(latent_channels, num_blocks, width, autoencoder_sha256)
        self.config = {**self.base.config, "_class_name": "AnchorDecoder", "head_width": head_width}
        self.head = nn.Sequential(
            nn.Conv2d(7, head_width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(head_width, head_width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(head_width, head_width, 3, padding=4, dilation=4), nn.ReLU(),
            nn.Conv2d(head_width, 4, 3, padding=1),
        )
        nn.init.zeros_(self.head[-1].weight)
        with torch.no_grad():
            self.head[-1].bias.copy_(torch.tensor([ANCHOR_TRUST_INIT, 0.0, 0.0, 0.0]))
        # Training may learn the weight on covered pixels too (train_anchor_decoder's
        # learn_covered); a loaded or exported decoder always pins them to the anchor.
        self.pin_covered = True

    @classmethod
    def from_config(cls, config: dict) -> AnchorDecoder:
        return cls(config["latent_channels"], tuple(config["num_blocks"]), config["width"],
                   config["autoencoder_sha256"], config["head_width"])

    @classmethod
    def from_fast_decoder(cls, base: FastDecoder, head_width: int = 16) -> AnchorDecoder:
        """A new anchor decoder whose latent decoder starts from ``base``'s weights."""
        decoder = cls.from_config({**base.config, "head_width": head_width})
        decoder.base.load_state_dict(base.state_dict())
        return decoder

    @property
    def downsample(self) -> int:
        return self.base.downsample

    def save(self, folder: str | Path) -> None:
        _save_decoder(self, folder)

    def forward(self, latent: torch.Tensor, anchor: torch.Tensor, anchor_mask: torch.Tensor) -> torch.Tensor:
        decoded = self.base(latent)  # (B, 3, H, W)
        weight, delta = self.head(torch.cat([decoded, anchor, anchor_mask], dim=1)).split([1, 3], dim=1)
        weight = torch.sigmoid(weight)
        if self.pin_covered:
            weight = torch.maximum(weight, anchor_mask)
        return weight * anchor + (1 - weight) * (decoded + delta)


_DECODER_CLASSES = {"FastDecoder": FastDecoder, "AnchorDecoder": AnchorDecoder}


def load_fast_decoder(folder: str | Path, autoencoder: str | Path | None = None) -> FastDecoder | AnchorDecoder:
    """A :class:`FastDecoder` or :class:`AnchorDecoder` from ``folder``; with ``autoencoder``
    (its folder), refuse a decoder trained for a different latent space."""
    folder = Path(folder)
    for name in FAST_DECODER_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; a fast-decoder folder holds "
                                    f"{' and '.join(FAST_DECODER_FILES)} (written by `worldfm train-decoder`)")
    config = json.loads((folder / "config.json").read_text())
    cls = _DECODER_CLASSES.get(config.get("_class_name"))
    if cls is None:
        raise ValueError(f"{folder}/config.json is not a decoder config we know "
                         f"(_class_name {config.get('_class_name')!r}; expected one of {sorted(_DECODER_CLASSES)})")
    if autoencoder is not None and config["autoencoder_sha256"] != autoencoder_sha256(autoencoder):
        raise ValueError(f"{folder} was trained for another autoencoder than {autoencoder} (weights hash differs); "
                         "retrain it with `worldfm train-decoder --autoencoder` on this one")
    decoder = cls.from_config(config)
    decoder.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    return decoder.eval()


def load_codec(autoencoder: str | Path, fast_decoder: str | Path | None = None) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) modules, scaled-latent interface (latent in, image out): the
    autoencoder's own decoder, or the :class:`FastDecoder` in ``fast_decoder`` trained for it."""
    vae = load_autoencoder(autoencoder)
    decoder = LatentDecoder(vae) if fast_decoder is None else load_fast_decoder(fast_decoder, autoencoder)
    if isinstance(decoder, AnchorDecoder):
        raise ValueError(f"{fast_decoder} is an anchor decoder (it also needs the anchor image); "
                         "load it with load_fast_decoder")
    return LatentEncoder(vae).eval(), decoder.eval()
