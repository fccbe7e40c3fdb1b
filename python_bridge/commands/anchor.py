"""``worldfm anchor build`` and ``worldfm anchor render``: a scene's point-cloud anchor from the shell.

``build`` reads a dataset folder (``datagen.dataset`` format) or a WorldFM ``meta.json``
(one photo; needs ``--depth-model``), fuses the views into one cloud and writes a PLY (with
the mesh style, with faces). ``render`` renders a scene at one camera given as a pose JSON
file, in an anchor style (``models.anchor.styles``): a dataset folder or ``meta.json`` is
built first and renders in any style; a PLY holds points only and renders as ``points``::

    {"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   # pixels, for a width x height image
     "c2w": [[...4 values...] x 4],                 # camera-to-world, OpenCV axes, metres
     "width": 512, "height": 512}

Conventions are those of ``models.cameras`` (docs/anchor.md has the details).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``anchor build`` and ``anchor render`` to the ``worldfm`` command."""
    anchor = subparsers.add_parser("anchor", help="build a scene's point-cloud anchor and render it at a camera")
    actions = anchor.add_subparsers(dest="anchor_command", metavar="ACTION")
    anchor.set_defaults(func=lambda args: _usage(anchor))

    build = actions.add_parser("build", help="fuse posed RGB-D views (or one photo + depth model) into a PLY")
    build.add_argument("dataset", type=Path, help="scene folder written by datagen, or a WorldFM meta.json")
    build.add_argument("--out", type=Path, required=True, help="PLY file to write")
    build.add_argument("--anchor", default="mesh", metavar="STYLE",
                       help="mesh (default): the fused points plus the source views' surface patches as faces; "
                            "points: vertices only")
    build.add_argument("--voxel-size", type=float, help="fusion voxel edge in metres (default: half a pixel footprint)")
    build.add_argument("--max-points", type=int, help="cap on the cloud size (default: 2,000,000)")
    build.add_argument("--max-depth", type=float, help="drop samples farther than this many metres (default: 100)")
    build.add_argument("--depth-model", type=Path, help="ONNX depth model for views without depth (docs/anchor.md)")
    build.add_argument("--depth-kind", choices=("depth", "disparity"), default="depth", help="what the model outputs")
    build.add_argument("--depth-scale", type=float, default=1.0, help="metric scale applied to the model output")
    build.add_argument(
        "--depth-input-size", type=int, nargs=2, metavar=("W", "H"), help="input size for models with dynamic size"
    )
    build.set_defaults(func=run_build)

    render = actions.add_parser("render", help="render a PLY at a camera to a PNG")
    render.add_argument("cloud", type=Path, metavar="SCENE",
                        help="dataset folder or WorldFM meta.json (any style), or a PLY (points style)")
    render.add_argument("--anchor", default=None, metavar="STYLE",
                        help="anchor style: mesh (default for a dataset), points (default for a PLY), ...")
    render.add_argument("--pose", type=Path, required=True, help='JSON {"K": 3x3, "c2w": 4x4, "width", "height"}')
    render.add_argument("--out", type=Path, required=True, help="PNG to write")
    render.add_argument("--splat-radius", type=int, default=None,
                        help="grow each point by this many pixels (default 1 for a PLY, 0 for a dataset)")
    render.add_argument("--no-fill-gaps", action="store_true",
                        help="points style from a PLY: keep pinholes and background bleeding through")
    for name in ("voxel_size", "max_points", "max_depth", "depth_model", "depth_input_size"):
        render.set_defaults(**{name: None})
    render.set_defaults(depth_kind="depth", depth_scale=1.0)
    render.add_argument(
        "--fill-holes", choices=("none", "push_pull", "telea"), default="none", help="classical fill of empty pixels"
    )
    render.add_argument("--depth-out", type=Path, help="also write the z-depth as .npy (metres, 0 = empty)")
    render.set_defaults(func=run_render)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fail(message: str) -> int:
    print(f"worldfm anchor: {message}", file=sys.stderr)
    return 1


