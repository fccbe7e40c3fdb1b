"""Bridge benchmarks, measured side by side in one run (prints figures and same-run ratios).

1. overhead: a 512x512 RGB frame round trip through the real server + client with the
   model replaced by a pass-through, versus a bare pyzmq DEALER/ROUTER echo that sends the
   very same request and reply bytes. Blocks of the two alternate so drift hits both.
   Target: bridge <= 1.3x the bare echo and <= 2 ms added at the median. Then the same
   again in a child process with this process's Python threads on one core and ZeroMQ's
   I/O thread on another, both arms alike (see bench_overhead_pinned).
2. load: 8 client processes send poses at 60 Hz (async, latest wins) while this process
   pings the server; the "model" sleeps ``--infer-ms`` per frame (ONNX Runtime releases the
   GIL while it runs, as sleep does). Reports ping percentiles (target <= 20 ms), server
   RSS at start and end, and checks every render was answered exactly once.
3. end to end (with ``--model DIR``): frames/s and latency percentiles per stage through the
   server for each step count of an exported model; then the engine alone with ONNX
   Runtime's CPU pool threads sleeping (our default) vs spinning when idle.

Usage: python bench/bench_bridge.py [--rounds 20 --iters 200 --load-seconds 20 --model DIR]
(``--load-seconds 600`` is the 10-minute memory check.)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `worldfm serve` does (commands/serve.py prepare_runtime)

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from python_bridge import protocol as P  # noqa: E402
from python_bridge.client import BridgeError, Client, FrameReply, Superseded  # noqa: E402
from python_bridge.pipeline import RenderResult  # noqa: E402
from python_bridge.scenes import BuiltScene  # noqa: E402
from python_bridge.server import Server, ServerConfig  # noqa: E402

from machine import machine_line  # noqa: E402  (bench/machine.py, beside this script)

SIZE = 512


class PassThrough:
    """A pipeline whose "model" returns a fixed frame of the requested size (after ``infer_ms``)."""

    def __init__(self, infer_ms: float = 0.0) -> None:
        self.infer_s = infer_ms / 1e3
        self.frame_size = (SIZE, SIZE)
        self._frames: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def describe(self) -> dict:
        return {"name": "pass-through", "frame_size": [SIZE, SIZE], "steps": [1], "provider": "none"}

    def build(self, frames: list, max_points: int = 0) -> BuiltScene:
        return BuiltScene(anchor=None, cloud=None, candidates=list(frames), points=0, build_ms=0.0)

    def render(self, scene, c2w, K=None, size=None, steps=None, seed=None) -> RenderResult:
        if self.infer_s:
            time.sleep(self.infer_s)
        size = size or self.frame_size
        if size not in self._frames:  # made once per size: the "model" itself should cost nothing
            K_default = np.array([[size[0], 0, size[0] / 2], [0, size[0], size[1] / 2], [0, 0, 1.0]])
            rgb = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            self._frames[size] = rgb, K_default
        rgb, K_default = self._frames[size]
        return RenderResult(rgb, K if K is not None else K_default, c2w, 0, "pass-through", {})


def one_view() -> list:
    from models.cameras import K_from_hfov
    from models.scene import Camera, Frame

    cam = Camera(K=K_from_hfov(60, 16, 16), c2w=np.eye(4), width=16, height=16)
    return [Frame(rgb=np.zeros((16, 16, 3), np.uint8), camera=cam, depth=np.ones((16, 16), np.float32))]


def percentiles(values: list[float]) -> str:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:7.3f}  p95 {p95:7.3f}  p99 {p99:7.3f}  max {max(values):7.3f} ms"


# ---------------------------------------------------------------------- 1. overhead


def bare_echo(endpoint_box: list, reply_frames: list, stop: threading.Event) -> None:
    """A ROUTER that answers every request with ``reply_frames`` (the bytes the server would send)."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    endpoint_box.append(f"tcp://127.0.0.1:{port}")
    while not stop.is_set():
        if sock.poll(50):
            ident, *_ = sock.recv_multipart(copy=False)
            sock.send_multipart([ident, *reply_frames], copy=False)
    sock.close(0)


