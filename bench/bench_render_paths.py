"""Batch rendering throughput (``worldfm render-paths``): in-process against Ray with 1 and 2
workers, side by side in one run, and the per-job overhead Ray adds.

    flock /work/heavy.lock python bench/bench_render_paths.py [--jobs 8] [--frames 12] [--size 128]

Needs the Ray extra (pip install -e '.[ray]'). The jobs: ``--jobs`` camera paths of ``--frames``
poses over two procedural scenes, rendered with the shipped demo-256 model (or ``--model``).
Arms, in this order, each into a fresh folder:

* in-process, every core for ONNX Runtime (``worldfm render-paths`` without ``--ray``; torch, the
  anchor, runs on one thread in every arm, see ``python_bridge.batch.JobRunner``);
* in-process, 1 thread: what one Ray worker of 1 CPU gets, so the difference to the next arm
  is Ray's cost alone;

(each in-process arm a fresh process, as the command is: start-up is the time from its start to
a loaded model, the jobs phase the rest, as for a Ray worker)
* Ray, 1 worker of 1 CPU; Ray, 2 workers of 1 CPU (one local instance, started once, its
  start-up reported apart; every arm starts its own workers).

The arms run ``--rounds`` times, in reverse order every other round, and medians are reported,
so a change in the machine's load falls on every arm alike. For each arm: start-up (model
loaded / first worker ready), the jobs phase, jobs/s and frames/s over the jobs phase and over
the whole arm, the mean time a worker spent on a frame (render + write: how busy the CPUs were),
and a worker's peak memory. Ray's per-job overhead is given two ways: the jobs phase not spent
inside a worker's job (dispatch, progress, results), and the 1-worker arm against the 1-thread
in-process arm, per job. Every arm must write the same frames, byte for byte (checked). The
machine line (fp32 matmul rate, load average) comes first and last: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars between the figures (tqdm reads it on import)

import numpy as np  # noqa: E402

from machine import machine_line  # noqa: E402 (bench/ on sys.path: run from the repo root)


from python_bridge.commands.serve import prepare_runtime  # noqa: E402

prepare_runtime()

from datagen.ray_cluster import connect  # noqa: E402
from python_bridge.batch import RenderOptions, load_jobs, run_in_process  # noqa: E402
from python_bridge.batch_ray import PoolStats, run_on_ray  # noqa: E402
from python_bridge.camera_path import CameraPath, interpolate_poses, save_camera_path  # noqa: E402
from python_bridge.demo import make_scene  # noqa: E402


def make_jobs(folder: Path, jobs: int, frames: int, size: int) -> Path:
    """``jobs`` jobs alternating between two procedural scenes, each path through its scene's views."""
    lines = []
    for scene in (0, 1):
        source = make_scene(scene, "indoor", 8, size)[1]
        poses = interpolate_poses(np.stack([f.camera.c2w for f in source]), frames)
        save_camera_path(folder / f"path{scene}.json", CameraPath(poses, source[0].camera.K, (size, size)))
    for i in range(jobs):
        lines.append(json.dumps({"id": f"job{i:03d}", "procedural": {"seed": i % 2, "views": 8, "size": size},
                                 "path": f"path{i % 2}.json", "seed": i}))
    (folder / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "jobs.jsonl"


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/frame_*.png"))}


def manifests(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/manifest.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=12, help="poses per job")
    parser.add_argument("--size", type=int, default=128, help="frame size (the model renders at its own)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every arm, order reversed each round")
    parser.add_argument("--model", default=None, help="exported model folder (default: the shipped demo-256)")
    parser.add_argument("--in-process", nargs=3, metavar=("JOBS", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:  # one in-process arm, in this fresh process (see in_process below)
        job_file, out, threads = args.in_process
        options = RenderOptions(model=args.model)
        t0 = time.perf_counter()
        results = run_in_process(load_jobs(job_file, options.default_steps()), out, options, options.identity(),
                                 threads=int(threads) or None)
        print(json.dumps({"inside_s": sum(r.seconds for r in results), "seconds": time.perf_counter() - t0}))
        return

    work = Path(tempfile.mkdtemp(prefix="bench_render_paths_"))
    job_file = make_jobs(work, args.jobs, args.frames, args.size)
    options = RenderOptions(model=args.model)
    model = options.identity()
    jobs = load_jobs(job_file, options.default_steps())
    frames = sum(j.frames for j in jobs)
    print(machine_line())
    print(f"{len(jobs)} jobs x {args.frames} frames ({frames} frames) at {args.size}x{args.size}, 2 procedural "
          f"scenes, model {model['name']}; {os.cpu_count()} CPUs; {args.rounds} rounds, arms alternating")
    rows: dict[str, list[dict]] = {}
    reference: dict[str, bytes] = {}

    def record(label: str, out: Path, seconds: float, startup_s: float, inside_s: float) -> None:
        """Check an arm's frames against the first arm's and keep its figures."""
        nonlocal reference
        got = outputs(out)
        assert len(got) == frames, f"{label}: {len(got)} of {frames} frames"
        reference = reference or got
        assert got == reference, f"{label}: frames differ from the first arm"
        done = manifests(out)
        render_ms = [f["timings_ms"]["render_ms"] for m in done for f in m["frames"]]
        row = {"total_s": seconds, "startup_s": startup_s, "jobs_phase_s": seconds - startup_s,
               "inside_jobs_s": inside_s, "render_ms": float(np.mean(render_ms)),
               "peak_mb": max(m["finished_by"]["peak_rss_mb"] for m in done)}
        rows.setdefault(label, []).append(row)
        shutil.rmtree(out)

    def in_process(label: str, threads: int | None) -> None:
        """A fresh process, as `worldfm render-paths` without --ray is: it pays imports, the model
        load, first-call and compile costs as a fresh Ray worker does."""
        out = work / "out"
        command = [sys.executable, __file__, "--in-process", str(job_file), str(out), str(threads or 0)]
        if args.model:
            command += ["--model", args.model]
        t0 = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - t0
        inside = json.loads(child.stdout.strip().splitlines()[-1])["inside_s"]
        record(label, out, seconds, manifests(out)[0]["finished_by"]["ready_s"], inside)

    def on_ray(label: str, workers: int) -> None:
        out = work / "out"
        stats = PoolStats()
        t0 = time.perf_counter()
        results = run_on_ray(jobs, out, options, model, workers, 1.0, 0.0, stats=stats)
        seconds = time.perf_counter() - t0
        assert all(r.status == "done" for r in results), [r.error for r in results if r.error]
        record(label, out, seconds, stats.first_ready_s, sum(r.seconds for r in results))
        rows[label][-1]["ready_mb"] = max(w["peak_rss_mb"] for w in stats.ready)

    arms = [("in-process, all cores", lambda label: in_process(label, None)),
            ("in-process, 1 thread", lambda label: in_process(label, 1)),
            ("Ray, 1 worker x 1 CPU", lambda label: on_ray(label, 1)),
            ("Ray, 2 workers x 1 CPU", lambda label: on_ray(label, 2))]
    t0 = time.perf_counter()
    with connect("local", num_cpus=os.cpu_count()) as cluster:
        print(f"Ray: {cluster.describe()}; started in {time.perf_counter() - t0:.2f} s (once, in no arm)")
        for round_ in range(args.rounds):
            for label, run in arms if round_ % 2 == 0 else arms[::-1]:
                run(label)

    def median(label: str, key: str) -> float:
        return float(np.median([r[key] for r in rows[label]]))

    print(f"medians over {args.rounds} rounds:")
    for label, _ in arms:
        jobs_s = median(label, "jobs_phase_s")
        print(f"{label:<24} start-up {median(label, 'startup_s'):5.2f} s  jobs phase {jobs_s:6.2f} s  "
              f"{len(jobs) / jobs_s:6.3f} jobs/s  {frames / jobs_s:6.2f} frames/s  "
              f"(whole arm {frames / median(label, 'total_s'):5.2f} frames/s)  "
              f"{median(label, 'render_ms'):6.1f} ms/frame in the worker  worker peak RSS "
              f"{max(r['peak_mb'] for r in rows[label]):4.0f} MiB", flush=True)
    ready = [r["ready_mb"] for name, _ in arms[2:] for r in rows[name]]
    print(f"a Ray worker holds {min(ready):.0f}-{max(ready):.0f} MiB once its model is loaded")
    one, ray1, ray2 = "in-process, 1 thread", "Ray, 1 worker x 1 CPU", "Ray, 2 workers x 1 CPU"
    dispatch = [(r["jobs_phase_s"] - r["inside_jobs_s"]) / len(jobs) for r in rows[ray1]]
    print(f"Ray per-job overhead (1 worker): {np.median(dispatch) * 1e3:.1f} ms per job outside the worker's job "
          f"(dispatch, progress, result; rounds: {', '.join(f'{d * 1e3:.1f}' for d in dispatch)}); against in-process "
          f"with 1 thread {(median(ray1, 'jobs_phase_s') - median(one, 'jobs_phase_s')) / len(jobs) * 1e3:+.0f} ms "
          f"per job in the jobs phase, {(median(ray1, 'total_s') - median(one, 'total_s')) / len(jobs) * 1e3:+.0f} ms "
          "over the whole arm (worker start included)")
    fps = {label: frames / median(label, "jobs_phase_s") for label, _ in arms}
    print(f"ratios, jobs-phase frames/s: Ray 2 workers / Ray 1 worker = {fps[ray2] / fps[ray1]:.2f}; "
          f"Ray 2 workers / in-process all cores = {fps[ray2] / fps['in-process, all cores']:.2f}; "
          f"Ray 1 worker / in-process 1 thread = {fps[ray1] / fps[one]:.2f}")
    print("every arm of every round wrote the same frames, byte for byte")
    print(machine_line())
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
