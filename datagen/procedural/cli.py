"""``worldfm datagen procedural``: render seeded procedural scenes into dataset folders.

Each scene ``i`` goes to ``OUT/scene_<i>/`` in the format of ``datagen.dataset``. Scene seeds
derive from ``--seed`` and the scene index, so rerunning the same command resumes an
interrupted run: finished scenes and views are verified and skipped, the rest rendered.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

KIND_CHOICES = ("indoor", "outdoor", "mixed")


def scene_seed(base_seed: int, index: int) -> int:
    """The seed of scene ``index`` of a run: distinct across indices and base seeds."""
    import numpy as np

    return int(np.random.SeedSequence([base_seed, index]).generate_state(1)[0])


def scene_kind(kind: str, index: int) -> str:
    """"mixed" alternates indoor (even index) and outdoor (odd index) scenes."""
    if kind != "mixed":
        return kind
    return "indoor" if index % 2 == 0 else "outdoor"


def register(subparsers: argparse._SubParsersAction) -> None:
    from datagen.procedural.trajectories import TRAJECTORIES

    parser = subparsers.add_parser(
        "procedural",
        help="render seeded procedural rooms and courtyards (CPU, RGB + depth + poses)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes (default 2)")
    parser.add_argument("--views", type=int, default=24, help="views per scene (default 24)")
    parser.add_argument("--size", type=int, default=256, help="square image size in pixels (default 256)")
    parser.add_argument("--out", type=Path, default=Path("data/procedural"), help="output folder (default data/procedural)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; same seed, same dataset (default 0)")
    parser.add_argument("--kind", choices=KIND_CHOICES, default="mixed", help="scene kind (default mixed: alternate)")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default=None, help="force one camera path kind (default: drawn per scene)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from datagen.dataset import DatasetError, SceneWriter, frame_stem
    from datagen.procedural.renderer import Renderer
    from datagen.procedural.scenes import GENERATOR_VERSION, generate_scene
    from datagen.procedural.trajectories import TrajectoryError, plan_cameras

    for name in ("scenes", "views"):
        if getattr(args, name) < 1:
            print(f"--{name} must be at least 1; got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.size < 8:
        print(f"--size must be at least 8 pixels; got {args.size}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rendered = skipped = 0
    try:
        with tqdm(total=args.scenes * args.views, unit="view", mininterval=0.5) as bar:
            for index in range(args.scenes):
                kind, seed = scene_kind(args.kind, index), scene_seed(args.seed, index)
                scene = generate_scene(seed, kind)
                cameras, path_info = plan_cameras(scene, args.views, args.size, args.size, args.trajectory)
                generator = {"name": "datagen.procedural", "version": GENERATOR_VERSION, "kind": kind, **path_info}
                writer = SceneWriter(args.out / f"scene_{index:05d}", args.views, {"seed": seed, "generator": generator})
                skipped += len(writer.done)
                bar.update(len(writer.done))
                if writer.complete:
                    continue
                renderer = Renderer(scene)
                for i in writer.missing():
                    writer.write(i, renderer.render(cameras[i], name=frame_stem(i)))
                    rendered += 1
                    bar.update(1)
    except (DatasetError, TrajectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(
        f"{args.scenes} scenes, {rendered} views rendered, {skipped} already done, "
        f"{elapsed:.1f} s, {rendered / max(elapsed, 1e-9):.1f} views/s -> {args.out}"
    )
    return 0
