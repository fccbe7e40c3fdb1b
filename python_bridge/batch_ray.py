"""``worldfm render-paths --ray``: the jobs of :mod:`python_bridge.batch` on a pool of Ray actors.

Each actor is one :class:`python_bridge.batch.JobRunner` -- one engine, loaded once, and the
scenes it built -- holding ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (Ray sets
``CUDA_VISIBLE_DEVICES`` for it, and ONNX Runtime then runs on that GPU). The driver hands a
free actor the next job, preferring one over a scene that actor has built, then a scene no
other actor is on, so each scene is built about once per actor that needs it.

Faults are Ray's to handle, and the job writer makes them harmless: an actor that dies
(killed, out of memory, its node lost) is restarted by Ray (``max_restarts``), on another node
when its own is gone, and the job in hand is retried on it (``max_task_retries``); the retry
renders only the frames the dead one had not finished. An actor out of restarts is dropped
and its job goes to another. Ctrl-C kills the actors (a kill is safe at any moment: rerun to
resume). Ray runs the actors' code with pickle: run clusters on a trusted network only.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_bridge.batch import JobResult, JobRunner, ProgressFn, RenderJob, RenderOptions

log = logging.getLogger(__name__)

MAX_RESTARTS = 3  # per actor: a worker that dies more often than this is dropped from the pool
MAX_JOB_ATTEMPTS = 3  # per job, across actors dropped under it
READY_TIMEOUT_S = 600.0  # for the first actor to load its model (the cluster may still be scaling up)


@dataclass
class PoolStats:
    """What the pool did: workers started and ready (with their ``info``), seconds until the first
    was ready, actors dropped (out of restarts) and jobs moved off them."""

    workers: int = 0
    ready: list[dict] = field(default_factory=list)
    first_ready_s: float = 0.0
    dropped: int = 0
    requeued: int = 0


class _Runner(JobRunner):
    """The actor: a :class:`JobRunner` whose progress goes to the driver through a Ray queue."""

    def run_reporting(self, job: RenderJob, out_dir: str, model: dict, queue: Any) -> JobResult:
        from datagen.ray_cluster import throttled

        send = throttled(queue)
        return self.run(job, out_dir, model, lambda job_id, done: send((job_id, done), done == job.frames))


def default_workers(resources: dict[str, float], cpus_per_worker: float, gpus_per_worker: float, jobs: int) -> int:
    """As many actors as the cluster's CPUs (and GPUs, when asked for) hold, at most one per job."""
    fit = int(resources.get("CPU", 1) // cpus_per_worker) if cpus_per_worker > 0 else jobs
    if gpus_per_worker > 0:
        fit = min(fit, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, min(fit, jobs))


def run_on_ray(
    jobs: list[RenderJob],
    out_dir: str | Path,
    options: RenderOptions,
    model: dict,
    workers: int,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    memory_per_worker_gb: float | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    stats: PoolStats | None = None,
) -> list[JobResult]:
    """Run ``jobs`` on ``workers`` actors of the connected cluster (``datagen.ray_cluster.connect``);
    returns one result per job, in completion order. Same frames as :func:`batch.run_in_process`.

    ``memory_per_worker_gb`` reserves memory for each actor in Ray's scheduler (so a node is not
    given more actors than it holds); ``stats`` is filled in as the pool runs.
    """
    import time

    import ray
    from ray.exceptions import RayActorError

    from datagen.ray_cluster import ProgressChannel

    stats = stats if stats is not None else PoolStats()
    out = str(Path(out_dir).resolve())
    threads = max(1, int(cpus_per_worker))
    actor_class = ray.remote(_Runner).options(
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker,
        memory=None if memory_per_worker_gb is None else int(memory_per_worker_gb * 1024**3),
        max_restarts=MAX_RESTARTS,
        max_task_retries=MAX_RESTARTS,
        # The driver draws the progress bars; a worker's own would interleave in the driver's terminal.
        runtime_env={"env_vars": {"TQDM_DISABLE": "1"}},
    )
    channel = ProgressChannel()
    start = time.perf_counter()
    actors = [actor_class.remote(options, threads) for _ in range(workers)]
    stats.workers = len(actors)
    holds: dict[Any, list[str]] = {a: [] for a in actors}  # scenes each actor was given, latest last
    not_ready = {a.info.remote(): a for a in actors}
    idle: list[Any] = []
    pending = deque(jobs)
    attempts = {job.id: 0 for job in jobs}
    busy: dict[Any, tuple[Any, RenderJob]] = {}
    results: list[JobResult] = []

    def finish(result: JobResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    def pick(actor: Any) -> RenderJob:
        """The next job for ``actor``: one over a scene it holds, else over a scene nobody is on."""
        mine = set(holds[actor])
        others = {s for a, ss in holds.items() if a is not actor for s in ss[-1:]}
        for choice in ([j for j in pending if j.scene.key in mine],
                       [j for j in pending if j.scene.key not in others]):
            if choice:
                pending.remove(choice[0])
                return choice[0]
        return pending.popleft()

    def report(item: tuple[str, int]) -> None:
        if progress is not None:
            progress(*item)

    try:
        while pending or busy:
            while idle and pending:
                actor = idle.pop()
                job = pick(actor)
                attempts[job.id] += 1
                holds[actor] = [s for s in holds[actor] if s != job.scene.key] + [job.scene.key]
                busy[actor.run_reporting.remote(job, out, model, channel.queue)] = (actor, job)
            if not busy and not not_ready:
                for job in pending:
                    finish(JobResult(job.id, "failed", job.frames, error="every Ray worker died; see the log"))
                break
            timeout = READY_TIMEOUT_S if not busy and not idle else 0.25
            ready, _ = ray.wait([*busy, *not_ready], num_returns=1, timeout=timeout)
            channel.drain(report)
            if not ready and not busy and not idle:
                raise TimeoutError(f"no Ray worker became ready in {READY_TIMEOUT_S:.0f} s: the cluster lacks "
                                   f"{cpus_per_worker:g} CPU / {gpus_per_worker:g} GPU free for one (`ray status`)")
            for ref in ready:
                if ref in not_ready:
                    actor = not_ready.pop(ref)
                    try:
                        info = ray.get(ref)
                        log.info("worker %s ready: model %s on %s, loaded in %.1f s, %.0f MiB", info["worker"],
                                 info["model"], info["provider"], info["load_ms"] / 1e3, info["peak_rss_mb"])
                        stats.ready.append(info)
                        stats.first_ready_s = stats.first_ready_s or time.perf_counter() - start
                        idle.append(actor)
                    except RayActorError as exc:
                        log.error("a Ray worker failed to start: %s", exc)
                        stats.dropped += 1
                    continue
                actor, job = busy.pop(ref)
                try:
                    finish(ray.get(ref))
                    idle.append(actor)
                except RayActorError as exc:  # out of restarts: this actor is gone for good
                    stats.dropped += 1
                    holds.pop(actor, None)
                    if attempts[job.id] < MAX_JOB_ATTEMPTS:
                        log.warning("job %s: its worker died for good (%s); giving it to another", job.id, exc)
                        stats.requeued += 1
                        pending.appendleft(job)
                    else:
                        finish(JobResult(job.id, "failed", job.frames, error=f"workers died {attempts[job.id]} "
                                         f"times under this job; last: {exc}"))
        channel.drain(report)
    finally:
        for actor in actors:
            ray.kill(actor)  # a kill mid-job is safe: the job folder resumes on the next run
        channel.close()
    return results