def bench_overhead(rounds: int, iters: int, placement: str = "threads placed by the OS") -> None:
    print(f"== 1. bridge overhead: {SIZE}x{SIZE} RGB round trip ({rounds} rounds x {iters}, alternating; {placement})")
    server = Server(PassThrough(), ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=100)).start()
    client = Client(server.endpoint, timeout_s=10)
    scene = client.open_scene(one_view()).scene
    c2w = np.eye(4)
    sample = client.render(scene, c2w)  # the exact reply the bare echo will send back
    request = P.encode(P.Message(P.RENDER, 1, client._render_fields(scene, c2w, None, None, "raw", None, None)))
    reply = P.encode(
        P.Message(
            P.FRAME,
            1,
            {
                "scene": scene,
                "c2w": P.flat(c2w),
                "K": P.flat(sample.K),
                "size": [SIZE, SIZE],
                "encoding": "raw",
                "t_client": 0.0,
                "t_server": 0.0,
                "reference": 0,
                "mode": "pass-through",
                "timings": sample.timings,
            },
            [np.array(sample.rgb)],
        )
    )
    request, reply = [bytes(f) for f in request], [bytes(f) for f in reply]
    box, stop = [], threading.Event()
    echo_thread = threading.Thread(target=bare_echo, args=(box, reply, stop), daemon=True)
    echo_thread.start()
    while not box:
        time.sleep(0.01)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(box[0])
    bridge, bare = [], []
    for _ in range(rounds):
        for _ in range(iters):
            t0 = time.perf_counter()
            dealer.send_multipart(request, copy=False)
            frames = dealer.recv_multipart(copy=False)
            bare.append((time.perf_counter() - t0) * 1e3)
            assert len(frames[1]) == SIZE * SIZE * 3
        for _ in range(iters):
            t0 = time.perf_counter()
            client.render(scene, c2w)
            bridge.append((time.perf_counter() - t0) * 1e3)
    stop.set()
    echo_thread.join()
    dealer.close(0)
    client.close()
    server.stop()
    mb, mr = float(np.median(bare)), float(np.median(bridge))
    print(f"bare echo : {percentiles(bare)}")
    print(f"bridge    : {percentiles(bridge)}")
    print(
        f"median ratio bridge/bare = {mr / mb:.2f}x (target <= 1.3x); added at the median = {mr - mb:.3f} ms "
        f"(target <= 2 ms); reply {sum(len(f) for f in reply)} bytes"
    )


def _pinned_overhead(rounds: int, iters: int, python_cpu: int, io_cpu: int) -> None:
    zmq.Context.instance().set(zmq.THREAD_AFFINITY_CPU_ADD, io_cpu)  # before any socket starts the I/O thread
    os.sched_setaffinity(0, {python_cpu})  # threads started from here on inherit it
    bench_overhead(rounds, iters, f"Python threads on CPU {python_cpu}, ZeroMQ I/O thread on CPU {io_cpu}")


