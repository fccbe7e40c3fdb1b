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
* Ray, 1 worker of 1 CPU; Ray, 2 workers of 1 CPU (one local instance, started once, its
  start-up reported apart).

For each arm: start-up (model loaded / first worker ready), the jobs phase, jobs/s and
frames/s over the jobs phase and over the whole arm, and the peak memory of a worker. Ray's
per-job overhead is given two ways: the jobs phase not spent inside a worker's job (dispatch,
progress, results), and the whole 1-worker arm against the 1-thread in-process arm, per job.
Every arm must write the same frames, byte for byte (checked). The machine line (fp32 matmul
rate, load average) comes first: the machine may be shared, so compare the arms of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    parser.add_argument("--model", default=None, help="exported model folder (default: the shipped demo-256)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_render_paths_"))
    job_file = make_jobs(work, args.jobs, args.frames, args.size)
    options = RenderOptions(model=args.model)
    model = options.identity()
    jobs = load_jobs(job_file, options.default_steps())
    frames = sum(j.frames for j in jobs)
    print(machine_line())
    print(f"{len(jobs)} jobs x {args.frames} frames ({frames} frames) at {args.size}x{args.size}, 2 procedural "
          f"scenes, model {model['name']}; {os.cpu_count()} CPUs")
    rows, reference = [], None

    def arm(label: str, out: Path, seconds: float, startup_s: float, inside_s: float, peak_mb: float) -> dict:
        nonlocal reference
        got = outputs(out)
        assert len(got) == frames, f"{label}: {len(got)} of {frames} frames"
        reference = reference or got
        assert got == reference, f"{label}: frames differ from the first arm"
        jobs_s = seconds - startup_s
        row = {"arm": label, "total_s": seconds, "startup_s": startup_s, "jobs_phase_s": jobs_s,
               "jobs_per_s": len(jobs) / jobs_s, "frames_per_s": frames / jobs_s,
               "frames_per_s_total": frames / seconds, "inside_jobs_s": inside_s, "peak_mb": peak_mb}
        rows.append(row)
        print(f"{label:<26} start-up {startup_s:6.2f} s  jobs {jobs_s:6.2f} s  {row['jobs_per_s']:6.3f} jobs/s  "
              f"{row['frames_per_s']:6.2f} frames/s  (whole arm {row['frames_per_s_total']:5.2f} frames/s)  "
              f"worker peak RSS {peak_mb:5.0f} MiB", flush=True)
        return row

    for label, threads in (("in-process, all cores", None), ("in-process, 1 thread", 1)):
        out = work / label.replace(" ", "_").replace(",", "")
        t0 = time.perf_counter()
        results = run_in_process(jobs, out, options, model, threads=threads)
        seconds = time.perf_counter() - t0
        done = manifests(out)
        load_s = done[0]["finished_by"]["load_ms"] / 1e3
        arm(label, out, seconds, load_s, sum(r.seconds for r in results),
            max(m["finished_by"]["peak_rss_mb"] for m in done))

    t0 = time.perf_counter()
    with connect("local", num_cpus=os.cpu_count()) as cluster:
        print(f"Ray: {cluster.describe()}; started in {time.perf_counter() - t0:.2f} s (once, not in the arms)")
        for workers in (1, 2):
            label = f"Ray, {workers} worker(s) x 1 CPU"
            out = work / f"ray_{workers}"
            stats = PoolStats()
            t0 = time.perf_counter()
            results = run_on_ray(jobs, out, options, model, workers, 1.0, 0.0, stats=stats)
            seconds = time.perf_counter() - t0
            assert all(r.status == "done" for r in results), [r.error for r in results if r.error]
            arm(label, out, seconds, stats.first_ready_s, sum(r.seconds for r in results),
                max(m["finished_by"]["peak_rss_mb"] for m in manifests(out)))
            print(f"    workers ready: " + ", ".join(f"{w['worker']} loaded its model in {w['load_ms'] / 1e3:.2f} s, "
                                                 f"{w['peak_rss_mb']:.0f} MiB" for w in stats.ready))

    by = {r["arm"]: r for r in rows}
    one_thread, ray1, ray2 = by["in-process, 1 thread"], by["Ray, 1 worker(s) x 1 CPU"], by["Ray, 2 worker(s) x 1 CPU"]
    dispatch = (ray1["jobs_phase_s"] - ray1["inside_jobs_s"]) / len(jobs)
    whole = (ray1["total_s"] - one_thread["total_s"]) / len(jobs)
    steady = (ray1["jobs_phase_s"] - one_thread["jobs_phase_s"]) / len(jobs)
    print(f"Ray per-job overhead (1 worker): {dispatch * 1e3:.1f} ms outside the worker's job (dispatch, progress, "
          f"result); {steady * 1e3:+.1f} ms per job in the jobs phase and {whole * 1e3:+.1f} ms per job over the whole "
          f"arm against in-process with 1 thread")
    all_cores = by["in-process, all cores"]
    print("ratios, jobs phase frames/s: "
          f"Ray 2 workers / Ray 1 worker = {ray2['frames_per_s'] / ray1['frames_per_s']:.2f}; "
          f"Ray 2 workers / in-process all cores = {ray2['frames_per_s'] / all_cores['frames_per_s']:.2f}; "
          f"Ray 1 worker / in-process 1 thread = {ray1['frames_per_s'] / one_thread['frames_per_s']:.2f}")
    print("every arm wrote the same frames, byte for byte")
    print(machine_line())
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
