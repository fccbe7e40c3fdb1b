"""Stage 2: train the camera-controlled frame model (the teacher) by denoising.

The published schedule and target: the 1000-step IDDPM linear schedule of
``models.sampling`` and noise (epsilon) prediction, as PixArt trains. Per sample
``t ~ U{0..999}``, ``z_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` and the loss is
``|| out_C(z_t, t, cond) - eps ||^2`` on the first C output channels (the channels every
sampler reads; learned-sigma channels, present for PixArt/published compatibility, get no
loss -- no sampler of ours reads them).

Condition dropout: with probability ``cond_dropout`` a sample's anchor latent, anchor mask
and reference latent are zeroed -- exactly ``models.sampling.null_condition`` -- so the
teacher can sample with classifier-free guidance.

Everything else is ordinary: AdamW with linear warm-up, gradient clipping, an EMA copy
(the teacher we keep), safetensors checkpoints (``state.safetensors`` to resume,
``teacher.safetensors`` = EMA weights via ``models.checkpoints.save_model``), a tqdm bar
with loss and samples/s, ``log.jsonl`` with the loss curve, and validation strips
(anchor | teacher sample | ground truth) under ``val/``. CPU or CUDA; several processes
with ``torchrun`` (DDP, gloo on CPU, nccl on CUDA): each rank draws its own batches,
rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from models.checkpoints import load_pixart_weights, save_model
from models.dit import WorldFMDiT, build_model, get_config
from models.pairs import pair_loader
from models.sampling import NUM_TRAIN_TIMESTEPS, Condition, add_noise, generate
from models.train_state import EMA, adamw, load_state, save_state

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher.safetensors"
LOG_FILE = "log.jsonl"
CONDITION_KEYS = ("anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w")


@dataclass(frozen=True)
class TrainConfig:
    """Stage-2 hyper-parameters; ``model``/``model_overrides`` pick the ``DiTConfig``."""

    model: str = "demo"
    model_overrides: dict = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    cond_dropout: float = 0.1
    workers: int = 0
    seed: int = 0
    save_every: int = 100
    val_every: int = 500
    log_every: int = 10
    val_sampler_steps: int = 10
    pixart_init: str | None = None


def batch_condition(batch: dict[str, torch.Tensor]) -> Condition:
    """The ``Condition`` of a ``models.pairs.PairDataset`` batch."""
    return Condition(*(batch[k] for k in CONDITION_KEYS))


def drop_conditions(batch: dict[str, torch.Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Zero anchor latent, anchor mask and reference latent of each sample with probability ``p``."""
    if p <= 0:
        return batch
    b = batch["target_latent"].shape[0]
    keep = (torch.rand(b, generator=generator) >= p).to(batch["target_latent"].device)
    out = dict(batch)
    for k in ("anchor_latent", "anchor_mask", "ref_latent"):
        out[k] = batch[k] * keep.reshape(-1, *([1] * (batch[k].dim() - 1))).to(batch[k].dtype)
    return out


