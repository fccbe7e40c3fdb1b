"""Published-format WorldFM checkpoints and a diffusers VAE folder, written by tests.

The real ``worldfm_{1,2}-step.pth`` cannot be downloaded here, so tests write their own in
the layout the release reads (``worldfm/download.py``'s ``torch.load`` then
``state_dict["state_dict"]`` or the dict itself, ``strict=False``) with the key names and
shapes of its ``PixArtWorldFMMS_XL_2`` (written out from the published classes:
PatchEmbed, TimestepEmbedder, t_block, CaptionEmbedder, blocks with AttentionKVCompress /
MultiHeadCrossAttention / timm Mlp, T2IFinalLayer, plucker_proj), wrapped as PixArt-Sigma's
trainer saves (``diffusion/utils/checkpoint.py``: ``state_dict``, ``state_dict_ema``,
``optimizer``, ``scheduler``, ``epoch``) plus the plain objects training scripts keep
beside them (an ``argparse.Namespace``, numpy scalars, as the release's numpy 1.24 pickles
them).
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import torch


def published_shapes(depth=28, d=1152, patch=2, in_ch=4, latent=64, caption_tokens=300, plucker=True):
    """Key -> shape of ``PixArtWorldFMMS_XL_2``'s state dict (full size by default)."""
    s = {
        "pos_embed": (1, (latent // patch) ** 2, d),
        "x_embedder.proj.weight": (d, in_ch, patch, patch), "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256), "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d), "t_embedder.mlp.2.bias": (d,),
        "t_block.1.weight": (6 * d, d), "t_block.1.bias": (6 * d,),
        "y_embedder.y_embedding": (caption_tokens, 4096),
        "y_embedder.y_proj.fc1.weight": (d, 4096), "y_embedder.y_proj.fc1.bias": (d,),
        "y_embedder.y_proj.fc2.weight": (d, d), "y_embedder.y_proj.fc2.bias": (d,),
        "final_layer.linear.weight": (patch * patch * 2 * in_ch, d), "final_layer.linear.bias": (patch * patch * 2 * in_ch,),
        "final_layer.scale_shift_table": (2, d),
    }
    if plucker:
        s.update({"plucker_proj.0.weight": (d, 6), "plucker_proj.0.bias": (d,),
                  "plucker_proj.2.weight": (d, d), "plucker_proj.2.bias": (d,)})
    for i in range(depth):
        b = f"blocks.{i}."
        s.update({
            b + "scale_shift_table": (6, d),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "cross_attn.q_linear.weight": (d, d), b + "cross_attn.q_linear.bias": (d,),
            b + "cross_attn.kv_linear.weight": (2 * d, d), b + "cross_attn.kv_linear.bias": (2 * d,),
            b + "cross_attn.proj.weight": (d, d), b + "cross_attn.proj.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,),
        })
    return s


def random_state(shapes: dict, seed: int = 0, std: float = 0.02) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * std for k, shape in shapes.items()}


# A reduced XL for tests: 2 blocks of width 144 = 2 heads of the XL head size 72, 8x8 latents.
SMALL = dict(depth=2, d=144, latent=8)


def trainer_checkpoint(state: dict[str, torch.Tensor], ema: dict[str, torch.Tensor]) -> dict:
    """``state`` wrapped as PixArt's ``save_checkpoint`` writes it, with an EMA copy, optimizer
    and scheduler state, a numpy epoch counter and the run's arguments as a Namespace."""
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=3e-2)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    return {
        "state_dict": state,
        "state_dict_ema": ema,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"base_lrs": [2e-5], "last_epoch": 1200, "_step_count": 1201, "_last_lr": [2e-5]},
        "epoch": np.int64(12),
        "loss": np.float32(0.083),
        "args": argparse.Namespace(image_size=512, mid_t=200, steps=[1, 2], work_dir="output/dmd"),
    }


def save_as_numpy1(obj: object, path: Path) -> None:
    """``torch.save(obj, path)`` with numpy objects named as numpy 1.x pickles them
    (``numpy.core.multiarray``; numpy 2 writes ``numpy._core``): the release pins numpy 1.24."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):  # protocol-2 GLOBAL opcodes name modules as text lines
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)


def write_published_checkpoint(path: Path, seed: int = 0, **shape_overrides) -> dict[str, torch.Tensor]:
    """A small published-format ``.pth`` at ``path`` (trainer layout, numpy-1.x pickles);
    returns the weights it stores under ``state_dict`` (the EMA copy holds other values)."""
    shapes = published_shapes(**{**SMALL, **shape_overrides})
    state = random_state(shapes, seed)
    ema = random_state(shapes, seed + 1000)
    save_as_numpy1(trainer_checkpoint(state, ema), path)
    return state


def write_small_vae(folder: Path, seed: int = 0) -> Path:
    """A small untrained 8x diffusers ``AutoencoderKL`` (4 latent channels, the published
    scaling factor) saved with ``save_pretrained``, as the release's ``vae/`` folder is laid out."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        mid_block_add_attention=False, scaling_factor=0.13025,
    )
    vae.save_pretrained(folder)
    return folder
