"""fp16 against fp32 generator graphs of one exported model, side by side on one provider.

Usage: ``python bench/bench_precision.py [--model DIR] [--provider auto|cuda|cpu] [--rounds 50]``

For each generator step count with an fp16 graph (``worldfm export --fp16``), runs the
engine's ``generate`` with the fp32 and the fp16 graph on the same inputs and noise:
prints the median ms per call (timed in interleaved rounds, so load hits both alike), the
fp32/fp16 time ratio, and the largest latent difference against the largest latent value.
The fp16 graphs are meant for the CUDA provider; on CPU ONNX Runtime runs them by casting
back to fp32, so expect no gain there. This is the check a session with a GPU runs first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from python_bridge.demo import DEFAULT_MODEL
from python_bridge.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="exported model folder (default demo-256)")
    parser.add_argument("--provider", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    engines = {p: Engine(args.model, provider=args.provider, precision=p) for p in ("fp32", "fp16")}
    e32, e16 = engines["fp32"], engines["fp16"]
    print(f"model {e32.manifest.name} on {e32.provider}; fp16 graphs: {e16.fp16_graphs}")
    h, w = e32.image_size
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    K = np.array([[0.9 * w, 0, w / 2], [0, 0.9 * w, h / 2], [0, 0, 1.0]])
    tgt = np.eye(4)
    tgt[:3, 3] = [0.3, -0.1, 0.2]
    mask = np.random.default_rng(1).random((h, w)) > 0.3
    latents = {p: e.encode(rgb) for p, e in engines.items()}  # encoders are fp32 in both

    for graph in e16.fp16_graphs:
        steps = int(graph.split("_")[1])

        def run(p: str, seed: int = 0) -> np.ndarray:
            lat = latents[p]
            z = engines[p].generate(steps, lat, mask, lat, K, np.eye(4), K, tgt, np.random.default_rng(seed))
            return z.numpy()

        want, got = run("fp32"), run("fp16")
        times: dict[str, list[float]] = {"fp32": [], "fp16": []}
        for _ in range(3):  # warm-up (CUDA kernels, allocations)
            run("fp32")
            run("fp16")
        for i in range(args.rounds):
            for p in times:
                t0 = time.perf_counter()
                run(p, i)
                times[p].append((time.perf_counter() - t0) * 1e3)
        m32, m16 = (statistics.median(times[p]) for p in ("fp32", "fp16"))
        print(f"{steps} step(s): fp32 {m32:.2f} ms, fp16 {m16:.2f} ms, fp32/fp16 = {m32 / m16:.2f}x; "
              f"max |fp16 - fp32| = {np.abs(got - want).max():.3g} for max |fp32| = {np.abs(want).max():.3g}")


if __name__ == "__main__":
    main()
