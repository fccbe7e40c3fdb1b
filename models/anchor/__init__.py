"""The explicit 3-D anchor of WorldFM: a scene point cloud built once, rendered at every target.

Offline (:func:`build_scene`): posed RGB-D views -> reliable world points -> one fused,
bounded cloud (:class:`PointCloud`, PLY on disk) plus the views kept as reference
candidates. Online, per frame: :func:`render_cloud` / :func:`render_views` splat the cloud
at the target camera (torch, CPU or CUDA), :func:`select_reference` picks the candidate
view that best covers it, :func:`fill_holes` is the classical fill of what the cloud
misses. :class:`OnnxDepthEstimator` supplies depth for photos without it. Cameras follow
``models.cameras``; docs/anchor.md walks through it all.
"""

from models.anchor.build import AnchorScene, build_scene
from models.anchor.cloud import AnchorInputError, PointCloud, load_ply, save_ply
from models.anchor.depth_model import OnnxDepthEstimator
from models.anchor.holes import fill_holes
from models.anchor.reference import select_reference
from models.anchor.splat import DeviceCloud, RenderOutput, render_cloud, render_views, to_device

__all__ = [
    "AnchorInputError",
    "AnchorScene",
    "DeviceCloud",
    "OnnxDepthEstimator",
    "PointCloud",
    "RenderOutput",
    "build_scene",
    "fill_holes",
    "load_ply",
    "render_cloud",
    "render_views",
    "save_ply",
    "select_reference",
    "to_device",
]
