"""``worldfm datagen unrealcv --ray``: one capture actor per game, on the Ray node that hosts it.

The games and their scene folders are the ones :func:`datagen.unrealcv.workers.capture_jobs`
lists; each actor runs :func:`datagen.unrealcv.workers.capture_one`, the same worker the
threads of ``capture_all`` run, into the same atomic, resumable scene writer. Placement:

* a game on 127.0.0.1 (or a Unix socket) runs on the driver's machine: its actor goes there;
* a game at ``HOST:PORT`` (``games`` in the plan, ``--game``) whose host is a Ray node's address
  gets its actor on that node -- which can then reach a UnrealCV 1.0.x Linux game's Unix
  socket, the only transport such a game serves after its first TCP client (docs/datagen.md);
* a game on a machine without a Ray node gets an actor anywhere, capturing over TCP (logged).

An actor that dies is restarted by Ray and its capture retried (``max_restarts``,
``max_task_retries``); the retry resumes the scene folder, so no view is lost or written twice.
A game that fails does not stop the others. Ctrl-C kills the actors (safe: rerun to resume).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datagen.unrealcv.capture import CaptureStats
from datagen.unrealcv.config import CaptureConfig
from datagen.unrealcv.connection import LOCAL_HOSTS, Endpoint
from datagen.unrealcv.workers import WorkerResult, capture_jobs, capture_one

log = logging.getLogger(__name__)

MAX_RESTARTS = 3


class CaptureActor:
    """A Ray actor capturing one game (``capture_one``), its progress sent to the driver."""

    def capture(self, endpoint: Endpoint, config: CaptureConfig, scene: str, seed: int, queue: Any) -> WorkerResult:
        from datagen.ray_cluster import throttled

        send = throttled(queue)
        views = [0]

        def progress(n: int) -> None:
            views[0] += n
            send((scene, views[0]))

        result = capture_one(endpoint, config, Path(scene), seed, progress)
        send((scene, views[0]), True)
        return result


def _node_addresses() -> dict[str, str]:
    """Address -> node id of every live Ray node."""
    import ray

    return {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def placement(endpoint: Endpoint, nodes: dict[str, str], here: str) -> tuple[str | None, str]:
    """The node id an endpoint's actor must run on (None: anywhere) and why, for the log.

    ``nodes`` maps node addresses to ids; ``here`` is the driver's node id."""
    if endpoint.port is None or endpoint.host in LOCAL_HOSTS:
        return here, "on this machine"
    try:
        address = socket.gethostbyname(endpoint.host)
    except OSError:
        address = endpoint.host
    if address in nodes:
        return nodes[address], f"on its node {address}"
    return None, (f"no Ray node runs on {endpoint.host}: capturing over the network from any node "
                  "(a UnrealCV 1.0.x game on Linux serves one TCP session only; start a Ray worker on its machine)")


def capture_on_ray(
    config: CaptureConfig,
    out_dir: str | Path,
    progress: Callable[[int], None] | None = None,
) -> list[WorkerResult]:
    """Capture every configured game with one actor each on the connected Ray cluster
    (``datagen.ray_cluster.connect``); returns results in the order of the games."""
    import ray
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from datagen.ray_cluster import ProgressChannel

    jobs = capture_jobs(config, Path(out_dir).resolve())
    nodes, here = _node_addresses(), ray.get_runtime_context().get_node_id()
    remote = ray.remote(CaptureActor)
    channel = ProgressChannel()
    actors, refs = [], []
    for endpoint, scene, seed in jobs:
        node, why = placement(endpoint, nodes, here)
        log.info("%s: capture actor %s", endpoint.describe(), why)
        strategy = "DEFAULT" if node is None else NodeAffinitySchedulingStrategy(node, soft=False)
        # Waiting on a game takes no CPU worth reserving; 0 lets a node host more games than cores.
        actor = remote.options(num_cpus=0, scheduling_strategy=strategy, max_restarts=MAX_RESTARTS,
                               max_task_retries=MAX_RESTARTS).remote()
        actors.append(actor)
        refs.append(actor.capture.remote(endpoint, config, str(scene), seed, channel.queue))
    seen: dict[str, int] = {}

    def report(item: tuple[str, int]) -> None:
        scene, views = item
        step = views - seen.get(scene, 0)
        if step > 0:
            seen[scene] = views
            if progress is not None:
                progress(step)

    results: dict[int, WorkerResult] = {}
    try:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.25)
            channel.drain(report)
            for ref in ready:
                i = refs.index(ref)
                endpoint, scene, _ = jobs[i]
                try:
                    results[i] = ray.get(ref)
                except RayActorError as exc:
                    error = f"its capture actor died {MAX_RESTARTS + 1} times ({exc}); rerun to resume"
                    results[i] = WorkerResult(endpoint, scene, CaptureStats(), False, error)
        channel.drain(report)
    finally:
        for actor in actors:
            ray.kill(actor)  # mid-capture too: the scene folder resumes on the next run
        channel.close()
    return [results[i] for i in range(len(jobs))]
