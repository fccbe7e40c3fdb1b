"""Stage 1 for the demo model: train the 16x demo autoencoder on our own images.

No pretrained weights exist for the demo latent space (256 px -> 16x16x8), so the
autoencoder is trained from scratch on procedural frames before the DiT. The network is
fully convolutional (no attention), so it trains on random ``crop`` x ``crop`` patches --
(256/crop)^2 times cheaper per step than whole frames -- and runs on whole frames after.

Loss per patch x in [-1, 1] with reconstruction x' = D(mean of E(x)):
``|x - x'|_1 + |x - x'|_2^2 + kl_weight * KL(q(z|x) || N(0, I))`` (means over elements);
the small KL keeps the latent bounded and smooth enough for diffusion. After training the
scaling factor is set to 1 / std of the latents (over the training images), so the DiT
sees unit-variance latents, as PixArt's 0.13025 does for the published VAE.

The result is a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``)
that :func:`models.autoencoder.load_autoencoder` reads.

:func:`train_fast_decoder` is an optional later step: a narrow
:class:`models.autoencoder.FastDecoder` for the latent space of a trained (frozen)
autoencoder, fitted to the images themselves (not to the old decoder's output, so it can
also undo some of that decoder's error). Its inputs are the frozen encoder's latents of
whole frames, cropped on the latent grid -- exactly what the DiT's latents look like at
inference -- so a crop is never re-encoded and the encoder runs once per image.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.autoencoder import (
    DEMO_LATENT_CHANNELS,
    AnchorDecoder,
    FastDecoder,
    LatentDecoder,
    LatentEncoder,
    autoencoder_sha256,
    demo_autoencoder,
    downsample_factor,
    encode_unscaled,
    fast_decoder_blocks,
    load_autoencoder,
    load_fast_decoder,
)
from models.train_state import adamw, load_state, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """Hyper-parameters of :func:`train_autoencoder` (stored with the checkpoint)."""

    kind: str = "kl"
    latent_channels: int = DEMO_LATENT_CHANNELS
    steps: int = 2000
    batch_size: int = 16
    crop: int = 64
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0
    save_every: int = 100


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def random_crops(images: torch.Tensor, batch: int, crop: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` random ``crop`` x ``crop`` patches (randomly mirrored) of (N, 3, H, W) images."""
    n, _, h, w = images.shape
    if crop > min(h, w):
        raise ValueError(f"crop {crop} exceeds the image size {h}x{w}")
    idx = torch.randint(n, (batch,), generator=generator)
    ys = torch.randint(h - crop + 1, (batch,), generator=generator)
    xs = torch.randint(w - crop + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    patches = [images[i, :, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)]
    out = torch.stack(patches)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 + MSE, MSE) of a reconstruction against images in [-1, 1]."""
    mse = (recon - x).square().mean()
    return (recon - x).abs().mean() + mse, mse.detach()


def autoencoder_loss(vae: nn.Module, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, reconstruction MSE) of ``vae`` on images ``x`` (B, 3, H, W) in [-1, 1].

    An ``AutoencoderTiny`` has no posterior, so no KL term."""
    latent, posterior = encode_unscaled(vae, x)
    loss, mse = reconstruction_loss(vae.decode(latent).sample, x)
    if kl_weight > 0 and posterior is not None:
        loss = loss + kl_weight * posterior.kl().mean() / x[0].numel()
    return loss, mse


