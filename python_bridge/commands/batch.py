"""``worldfm render-paths``: many camera paths over many scenes, in this process or on Ray.

The job file and the output folders are described in :mod:`python_bridge.batch`; running on a
laptop, one multi-GPU box or a Ray cluster in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from python_bridge.commands.serve import _add_model_args, prepare_runtime


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render-paths",
        help="render many camera paths over many scenes (resumable; in-process or on Ray)",
        description="Render every job of a JSON Lines job file (a scene folder or procedural seed, a camera "
        "path, options) into OUT/<job id>/: frames, path.mp4 and manifest.json. Rerunning the command "
        "skips finished jobs and finished frames. With --ray the jobs run on a pool of Ray actors, one "
        "engine each; without it here, one after another. The frames are the same bytes either way. "
        "See python_bridge/batch.py for the job format and docs/scaling.md for clusters.",
    )
    p.add_argument("jobs", type=Path, help="job file, JSON Lines: one job per line")
    p.add_argument("--out", type=Path, required=True, help="output folder; job ID writes OUT/ID/")
    _add_model_args(p)
    r = p.add_argument_group("Ray (pip install -e '.[ray]')")
    r.add_argument("--ray", metavar="auto|local|ADDRESS", default=None,
                   help="run on Ray: auto (RAY_ADDRESS, else a cluster started with `ray start` on this machine, "
                   "else a new local instance), local (always a new local instance), or a head's address "
                   "(HOST:6379 or ray://HOST:10001)")
    r.add_argument("--workers", type=int, default=None,
                   help="actors, one engine each (default: as many as the cluster's CPUs/GPUs hold, at most one "
                   "per job)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="CPUs per actor; its ONNX Runtime and torch threads (default 1)")
    r.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs per actor, fractions allowed (default: 1 when the cluster has GPUs, else 0)")
    r.add_argument("--memory-per-worker", type=float, default=None, metavar="GB",
                   help="memory reserved per actor in Ray's scheduler (docs/scaling.md has what an actor uses)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render every job; 0 when all are done (or were already), 1 when any failed, 2 for bad input."""
    prepare_runtime()
    from tqdm import tqdm

    from datagen.ray_cluster import RayUnavailableError
    from python_bridge.batch import (JobError, JobResult, RenderOptions, job_finished, load_jobs, run_in_process,
                                     summary)

    options = RenderOptions(None if args.model is None else str(args.model.resolve()), args.no_model, args.steps,
                            args.provider, args.precision, args.anchor)
    try:
        if args.workers is not None and args.workers < 1 or args.cpus_per_worker <= 0:
            raise JobError("--workers must be >= 1 and --cpus-per-worker > 0")
        model = options.identity()
        jobs = load_jobs(args.jobs, options.default_steps())
    except (JobError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    finished = [job for job in jobs if job_finished(job, args.out, model)]
    todo = [job for job in jobs if job not in finished]
    total_frames = sum(job.frames for job in jobs)
    bars = not args.no_progress
    job_bar = tqdm(total=len(jobs), desc="jobs", unit="job", position=0, disable=not bars, file=sys.stderr)
    frame_bar = tqdm(total=total_frames, desc="frames", unit="frame", position=1, disable=not bars, file=sys.stderr)
    job_bar.update(len(finished))
    frame_bar.update(sum(job.frames for job in finished))
    seen: dict[str, int] = {}

    def progress(job_id: str, done: int) -> None:
        step = done - seen.get(job_id, 0)
        if step > 0:
            seen[job_id] = done
            frame_bar.update(step)

    def on_result(result) -> None:
        job_bar.update(1)
        progress(result.id, result.frames if result.status != "failed" else seen.get(result.id, 0))

    start = time.perf_counter()
    try:
        if args.ray is None:
            results = run_in_process(todo, args.out, options, model, progress, on_result) if todo else []
        else:
            results = _run_ray(args, todo, options, model, progress, on_result) if todo else []
    except KeyboardInterrupt:
        job_bar.close()
        frame_bar.close()
        print("interrupted: finished frames are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except (RayUnavailableError, TimeoutError) as exc:  # Ray missing or unreachable, or no room for a worker
        job_bar.close()
        frame_bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    job_bar.close()
    frame_bar.close()
    results += [JobResult(job.id, "skipped", job.frames) for job in finished]
    stats = summary(results, total_frames, seconds)
    for r in results:
        if r.status == "failed":
            print(f"job {r.id} FAILED: {r.error}", file=sys.stderr)
    print(f"{stats['jobs']} jobs: {stats['done']} rendered, {stats['skipped']} already done, {stats['failed']} failed; "
          f"{stats['frames_rendered']} frames in {seconds:.1f} s ({stats['jobs_per_s']:.3f} jobs/s, "
          f"{stats['frames_per_s']:.2f} frames/s) -> {args.out}/<job id>/")
    return 1 if stats["failed"] else 0


def _run_ray(args, todo, options, model, progress, on_result):
    """The jobs on the Ray cluster ``--ray`` names, with the pool the flags describe."""
    from datagen.ray_cluster import connect
    from python_bridge.batch_ray import default_workers, run_on_ray

    with connect(args.ray) as cluster:
        print(cluster.describe(), file=sys.stderr, flush=True)
        gpus = args.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if cluster.resources.get("GPU", 0) > 0 else 0.0
        workers = min(args.workers or default_workers(cluster.resources, args.cpus_per_worker, gpus, len(todo)),
                      len(todo))
        print(f"{workers} worker(s), {args.cpus_per_worker:g} CPU and {gpus:g} GPU each", file=sys.stderr, flush=True)
        return run_on_ray(todo, args.out, options, model, workers, args.cpus_per_worker, gpus,
                          args.memory_per_worker, progress, on_result)
