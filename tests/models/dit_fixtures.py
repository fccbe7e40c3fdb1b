"""Shared test helpers for the frame-model tests: random cameras and model inputs."""

from __future__ import annotations

import torch

from models.dit import DiTConfig


def random_rigid(gen: torch.Generator, n: int, scale: float = 2.0) -> torch.Tensor:
    """(n, 4, 4) float64 random rotations (via QR, det +1) and translations in metres."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q = q * torch.sign(torch.det(q))[:, None, None]
    T = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    T[:, :3, :3] = q
    T[:, :3, 3] = scale * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return T


def random_K(gen: torch.Generator, n: int, hw: tuple[int, int]) -> torch.Tensor:
    """(n, 3, 3) float64 pinhole intrinsics in pixels of an (H, W) image, principal point near the centre."""
    h, w = hw
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = w * (0.6 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64))
    K[:, 1, 1] = h * (0.6 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64))
    K[:, 0, 2] = w * (0.4 + 0.2 * torch.rand(n, generator=gen, dtype=torch.float64))
    K[:, 1, 2] = h * (0.4 + 0.2 * torch.rand(n, generator=gen, dtype=torch.float64))
    K[:, 2, 2] = 1.0
    return K


def model_inputs(config: DiTConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but plausible ``WorldFMDiT.forward`` keyword inputs at the config's latent size."""
    gen = torch.Generator().manual_seed(seed)
    c, h = config.latent_channels, config.latent_size
    size = config.image_size
    K = torch.tensor([[0.9 * size, 0.0, size / 2], [0.0, 0.9 * size, size / 2], [0.0, 0.0, 1.0]])
    c2w = random_rigid(gen, 2 * batch, scale=0.5).float().reshape(batch, 2, 4, 4)
    return dict(
        z_t=torch.randn(batch, c, h, h, generator=gen),
        t=torch.linspace(999.0, 200.0, batch),
        anchor_latent=torch.randn(batch, c, h, h, generator=gen),
        anchor_mask=(torch.rand(batch, 1, size, size, generator=gen) > 0.3).float(),
        ref_latent=torch.randn(batch, c, h, h, generator=gen),
        ref_K=K.expand(batch, 3, 3),
        ref_c2w=c2w[:, 0],
        tgt_K=K.expand(batch, 3, 3),
        tgt_c2w=c2w[:, 1],
    )