def denoising_loss(model: nn.Module, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Epsilon-prediction MSE of ``model`` on ``batch`` at timesteps ``t`` (B,) with ``noise`` (B, C, h, w)."""
    x0 = batch["target_latent"]
    z_t = add_noise(x0, noise, t)
    out = model(z_t, t.float(), *batch_condition(batch).model_args())[:, : x0.shape[1]]
    return (out - noise).square().mean()


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _infinite(loader, sampler=None):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_strip(rows: list[list[np.ndarray]], path: Path) -> None:
    """Write rows of equally sized uint8 (H, W, 3) images as one PNG grid."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


@torch.no_grad()
def validate(model: nn.Module, batch: dict[str, torch.Tensor], decoder: nn.Module | None, steps: int,
             path: Path | None, seed: int = 0) -> float:
    """Fixed-noise denoising loss on ``batch``; with a decoder also writes a strip
    (anchor | teacher sample | ground truth, one row per sample) to ``path``."""
    g = torch.Generator().manual_seed(seed)
    x0 = batch["target_latent"]
    t = torch.linspace(50, NUM_TRAIN_TIMESTEPS - 50, x0.shape[0]).long()
    noise = torch.randn(x0.shape, generator=g).to(x0.device)
    loss = float(denoising_loss(model, batch, t.to(x0.device), noise))
    if decoder is not None and path is not None:
        sample = generate(model, batch_condition(batch), sampler="teacher", steps=steps,
                          noise=torch.randn(x0.shape, generator=g).to(x0.device))
        images = [to_uint8(decoder(z.cpu())) for z in (batch["anchor_latent"], sample, x0)]
        save_strip([[img[i] for img in images] for i in range(x0.shape[0])], path)
    return loss


def train(
    dataset: Dataset,
    out: str | Path,
    config: TrainConfig = TrainConfig(),
    val_batch: dict[str, torch.Tensor] | None = None,
    decoder: nn.Module | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> WorldFMDiT:
    """Train the teacher on ``dataset`` (``models.pairs.PairDataset`` samples); resumes from ``out``.

    Returns the EMA model (eval mode). ``val_batch`` (a collated batch) is validated
    every ``val_every`` steps; ``decoder`` (latent -> image) turns it into strips.
    """
    from tqdm import tqdm

    rank, world = _distributed()
    out = Path(out)
    if world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    torch.manual_seed(config.seed)
    model = build_model(get_config(config.model, **config.model_overrides)).to(device)
    if config.pixart_init:
        report = load_pixart_weights(model, config.pixart_init)
        log.info("PixArt init from %s: %s", config.pixart_init, report)
    ema = EMA(model, config.ema_decay)
    opt = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    resumed = load_state(out, {"model": model, "ema": ema.module}, {"opt": opt})
    start = 0 if resumed is None else resumed[0]
    if resumed is not None and rank == 0:
        log.info("resuming training at step %d from %s", start, out)
    torch.manual_seed(config.seed + 1000 * rank + start)
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = None
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, world, rank, seed=config.seed + start)
    loader = pair_loader(dataset, config.batch_size, config.workers, config.seed + start, sampler)
    batches = _infinite(loader, sampler)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps({**asdict(config), "world_size": world}, indent=2))
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="train", unit="step",
               disable=not progress or rank != 0)
    t0, seen, window = time.perf_counter(), 0, []
    model.train()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(config.warmup, 1))
        batch = drop_conditions(to_device(next(batches), device), config.cond_dropout)
        x0 = batch["target_latent"]
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (x0.shape[0],), device=device)
        loss = denoising_loss(ddp, batch, t, torch.randn_like(x0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        ema.update(model)
        seen += x0.shape[0] * world
        window.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}", samples_s=f"{seen / (time.perf_counter() - t0):.1f}")
        done = step + 1
        if rank == 0 and (done % config.log_every == 0 or done == config.steps):
            record = {"step": done, "loss": float(np.mean(window)), "grad_norm": float(grad_norm),
                      "lr": opt.param_groups[0]["lr"], "samples_per_s": seen / (time.perf_counter() - t0)}
            window = []
            with open(out / LOG_FILE, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if rank == 0 and val_batch is not None and (done % config.val_every == 0 or done == config.steps):
            val = validate(ema.module, to_device(val_batch, device), decoder, config.val_sampler_steps,
                           out / "val" / f"step_{done:06d}.png")
            with open(out / LOG_FILE, "a") as fh:
                fh.write(json.dumps({"step": done, "val_loss": val}) + "\n")
        if rank == 0 and (done % config.save_every == 0 or done == config.steps):
            save_state(out, done, {"model": model, "ema": ema.module}, {"opt": opt}, {"config": asdict(config)})
            save_model(ema.module, out / TEACHER_FILE)
    if world > 1:
        dist.barrier()
    return ema.module.eval()


def read_log(out: str | Path) -> list[dict]:
    """The records of ``out/log.jsonl`` (training loss every ``log_every`` steps, validation losses)."""
    path = Path(out) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
