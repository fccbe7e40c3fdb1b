"""Scale-out: one capture worker per running game, each into its own scene folder.

Workers are threads: the work is waiting on the games (rendering happens in Unreal), and
each ``unrealcv.Client`` already runs its own receive thread. A worker that fails (game not
running, command missing) reports its error without stopping the others.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from datagen.dataset import DatasetError
from datagen.unrealcv.capture import DEPTH_HOLE_ADVICE, CaptureStats, SceneCapture
from datagen.unrealcv.config import CaptureConfig
from datagen.unrealcv.connection import LOCAL_HOSTS, Endpoint, UnrealCVConnection, UnrealCVError
from datagen.unrealcv.planning import plan_views
from datagen.unrealcv.sink import CaptureSink

log = logging.getLogger(__name__)


@dataclass
class WorkerResult:
    """What one worker did: its scene folder, counts, and the error that stopped it, if any."""

    endpoint: Endpoint
    scene: Path
    stats: CaptureStats
    complete: bool
    error: str | None = None


def endpoints_of(config: CaptureConfig) -> list[Endpoint]:
    """One endpoint per game: ``games`` (HOST:PORT), a port (on this machine also its Unix
    socket), or a socket path."""
    t = config.targets
    if t.games:
        return [Endpoint.for_port(host, int(port), t.socket_dir) for host, _, port in
                (game.rpartition(":") for game in t.games)]
    if t.unix_sockets:
        return [Endpoint.for_socket(path) for path in t.unix_sockets]
    return [Endpoint.for_port(t.host, port, t.socket_dir) for port in t.ports]


def scene_name(endpoint: Endpoint) -> str:
    """Folder of the scene captured from ``endpoint``: ``unrealcv_<port>`` whichever transport
    serves it (a 1.0.x game on Linux moves from TCP to its socket, and a rerun must resume in
    the same folder); ``unrealcv_<host>_<port>`` for a game on another machine (games on two
    machines may share a port); ``unrealcv_<socket name>`` for a socket not named after a port."""
    if endpoint.port is None:
        tag = Path(endpoint.unix_socket).stem
    elif endpoint.host in LOCAL_HOSTS:
        tag = str(endpoint.port)
    else:
        tag = f"{endpoint.host}_{endpoint.port}"
    return "unrealcv_" + re.sub(r"[^A-Za-z0-9_.-]", "_", tag)


def scene_meta(config: CaptureConfig, seed: int) -> dict:
    """The settings a resumed capture must share with the run that started the folder."""
    c = config.capture
    return {
        "generator": "unrealcv",
        "plan": dataclasses.asdict(dataclasses.replace(config.plan, seed=seed)),
        "capture": {"camera_id": c.camera_id, "size": c.size, "hfov_deg": c.hfov_deg, "depth_mode": c.depth_mode,
                    "normals": c.normals, "object_masks": c.object_masks, "min_clearance": c.min_clearance,
                    "near_fraction": c.near_fraction, "min_valid_depth": c.min_valid_depth},
    }


def capture_one(
    endpoint: Endpoint,
    config: CaptureConfig,
    scene: Path,
    seed: int,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> WorkerResult:
    """Capture ``config.plan`` (with ``seed``) from the game at ``endpoint`` into ``scene``."""
    plan = dataclasses.replace(config.plan, seed=seed)
    stats = CaptureStats()
    sink = None
    try:
        sink = CaptureSink(scene, plan.views, scene_meta(config, seed))
        with UnrealCVConnection(endpoint, config.connection) as conn:
            capture = SceneCapture(conn, sink, config.capture)
            stats = capture.stats
            capture.run(plan_views(plan), plan.views, progress, stop)
    except (UnrealCVError, DatasetError, OSError) as exc:
        log.error("%s: %s", endpoint.describe(), exc)
        return WorkerResult(endpoint, scene, stats, bool(sink and sink.complete), str(exc))
    error = None
    if stop is not None and stop.is_set() and not sink.complete:
        error = "stopped; rerun the same command to resume"
    elif not sink.complete:
        error = (
            f"the plan ran out of candidates: {len(sink.writer.done)} of {plan.views} views "
            f"({stats.rejected} rejected this run). Raise [plan] spare, lower [capture] min_clearance, "
            "or move the plan away from geometry; then rerun into a new folder"
        )
        if stats.reasons.get("depth holes"):
            error += f". {stats.reasons['depth holes']} views were rejected for depth holes: {DEPTH_HOLE_ADVICE}"
    return WorkerResult(endpoint, scene, stats, sink.complete, error)


def capture_jobs(config: CaptureConfig, out_dir: str | Path) -> list[tuple[Endpoint, Path, int]]:
    """(endpoint, scene folder, plan seed) of every configured game: game ``i`` uses plan seed
    ``seed + i`` and folder ``out_dir/`` :func:`scene_name`."""
    out = Path(out_dir)
    return [(ep, out / scene_name(ep), config.plan.seed + i) for i, ep in enumerate(endpoints_of(config))]


def capture_all(
    config: CaptureConfig,
    out_dir: str | Path,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> list[WorkerResult]:
    """One worker thread per configured game (:func:`capture_jobs`); returns results in the
    order of the games. ``datagen.unrealcv.ray_capture`` runs the same workers as Ray actors.

    Ctrl-C (or setting ``stop``) lets every worker finish the view in hand, then stop.
    """
    stop = stop or threading.Event()
    jobs = capture_jobs(config, out_dir)
    pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="unrealcv")
    try:
        futures = [pool.submit(capture_one, ep, config, scene, seed, progress, stop) for ep, scene, seed in jobs]
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)
