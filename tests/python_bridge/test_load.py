"""Several client processes hammer one server on loopback, bounded in time.

Each client sends poses at 60 Hz (async, latest wins) and pings in between; every render
must be answered exactly once (frame, superseded or error) and pings must keep coming back.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from bridge_views import make_views
from stub_pipeline import StubPipeline

CLIENTS = 3
SECONDS = 1.0
RATE_HZ = 60.0


def client_process(endpoint: str, seconds: float, rate_hz: float, results) -> None:
    """Runs in a child process: render at ``rate_hz`` for ``seconds``, then drain; report counts."""
    from python_bridge.client import BridgeError, Client, FrameReply, Superseded

    counts = {"sent": 0, "frames": 0, "superseded": 0, "errors": 0, "pings": 0, "max_ping_ms": 0.0}
    with Client(endpoint, timeout_s=5) as c:
        scene = c.open_scene(make_views(2)).scene

        def take(reply) -> None:
            kind = {FrameReply: "frames", Superseded: "superseded", BridgeError: "errors"}[type(reply)]
            counts[kind] += 1

        start, tick = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            c2w = np.eye(4)
            c2w[0, 3] = 0.01 * tick
            c.render_async(scene, c2w)
            counts["sent"] += 1
            tick += 1
            if tick % 6 == 0:
                counts["max_ping_ms"] = max(counts["max_ping_ms"], c.ping())
                counts["pings"] += 1
            while (reply := c.poll(0)) is not None:
                take(reply)
            time.sleep(max(0.0, start + tick / rate_hz - time.monotonic()))
        deadline = time.monotonic() + 10
        while c.outstanding and time.monotonic() < deadline:
            reply = c.poll(0.5)
            if reply is not None:
                take(reply)
        counts["unanswered"] = c.outstanding
        counts["stray"] = c.stray_replies
    results.put(counts)


def test_many_client_processes_every_render_answered_once(make_server):
    server = make_server(StubPipeline(render_delay_s=0.004))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=client_process, args=(server.endpoint, SECONDS, RATE_HZ, results)) for _ in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    reports = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    for r in reports:
        assert r["unanswered"] == 0 and r["stray"] == 0, r
        assert r["frames"] + r["superseded"] + r["errors"] == r["sent"], r
        assert r["errors"] == 0 and r["frames"] > 0 and r["pings"] > 0, r
