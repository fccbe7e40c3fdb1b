"""``worldfm datagen procedural``: render seeded procedural scenes into dataset folders.

Each scene ``i`` goes to ``OUT/scene_<i>/`` in the format of ``datagen.dataset``. Scene seeds
derive from ``--seed`` and the scene index, so rerunning the same command resumes an
interrupted run: finished scenes and views are verified and skipped, the rest rendered.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

# Mixes cycle through families by scene index. "mixed" is the original indoor/outdoor pair;
# "varied" adds the richer training families; "held-out" holds the families no training
# stage may see (layouts and textures), for `worldfm eval --out-of-family`.
MIXES = {
    "mixed": ("indoor", "outdoor"),
    "varied": ("room", "courtyard", "indoor", "outdoor"),
    "held-out": ("hall", "street"),
}
KIND_CHOICES = ("indoor", "outdoor", "room", "courtyard", "hall", "street", *MIXES)


def scene_seed(base_seed: int, index: int) -> int:
    """The seed of scene ``index`` of a run: distinct across indices and base seeds."""
    import numpy as np

    return int(np.random.SeedSequence([base_seed, index]).generate_state(1)[0])


def scene_kind(kind: str, index: int) -> str:
    """The family of scene ``index``: ``kind`` itself, or for a mix (``MIXES``) its families in
    turn ("mixed": indoor at even indices, outdoor at odd ones)."""
    families = MIXES.get(kind, (kind,))
    return families[index % len(families)]


def register(subparsers: argparse._SubParsersAction) -> None:
    from datagen.procedural.trajectories import TRAJECTORIES

    parser = subparsers.add_parser(
        "procedural",
        help="render seeded procedural rooms and courtyards (CPU, RGB + depth + poses)",
        description="Render seeded procedural rooms and courtyards into dataset folders (RGB, depth, poses).",
    )
    parser.add_argument("--scenes", type=int, default=2, help="number of scenes (default 2)")
    parser.add_argument("--views", type=int, default=24, help="views per scene (default 24)")
    parser.add_argument("--size", type=int, default=256, help="square image size in pixels (default 256)")
    parser.add_argument("--out", type=Path, default=Path("data/procedural"), help="output folder (default data/procedural)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; same seed, same dataset (default 0)")
    parser.add_argument(
        "--kind", choices=KIND_CHOICES, default="mixed",
        help="scene family, or a mix of them: mixed = indoor/outdoor, varied = room/courtyard/indoor/outdoor "
             "(training), held-out = hall/street (layouts and textures kept out of training; docs/datagen.md) "
             "(default mixed)",
    )
    parser.add_argument(
        "--supersample", type=int, default=1, metavar="N",
        help="anti-aliasing: N x N rays per pixel (odd N), colours box-averaged; depth stays the pixel-centre ray. "
             "Costs ~N^2 the render time; recorded in each scene's metadata when above 1 (default 1: one ray per pixel)",
    )
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default=None, help="force one camera path kind (default: drawn per scene)")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1),
        help="rendering processes; this one writes the files (default: 2, or 1 on a 1-CPU machine)",
    )
    parser.set_defaults(func=run)


def _plan(args: argparse.Namespace, index: int):
    """Scene ``index`` of a run, its cameras, and the metadata its folder records."""
    from datagen.procedural.families import texture_set, texture_sources
    from datagen.procedural.scenes import GENERATOR_VERSION, generate_scene
    from datagen.procedural.trajectories import plan_cameras

    kind, seed = scene_kind(args.kind, index), scene_seed(args.seed, index)
    scene = generate_scene(seed, kind)
    cameras, path_info = plan_cameras(scene, args.views, args.size, args.size, args.trajectory)
    generator = {"name": "datagen.procedural", "version": GENERATOR_VERSION, "kind": kind, **path_info}
    textures = texture_set(kind)
    if textures is not None:  # the richer families say what their surfaces are made of
        generator["texture_set"] = textures.name
        generator["photos"] = texture_sources(scene)
    if args.supersample > 1:  # recorded only when used, so one-ray folders keep their metadata (and resume)
        generator["supersample"] = args.supersample
    return scene, cameras, {"seed": seed, "generator": generator}


_worker_scene: dict = {}  # per process: the scene being rendered, {(run settings, index): (renderer, cameras)}


def _render_view(job: tuple[argparse.Namespace, int, int]):
    """Render view ``view`` of scene ``index``: ``(index, view, Frame)``. Runs in worker processes,
    which rebuild each scene from its seed (deterministic) instead of receiving it."""
    from datagen.dataset import frame_stem
    from datagen.procedural.renderer import Renderer

    args, index, view = job
    # Keyed by everything the scene and its cameras depend on: without a pool this process
    # renders, and a later run in it (another seed, size or family) must not reuse them.
    key = (args.seed, args.kind, args.views, args.size, args.trajectory, index)
    if key not in _worker_scene:
        scene, cameras, _ = _plan(args, index)
        _worker_scene.clear()
        _worker_scene[key] = (Renderer(scene), cameras)
    renderer, cameras = _worker_scene[key]
    return index, view, renderer.render(cameras[view], name=frame_stem(view), supersample=args.supersample)


def run(args: argparse.Namespace) -> int:
    import multiprocessing

    from tqdm import tqdm

    from datagen.dataset import DatasetError, SceneWriter
    from datagen.procedural.renderer import subpixel_offsets
    from datagen.procedural.trajectories import TrajectoryError

    for name, least in (("scenes", 1), ("views", 1), ("size", 8), ("workers", 1)):
        if getattr(args, name) < least:
            print(f"--{name} must be at least {least}; got {getattr(args, name)}", file=sys.stderr)
            return 2
    try:
        subpixel_offsets(args.supersample)
    except ValueError as exc:
        print(f"--supersample: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        writers = [SceneWriter(args.out / f"scene_{i:05d}", args.views, _plan(args, i)[2]) for i in range(args.scenes)]
    except (DatasetError, TrajectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    skipped = sum(len(w.done) for w in writers)
    jobs = [(args, i, view) for i, writer in enumerate(writers) for view in writer.missing()]
    # Workers render, this process encodes and writes: the two overlap.
    with multiprocessing.Pool(args.workers) if args.workers > 1 and len(jobs) > 1 else contextlib.nullcontext() as pool:
        frames = pool.imap(_render_view, jobs) if pool else map(_render_view, jobs)
        with tqdm(total=args.scenes * args.views, initial=skipped, unit="view", mininterval=0.5) as bar:
            for index, view, frame in frames:
                writers[index].write(view, frame)
                bar.update(1)
    elapsed = time.perf_counter() - start
    print(
        f"{args.scenes} scenes, {len(jobs)} views rendered, {skipped} already done, "
        f"{elapsed:.1f} s, {len(jobs) / max(elapsed, 1e-9):.1f} views/s -> {args.out}"
    )
    return 0