def _load_frames(args: argparse.Namespace) -> list:
    """The views to fuse, with depth estimated where it is missing and a model was given."""
    from models.anchor import OnnxDepthEstimator

    if args.dataset.suffix == ".json":
        from datagen.worldfm_meta import read_worldfm_meta

        frames = [read_worldfm_meta(args.dataset).reference_frame()]
    else:
        from datagen.dataset import read_scene

        frames = list(read_scene(args.dataset).frames)
    if any(frame.depth is None for frame in frames):
        estimator = OnnxDepthEstimator(
            args.depth_model,
            kind=args.depth_kind,
            scale=args.depth_scale,
            input_size=tuple(args.depth_input_size) if args.depth_input_size else None,
        )
        frames = [estimator.complete(frame) for frame in frames]
    return frames


def _build_options(args: argparse.Namespace) -> dict:
    return {
        name: value
        for name, value in (
            ("voxel_size", args.voxel_size),
            ("max_points", args.max_points),
            ("max_depth", args.max_depth),
        )
        if value is not None
    }


def run_build(args: argparse.Namespace) -> int:
    """Handler of ``worldfm anchor build``."""
    from models.anchor import build_scene, save_ply
    from models.anchor.mesh import mesh_faces
    from models.anchor.styles import get_style

    start = time.perf_counter()
    try:
        style = get_style(args.anchor).name
        frames = _load_frames(args)
        scene = build_scene(frames, **_build_options(args))
        faces = mesh_faces(scene) if style == "mesh" else None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_ply(scene.cloud, args.out, faces)
    except (ValueError, OSError) as exc:  # our input errors are ValueErrors with the reason
        return _fail(str(exc))
    print(
        f"wrote {args.out}: {len(scene.cloud):,} points from {len(frames)} views"
        + (f" and {len(faces):,} triangles over them" if faces is not None else "")
        + f" (voxel {scene.voxel_size * 1000:.1f} mm, {scene.cloud.nbytes / 2**20:.1f} MiB of points) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def read_pose(path: Path) -> tuple:
    """``(K [3, 3], c2w [4, 4], width, height)`` from a pose JSON file (see the module doc)."""
    import numpy as np

    data = json.loads(path.read_text())
    missing = [key for key in ("K", "c2w", "width", "height") if key not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}; a pose file holds K (3x3), c2w (4x4), width and height")
    return (
        np.asarray(data["K"], dtype=np.float64),
        np.asarray(data["c2w"], dtype=np.float64),
        int(data["width"]),
        int(data["height"]),
    )


def run_render(args: argparse.Namespace) -> int:
    """Handler of ``worldfm anchor render``."""
    import numpy as np
    from PIL import Image

    from models.anchor import build_scene, fill_holes, load_ply, render_cloud
    from models.anchor.styles import prepare_anchor

    try:
        K, c2w, width, height = read_pose(args.pose)
        if args.cloud.suffix.lower() == ".ply":
            if args.anchor not in (None, "points"):
                raise ValueError(f"a PLY holds points only and renders in the points style, not {args.anchor!r}; "
                                 "pass the dataset folder it was built from to render other styles")
            style, cloud = "points", load_ply(args.cloud)
            radius = 1 if args.splat_radius is None else args.splat_radius
            out = render_cloud(cloud, K, c2w, width, height, splat_radius=radius, fill_gaps=not args.no_fill_gaps)
        else:
            args.dataset = args.cloud
            scene = build_scene(_load_frames(args))
            cloud = scene.cloud
            prepared = prepare_anchor(scene, args.anchor, splat_radius=args.splat_radius or 0)
            style = prepared.style.name
            out = prepared.render(K, c2w, width, height)
        rgb = out.rgb if args.fill_holes == "none" else fill_holes(out.rgb, out.mask, args.fill_holes)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb.numpy()).save(args.out)
        if args.depth_out:
            np.save(args.depth_out, out.depth.numpy())
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    print(
        f"wrote {args.out}: {width}x{height}, {style} anchor, "
        f"{out.mask.float().mean().item():.1%} of pixels covered ({len(cloud):,} points)"
    )
    return 0