def psnr_from_mse(mse: float, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of a mean squared error on values spanning ``peak_to_peak``."""
    return 10.0 * math.log10(peak_to_peak**2 / max(mse, 1e-12))


@torch.no_grad()
def latent_std(vae: nn.Module, images: torch.Tensor, batch: int = 8) -> float:
    """Std of the unscaled latents (posterior means) over ``images`` (N, 3, H, W)."""
    latents = [encode_unscaled(vae, images[i : i + batch])[0] for i in range(0, len(images), batch)]
    return float(torch.cat(latents).std())


@torch.no_grad()
def reconstruction_psnr(
    vae: nn.Module, images: torch.Tensor, batch: int = 8, decoder: nn.Module | None = None
) -> float:
    """Mean PSNR (dB, on [-1, 1] images) of encode -> decode through the scaled latent interface
    (with ``vae``'s own decoder, or ``decoder``, e.g. a :class:`FastDecoder`)."""
    enc = LatentEncoder(vae).eval()
    dec = (LatentDecoder(vae) if decoder is None else decoder).eval()
    values = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        recon = dec(enc(x)).clamp(-1, 1)
        values += [psnr_from_mse(float(m)) for m in (recon - x).square().flatten(1).mean(1)]
    return float(np.mean(values))


def _fit(
    model: nn.Module,
    out: Path,
    config: AutoencoderTrainConfig | DecoderTrainConfig | AnchorDecoderTrainConfig,
    batch_loss: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    desc: str,
    progress: bool,
) -> None:
    """The optimisation loop the three trainers of this module share; resumes from ``out``.

    AdamW at ``config.lr`` with a 100-step linear warm-up and cosine decay over
    ``config.steps``, gradients clipped at norm 1, ``out/state.safetensors`` written every
    ``config.save_every`` steps and at the end, a progress bar with loss, PSNR and samples/s.
    ``batch_loss(generator)`` draws one batch of ``config.batch_size`` with ``generator`` and
    returns (loss, MSE on [-1, 1] images).
    """
    from tqdm import tqdm

    opt = adamw(model.parameters(), lr=config.lr, weight_decay=0.0)
    resumed = load_state(out, {"model": model}, {"opt": opt})
    start = 0 if resumed is None else resumed[0]
    if resumed is not None:
        log.info("resuming %s training at step %d from %s", desc, start, out)
    generator = torch.Generator().manual_seed(config.seed + start)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc=desc, unit="step")
    t0, seen = time.perf_counter(), 0
    model.train()
    for step in bar:
        lr = config.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss, mse = batch_loss(generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += config.batch_size
        bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr_from_mse(mse.item()):.1f}",
                        samples_s=f"{seen / (time.perf_counter() - t0):.1f}")
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            save_state(out, step + 1, {"model": model}, {"opt": opt}, {"config": asdict(config)})


def train_autoencoder(
    images: Sequence[np.ndarray],
    out: str | Path,
    config: AutoencoderTrainConfig = AutoencoderTrainConfig(),
    device: str = "cpu",
    progress: bool = True,
) -> nn.Module:
    """Train the demo autoencoder on uint8 (H, W, 3) ``images``; resumes from ``out``.

    Writes ``out/state.safetensors`` every ``save_every`` steps and, at the end, the
    diffusers folder ``out/autoencoder/`` with the scaling factor set. Returns the trained
    autoencoder (eval mode, on CPU).
    """
    out = Path(out)
    torch.manual_seed(config.seed)
    data = images_to_tensor(images)
    vae = demo_autoencoder(config.kind, config.latent_channels).to(device)

    def batch_loss(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return autoencoder_loss(vae, random_crops(data, config.batch_size, config.crop, generator).to(device),
                                config.kl_weight)

    _fit(vae, out, config, batch_loss, "autoencoder", progress)
    vae = vae.cpu().eval()
    sample = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))[:64]]
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, sample))
    vae.save_pretrained(str(out / "autoencoder"), safe_serialization=True)
    (out / "autoencoder" / "training.json").write_text(json.dumps(asdict(config), indent=2))
    return load_autoencoder(out / "autoencoder")


@dataclass(frozen=True)
class DecoderTrainConfig:
    """Hyper-parameters of :func:`train_fast_decoder` (stored with the checkpoint)."""

    steps: int = 3000
    batch_size: int = 16
    crop: int = 128
    lr: float = 2e-3
    seed: int = 0
    save_every: int = 100


