"""The published WorldFM weights as a servable model folder (``worldfm import-published``).

Input: the release's ``worldfm_1-step.pth`` and/or ``worldfm_2-step.pth`` (two separately
distilled XL networks, Hugging Face ``inspatio/worldfm``) and its ``vae/`` folder (a
diffusers ``AutoencoderKL``). Output: the ONNX folder of ``models.export`` -- encoder,
decoder, one generator graph per checkpoint (its own step count), optional fp16 graphs
for CUDA, sha256 and measured parity in ``manifest.json`` -- with ``"anchor_style":
"release"``, so ``worldfm serve --model`` and ``worldfm demo --model`` render the
anchors the way those networks were trained on (``models.anchor.release_style``).

Before anything heavy, :func:`plan_import` reads the checkpoints' shapes (memory-mapped,
nothing loaded), works out the network and says what the export will take -- disk, peak
memory, time -- and :func:`check_resources` refuses when the disk or memory is not there.
The figures are estimates from the parameter count and FLOPs and this machine's measured
matmul rate, calibrated against ``bench/bench_published.py`` (docs/published.md).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoints import CheckpointError, PublishedWeights, published_config, published_model, read_published_weights
from models.dit import DiTConfig, build_model, flops_per_step

log = logging.getLogger(__name__)

ANCHOR_STYLE = "release"
GB = 1024**3

# Calibration of the estimates (bench/bench_published.py at depth 2 and 28, docs/published.md).
# Peak memory: the networks held in fp32, plus this many fp32 copies of the part of one
# network the graphs run (tracer constants, the serialised graph, ONNX Runtime's session in
# the parity check), plus the autoencoder's activations at full resolution: bytes per pixel
# and channel of its widest block (~2 GB for the published VAE at 512 px).
EXPORT_COPIES = 3.0
VAE_BYTES_PER_PIXEL_CHANNEL = 15.0
# Time: FLOPs at the measured matmul rate (ONNX Runtime and PyTorch ran the XL forward at
# about that rate), plus the bytes written and hashed at DISK_BYTES_PER_S.
FLOP_EFFICIENCY = 1.0
FP16_COST = 1.5  # tracing under autocast and ONNX Runtime's fp16 kernels on a CPU, against fp32
DISK_BYTES_PER_S = 200e6
SAFETY = 1.1  # refuse unless the disk and memory exceed the estimate by this factor


class ImportRefused(RuntimeError):
    """The machine lacks the disk or memory the import needs; the message says how much."""


def step_count(path: Path) -> int:
    """The step count a checkpoint was distilled for, from its name (``worldfm_2-step.pth`` -> 2)."""
    match = re.search(r"(\d+)-step", path.name)
    if match is None or int(match.group(1)) not in (1, 2):
        raise CheckpointError(f"cannot tell the step count of {path.name} from its name; pass it as STEPS=PATH, "
                              "e.g. --checkpoint 2=/path/to/file.pth (the release names them worldfm_1-step.pth, "
                              "worldfm_2-step.pth)")
    return int(match.group(1))


def parse_checkpoint_arg(text: str) -> tuple[int, Path]:
    """``--checkpoint`` value: ``PATH`` (step count from the file name) or ``STEPS=PATH``."""
    if re.match(r"^\d+=", text):
        steps, path = text.split("=", 1)
        if int(steps) not in (1, 2):
            raise CheckpointError(f"{text}: the published samplers take 1 or 2 steps")
        return int(steps), Path(path)
    return step_count(Path(text)), Path(text)


def matmul_gflops(seconds: float = 0.3, size: int = 1024) -> float:
    """This machine's sustained float32 matmul rate in GFLOP/s right now (torch, its current
    threads): the mean over ``seconds``, what a minutes-long export gets -- unlike the best
    single product ``bench/machine.py`` prints, which on a shared machine reads ~3x higher."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / elapsed / 1e9


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux ``MemAvailable``), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def free_disk(folder: Path) -> int:
    """Free bytes on the filesystem ``folder`` is (or will be) created on."""
    existing = next(p for p in (folder.resolve(), *folder.resolve().parents) if p.exists())
    return shutil.disk_usage(existing).free


