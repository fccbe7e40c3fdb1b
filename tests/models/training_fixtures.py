"""Shared fixtures of the training tests: small procedural scenes and a tiny autoencoder.

Kept tiny so the whole train -> distill -> export -> eval chain runs in seconds on CPU:
64 x 64 frames, 8 views, an 8x ``AutoencoderKL`` with 4 latent channels (the ``tiny``
DiT's latent shape 4 x 8 x 8).
"""

from __future__ import annotations

import functools

import torch

from models.autoencoder import LatentDecoder, LatentEncoder
from models.scene import Scene

IMAGE_SIZE = 64
TRAIN_STEPS = 40  # the short tiny-config training run the tests share


@functools.lru_cache(maxsize=None)
def procedural_scenes(count: int = 2, views: int = 8, seed: int = 0) -> tuple[Scene, ...]:
    """``count`` rendered procedural scenes (alternating indoor/outdoor) of ``views`` 64 px views."""
    from datagen.procedural.renderer import Renderer
    from datagen.procedural.scenes import generate_scene
    from datagen.procedural.trajectories import plan_cameras

    scenes = []
    for i in range(count):
        world = generate_scene(seed + i, "indoor" if i % 2 == 0 else "outdoor")
        cameras, _ = plan_cameras(world, views, IMAGE_SIZE, IMAGE_SIZE, None)
        renderer = Renderer(world)
        frames = [renderer.render(cam, name=f"{v:05d}") for v, cam in enumerate(cameras)]
        scenes.append(Scene(name=f"scene_{seed + i:05d}", frames=frames))
    return tuple(scenes)


def tiny_autoencoder(seed: int = 0) -> torch.nn.Module:
    """An untrained 8x ``AutoencoderKL`` (64 px -> 4 x 8 x 8), scaling factor 1."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
        mid_block_add_attention=False,
    ).eval()


def tiny_codec(seed: int = 0) -> tuple[LatentEncoder, LatentDecoder]:
    """(encoder, decoder) modules of :func:`tiny_autoencoder`."""
    vae = tiny_autoencoder(seed)
    return LatentEncoder(vae).eval(), LatentDecoder(vae).eval()
