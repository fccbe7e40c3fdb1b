"""Classical hole filling for anchor renderings: the baseline the model must beat.

Also the fallback frame when no model is loaded. Two methods:

* ``"push_pull"`` (default): a masked image pyramid -- average the covered pixels down to
  coarser levels until every cell has some colour, then fill each level's holes from the
  next coarser one on the way back up. Pure torch, batched, CPU or CUDA; smooth fills, no
  texture. On one CPU thread (2-core VM) a 256x256 frame with a fifth of it empty takes
  2.1-3.3 ms and a 512x512 one 8.4-8.6 ms, against 2.7-4.4 and 10.9-11.9 ms before the finest
  level stopped computing the covered pixels it then discards (alternating rounds; the server
  runs it at 256x256, a stage of 2.3-2.8 ms at the median in ``worldfm demo``).
* ``"telea"``: OpenCV's fast-marching inpainting (Telea 2004); sharper near edges but
  much slower on large holes, CPU only, one image at a time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.anchor.cloud import AnchorInputError

__all__ = ["fill_holes", "METHODS", "THIN_HOLE_RADIUS", "wide_holes"]

METHODS = ("push_pull", "telea")
TELEA_RADIUS = 3  # pixels considered around each filled pixel


def _check(rgb: torch.Tensor, mask: torch.Tensor) -> None:
    if rgb.dtype != torch.uint8 or rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise AnchorInputError(f"rgb must be uint8 [..., H, W, 3]; got {rgb.dtype} {tuple(rgb.shape)}")
    if mask.dtype != torch.bool or mask.shape != rgb.shape[:-1]:
        raise AnchorInputError(
            f"mask must be bool with rgb's shape without the channel axis {tuple(rgb.shape[:-1])}; "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def _push_pull(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float colours [B, 3, H, W] for the pixels where weight [B, 1, H, W] is 0, from coarser
    levels. The other pixels get the coarser levels' colour too, not their own: the caller
    keeps its own colours there.

    Why not also keep them here: the finest level's division and selection are two of the
    costliest passes of the pyramid (full resolution, three channels), and ``fill_holes``
    overwrites those pixels anyway."""
    weight = mask.to(torch.float32)
    colour = rgb * weight
    levels = [(colour, weight)]
    while min(colour.shape[-2:]) > 1 and not bool((weight > 0).all()):
        # Sums (not means) so that a cell's colour is the mean of its covered pixels.
        colour = F.avg_pool2d(colour, 2, ceil_mode=True) * 4
        weight = F.avg_pool2d(weight, 2, ceil_mode=True) * 4
        levels.append((colour, weight))
    filled = levels[-1][0] / levels[-1][1].clamp(min=1e-12)
    for colour, weight in reversed(levels[1:-1]):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        own = colour / weight.clamp(min=1e-12)
        filled = torch.where(weight > 0, own, coarse)
    if len(levels) == 1:  # nothing to fill, or one row or column: its holes stay black
        return levels[0][0]
    return F.interpolate(filled, size=rgb.shape[-2:], mode="bilinear", align_corners=False)


def fill_holes(rgb: torch.Tensor, mask: torch.Tensor, method: str = "push_pull") -> torch.Tensor:
    """Fill the pixels of ``rgb`` (uint8 [..., H, W, 3]) where ``mask`` (bool [..., H, W]) is False.

    Covered pixels are returned unchanged. An image with no covered pixel stays black.
    """
    _check(rgb, mask)
    if method not in METHODS:
        raise AnchorInputError(f"unknown hole-filling method {method!r}; choose one of {METHODS}")
    if method == "telea":
        import cv2

        flat_rgb = rgb.reshape(-1, *rgb.shape[-3:]).cpu().numpy()
        flat_holes = (~mask).reshape(-1, *mask.shape[-2:]).cpu().numpy().astype(np.uint8)
        out = np.stack(
            [
                cv2.inpaint(image, holes, TELEA_RADIUS, cv2.INPAINT_TELEA) if holes.any() and not holes.all() else image
                for image, holes in zip(flat_rgb, flat_holes)
            ]
        )
        return torch.from_numpy(out).reshape(rgb.shape).to(rgb.device)
    batch = rgb.reshape(-1, *rgb.shape[-3:]).permute(0, 3, 1, 2).to(torch.float32)
    weight = mask.reshape(-1, 1, *mask.shape[-2:])
    filled = _push_pull(batch, weight).round_().clamp_(0, 255).to(torch.uint8)
    filled = filled.permute(0, 2, 3, 1).reshape(rgb.shape)
    return torch.where(mask[..., None], rgb, filled)


THIN_HOLE_RADIUS = 4  # pixels: a hole no point of which lies farther from the covered pixels is thin


def wide_holes(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): the empty pixels (``mask`` False) of holes that are wide, i.e. some pixel of
    the hole (8-connected) lies more than ``THIN_HOLE_RADIUS`` px from every covered pixel.

    Why: a thin hole (a sliver between surfaces, a crack) is bridged by a classical fill from
    both sides, while a wide one (a disocclusion, the sky) needs content the anchor does not
    have; a generator's score on the two tells different stories (`worldfm eval`), and the fill
    guard serves the fill in the thin ones (:func:`models.fill_guard.guarded_frame`)."""
    import cv2

    empty = (~np.asarray(mask, bool)).astype(np.uint8)
    if not empty.any() or empty.all():  # no hole, or nothing covered to measure from
        return empty.astype(bool)
    count, labels = cv2.connectedComponents(empty, connectivity=8)
    distance = cv2.distanceTransform(empty, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    widest = np.zeros(count, np.float32)
    np.maximum.at(widest, labels.reshape(-1), distance.reshape(-1))
    widest[0] = 0.0  # label 0: the covered pixels
    return widest[labels] > THIN_HOLE_RADIUS
