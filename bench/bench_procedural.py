"""Throughput of procedural data generation: rendering alone, and the whole CLI path.

Claim measured: >= 20 views/s at 256 x 256 on a 2-core CPU machine. Prints views/s by wall
clock and CPU milliseconds per view of this process (steadier when other work shares the
machine), for the renderer alone and for ``worldfm datagen procedural`` (render + PNG encode
+ manifest) with one process and with two rendering workers, and the same-run ratios.

With ``--supersample N`` it also times anti-aliased renders (N x N rays per pixel) against
one-ray renders of the same views, alternating per view, and prints their cost ratio (~N^2).

    python bench/bench_procedural.py [--size 256] [--scenes 6] [--views 16] [--supersample 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time

from datagen.procedural.cli import scene_kind, scene_seed
from datagen.procedural.renderer import Renderer
from datagen.procedural.scenes import generate_scene
from datagen.procedural.trajectories import plan_cameras
from python_bridge.cli import main as worldfm

from machine import machine_line  # bench/machine.py, beside this script


def bench_render(scenes: int, views: int, size: int) -> tuple[float, float]:
    """(views/s wall, CPU ms/view) of Renderer.render alone, scenes alternating indoor/outdoor."""
    jobs = []
    for i in range(scenes):
        scene = generate_scene(scene_seed(0, i), scene_kind("mixed", i))
        cameras, _ = plan_cameras(scene, views, size, size)
        renderer = Renderer(scene)
        renderer.render(cameras[0])  # warm the ray cache outside the timing
        jobs.append((renderer, cameras))
    wall, cpu = time.perf_counter(), time.process_time()
    for renderer, cameras in jobs:
        for camera in cameras:
            renderer.render(camera)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = scenes * views
    return n / wall, 1e3 * cpu / n


def bench_supersample(scenes: int, views: int, size: int, supersample: int) -> tuple[float, float]:
    """CPU ms/view of one-ray and of ``supersample``-ray renders of the same views (scenes cycling
    through the training mix), alternating view by view so both see the same machine load."""
    cpu = {1: 0.0, supersample: 0.0}
    for i in range(scenes):
        scene = generate_scene(scene_seed(0, i), scene_kind("varied", i))
        cameras, _ = plan_cameras(scene, views, size, size)
        renderer = Renderer(scene)
        for n in cpu:
            renderer.render(cameras[0], supersample=n)  # warm the ray caches outside the timing
        for camera in cameras:
            for n in cpu:
                start = time.process_time()
                renderer.render(camera, supersample=n)
                cpu[n] += time.process_time() - start
    return 1e3 * cpu[1] / (scenes * views), 1e3 * cpu[supersample] / (scenes * views)


def bench_cli(scenes: int, views: int, size: int, workers: int) -> tuple[float, float]:
    """(views/s wall, CPU ms/view of this process) of the whole command into a fresh folder."""
    with tempfile.TemporaryDirectory() as out:
        args = ["datagen", "procedural", "--scenes", str(scenes), "--views", str(views), "--size", str(size),
                "--out", out, "--workers", str(workers)]
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert worldfm(args) == 0
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = scenes * views
    return n / wall, 1e3 * cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--supersample", type=int, default=1, help="also time N x N rays per pixel (odd N > 1)")
    args = parser.parse_args()
    print(f"{args.scenes} scenes x {args.views} views at {args.size}x{args.size}; "
          f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    render_vps, render_ms = bench_render(args.scenes, args.views, args.size)
    print(f"render only      : {render_vps:6.1f} views/s  ({render_ms:5.1f} CPU ms/view)")
    one_vps, one_ms = bench_cli(args.scenes, args.views, args.size, workers=1)
    print(f"command, 1 proc  : {one_vps:6.1f} views/s  ({one_ms:5.1f} CPU ms/view)")
    two_vps, two_ms = bench_cli(args.scenes, args.views, args.size, workers=2)
    print(f"command, 2 workers: {two_vps:5.1f} views/s  ({two_ms:5.1f} CPU ms/view in the writing process)")
    print(f"ratios: command 1 proc / render {one_vps / render_vps:.2f}, 2 workers / 1 proc {two_vps / one_vps:.2f}")
    if args.supersample > 1:
        one_ray, many = bench_supersample(args.scenes, args.views, args.size, args.supersample)
        print(f"render, {args.supersample}x{args.supersample} rays: {many:6.1f} CPU ms/view against {one_ray:5.1f} with "
              f"one ray (same views, alternating; varied mix): ratio {many / one_ray:.2f}")
    print(machine_line())


if __name__ == "__main__":
    main()
