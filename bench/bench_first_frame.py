"""Time to first frame of ``worldfm demo``, from process start, with a cold and a warm cache.

Each run is a fresh ``worldfm demo`` process (``--frames 4``); the demo writes its start-up
milestones (python_bridge/timeline.py: seconds since the kernel started the process) to
``report.json``, which this script reads:

    imports -> scene_rendered -> engine_ready -> listening -> scene_uploaded -> anchor_ready
    -> first_frame (sent by the server) -> first_frame_received (by the demo's client)

*cold*: an empty torch.compile cache (``TORCHINDUCTOR_CACHE_DIR``) of its own, as on a
fresh machine; *warm*: a cache filled by an earlier run whose background compile finished.
Cold and warm runs alternate, so both arms see the same machine; the fp32 matmul rate and
load average are printed beside the figures. Targets (issue 17): first generated frame
<= 8 s cold, <= 5 s warm, on an idle 2-core machine.

    python bench/bench_first_frame.py [--rounds 3] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine_line

MILESTONES = ["imports", "scene_rendered", "engine_ready", "listening", "scene_uploaded", "anchor_ready",
              "first_frame", "first_frame_received"]
FILL_CACHE = """
from python_bridge.commands.serve import prepare_runtime
prepare_runtime()
from python_bridge.demo import make_scene
from models.anchor import build_scene, to_device, render_cloud
from models.anchor.splat import compiled_kernels_settled
_, frames = make_scene(0, "indoor", 12, 256)
cloud = to_device(build_scene(frames).cloud, compiled=True)
cam = frames[0].camera
render_cloud(cloud, cam.K, cam.c2w, 256, 256)
assert compiled_kernels_settled(timeout=900)
"""


def run_demo(cache: Path, out: Path, model: Path | None) -> dict[str, float]:
    """One ``worldfm demo`` process with the compile cache at ``cache``; its start-up milestones."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "python_bridge.cli", "demo", "--frames", "4", "--out", str(out)]
    if model is not None:
        cmd += ["--model", str(model)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads((out / "report.json").read_text())["startup_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold/warm pairs (default 3)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped demo-256)")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        warm = tmp / "warm-cache"
        subprocess.run([sys.executable, "-c", FILL_CACHE], check=True, capture_output=True,
                       env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(warm)})
        runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
        for r in range(args.rounds):
            runs["cold"].append(run_demo(tmp / f"cold-cache-{r}", tmp / f"cold-{r}", args.model))
            runs["warm"].append(run_demo(warm, tmp / f"warm-{r}", args.model))
    print(f"median of {args.rounds} runs each, seconds since process start (cold | warm):")
    for name in MILESTONES:
        cells = []
        for arm in ("cold", "warm"):
            values = [run[name] for run in runs[arm] if name in run]
            cells.append(f"{statistics.median(values):6.2f}" if values else "     -")
        print(f"  {name:<22}{cells[0]} | {cells[1]}")
    for arm, target in (("cold", 8.0), ("warm", 5.0)):
        first = [run["first_frame_received"] for run in runs[arm]]
        print(f"first frame, {arm}: median {statistics.median(first):.2f} s, worst {max(first):.2f} s "
              f"(target <= {target:.0f} s)")
    print(machine_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
