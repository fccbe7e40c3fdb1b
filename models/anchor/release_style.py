"""The anchor as the published release renders it: the ``release`` anchor style.

A published WorldFM checkpoint was made with anchors from the release's own point renderer
(GitHub ``inspatio/worldfm``, ``modules/point_renderer.py``, in the ``"fast"`` mode its
``run_pipeline.py`` sets, 512 x 512), so it expects anchors rendered that way; ours
(:mod:`models.anchor.splat`) differ. This module renders a cloud the release's way, read
from that code (the release publishes no training code, so its inference renderer is the
best evidence of what training saw):

* **precision**: point positions, colours and the world-to-camera rotation and translation
  are held in float16 (the release caches the cloud in half precision) and the transform is
  applied in half precision -- products summed in float32, rounded to half (as a GPU half
  GEMM does; the order of its three-term sums is not specified, ours is x, y, z) -- and the
  projection ``u = fx (x / z) + cx`` then runs in float32 on those half values;
* **depth range**: a point is drawn when ``z > 1e-3`` m (compared in half precision); the
  release's far limit (1e6 m) exceeds the half range, so it never applies;
* **point size**: one pixel per point, the *nearest integer* to ``(u, v)`` (``round``,
  ties to even). The release thus puts pixel centres at integer coordinates, half a pixel
  from our convention (centres at ``j + 0.5``, docs/conventions.md): for the same ``K`` its
  anchor is ours shifted by half a pixel up and left. Kept, because it is what the network saw;
* **depth test**: per pixel the smallest ``z``; every point within 1e-4 m of it writes its
  colour and the last in cloud order wins (on a GPU the release's scatter keeps any one of
  them);
* **colour**: ``floor(255 * half(rgb / 255))`` -- a truncating cast, so 131 of the 256
  values come out one lower;
* **holes**: black, depth 0; no gap filling, no splat radius, no hole filling.

The release feeds the network no anchor mask (``use_mask_channel=False``); ``mask`` here is
"a point landed in the pixel", for the comparison with our renderer and for the decoder.
:func:`anchor_agreement` measures how far two renders of one view differ (docs/anchor.md
gives the figure for our renderer against this one).
"""

from __future__ import annotations

import numpy as np
import torch

from models.anchor.build import AnchorScene
from models.anchor.cloud import AnchorInputError, PointCloud
from models.anchor.splat import DeviceCloud, RenderOutput, to_device
from models.cameras import c2w_to_w2c, validate_c2w, validate_K

__all__ = ["prepare_release", "render_release", "anchor_agreement"]

NEAR_M = float(np.float16(1e-3))  # the release compares half-precision depths with this
DEPTH_TIE_M = 1e-4  # points this close to the nearest depth of a pixel all write their colour


def _colour_table() -> torch.Tensor:
    """uint8 [256]: the colour the release writes for each stored 8-bit value.

    Its cloud colours go uint8 -> float64 / 255 -> float32 -> float16 on the device, and
    back as ``uint8(float32(half) * 255)``, which truncates.
    """
    stored = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32).astype(np.float16)
    return torch.from_numpy(stored.astype(np.float32) * np.float32(255.0)).to(torch.uint8)


_COLOURS = _colour_table()


def _points(cloud: PointCloud | DeviceCloud) -> tuple[torch.Tensor, torch.Tensor]:
    """(xyz float32 [N, 3] world metres, rgb uint8 [N, 3]) of either cloud layout."""
    if isinstance(cloud, DeviceCloud):
        rgb = cloud.rgba[:-1].view(torch.uint8).view(-1, 4)[:, :3]  # the last entry is the empty-pixel colour
        return cloud.xyz_t.T, rgb
    return torch.from_numpy(cloud.xyz), torch.from_numpy(cloud.rgb)


def prepare_release(scene: AnchorScene, device: str | torch.device = "cpu", compiled: bool = False,
                    splat_radius: int = 0) -> DeviceCloud:
    """Once per scene: the fused cloud on ``device``, what :func:`render_release` draws from.

    The signature of an anchor style's ``prepare``; ``compiled`` changes nothing here (the
    release style has no compiled kernel), and points are one pixel, as in the release.
    """
    if splat_radius:
        raise AnchorInputError(f"the release anchor style draws one-pixel points; got splat_radius {splat_radius}")
    return to_device(scene.cloud, device)


