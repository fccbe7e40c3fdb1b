"""Anchor styles: the ways a built scene can be rendered as the anchor image, by name.

Everything that renders anchors -- the server's frame pipeline, training pairs, evaluation,
``worldfm anchor render`` -- goes through this registry, so training and serving see the same
anchor for the same style name. A style is two functions:

* ``prepare(scene, device, **options) -> state``: once per scene, from the
  :class:`models.anchor.AnchorScene` (fused cloud, source views with depth, reference index);
* ``render(state, K, c2w, width, height) -> RenderOutput``: once per frame, K [3, 3] pixels,
  c2w [4, 4] metres (``models.cameras``); rgb uint8 [H, W, 3], mask bool [H, W] (pixels the
  anchor covers), depth float32 [H, W] metres (0 where empty).

Options every style accepts: ``compiled`` (use compiled CPU kernels where the style has them;
the image must not change) and ``splat_radius`` (grow sparse samples by this many pixels).
A new style is one module with its two functions and one :func:`register_style` call below.

Styles: ``points`` (the fused cloud splatted, one sample per pixel; :mod:`models.anchor.splat`)
and ``mesh`` (source views' depth maps as surfaces, resampled at sub-pixel precision;
:mod:`models.anchor.mesh`), the default by measurement (docs/anchor.md); ``release`` (the fused
cloud as the published WorldFM release renders it, what its checkpoints were trained on;
:mod:`models.anchor.release_style`), which ``worldfm import-published`` names in its manifests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.anchor.build import AnchorScene
from models.anchor.cloud import AnchorInputError
from models.anchor.mesh import prepare_mesh, render_mesh
from models.anchor.release_style import prepare_release, render_release
from models.anchor.splat import RenderOutput, render_cloud, to_device

__all__ = ["AnchorStyle", "PreparedAnchor", "STYLES", "DEFAULT_STYLE", "register_style", "get_style",
           "prepare_anchor"]


@dataclass(frozen=True)
class AnchorStyle:
    """One registered style: ``name``, a one-line ``summary`` for help texts, and its two functions."""

    name: str
    summary: str
    prepare: Callable[..., Any]
    render: Callable[[Any, np.ndarray, np.ndarray, int, int], RenderOutput]


@dataclass(frozen=True)
class PreparedAnchor:
    """A scene prepared for one style: call :meth:`render` per frame."""

    style: AnchorStyle
    state: Any

    def render(self, K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> RenderOutput:
        """The anchor at camera K [3, 3] (pixels, for ``width`` x ``height``), c2w [4, 4] metres."""
        return self.style.render(self.state, K, c2w, width, height)


STYLES: dict[str, AnchorStyle] = {}


def register_style(style: AnchorStyle) -> None:
    """Add ``style`` to :data:`STYLES` (a name can be registered once)."""
    if style.name in STYLES:
        raise ValueError(f"anchor style {style.name!r} is already registered")
    STYLES[style.name] = style


def get_style(name: str) -> AnchorStyle:
    """The registered style ``name``; an error lists the choices."""
    if name not in STYLES:
        raise AnchorInputError(f"unknown anchor style {name!r}; choose one of {sorted(STYLES)}")
    return STYLES[name]


def prepare_anchor(
    scene: AnchorScene, style: str | None = None, device: str | torch.device = "cpu", **options: Any
) -> PreparedAnchor:
    """Prepare ``scene`` for per-frame rendering in ``style`` (default :data:`DEFAULT_STYLE`)."""
    chosen = get_style(style or DEFAULT_STYLE)
    return PreparedAnchor(chosen, chosen.prepare(scene, device, **options))


@dataclass(frozen=True)
class _PointsState:
    cloud: Any  # DeviceCloud
    splat_radius: int


def _prepare_points(scene: AnchorScene, device: str | torch.device = "cpu", compiled: bool = False,
                    splat_radius: int = 0) -> _PointsState:
    return _PointsState(to_device(scene.cloud, device, compiled=compiled), splat_radius)


def _render_points(state: _PointsState, K: np.ndarray, c2w: np.ndarray, width: int, height: int) -> RenderOutput:
    return render_cloud(state.cloud, K, c2w, width, height, splat_radius=state.splat_radius)


register_style(AnchorStyle("points", "the fused point cloud splatted, nearest point per pixel (fastest)",
                           _prepare_points, _render_points))
register_style(AnchorStyle("mesh", "source views' depth maps as surfaces, resampled at sub-pixel precision",
                           prepare_mesh, render_mesh))
register_style(AnchorStyle("release", "the fused cloud as the published release renders it (its checkpoints' anchors)",
                           prepare_release, render_release))

DEFAULT_STYLE = "mesh"
