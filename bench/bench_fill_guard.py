"""What the fill guard costs, measured at once (``--fill-guard build``) and between frames (the
default, ``idle``), and what it chose (docs/model.md, "Fill guard").

1. Per procedural scene kind, renders ``--views`` source views (not timed), builds the scene as
   the server does, then times ``FramePipeline.measure_fill_guard``: every run of 4 views left out
   of a rebuilt cloud in turn (at most 24), every other view of it rendered with the model and as
   anchor + hole filling. Prints the time beside the build's (what ``build`` adds before the first
   frame), the guard's choice and its two PSNRs.
2. A server with the default ``idle`` guard, the first kind's scene: time to the first frame, a
   stream of ``--frames`` frames, then a pause in which the guard measures. ``--interrupt`` times
   a frame is asked for 0.1 s into a guard window (what a user who moves again meets); prints
   their latency beside the stream's and how long after the stream paused the guard was decided.

The machine line comes before and after (the cost is CPU-bound: two ONNX frames and a cloud
build per window).

    python bench/bench_fill_guard.py [--views 24] [--kinds hall street indoor] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from machine import machine_line

from models.anchor.splat import compiles_held
from python_bridge.camera_path import interpolate_poses
from python_bridge.client import Client
from python_bridge.demo import load_pipeline, make_scene
from python_bridge.server import Server, ServerConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=24, help="source views per scene (default 24, as data/ood's)")
    parser.add_argument("--size", type=int, default=256, help="view size in pixels (default 256)")
    parser.add_argument("--kinds", nargs="+", default=["hall", "street", "indoor"],
                        help="procedural scene kinds (default: two out-of-family kinds and a training one)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped demo-256)")
    parser.add_argument("--seed", type=int, default=200000, help="scene seed (default 200000, as data/ood's first)")
    parser.add_argument("--frames", type=int, default=48, help="frames streamed before the pause (part 2)")
    parser.add_argument("--interrupt", type=int, default=4, help="frames asked for inside guard windows (part 2)")
    args = parser.parse_args()
    pipeline = load_pipeline(args.model, "cpu", None, False, "auto", None)
    print(machine_line())
    with compiles_held():  # as `worldfm serve` builds: the anchor kernels compile in a later pause
        measure(pipeline, args)
    print(machine_line())
    between_frames(pipeline, args)
    print(machine_line())
    return 0


def between_frames(pipeline, args: argparse.Namespace) -> None:
    """Part 2: the default server's guard, measured in the pause after a stream."""
    _, views = make_scene(args.seed, args.kinds[0], args.views, args.size)
    path = interpolate_poses(np.stack([v.camera.c2w for v in views]), args.frames)
    with Server(pipeline, ServerConfig(bind="tcp://127.0.0.1:*")).start() as server, \
            Client(server.endpoint, timeout_s=120) as client:
        start = time.perf_counter()
        scene = client.open_scene(views).scene
        ready_s = time.perf_counter() - start
        client.render(scene, path[0], seed=0)
        first_s = time.perf_counter() - start
        stream = [client.render(scene, c2w, seed=i).latency_ms for i, c2w in enumerate(path)]
        paused = time.monotonic()
        inside = []
        # The guard's progress as any client sees it: the build's status in the stats reply, polled.
        status = guard_status(client)
        for i in range(args.interrupt):
            seen = status.get("windows", 0)
            while (status := guard_status(client))["state"] in ("waiting", "measuring") and status["windows"] == seen:
                time.sleep(0.005)
            if status["state"] != "measuring":
                break
            time.sleep(0.1)
            inside.append(client.render(scene, path[i], seed=i).latency_ms)
        while (status := guard_status(client))["state"] in ("waiting", "measuring"):
            time.sleep(0.02)
        decided_s = time.monotonic() - paused
        mode = client.render(scene, path[0], seed=0).mode
    p95 = float(np.percentile(stream, 95))
    print(f"  idle guard ({args.kinds[0]}, {len(views)} views): scene ready {ready_s:.2f} s, first frame "
          f"{first_s:.2f} s after open_scene; stream of {len(stream)}: median {statistics.median(stream):.0f} ms, "
          f"p95 {p95:.0f} ms")
    print(f"    {len(inside)} frames asked 0.1 s into a guard window: "
          + ", ".join(f"{ms:.0f}" for ms in inside) + " ms"
          + f"; {status['state']} {decided_s:.1f} s after the stream paused ({status['windows']} windows); "
          f"frames since: {mode}")


def guard_status(client: Client) -> dict:
    """The newest build's fill guard status in the server's ``stats`` reply (docs/protocol.md)."""
    return client.stats()["builds"][-1]["fill_guard"]


def measure(pipeline, args: argparse.Namespace) -> None:
    """One scene per kind: build, then the guard, timed."""
    for kind in args.kinds:
        _, views = make_scene(args.seed, kind, args.views, args.size)
        start = time.perf_counter()
        built = pipeline.build(views)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        pipeline.measure_fill_guard(built)
        guard_s = time.perf_counter() - start
        guard = built.fill_guard
        chose = "nothing (too few views)" if guard is None else (
            f"{'the model' if guard.use_model else 'anchor + hole filling'} over {guard.targets} targets "
            f"(model {guard.model_psnr:.2f} dB, fill {guard.fill_psnr:.2f} dB)")
        print(f"  {kind:<8} {len(views)} views: build {build_s:.2f} s, fill guard {guard_s:.2f} s more; chose {chose}")


if __name__ == "__main__":
    raise SystemExit(main())