@dataclass
class ImportPlan:
    """What an import will write and take (:func:`plan_import`)."""

    weights: dict[int, PublishedWeights]  # steps -> the checkpoint's model tensors (memory-mapped)
    sources: dict[int, Path]
    vae: torch.nn.Module
    vae_folder: Path
    out: Path
    config: DiTConfig
    fp16: bool
    parameters: int  # per network
    run_parameters: int  # per network, those the graphs hold (:func:`parameters_run`)
    disk_bytes: int
    memory_bytes: int
    seconds: float
    gflops: float  # measured matmul rate the time estimate used

    def describe(self) -> str:
        c = self.config
        steps = ", ".join(f"{s}-step <- {p.name}" for s, p in sorted(self.sources.items()))
        return "\n".join([
            f"network     {c.name} depth {c.depth}, width {c.hidden_size}, {self.parameters / 1e6:.1f} M parameters "
            f"each ({self.run_parameters / 1e6:.1f} M run at inference); {c.image_size}x{c.image_size} px, "
            f"latent {c.latent_channels}x{c.latent_size}x{c.latent_size}",
            f"generators  {steps}{' (+ fp16 graphs for CUDA)' if self.fp16 else ''}",
            f"needs       ~{_size(self.disk_bytes)} of disk in {self.out}, ~{_size(self.memory_bytes)} of memory, "
            f"~{_minutes(self.seconds)} on this machine (matmul {self.gflops:.0f} GFLOP/s now)",
        ])


def _size(count: float) -> str:
    return f"{count / GB:.1f} GB" if count >= 0.1 * GB else f"{count / 1024**2:.0f} MB"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def parameters_run(config: DiTConfig) -> int:
    """Parameters of ``config``'s network that inference runs, so its exported graphs hold.

    The published network also stores a caption embedder and per-block cross-attention
    (run on zero captions, disabled by the release) and a Plücker projector it does not
    use; tracing leaves them out of the graphs (~25 % of the XL's parameters).
    """
    skipped = ("y_embedder.",) + (() if config.plucker else ("plucker_proj.",))
    model = build_model(config, device="meta")
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skipped) and ".cross_attn." not in n)


def plan_import(checkpoints: dict[int, Path], vae_folder: Path, out: Path, fp16: bool = False,
                image_size: int = 512, trust_pickle: bool = False) -> ImportPlan:
    """Read the checkpoints' shapes and the VAE, and estimate the export (nothing written).

    Raises ``CheckpointError`` naming a tensor that is missing or does not fit, and
    ``ValueError``/``FileNotFoundError`` for an unusable VAE folder.
    """
    from models.autoencoder import downsample_factor, load_autoencoder

    vae = load_autoencoder(vae_folder)
    factor, channels = downsample_factor(vae), int(vae.config.latent_channels)
    weights = {s: read_published_weights(p, trust_pickle) for s, p in sorted(checkpoints.items())}
    configs = {s: published_config(w, image_size, factor, channels) for s, w in weights.items()}
    config = configs[min(configs)]
    if any(c != config for c in configs.values()):
        raise CheckpointError("the checkpoints hold different networks: " + "; ".join(
            f"{checkpoints[s].name}: depth {c.depth}, width {c.hidden_size}" for s, c in configs.items()))
    parameters = weights[min(weights)].parameters
    run_parameters = parameters_run(config)
    networks = len(weights)
    vae_parameters = sum(p.numel() for p in vae.parameters())
    graph_bytes = 4 * run_parameters
    graph_count = networks * (2 if fp16 else 1)
    disk = networks * graph_bytes * (1.5 if fp16 else 1.0) + 4 * vae_parameters + graph_bytes  # + one scratch graph
    activations = VAE_BYTES_PER_PIXEL_CHANNEL * image_size**2 * max(vae.config.block_out_channels)
    memory = networks * 4 * parameters + EXPORT_COPIES * graph_bytes + 2 * 4 * vae_parameters + activations
    gflops = matmul_gflops()
    # Forwards of the network: traced once per step, run per step in PyTorch and ONNX Runtime
    # in the parity check (batch 1), the fp16 graphs' at FP16_COST times the fp32 ones'; the
    # VAE: each graph traced, run twice.
    forwards = sum(3 * s for s in checkpoints) * (1 + FP16_COST if fp16 else 1)
    flops = forwards * flops_per_step(config) + 3 * _vae_flops(vae, config.image_size)
    io = (disk + 2 * networks * graph_bytes * (1.5 if fp16 else 1.0)) / DISK_BYTES_PER_S  # written, hashed twice
    seconds = flops / (FLOP_EFFICIENCY * gflops * 1e9) + io + 5 * graph_count
    return ImportPlan(weights, dict(checkpoints), vae, Path(vae_folder), out, config, fp16, parameters, run_parameters,
                      int(disk), int(memory), seconds, gflops)