@torch.no_grad()
def encode_all(encoder: nn.Module, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Scaled latents (N, C, h, w) of (N, 3, H, W) images."""
    return torch.cat([encoder(images[i : i + batch]) for i in range(0, len(images), batch)])


def aligned_crops(
    latents: torch.Tensor, images: torch.Tensor, batch: int, crop: int, generator: torch.Generator,
    image_of: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random (latent crop, image crop) pairs cut on the latent grid: an image crop of
    ``crop`` pixels and the latent cells (crop / f) that cover exactly those pixels.
    ``image_of`` [N] maps each latent to its image (default: the same index)."""
    f = images.shape[-1] // latents.shape[-1]
    if crop % f or crop > images.shape[-1] or crop > images.shape[-2]:
        raise ValueError(f"crop {crop} must be a multiple of {f} and at most the image size {tuple(images.shape[-2:])}")
    c = crop // f
    n, _, h, w = latents.shape
    idx = torch.randint(n, (batch,), generator=generator)
    ys = torch.randint(h - c + 1, (batch,), generator=generator)
    xs = torch.randint(w - c + 1, (batch,), generator=generator)
    z = torch.stack([latents[i, :, y : y + c, x : x + c] for i, y, x in zip(idx, ys, xs)])
    pick = idx if image_of is None else image_of[idx]
    x = torch.stack([images[i, :, y * f : (y + c) * f, x * f : (x + c) * f] for i, y, x in zip(pick, ys, xs)])
    return z, x


def train_fast_decoder(
    images: Sequence[np.ndarray],
    autoencoder: str | Path,
    out: str | Path,
    config: DecoderTrainConfig = DecoderTrainConfig(),
    device: str = "cpu",
    progress: bool = True,
) -> FastDecoder:
    """Train a :class:`FastDecoder` for the frozen autoencoder folder ``autoencoder`` on uint8
    (H, W, 3) ``images``; resumes from ``out``. Writes ``out/state.safetensors`` every
    ``save_every`` steps and, at the end, ``out/fast_decoder/``. Returns the decoder (eval, CPU).
    """
    out = Path(out)
    torch.manual_seed(config.seed)
    vae = load_autoencoder(autoencoder)
    data = images_to_tensor(images)
    latents = encode_all(LatentEncoder(vae).eval(), data)
    blocks = fast_decoder_blocks(downsample_factor(vae))
    decoder = FastDecoder(latents.shape[1], blocks, autoencoder_sha256=autoencoder_sha256(autoencoder)).to(device)

    def batch_loss(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z, x = aligned_crops(latents, data, config.batch_size, config.crop, generator)
        return reconstruction_loss(decoder(z.to(device)), x.to(device))

    _fit(decoder, out, config, batch_loss, "fast decoder", progress)
    decoder.cpu().eval().save(out / "fast_decoder")
    (out / "fast_decoder" / "training.json").write_text(json.dumps(asdict(config), indent=2))
    return load_fast_decoder(out / "fast_decoder", autoencoder)


@dataclass(frozen=True)
class AnchorDecoderTrainConfig:
    """Hyper-parameters of :func:`train_anchor_decoder` (stored with the checkpoint).

    ``learn_covered``: train the blend weight on covered pixels as well, instead of pinning
    it to the anchor there as inference does. The shipped demo decoder was trained so and
    scored higher than one trained pinned (30.43 vs 30.33 dB in the held-out check, on the
    previous release's generator; docs/model.md).
    """

    steps: int = 2500
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    seed: int = 0
    save_every: int = 100
    learn_covered: bool = False


@dataclass
class AnchorDecoderSamples:
    """What an anchor decoder learns from: the exported generator's latents for targets never
    in their clouds. ``latents`` float32 [M, C, h, w] (1- and 2-step samples), ``image_of``
    [M] their target; per target, ``images`` uint8 [N, 7, H, W]: the anchor with holes
    filled (3), its mask (1, 0 or 255) and the ground truth (3)."""

    latents: torch.Tensor
    image_of: torch.Tensor
    images: torch.Tensor

    @staticmethod
    def split(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 [B, 7, H, W] -> (anchor [-1, 1], mask {0, 1}, ground truth [-1, 1]) float32."""
        x = images.float()
        return x[:, :3] / 127.5 - 1, (x[:, 3:4] > 127).float(), x[:, 4:] / 127.5 - 1


def anchor_decoder_samples(scenes: Sequence, model: str | Path, window: int = 4, seed: int = 0,
                           threads: int | None = None, progress: bool = True) -> AnchorDecoderSamples:
    """Samples for :func:`train_anchor_decoder` from ``scenes`` (``models.scene.Scene``) with the
    exported model folder ``model``: every view is a target once, its cloud built without its
    window of ``window`` views (the evaluation protocol, as at inference); one 1- and one
    2-step latent per target (each step count the model has), with fresh noise."""
    from tqdm import tqdm

    from models.anchor import fill_holes
    from models.evaluate import OnnxRunner, evaluation_targets, target_inputs

    runner = OnnxRunner(model, threads)
    rng = np.random.default_rng(seed)
    c, h, w = runner.manifest["latent_shape"]
    latents, image_of, images = [], [], []
    for scene in tqdm(scenes, desc="anchor-decoder samples", unit="scene", disable=not progress):
        for t in evaluation_targets(scene, window):
            filled = fill_holes(torch.from_numpy(t.anchor_rgb), torch.from_numpy(t.anchor_mask)).numpy()
            x = target_inputs(runner, t, filled)
            mask = t.anchor_mask.astype(np.uint8)[..., None] * 255
            images.append(torch.from_numpy(np.concatenate([filled, mask, t.frame.rgb], -1)).permute(2, 0, 1))
            for s in runner.steps:
                noise = rng.standard_normal((1, s, c, h, w), dtype=np.float32)
                latents.append(torch.from_numpy(runner.generate(s, noise, x)[0]))
                image_of.append(len(images) - 1)
    return AnchorDecoderSamples(torch.stack(latents), torch.tensor(image_of), torch.stack(images))


@torch.no_grad()
def anchor_decoder_psnr(decoder: nn.Module, samples: AnchorDecoderSamples, batch: int = 8) -> tuple[float, float]:
    """(decoder, filled-anchor baseline) mean PSNR in dB over whole frames of ``samples``."""
    ours, base = [], []
    for i in range(0, len(samples.latents), batch):
        anchor, mask, truth = AnchorDecoderSamples.split(samples.images[samples.image_of[i : i + batch]])
        out = decoder(samples.latents[i : i + batch], anchor, mask).clamp(-1, 1)
        ours += [psnr_from_mse(float(m)) for m in (out - truth).square().flatten(1).mean(1)]
        base += [psnr_from_mse(float(m)) for m in (anchor - truth).square().flatten(1).mean(1)]
    return float(np.mean(ours)), float(np.mean(base))


def train_anchor_decoder(
    samples: AnchorDecoderSamples,
    fast_decoder: str | Path,
    autoencoder: str | Path,
    out: str | Path,
    config: AnchorDecoderTrainConfig = AnchorDecoderTrainConfig(),
    device: str = "cpu",
    progress: bool = True,
) -> AnchorDecoder:
    """Train an :class:`AnchorDecoder` whose latent decoder starts from the fast decoder folder
    ``fast_decoder`` (trained for ``autoencoder``); resumes from ``out``. Writes
    ``out/state.safetensors`` every ``save_every`` steps and, at the end, ``out/anchor_decoder/``.
    """
    out = Path(out)
    torch.manual_seed(config.seed)
    base = load_fast_decoder(fast_decoder, autoencoder)
    if not isinstance(base, FastDecoder):
        raise ValueError(f"{fast_decoder} must hold a plain fast decoder to start from")
    decoder = AnchorDecoder.from_fast_decoder(base).to(device)
    decoder.pin_covered = not config.learn_covered

    def batch_loss(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        z, x = aligned_crops(samples.latents, samples.images, config.batch_size, config.crop, generator,
                             samples.image_of)
        anchor, mask, truth = (v.to(device) for v in AnchorDecoderSamples.split(x))
        return reconstruction_loss(decoder(z.to(device), anchor, mask), truth)

    _fit(decoder, out, config, batch_loss, "anchor decoder", progress)
    decoder.pin_covered = True
    decoder.cpu().eval().save(out / "anchor_decoder")
    (out / "anchor_decoder" / "training.json").write_text(json.dumps(asdict(config), indent=2))
    return load_fast_decoder(out / "anchor_decoder", autoencoder)
