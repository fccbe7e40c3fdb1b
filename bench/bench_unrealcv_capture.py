"""Capture throughput of `datagen.unrealcv` against the stand-in UnrealCV server.

Run from the repo root: flock /work/heavy.lock python bench/bench_unrealcv_capture.py
Prints views/s end to end, the stand-in's rendering time, and what remains per view
(client + protocol + stand-in encoding + dataset writing), plus requests per view, for:
TCP (a 4.27-like game) against the Unix socket (a 5.2-linux game after its first TCP
client) in the same run, two games at once, and small images. The stand-in answers at once
(no frame time), so the figures are the capture's own cost, not a game's; stand-in and client
share this process (and the GIL), so the remainder is an upper bound. The machine's numpy
fp32 matmul rate is printed first: compare ratios between lines, not absolute figures.
"""
import shutil
import sys
import tempfile
import time
import warnings


sys.path.insert(0, "tests/datagen/unrealcv")
warnings.simplefilter("ignore")
from fake_unrealcv_server import FakeUnrealCVServer, orbit_overrides  # noqa: E402

from datagen.unrealcv.config import load_config  # noqa: E402
from machine import machine_line  # noqa: E402
from datagen.unrealcv.workers import capture_all  # noqa: E402


def run(label: str, size: tuple[int, int], views: int, behaviours: list[str], warm_tcp: bool = False) -> float:
    """Capture ``views`` per game; ``warm_tcp``: one TCP session first, so a 5.2-linux game serves its socket."""
    sockets = tempfile.mkdtemp(prefix="ucvb")
    servers = [FakeUnrealCVServer(scene_seed=i, width=size[0], height=size[1], behaves_like=b, socket_dir=sockets,
                                  tick_s=0.0).start() for i, b in enumerate(behaviours)]
    overrides = orbit_overrides(servers[0], views=views, radius_cm=100.0)
    overrides["connection"]["ports"] = [s.port for s in servers]
    out = tempfile.mkdtemp()
    if warm_tcp:
        capture_all(load_config(None, {**overrides, "plan": {**overrides["plan"], "views": 1}}), out + "/warm")
    for s in servers:
        s.commands.clear()
        s.render_seconds = 0.0
    start = time.perf_counter()
    results = capture_all(load_config(None, overrides), out + "/run")
    wall = time.perf_counter() - start
    n = sum(r.stats.views for r in results)
    render = sum(s.render_seconds for s in servers)
    requests = sum(len(s.commands) for s in servers)
    via = ", ".join(sorted({r.stats.transport.split(":")[0] for r in results}))
    print(f"{label:30s} {size[0]}x{size[1]}, {len(servers)} game(s) over {via}: {n} views in {wall:.2f} s = "
          f"{n / wall:.2f} views/s; stand-in rendering {render:.2f} s (summed); rest "
          f"{1000 * (wall * len(servers) - render) / n:.1f} ms/view; {requests / n:.1f} requests/view")
    for s in servers:
        s.stop()
    shutil.rmtree(out)
    shutil.rmtree(sockets)
    return n / wall


print(machine_line())
tcp = run("TCP (4.27)", (256, 192), 24, ["4.27"])
unix = run("Unix socket (5.2-linux)", (256, 192), 24, ["5.2-linux"], warm_tcp=True)
print(f"{'':30s} Unix socket / TCP views/s: {unix / tcp:.2f}")
run("two games (5.2-linux, master)", (256, 192), 24, ["5.2-linux", "master"])
run("small images (4.27)", (64, 48), 64, ["4.27"])