def render_release(cloud: PointCloud | DeviceCloud, K: np.ndarray, c2w: np.ndarray, width: int,
                   height: int) -> RenderOutput:
    """Render ``cloud`` at one camera as the release does (module docstring).

    ``K`` [3, 3] pixels of the ``width`` x ``height`` image, ``c2w`` [4, 4] metres
    (``models.cameras``). Returns ``RenderOutput``: rgb uint8 [H, W, 3] (black holes), mask
    bool [H, W] (a point landed in the pixel), depth float32 [H, W] (z of the nearest point,
    a half-precision value; 0 in holes).
    """
    if width <= 0 or height <= 0:
        raise AnchorInputError(f"image size must be positive; got {width}x{height}")
    K = validate_K(K, width, height)
    w2c = c2w_to_w2c(validate_c2w(c2w))
    xyz, rgb = _points(cloud)
    device = xyz.device
    half = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device).half().float()  # noqa: E731
    rot, trans = half(w2c[:3, :3]), half(w2c[:3, 3])
    xh = xyz.half().float()
    # A half GEMM: float32 sums (here in the order x, y, z), rounded to half.
    rotated = (xh[:, :1] * rot[:, 0] + xh[:, 1:2] * rot[:, 1] + xh[:, 2:3] * rot[:, 2]).half().float()
    cam = (rotated + trans).half().float()  # [N, 3]; a half addition (the float32 sum is exact, then rounded)
    z = cam[:, 2]
    fx, fy, cx, cy = (torch.tensor(np.float32(v), device=device) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    inv_z = 1.0 / z
    col = torch.round(fx * (cam[:, 0] * inv_z) + cx)
    row = torch.round(fy * (cam[:, 1] * inv_z) + cy)
    drawn = (z > NEAR_M) & torch.isfinite(z) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index = torch.nonzero(drawn)[:, 0]
    pixel = (row[index] * width + col[index]).long()
    z_drawn = z[index]
    pixels = height * width
    nearest = torch.full((pixels,), torch.inf, device=device).scatter_reduce_(0, pixel, z_drawn, "amin")
    writes = (z_drawn - nearest[pixel]).abs() <= DEPTH_TIE_M
    winner = torch.full((pixels,), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(0, pixel[writes], index[writes], "amax")  # the last writer in cloud order
    mask = winner >= 0
    palette = torch.cat([_COLOURS.to(device)[rgb.long()], rgb.new_zeros(1, 3)])  # [N + 1, 3]; the last is a hole's
    colours = palette[torch.where(mask, winner, len(rgb))]  # [H * W, 3]
    depth = torch.where(mask, nearest, 0.0)
    return RenderOutput(rgb=colours.view(height, width, 3), mask=mask.view(height, width),
                        depth=depth.view(height, width))


def anchor_agreement(ours: RenderOutput, release: RenderOutput) -> dict[str, float]:
    """How far two single-view renders of the same cloud and camera differ.

    ``psnr_db``: PSNR of the full RGB images (holes black in both, as the network sees
    them); ``psnr_common_db``: over pixels both cover (the colours alone); ``mask_agreement``:
    fraction of pixels where both agree on hole or not; ``hole_iou``: intersection over
    union of the two hole masks; ``coverage_ours`` / ``coverage_release``: fraction of
    pixels each covers.
    """
    a, b = ours.rgb.double(), release.rgb.double()
    both = ours.mask & release.mask
    holes_a, holes_b = ~ours.mask, ~release.mask

    def psnr(mse: float) -> float:
        return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)

    union = (holes_a | holes_b).sum().item()
    return {
        "psnr_db": psnr(((a - b) ** 2).mean().item()),
        "psnr_common_db": psnr(((a - b) ** 2)[both].mean().item()) if both.any() else float("nan"),
        "mask_agreement": (ours.mask == release.mask).double().mean().item(),
        "hole_iou": (holes_a & holes_b).sum().item() / union if union else 1.0,
        "coverage_ours": ours.mask.double().mean().item(),
        "coverage_release": release.mask.double().mean().item(),
    }
