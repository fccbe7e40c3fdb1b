"""The published XL network through the product's own path: import, export, serve at 512x512.

Usage:
  python bench/bench_published.py --depth 2          # reduced depth: ~2 min, ~2 GB
  free -g; flock /work/heavy.lock python bench/bench_published.py   # all 28 blocks: long, ~12 GB
  python bench/bench_published.py --provider cuda    # the first GPU check (fp16 graphs)

1. Writes published-format checkpoints with random weights -- the release's key set at XL
   width, ``--depth`` blocks, one network per ``--steps`` value -- and a VAE of the
   published architecture (PixArt-Sigma's SDXL ``AutoencoderKL`` config) with random
   weights, in a child process (its memory is not the import's).
2. Runs ``worldfm import-published``'s code (plan, resource check, import) in a second
   child: prints the plan's estimates beside the measured export time, folder size and
   peak memory (the child's max RSS).
3. Here: loads the folder in the engine (sha256 verification + sessions), builds a
   procedural scene and renders frames through the server's pipeline (release anchor
   style): the first frame's time and the per-stage medians (anchor, reference, encode,
   generate, decode) of the others. With ``--provider cuda``: fp16 graphs (``--fp16`` is
   implied), frames/s and the GPU memory the process took (``nvidia-smi``).

Random weights make the frames noise; every cost is the real network's. The machine's
float32 matmul rate is printed beside every timing (the bench machine is shared: compare
runs by it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line, matmul_rate

GB = 1024**3
# The published vae/config.json is PixArt-Sigma's SDXL VAE: these fields fix its shapes.
PUBLISHED_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.13025,
)


def write_release_files(folder: Path, depth: int, steps: list[int]) -> None:
    """worldfm_{N}-step.pth (random XL-width weights, ``depth`` blocks) and vae/ into ``folder``."""
    import torch
    from diffusers import AutoencoderKL

    from models.dit import build_model, get_config

    config = get_config("xl", depth=depth)
    for i, s in enumerate(steps):
        torch.manual_seed(i)
        model = build_model(config)  # the published key set (checkpoint_compat)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(std=0.02)  # random everywhere, the final layer included
        state = {k: v for k, v in model.state_dict().items()}
        del model
        torch.save({"state_dict": state}, folder / f"worldfm_{s}-step.pth")
        del state
    AutoencoderKL(**PUBLISHED_VAE).save_pretrained(folder / "vae")


def run_import(folder: Path, out: Path, steps: list[int], fp16: bool, image_size: int, report: Path) -> None:
    """Plan, check and import as ``worldfm import-published`` does; the figures go to ``report``."""
    from models.published import check_resources, folder_bytes, import_published, plan_import

    plan = plan_import({s: folder / f"worldfm_{s}-step.pth" for s in steps}, folder / "vae", out, fp16, image_size)
    print(plan.describe(), flush=True)
    check_resources(plan)
    start = time.perf_counter()
    errors = import_published(plan)
    report.write_text(json.dumps({
        "seconds": time.perf_counter() - start, "bytes": folder_bytes(out), "parity": errors,
        "estimate": {"seconds": plan.seconds, "disk_bytes": plan.disk_bytes, "memory_bytes": plan.memory_bytes},
        "parameters": plan.parameters, "gflops": plan.gflops,
    }))


def child(phase: str, *args: str) -> tuple[float, float]:
    """Run this script's ``phase`` in a child process; (wall seconds, peak RSS in GB)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--phase", phase, *args])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{phase} failed (exit {proc.returncode})")
    return time.perf_counter() - start, usage.ru_maxrss * 1024 / GB


