"""Classical hole filling of anchor renderings."""

from __future__ import annotations

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
