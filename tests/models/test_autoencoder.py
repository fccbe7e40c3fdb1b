"""Autoencoders: loading the diffusers folder format, demo shapes, latent scaling."""

from __future__ import annotations

import json
import math

import pytest
import torch

from models.autoencoder import (
    DEMO_KINDS,
    DEMO_LATENT_CHANNELS,
    LatentDecoder,
    LatentEncoder,
    demo_autoencoder,
    downsample_factor,
    load_autoencoder,
)
from models.dit import get_config


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_demo_autoencoder_matches_demo_model_latent(kind):
    vae = demo_autoencoder(kind).eval()
    demo = get_config("demo")
    assert downsample_factor(vae) == demo.vae_downsample
    image = torch.rand(1, 3, demo.image_size, demo.image_size) * 2 - 1
    with torch.no_grad():
        latent = LatentEncoder(vae)(image)
        assert latent.shape == (1, DEMO_LATENT_CHANNELS, demo.latent_size, demo.latent_size)
        assert demo.latent_channels == DEMO_LATENT_CHANNELS
        assert LatentDecoder(vae)(latent).shape == image.shape


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_demo_autoencoder_takes_other_latent_widths(kind):
    vae = demo_autoencoder(kind, latent_channels=32).eval()
    with torch.no_grad():
        latent = LatentEncoder(vae)(torch.zeros(1, 3, 64, 64))
        assert latent.shape == (1, 32, 4, 4)
        assert LatentDecoder(vae)(latent).shape == (1, 3, 64, 64)


def small_kl():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4, scaling_factor=0.13025,
    ).eval()


def test_load_from_diffusers_folder_and_scale_latents(tmp_path):
    vae = small_kl()
    vae.save_pretrained(tmp_path / "vae")
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["_class_name"] == "AutoencoderKL"
    loaded = load_autoencoder(tmp_path / "vae")
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latent = LatentEncoder(loaded)(image)
        mean = vae.encode(image).latent_dist.mode()
        torch.testing.assert_close(latent, mean * 0.13025)
        torch.testing.assert_close(LatentDecoder(loaded)(latent), vae.decode(mean).sample, rtol=1e-5, atol=1e-5)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="tiny16"):
        demo_autoencoder("huge")


def test_missing_files_are_named(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors is missing"):
        load_autoencoder(tmp_path / "vae")


@pytest.mark.parametrize("kind", ["kl", "tiny16"])
def test_train_autoencoder_runs_for_kl_and_tiny_kinds(kind, tmp_path):
    """AutoencoderTiny has no posterior: training and the scaling factor use its latents directly."""
    from training_fixtures import procedural_scenes

    from models.train_autoencoder import AutoencoderTrainConfig, train_autoencoder

    images = [f.rgb for f in procedural_scenes(1, 8)[0].frames]
    config = AutoencoderTrainConfig(kind=kind, steps=3, batch_size=4, crop=32, save_every=3)
    vae = train_autoencoder(images, tmp_path, config, progress=False)
    assert (tmp_path / "state.safetensors").is_file()
    scale = float(vae.config.scaling_factor)
    assert math.isfinite(scale) and scale > 0 and scale != 1.0  # set to 1 / latent std after training