def _vae_flops(vae: torch.nn.Module, size: int) -> int:
    """FLOPs of encoding and decoding one ``size`` px image with ``vae`` (meta device, instant)."""
    from copy import deepcopy

    from torch.utils.flop_counter import FlopCounterMode

    meta = deepcopy(vae).to("meta")
    counter = FlopCounterMode(display=False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    with torch.no_grad(), counter:
        meta.encode(torch.empty(1, 3, size, size, device="meta"))
        meta.decode(torch.empty(1, vae.config.latent_channels, size // factor, size // factor, device="meta"))
    return int(counter.get_total_flops())


def check_resources(plan: ImportPlan) -> None:
    """Raise ``ImportRefused`` unless the disk and memory exceed the plan by ``SAFETY``."""
    disk = free_disk(plan.out)
    if disk < SAFETY * plan.disk_bytes:
        raise ImportRefused(f"the import needs ~{_size(plan.disk_bytes)} of disk in {plan.out} but only "
                            f"{_size(disk)} is free there; free some space or choose another --out")
    memory = available_memory()
    if memory is None:
        log.warning("cannot read the available memory on this system; the import needs ~%s", _size(plan.memory_bytes))
    elif memory < SAFETY * plan.memory_bytes:
        raise ImportRefused(f"the import needs ~{_size(plan.memory_bytes)} of memory but {_size(memory)} "
                            "is available; close other programs or import on a machine with more memory "
                            "(the folder it writes can be copied to the GPU machine)")


def import_published(plan: ImportPlan, name: str | None = None) -> dict[str, float]:
    """Load the planned checkpoints strictly and export the model folder; returns the parity errors.
    Consumes ``plan.weights``.

    Each checkpoint becomes the generator for its own step count; the VAE gives the
    encoder and decoder; the manifest records the sources and ``anchor_style: release``.
    """
    from models.autoencoder import autoencoder_sha256
    from models.export import export_model
    from models.model_folder import file_sha256

    generators, entries = {}, {}
    for s in sorted(plan.weights):
        weights = plan.weights.pop(s)  # released once copied: its tensors map the checkpoint file
        generators[s] = published_model(weights, plan.config, str(plan.sources[s]))
        entries[s] = weights.entry or "."
        del weights
    info = {
        "source": "published InSpatio-WorldFM weights (github.com/inspatio/worldfm), via worldfm import-published",
        "checkpoints": {str(s): {"file": p.name, "sha256": file_sha256(p), "weights": entries[s]}
                        for s, p in plan.sources.items()},
        "autoencoder_sha256": autoencoder_sha256(plan.vae_folder),
    }
    started = time.perf_counter()
    errors = export_model(generators, plan.vae, plan.out, name or plan.out.name, info=info, fp16=plan.fp16,
                          anchor_style=ANCHOR_STYLE)
    log.info("import took %.0f s (estimated %.0f s)", time.perf_counter() - started, plan.seconds)
    return errors


def folder_bytes(folder: Path) -> int:
    """Bytes of the files directly in ``folder``."""
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
