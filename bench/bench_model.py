"""Frame-model costs on this CPU: params, tokens, FLOPs/step, ms/step (PyTorch and ONNX Runtime).

Usage: ``python bench/bench_model.py [--rounds 30] [--threads 2] [--no-onnx]``

Measures, for ``tiny`` and ``demo`` with joint attention (and without PRoPE, for its cost), one
generator step (the 1-step distilled sampler = one forward) in PyTorch eager and, exported
to ONNX, in ONNX Runtime's CPU provider; ``demo`` with an isolated reference, full forward
vs the forward that reuses the reference's cached keys/values; then every demo autoencoder
kind (256 px, untrained) encode and decode. Candidates are timed round-robin so
load from other processes hits them alike; medians are printed with same-run ratios. The
machine is shared, so absolute numbers are noisy: compare ratios, rerun when in doubt
(``--threads 1`` suffers least from other processes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from models.autoencoder import DEMO_KINDS, LatentDecoder, LatentEncoder, demo_autoencoder
from models.dit import DiTConfig, build_model, example_inputs, flops_per_step, get_config
from models.sampling import FewStepGenerator

from machine import machine_line  # bench/machine.py, beside this script

GENERATOR_INPUTS = ["noise", "anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w"]


def generator_args(config: DiTConfig) -> tuple[torch.Tensor, ...]:
    """Inputs of ``FewStepGenerator(model, 1)`` at batch 1."""
    inputs = example_inputs(config)
    noise = inputs["z_t"][:, None]
    return (noise, *(inputs[name] for name in GENERATOR_INPUTS[1:]))


class CachedStep(torch.nn.Module):
    """One forward of a ``ref_isolated`` model reusing cached reference keys/values (traceable)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z_t, t, anchor_latent, anchor_mask, ref_keys, ref_values, ref_K, ref_c2w, tgt_K, tgt_c2w):
        return self.model.forward_with_reference_kv(
            z_t, t, anchor_latent, anchor_mask, ref_keys, ref_values, ref_K, ref_c2w, tgt_K, tgt_c2w
        )


CACHED_INPUTS = ["z_t", "t", "anchor_latent", "anchor_mask", "ref_keys", "ref_values", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w"]


def export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["out"], opset_version=17, dynamo=False)


def ort_runner(path: Path, names: list[str], args: tuple[torch.Tensor, ...], threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}  # the exporter drops inputs a graph does not use
    feed = {n: a.numpy() for n, a in zip(names, args) if n in wanted}
    return lambda: session.run(None, feed)


def time_round_robin(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds per call of each candidate, timed in interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.no_grad():
        for fn in candidates.values():
            fn(), fn()  # warm-up
        for _ in range(rounds):
            for name, fn in candidates.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-onnx", action="store_true", help="PyTorch timings only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_model_"))

    configs = {
        "tiny": get_config("tiny"),
        "demo": get_config("demo", ref_isolated=False),
        "demo-noprope": get_config("demo", prope=False, ref_isolated=False),
    }
    print(f"{'config':14s} {'params':>10s} {'tokens':>6s} {'GFLOP/step':>10s}")
    candidates: dict[str, Callable[[], object]] = {}
    for name, config in configs.items():
        model = build_model(config).eval()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:14s} {params / 1e6:9.2f}M {config.tokens:6d} {flops_per_step(config) / 1e9:10.3f}")
        generator = FewStepGenerator(model, steps=1).eval()
        gen_args = generator_args(config)
        candidates[f"{name} torch"] = lambda g=generator, a=gen_args: g(*a)
        if not args.no_onnx:
            path = tmp / f"{name}.onnx"
            export(generator, gen_args, GENERATOR_INPUTS, path)
            candidates[f"{name} onnxruntime"] = ort_runner(path, GENERATOR_INPUTS, gen_args, args.threads)

    isolated = build_model(get_config("demo", ref_isolated=True)).eval()
    inputs = example_inputs(isolated.config)
    with torch.no_grad():
        keys, values = isolated.reference_kv(inputs["ref_latent"], inputs["ref_K"], inputs["t"])
    cached = CachedStep(isolated).eval()
    cached_args = tuple(dict(inputs, ref_keys=keys, ref_values=values)[n] for n in CACHED_INPUTS)
    full_args = generator_args(isolated.config)
    full = FewStepGenerator(isolated, steps=1).eval()
    candidates["demo-isolated torch"] = lambda: full(*full_args)
    candidates["demo-isolated-cached torch"] = lambda: cached(*cached_args)
    if not args.no_onnx:
        export(full, full_args, GENERATOR_INPUTS, tmp / "isolated.onnx")
        export(cached, cached_args, CACHED_INPUTS, tmp / "cached.onnx")
        candidates["demo-isolated onnxruntime"] = ort_runner(tmp / "isolated.onnx", GENERATOR_INPUTS, full_args, args.threads)
        candidates["demo-isolated-cached onnxruntime"] = ort_runner(tmp / "cached.onnx", CACHED_INPUTS, cached_args, args.threads)

    image = torch.rand(1, 3, 256, 256) * 2 - 1
    for kind in DEMO_KINDS:
        vae = demo_autoencoder(kind).eval()
        encoder, decoder = LatentEncoder(vae).eval(), LatentDecoder(vae).eval()
        with torch.no_grad():
            latent = encoder(image)
        candidates[f"ae-{kind} encode torch"] = lambda e=encoder: e(image)
        candidates[f"ae-{kind} decode torch"] = lambda d=decoder, z=latent: d(z)
        if not args.no_onnx:
            export(encoder, (image,), ["image"], tmp / f"enc-{kind}.onnx")
            export(decoder, (latent,), ["latent"], tmp / f"dec-{kind}.onnx")
            candidates[f"ae-{kind} encode onnxruntime"] = ort_runner(tmp / f"enc-{kind}.onnx", ["image"], (image,), args.threads)
            candidates[f"ae-{kind} decode onnxruntime"] = ort_runner(tmp / f"dec-{kind}.onnx", ["latent"], (latent,), args.threads)

    medians = time_round_robin(candidates, args.rounds)
    print(f"\nmedian ms per call, {args.rounds} interleaved rounds, {args.threads} threads; {machine_line()}")
    for name, ms in medians.items():
        print(f"  {name:30s} {ms:8.1f}")
    for backend in ("torch",) + (() if args.no_onnx else ("onnxruntime",)):
        with_prope, without = medians[f"demo {backend}"], medians[f"demo-noprope {backend}"]
        print(f"PRoPE cost ({backend}): demo step {with_prope:.1f} ms vs {without:.1f} ms without, x{with_prope / without:.2f}")
        full, reuse = medians[f"demo-isolated {backend}"], medians[f"demo-isolated-cached {backend}"]
        print(f"reference caching ({backend}): {full:.1f} ms full vs {reuse:.1f} ms cached, speed-up x{full / reuse:.2f}")
        for kind in DEMO_KINDS:
            frame = medians[f"ae-{kind} encode {backend}"] + medians[f"demo {backend}"] + medians[f"ae-{kind} decode {backend}"]
            print(f"demo frame, 1 step, ae-{kind} ({backend}): encode anchor + step + decode = {frame:.1f} ms "
                  f"-> {1000 / frame:.1f} frames/s (anchor rendering not included)")


if __name__ == "__main__":
    main()