def bench_overhead_pinned(rounds: int, iters: int) -> None:
    """The same comparison in a child process whose Python threads (client, server, echo)
    share one core and whose ZeroMQ I/O thread has another, for both arms alike.

    Both arms' Python takes turns under one GIL anyway; on a 2-core host the OS otherwise
    moves those threads between cores from run to run, and that placement, not the
    bridge's code, decides much of the 0.1 ms being measured. Printed beside the default
    run, not instead of it.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        print("(pinned overhead run skipped: needs Linux and 2 or more CPUs)")
        return
    child = mp.get_context("spawn").Process(target=_pinned_overhead, args=(rounds, iters, cpus[0], cpus[1]))
    child.start()
    child.join()


# ---------------------------------------------------------------------- 2. load


def load_client(endpoint: str, seconds: float, rate_hz: float, results) -> None:
    """A child process: async renders at ``rate_hz`` for ``seconds``, then drain and report counts."""
    counts = {"sent": 0, "frame": 0, "superseded": 0, "error": 0}
    with Client(endpoint, timeout_s=10) as c:
        scene = c.open_scene(one_view()).scene
        start, tick = time.monotonic(), 0
        kinds = {FrameReply: "frame", Superseded: "superseded", BridgeError: "error"}
        while time.monotonic() - start < seconds:
            c2w = np.eye(4)
            c2w[0, 3] = 0.001 * tick
            c.render_async(scene, c2w, size=(256, 256))
            counts["sent"] += 1
            tick += 1
            while (r := c.poll(0)) is not None:
                counts[kinds[type(r)]] += 1
            time.sleep(max(0.0, start + tick / rate_hz - time.monotonic()))
        deadline = time.monotonic() + 15
        while c.outstanding and time.monotonic() < deadline:
            if (r := c.poll(0.5)) is not None:
                counts[kinds[type(r)]] += 1
        counts["unanswered"], counts["stray"] = c.outstanding, c.stray_replies
    results.put(counts)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_load(clients: int, seconds: float, rate_hz: float, infer_ms: float) -> None:
    print(
        f"\n== 2. load: {clients} client processes x {rate_hz:g} Hz for {seconds:g} s, "
        f"model {infer_ms:g} ms/frame (256x256 raw)"
    )
    server = Server(PassThrough(infer_ms), ServerConfig(bind="tcp://127.0.0.1:*")).start()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=load_client, args=(server.endpoint, seconds, rate_hz, results)) for _ in range(clients)]
    for p in procs:
        p.start()
    pinger = Client(server.endpoint, timeout_s=5)
    time.sleep(2.0)  # let the children start and open their scenes
    t_start = time.monotonic()
    rss_start, pings, samples = rss_mb(), [], []
    t_end, next_sample = t_start + max(0.0, seconds - 3.0), t_start
    while time.monotonic() < t_end:
        pings.append(pinger.ping())
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - t_start, rss_mb()))
            next_sample += max(1.0, seconds / 20)
        time.sleep(0.05)
    rss_end = rss_mb()
    reports = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    pinger.close()
    stats = dict(server.stats)
    server.stop()
    total = {k: sum(r[k] for r in reports) for k in reports[0]}
    exact = all(
        r["frame"] + r["superseded"] + r["error"] == r["sent"] and r["unanswered"] == 0 and r["stray"] == 0
        for r in reports
    )
    print(f"pings ({len(pings)}) : {percentiles(pings)}  (target p99 <= 20 ms)")
    print(
        f"renders: sent {total['sent']}, frames {total['frame']}, superseded {total['superseded']}, "
        f"errors {total['error']}, unanswered {total['unanswered']} -> every render answered exactly once: {exact}"
    )
    print(f"server-side: {stats}")
    print(
        f"RSS of the server process: {rss_start:.1f} MB at start, {rss_end:.1f} MB at end; over time (s: MB): "
        + ", ".join(f"{t:.0f}: {mb:.1f}" for t, mb in samples)
    )


# ---------------------------------------------------------------------- 3. end to end


def bench_spinning(model: Path, rounds: int = 3, frames: int = 8) -> None:
    """Engine-only frame time (encode + 1-step generate + decode) with ONNX Runtime's CPU pool
    threads spinning vs sleeping when idle, alternating so load drift hits both."""
    from python_bridge.engine import Engine

    engines = {spin: Engine(model, spinning=spin) for spin in (False, True)}
    if engines[False].provider != "CPUExecutionProvider":
        return
    h, w = engines[False].image_size
    rgb, K = np.zeros((h, w, 3), np.uint8), np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
    times = {False: [], True: []}
    for _ in range(rounds):
        for spin, e in engines.items():
            ref = e.encode(rgb)
            for i in range(frames):
                t0 = time.perf_counter()
                latent = e.generate(
                    1, e.encode(rgb), np.ones((h, w)), ref, K, np.eye(4), K, np.eye(4), np.random.default_rng(i)
                )
                e.decode(latent, rgb, np.ones((h, w)))  # the anchor image, for a decoder that uses it
                times[spin].append((time.perf_counter() - t0) * 1e3)
    off, on = (
        float(np.median(times[False])),
        float(np.median(times[True])),
    )
    print(f"engine frame, pool threads sleeping (default): {percentiles(times[False])}")
    print(f"engine frame, pool threads spinning          : {percentiles(times[True])}")
    print(f"median spinning/sleeping = {on / off:.2f}x")


def bench_model(model: Path, frames: int, size: int) -> None:
    from python_bridge.camera_path import interpolate_poses
    from python_bridge.demo import make_scene
    from python_bridge.engine import Engine
    from python_bridge.pipeline import FramePipeline

    engine = Engine(model)
    print(f"\n== 3. end to end: model {engine.manifest.name} on {engine.provider}, {size}x{size}, {frames} frames")
    _, views = make_scene(0, "indoor", 12, size)
    path = interpolate_poses(np.stack([v.camera.c2w for v in views]), frames)
    for steps in engine.steps:
        server = Server(FramePipeline(engine, steps=steps), ServerConfig(bind="tcp://127.0.0.1:*")).start()
        with Client(server.endpoint, timeout_s=60) as c:
            scene = c.open_scene(views).scene
            c.render(scene, path[0], views[0].camera.K, (size, size))  # warm the reference cache
            latency, stages = [], {}
            t0 = time.perf_counter()
            for i, c2w in enumerate(path):
                r = c.render(scene, c2w, views[0].camera.K, (size, size), steps=steps, seed=i)
                latency.append(r.latency_ms)
                for k, v in r.timings.items():
                    stages.setdefault(k, []).append(v)
            fps = frames / (time.perf_counter() - t0)
        server.stop()
        print(f"{steps} step(s): {fps:.1f} frames/s sustained; client latency {percentiles(latency)}")
        print(f"    {machine_line()}")
        for k, v in stages.items():
            print(f"    {k:<16} {percentiles(v)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 20 rounds (about 4 s an arm): in 5, one bad stretch of a shared 2-core VM moved the ratio by
    # 0.1 from run to run (1.23-1.37x over six runs, against 1.24-1.28x with 20).
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--infer-ms", type=float, default=40.0)
    parser.add_argument("--model", type=Path, default=None, help="exported model folder for the end-to-end part")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--skip", nargs="*", default=[], choices=["overhead", "load"])
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} CPU(s); pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}")
    if "overhead" not in args.skip:
        bench_overhead(args.rounds, args.iters)
        bench_overhead_pinned(args.rounds, args.iters)
    if "load" not in args.skip:
        bench_load(args.clients, args.load_seconds, args.rate, args.infer_ms)
    if args.model is not None:
        bench_model(args.model, args.frames, args.size)
        bench_spinning(args.model)


if __name__ == "__main__":
    main()
