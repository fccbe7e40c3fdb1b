"""Capture throughput of `datagen.unrealcv` against the stand-in UnrealCV server.

Run from the repo root: python bench/bench_unrealcv_capture.py
Prints views/s end to end, the stand-in's rendering time, and what remains per view
(client + protocol + stand-in encoding + dataset writing), plus requests per view.
Stand-in and client share this process (and the GIL), so the remainder is an upper bound.
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
from datagen.unrealcv.workers import capture_all  # noqa: E402

for (w, h), views, games in [((256, 192), 24, 1), ((256, 192), 24, 2), ((64, 48), 64, 1)]:
    servers = [FakeUnrealCVServer(scene_seed=i, width=w, height=h).start() for i in range(games)]
    overrides = orbit_overrides(servers[0], views=views, radius_cm=100.0)
    overrides["connection"]["ports"] = [s.port for s in servers]
    out = tempfile.mkdtemp()
    start = time.perf_counter()
    results = capture_all(load_config(None, overrides), out)
    wall = time.perf_counter() - start
    n = sum(r.stats.views for r in results)
    render = sum(s.render_seconds for s in servers)
    requests = sum(len(s.commands) for s in servers)
    print(f"{w}x{h}, {games} game(s): {n} views in {wall:.2f} s = {n / wall:.2f} views/s; stand-in rendering "
          f"{render:.2f} s (summed); rest {1000 * (wall * games - render) / n:.1f} ms/view; {requests / n:.1f} requests/view")
    for s in servers:
        s.stop()
    shutil.rmtree(out)
