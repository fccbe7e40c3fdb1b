"""Image metrics every evaluation in the project scores with: PSNR and SSIM of uint8 RGB images.

One place, so that `worldfm eval`, the fill guard (:mod:`models.fill_guard`) and `worldfm demo`
report the same numbers for the same frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SSIM_SIGMA", "SSIM_WINDOW", "psnr", "ssim"]

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 (H, W, 3) images on the [0, 1] scale (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 (H, W, 3) images (Wang et al. 2004 constants, valid region only)."""
    x = torch.from_numpy(a).double().permute(2, 0, 1)[:, None] / 255.0  # (3, 1, H, W)
    y = torch.from_numpy(b).double().permute(2, 0, 1)[:, None] / 255.0
    g = _gaussian(SSIM_WINDOW, SSIM_SIGMA)
    win = (g[:, None] * g[None, :])[None, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())