def gpu_memory_mb() -> float | None:
    """GPU memory in use (MB, first GPU) per nvidia-smi, or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return float(out.splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def serve_frames(model: Path, provider: str, precision: str, frames: int, image_size: int) -> None:
    """Engine load, then frames through the server's pipeline; prints first-frame and per-stage times."""
    from datagen.procedural.renderer import Renderer
    from datagen.procedural.scenes import generate_scene
    from datagen.procedural.trajectories import plan_cameras
    from python_bridge.engine import Engine
    from python_bridge.pipeline import FramePipeline

    gpu_before = gpu_memory_mb()
    start = time.perf_counter()
    engine = Engine(model, provider=provider, precision=precision, warmup=False)
    print(f"engine      loaded in {time.perf_counter() - start:.1f} s (sha256 of every file + sessions) on "
          f"{engine.provider}, {engine.precision} generators")
    pipeline = FramePipeline(engine, steps=min(engine.steps))
    world = generate_scene(0, "indoor")
    cameras, _ = plan_cameras(world, 6, image_size, image_size)
    renderer = Renderer(world)
    scene = pipeline.build([renderer.render(cam, name=f"{i}") for i, cam in enumerate(cameras)])
    size = (image_size, image_size)
    targets = [cameras[i % len(cameras)] for i in range(frames)]
    start = time.perf_counter()
    first = pipeline.render(scene, targets[0].c2w, targets[0].K, size, seed=0)
    first_s = time.perf_counter() - start
    print(f"first frame {first_s:.2f} s ({first.mode}, anchor style {pipeline.anchor_style}; "
          f"matmul {matmul_rate():.0f} GFLOP/s)")
    stages: dict[str, list[float]] = {}
    totals = []
    for i, cam in enumerate(targets[1:], 1):
        start = time.perf_counter()
        result = pipeline.render(scene, cam.c2w, cam.K, size, seed=i)
        totals.append(time.perf_counter() - start)
        for stage, ms in result.timings.items():
            stages.setdefault(stage, []).append(ms)
    if totals:
        rate = matmul_rate()
        per_stage = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in stages.items())
        median = statistics.median(totals)
        print(f"per frame   {median * 1e3:.0f} ms median of {len(totals)} ({1 / median:.2f} frames/s): {per_stage} "
              f"(ms; matmul {rate:.0f} GFLOP/s)")
    gpu_after = gpu_memory_mb()
    if gpu_before is not None and gpu_after is not None:
        print(f"GPU memory  {gpu_after - gpu_before:.0f} MB taken by the engine ({gpu_after:.0f} MB in use)")
    print(f"host memory peak {_peak_rss_gb():.2f} GB in this process (engine + scene + frames)")


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=28, help="blocks (default 28, the published XL)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1], choices=[1, 2],
                        help="one checkpoint (network) per step count (default 1)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--fp16", action="store_true", help="also export fp16 graphs (implied by --provider cuda)")
    parser.add_argument("--frames", type=int, default=3, help="frames rendered (the first timed on its own)")
    parser.add_argument("--scratch", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--phase", choices=["write", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.depth < 1 or args.frames < 1:
        parser.error("--depth and --frames must be >= 1")
    fp16 = args.fp16 or args.provider == "cuda"
    if args.phase == "write":
        return write_release_files(args.scratch, args.depth, args.steps)
    if args.phase == "import":
        return run_import(args.scratch, args.scratch / "model", args.steps, fp16, args.image_size, args.report)
    if args.provider == "cuda":
        from python_bridge.engine import usable_providers

        try:
            usable_providers("cuda")
        except RuntimeError as exc:
            raise SystemExit(f"bench_published: {exc}") from None

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_published_"))
    scratch.mkdir(parents=True, exist_ok=True)
    common = ["--scratch", str(scratch), "--depth", str(args.depth), "--steps", *map(str, args.steps),
              "--image-size", str(args.image_size), "--provider", args.provider, *(["--fp16"] if fp16 else [])]
    try:
        print(f"bench_published: XL width, depth {args.depth}, steps {args.steps}, {args.image_size} px, "
              f"provider {args.provider}; scratch {scratch}\n{machine_line()}", flush=True)
        seconds, rss = child("write", *common)
        print(f"wrote the release files in {seconds:.0f} s (peak {rss:.1f} GB)", flush=True)
        report = scratch / "import.json"
        seconds, rss = child("import", *common, "--report", str(report))
        r = json.loads(report.read_text())
        e = r["estimate"]
        print(f"import      {r['seconds']:.0f} s measured, {e['seconds']:.0f} s estimated "
              f"(matmul {r['gflops']:.0f} GFLOP/s at planning, as the import measures it)")
        print(f"folder      {r['bytes'] / GB:.2f} GB measured, {e['disk_bytes'] / GB:.2f} GB estimated with one "
              "scratch graph")
        print(f"peak memory {rss:.2f} GB measured (import process), {e['memory_bytes'] / GB:.2f} GB estimated")
        print("parity      " + ", ".join(f"{g} {v:.2g}" for g, v in r["parity"].items()), flush=True)
        serve_frames(scratch / "model", args.provider, "fp16" if args.provider == "cuda" else "fp32", args.frames,
                     args.image_size)
    finally:
        if not args.keep and args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
