"""Classical hole filling of anchor renderings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.anchor import AnchorInputError, fill_holes


def _gradient(h: int = 37, w: int = 50) -> torch.Tensor:
    rows = torch.linspace(0, 200, h)[:, None].expand(h, w)
    cols = torch.linspace(0, 250, w)[None, :].expand(h, w)
    return torch.stack([rows, cols, torch.full((h, w), 90.0)], -1).round().to(torch.uint8)


@pytest.mark.parametrize("method", ["push_pull", "telea"])
def test_covered_pixels_stay_and_holes_get_nearby_colours(method):
    rgb = _gradient()
    mask = torch.ones(rgb.shape[:2], dtype=torch.bool)
    mask[10:16, 20:30] = False  # a hole inside the image
    mask[:, :3] = False  # and one along the border
    broken = torch.where(mask[..., None], rgb, 0)
    out = fill_holes(broken, mask, method)
    assert torch.equal(out[mask], rgb[mask])
    err = (out.float() - rgb.float()).abs()[~mask]
    assert err.mean() < 12 and err.max() < 60  # a smooth ramp is filled close to the truth
    assert (out[~mask] > 0).all()  # no black left in the holes


def test_push_pull_reproduces_a_flat_colour_exactly_and_is_batched():
    rgb = torch.tensor([30, 160, 240], dtype=torch.uint8).expand(2, 20, 24, 3).clone()
    mask = torch.rand(2, 20, 24, generator=torch.Generator().manual_seed(0)) > 0.7
    out = fill_holes(torch.where(mask[..., None], rgb, 0), mask)
    assert torch.equal(out, rgb)
    single = fill_holes(torch.where(mask[0, ..., None], rgb[0], 0), mask[0])
    assert torch.equal(single, out[0])


@pytest.mark.parametrize("method", ["push_pull", "telea"])
def test_empty_and_full_masks(method):
    rgb = _gradient(8, 9)
    assert torch.equal(fill_holes(rgb, torch.ones(8, 9, dtype=torch.bool), method), rgb)
    assert not fill_holes(torch.zeros_like(rgb), torch.zeros(8, 9, dtype=torch.bool), method).any()


def test_bad_inputs():
    rgb = _gradient(8, 9)
    with pytest.raises(AnchorInputError, match="uint8"):
        fill_holes(rgb.float(), torch.ones(8, 9, dtype=torch.bool))
    with pytest.raises(AnchorInputError, match="mask must be bool"):
        fill_holes(rgb, torch.ones(9, 8, dtype=torch.bool))
    with pytest.raises(AnchorInputError, match="unknown hole-filling method"):
        fill_holes(rgb, torch.ones(8, 9, dtype=torch.bool), "magic")


def _reference_push_pull(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Push-pull written out plainly in float64, pixel by pixel: each coarser cell is the mean of
    the covered pixels of its (up to) 2 x 2 block, until every cell is covered or one is left;
    on the way back up a pixel keeps its own mean where its level covered it and otherwise
    takes the next coarser level sampled bilinearly at its centre (half-pixel centres, edges
    clamped); a one-pixel-wide image has nothing to pull from and stays black in its holes."""
    colour, weight = rgb.astype(np.float64) * mask[..., None], mask.astype(np.float64)
    levels = [(colour, weight)]
    while min(weight.shape) > 1 and not (weight > 0).all():
        h, w = (weight.shape[0] + 1) // 2, (weight.shape[1] + 1) // 2
        c, n = np.zeros((h, w, 3)), np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                # a block cut by the border counts as if repeated to 2 x 2 (the mean of its pixels)
                scale = 4 / (min(2, weight.shape[0] - 2 * i) * min(2, weight.shape[1] - 2 * j))
                c[i, j] = colour[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum((0, 1)) * scale
                n[i, j] = weight[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() * scale
        colour, weight = c, n
        levels.append((colour, weight))
    if len(levels) == 1:
        return levels[0][0]
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)[..., None]
    for colour, weight in reversed(levels[:-1]):
        (h, w), (ch, cw) = weight.shape, filled.shape[:2]
        up = np.zeros((h, w, 3))
        for i in range(h):
            y = min(max((i + 0.5) * ch / h - 0.5, 0.0), ch - 1)
            y0 = min(int(y), ch - 1)
            y1, fy = min(y0 + 1, ch - 1), y - y0
            for j in range(w):
                x = min(max((j + 0.5) * cw / w - 0.5, 0.0), cw - 1)
                x0 = min(int(x), cw - 1)
                x1, fx = min(x0 + 1, cw - 1), x - x0
                up[i, j] = ((1 - fy) * ((1 - fx) * filled[y0, x0] + fx * filled[y0, x1])
                            + fy * ((1 - fx) * filled[y1, x0] + fx * filled[y1, x1]))
        own = colour / np.maximum(weight, 1e-12)[..., None]
        filled = np.where(weight[..., None] > 0, own, up)
    return filled


@pytest.mark.parametrize("seed", range(6))
def test_push_pull_matches_a_plain_float64_reference(seed):
    """Odd and even sizes, one-pixel strips, sparse and dense coverage: every filled pixel within
    one level of the reference (float32 against float64 rounding), nearly all equal."""
    rng = np.random.default_rng(seed)
    h, w = [(1, 9), (13, 1), (7, 10), (33, 17), (40, 64), (29, 31)][seed]
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.random((h, w)) < [0.05, 0.5, 0.3, 0.02, 0.9, 0.6][seed]
    mask[: h // 3, : w // 2] = False  # a large hole as well
    out = fill_holes(torch.from_numpy(rgb), torch.from_numpy(mask)).numpy().astype(int)
    expected = np.clip(np.round(_reference_push_pull(rgb, mask)), 0, 255)
    expected = np.where(mask[..., None], rgb, expected)
    assert np.abs(out - expected).max() <= 1
    assert (out == expected).mean() > 0.99
