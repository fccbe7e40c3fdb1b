"""The browser viewer's frame rate against ``worldfm demo``'s, same model, side by side in one run.

Arms, alternated for ``--rounds`` rounds so drift on a shared machine hits both:

* demo: :func:`python_bridge.demo.run_demo` (its own in-process server, a client that
  renders ``--frames`` frames one after another); its "frames/s sustained".
* page: ``worldfm view``'s gateway and server in this process, the page in headless
  Chromium (``python_bridge.viewer.headless``) flying the camera with W and S held in turn
  for ``--seconds``; frames/s is what the page itself counts as displayed.

Both use the same model (``--model``, default the shipped demo-256), the same procedural
scene (seed 0, indoor, ``--views`` views at the model's size) and the model's default steps.
Targets: page >= 90 % of the demo's frames/s; the gateway (its event-loop thread and the
tab's link thread, CPU time measured per thread) <= 10 % of a core. The fp32 matmul rate
printed before and after says how busy the machine was.

Usage: python bench/bench_viewer.py [--rounds 5 --seconds 8 --frames 48 --model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the worldfm commands do (commands/serve.py prepare_runtime)

import numpy as np  # noqa: E402

from python_bridge.demo import load_pipeline, run_demo  # noqa: E402
from machine import machine_line  # noqa: E402
from python_bridge.server import Server, ServerConfig  # noqa: E402
from python_bridge.viewer.catalog import Catalog  # noqa: E402
from python_bridge.viewer.gateway import Gateway  # noqa: E402
from python_bridge.viewer.headless import browser_page, snapshot, wait_for  # noqa: E402

GATEWAY_THREADS = ("viewer-loop", "viewer-link")


def thread_cpu_s(names: tuple[str, ...]) -> float:
    """CPU seconds used so far by this process's threads with these names."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        for t in threading.enumerate()
        if t.name in names and t.ident is not None
    )


def browser_cpu_s() -> float:
    """CPU seconds used so far by the headless Chromium processes (found by their profile folder)."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"worldfm-chromium-" in (proc / "cmdline").read_bytes():
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except OSError:
            continue  # the process ended meanwhile
    return total / os.sysconf("SC_CLK_TCK")


class InProcessViewer:
    """The viewer's server and gateway in this process (the gateway on its own event-loop thread)."""

    def __init__(self, model: Path | None, views: int) -> None:
        self.server = Server(load_pipeline(model, "auto", None), ServerConfig(bind="tcp://127.0.0.1:*")).start()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="viewer-loop", daemon=True).start()
        self.gateway = Gateway(self.server.endpoint, Catalog(), "procedural:0", port=0, views=views)
        self.url = asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.server.stop()


def page_arm(url: str, seconds: int) -> dict:
    """Fly for ``seconds`` (W and S held a second each in turn) and count the frames the page shows."""
    with browser_page(url) as page:
        wait_for(page, "window.worldfm && window.worldfm.snapshot().frames > 0", 600, "the first frame")
        page.keyboard.down("w")  # warm-up: the first second's frames are not counted
        time.sleep(1.0)
        page.keyboard.up("w")
        cpu0, browser0 = thread_cpu_s(GATEWAY_THREADS), browser_cpu_s()
        frames0, t0 = snapshot(page)["frames"], time.perf_counter()
        for k in range(seconds):
            key = "s" if k % 2 == 0 else "w"
            page.keyboard.down(key)
            time.sleep(1.0)
            page.keyboard.up(key)
        elapsed, frames = time.perf_counter() - t0, snapshot(page)["frames"] - frames0
        cpu, browser = thread_cpu_s(GATEWAY_THREADS) - cpu0, browser_cpu_s() - browser0
        hud = {el.get_attribute("data-hud"): el.inner_text() for el in page.locator("[data-hud]").all()}
    return {
        "fps": frames / elapsed,
        "gateway_share": cpu / elapsed,
        "gateway_ms_per_frame": 1e3 * cpu / max(frames, 1),
        "browser_share": browser / elapsed,
        "latency": f"{hud['latency_p50']} / {hud['latency_p95']} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8, help="page flight per round (s)")
    parser.add_argument("--frames", type=int, default=48, help="demo frames per round")
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--model", type=Path, default=None, help="exported model (default models/weights/demo-256)")
    args = parser.parse_args()
    print(machine_line())
    viewer = InProcessViewer(args.model, args.views)
    print(f"viewer at {viewer.url.split('?')[0]} (model {viewer.gateway.model.get('name')})")
    demo_fps, page = [], []
    try:
        with tempfile.TemporaryDirectory() as out:
            for r in range(args.rounds):
                report = run_demo(Path(out), model=args.model, frames=args.frames, views=args.views, seed=0)
                demo_fps.append(report.fps)
                page.append(page_arm(viewer.url, args.seconds))
                p = page[-1]
                print(
                    f"round {r + 1}: demo {demo_fps[-1]:5.2f} frames/s ({report.model}) | page {p['fps']:5.2f} "
                    f"frames/s, latency p50/p95 {p['latency']} | ratio {p['fps'] / demo_fps[-1]:.2f} | gateway "
                    f"{100 * p['gateway_share']:.1f} % of a core, {p['gateway_ms_per_frame']:.2f} ms CPU/frame | "
                    f"browser {100 * p['browser_share']:.0f} % of a core",
                    flush=True,
                )
    finally:
        viewer.close()
    ratios = [p["fps"] / d for p, d in zip(page, demo_fps)]
    share = [p["gateway_share"] for p in page]
    print(
        f"median: demo {np.median(demo_fps):.2f} frames/s, page {np.median([p['fps'] for p in page]):.2f} frames/s, "
        f"page/demo {np.median(ratios):.2f} (target >= 0.90), gateway {100 * np.median(share):.1f} % of a core "
        f"(target <= 10 %)"
    )
    print(machine_line())


if __name__ == "__main__":
    main()
