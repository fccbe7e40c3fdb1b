"""What ``--fill-guard`` costs before a scene's first frame, and what it chose (docs/model.md, "Fill guard").

Per procedural scene kind, renders ``--views`` source views (not timed), builds the scene as the
server does, then times ``FramePipeline.measure_fill_guard``: every run of 4 views left out of a
rebuilt cloud in turn (at most 24), every other view of it rendered with the model and as anchor
+ hole filling. Prints the time beside the build's, the guard's choice and its two PSNRs, and the
machine line (the cost is CPU-bound: two ONNX frames and a cloud build per window).

    python bench/bench_fill_guard.py [--views 24] [--kinds hall street indoor] [--model DIR]
"""

from __future__ import annotations

import argparse
import time

from machine import machine_line

from models.anchor.splat import compiles_held
from python_bridge.demo import load_pipeline, make_scene


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=24, help="source views per scene (default 24, as data/ood's)")
    parser.add_argument("--size", type=int, default=256, help="view size in pixels (default 256)")
    parser.add_argument("--kinds", nargs="+", default=["hall", "street", "indoor"],
                        help="procedural scene kinds (default: two out-of-family kinds and a training one)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped demo-256)")
    parser.add_argument("--seed", type=int, default=200000, help="scene seed (default 200000, as data/ood's first)")
    args = parser.parse_args()
    pipeline = load_pipeline(args.model, "cpu", None, False, "auto", None)
    print(machine_line())
    with compiles_held():  # as `worldfm serve` builds: the anchor kernels compile in a later pause
        measure(pipeline, args)
    print(machine_line())
    return 0


def measure(pipeline, args: argparse.Namespace) -> None:
    """One scene per kind: build, then the guard, timed."""
    for kind in args.kinds:
        _, views = make_scene(args.seed, kind, args.views, args.size)
        start = time.perf_counter()
        built = pipeline.build(views)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        pipeline.measure_fill_guard(built)
        guard_s = time.perf_counter() - start
        guard = built.fill_guard
        chose = "nothing (too few views)" if guard is None else (
            f"{'the model' if guard.use_model else 'anchor + hole filling'} over {guard.targets} targets "
            f"(model {guard.model_psnr:.2f} dB, fill {guard.fill_psnr:.2f} dB)")
        print(f"  {kind:<8} {len(views)} views: build {build_s:.2f} s, fill guard {guard_s:.2f} s more; chose {chose}")


if __name__ == "__main__":
    raise SystemExit(main())
