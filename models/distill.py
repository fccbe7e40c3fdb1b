"""Stage 3: distil the teacher into a 1- and 2-step generator, DMD2 style.

Three networks (shapes and inputs as ``models.dit.WorldFMDiT``):

* the **teacher** (frozen; the stage-2 EMA model, noise prediction);
* the **generator** G, initialised from the teacher, sampled exactly as the published
  distilled sampler runs (``models.sampling.FewStepGenerator``): from z at t=999,
  ``x = sqrt(abar) z - sqrt(1 - abar) out``; for 2 steps re-noise x to t=200 and repeat.
  That formula reads ``out`` as v; a plain copy of a noise-predicting teacher starts at
  ``~ -z``. ``init_from_teacher_x0`` starts G instead as the teacher returning v from its
  noise prediction (``generator_from_teacher``): its first step is the teacher's x0
  estimate -- measured far worse than ``-z`` for our teachers (docs/training.md), so off by
  default;
* the **critic** ("fake score"), initialised from the teacher, trained by the ordinary
  denoising loss on generator samples, so it scores the generator's distribution.

Losses (docs/training.md has the derivation):

* ``critic``: ``|| eps_fake(x_t, t) - eps ||^2`` with ``x = sg(G(z))`` noised to a random t;
  ``critic_updates`` of these per generator update (DMD2's two time-scale rule).
* ``dmd`` (distribution matching): noise G's sample x to t, take both x0 predictions
  ``x0_real`` (teacher, optionally with classifier-free guidance) and ``x0_fake`` (critic),
  ``grad = (x0_fake - x0_real) / mean|x - x0_real|`` per sample, loss
  ``0.5 || x - sg(x - grad) ||^2`` -- its gradient w.r.t. x is ``grad``, which moves the
  generator's distribution toward the teacher's.
* ``regression`` (optional, DMD1): ``|| G(z) - x_teacher(z) ||^2`` on a pool of teacher ODE
  pairs (noise z, the teacher's DPM-Solver sample from z under the same condition). On a
  small compute budget it gives the generator its mapping quickly; DMD then sharpens it.

* ``gan`` (optional, DMD2's GAN term): a classifier head (``GANHead``) on the critic's
  features of noised latents tells ground-truth latents from generator samples; the
  critic (trunk and head) minimises ``softplus(-D(real)) + softplus(D(fake))`` (weight
  ``gan_critic_weight``), the generator ``softplus(-D(fake))`` (weight ``gan_weight``).
  It rewards samples the critic cannot tell from real latents: detail, where the
  regressions pull toward the blurred mean.
* ``data regression`` (optional, ours, off by default): ``|| x - x0 ||^2`` between the
  generator's sample and the ground-truth target latent of the same condition. Not part
  of DMD: a supervised anchor for tiny compute budgets, where the teacher itself is weak.
  It pulls toward the conditional mean (higher PSNR, less detail); the DMD term pushes
  back toward the teacher's distribution. ``hole_weight`` weights it toward the latent
  cells the point cloud leaves empty (:func:`data_regression_loss`).

Multi-step generators train by backward simulation (DMD2): for a 2-step update, G's own
first step runs without gradient, its x0 is re-noised to t=200, and the loss is taken on
G's second step. One generator trained on both step indices serves 1 and 2 steps (the
export then stores its weights once).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from models.checkpoints import save_model
from models.dit import WorldFMDiT, build_model
from models.pairs import pair_loader
from models.sampling import (
    DISTILLED_MID_T,
    DISTILLED_T,
    NUM_TRAIN_TIMESTEPS,
    Condition,
    add_noise,
    generate,
    guided,
    null_condition,
    signal_noise,
    signal_noise_at,
)
from models.train import LOG_FILE, _infinite, batch_condition, denoising_loss, save_strip, to_device, to_uint8
from models.train_state import adamw, load_state, save_state

log = logging.getLogger(__name__)

POOL_FILE = "ode_pairs.safetensors"


@dataclass(frozen=True)
class DistillConfig:
    """Stage-3 hyper-parameters."""

    steps: int = 1000
    batch_size: int = 8
    generator_lr: float = 5e-5
    critic_lr: float = 1e-4
    critic_updates: int = 2
    generator_steps: tuple[int, ...] = (1, 2)
    guidance_scale: float = 1.0
    min_t: int = 20
    max_t: int = 980
    regression_weight: float = 1.0
    data_regression_weight: float = 0.0
    hole_weight: float = 0.0
    gan_weight: float = 0.0
    gan_critic_weight: float = 1e-2
    init_from_teacher_x0: bool = False
    pool_size: int = 256
    teacher_steps: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 100
    log_every: int = 10
    workers: int = 0


def generator_from_teacher(teacher: WorldFMDiT, from_x0: bool = True) -> WorldFMDiT:
    """The generator's starting point: the teacher's weights.

    The published sampler reads the network's output as v (``x0 = a_t z - s_t out``). A
    noise-predicting teacher copied as is would start at ``a z - s eps ~ -z`` at t = 999 (its
    eps is nearly z there), far from any image. With ``from_x0`` the copy returns v computed
    from its eps (``DiTConfig.v_from_eps``), so the first step of the fresh generator is the
    teacher's own x0 estimate ``(z - s eps) / a``, and distillation starts from it.
    """
    if not from_x0 or teacher.config.v_from_eps:
        return copy.deepcopy(teacher)
    generator = build_model(replace(teacher.config, v_from_eps=True)).to(next(teacher.parameters()).device)
    generator.load_state_dict(teacher.state_dict())
    return generator


class GANHead(nn.Module):
    """DMD2's classifier on the fake-score network: real/fake logits per target token (B, n)
    from the critic's features of a noised latent (``WorldFMDiT.target_features``). Trained
    with the critic (it shares the critic's trunk); the generator is trained to fool it."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def gan_logits(critic: WorldFMDiT, head: GANHead, x: torch.Tensor, cond: Condition, t: torch.Tensor,
               noise: torch.Tensor) -> torch.Tensor:
    """Logits (B, n) of latents ``x`` (B, C, h, w) noised to timesteps ``t`` (B,)."""
    return head(critic.target_features(add_noise(x, noise, t), t.float(), *cond.model_args()))


def gan_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating classifier loss: ground-truth latents real, generator samples fake."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side: make its samples classified real."""
    return F.softplus(-fake_logits).mean()


def generator_output(model: nn.Module, z: torch.Tensor, t: int, cond: Condition) -> torch.Tensor:
    """x0 of the published distilled formula at timestep ``t``: ``a_t z - s_t out``."""
    a, s = signal_noise(t)
    t_batch = torch.full((z.shape[0],), float(t), device=z.device)
    return a * z - s * model(z, t_batch, *cond.model_args())[:, : z.shape[1]]


def simulate(model: nn.Module, noise: torch.Tensor, step: int, cond: Condition, renoise: torch.Tensor) -> torch.Tensor:
    """Generator sample after its step ``step`` (0 or 1), backward simulation: earlier steps run
    without gradient. ``noise``/``renoise``: (B, C, h, w) initial and re-noising draws."""
    if step == 0:
        return generator_output(model, noise, DISTILLED_T, cond)
    with torch.no_grad():
        x0 = generator_output(model, noise, DISTILLED_T, cond)
    a, s = signal_noise(DISTILLED_MID_T)
    return generator_output(model, a * x0 + s * renoise, DISTILLED_MID_T, cond)


def data_regression_loss(x: torch.Tensor, x0: torch.Tensor, anchor_mask: torch.Tensor, hole_weight: float
                         ) -> torch.Tensor:
    """``|| x - x0 ||^2`` with each latent cell weighted ``1 + hole_weight * (its share of
    pixels the cloud leaves empty)``: where the cloud covers the target, an anchor decoder
    takes the anchor's pixels, so the latent matters most in the holes. ``anchor_mask``
    (B, 1, H, W) at image resolution; weights are normalised to mean 1 per batch."""
    err = (x - x0).square()
    if hole_weight == 0:
        return err.mean()
    holes = 1.0 - torch.nn.functional.adaptive_avg_pool2d(anchor_mask, x.shape[-2:])  # (B, 1, h, w)
    weight = 1.0 + hole_weight * holes
    return (err * weight).mean() / weight.mean()


def x0_from_eps(z_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Clean-latent estimate of a noise prediction at timesteps ``t`` (B,)."""
    signal, sigma = signal_noise_at(t, z_t)
    return (z_t - sigma * eps) / signal


def dmd_loss(x: torch.Tensor, teacher: nn.Module, critic: nn.Module, cond: Condition, t: torch.Tensor,
             noise: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Distribution-matching loss of generator samples ``x`` (B, C, h, w) at timesteps ``t``."""
    with torch.no_grad():
        z_t = add_noise(x.detach(), noise, t)
        tf = t.float()
        real_fn = lambda z, tt: teacher(z, tt, *cond.model_args())[:, : z.shape[1]]  # noqa: E731
        if guidance_scale != 1.0:
            uncond = null_condition(cond)
            uncond_fn = lambda z, tt: teacher(z, tt, *uncond.model_args())[:, : z.shape[1]]  # noqa: E731
            real_fn = guided(real_fn, uncond_fn, guidance_scale)
        x0_real = x0_from_eps(z_t, real_fn(z_t, tf), t)
        x0_fake = x0_from_eps(z_t, critic(z_t, tf, *cond.model_args())[:, : z_t.shape[1]], t)
        norm = (x.detach() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        grad = (x0_fake - x0_real) / norm
    return 0.5 * (x - (x.detach() - grad)).square().mean()


@torch.no_grad()
def teacher_pairs(teacher: nn.Module, dataset: Dataset, count: int, steps: int, guidance_scale: float,
                  seed: int, batch: int = 16) -> dict[str, torch.Tensor]:
    """``count`` teacher ODE pairs: dataset indices, noise (N, C, h, w) and the teacher's
    DPM-Solver++ sample from that noise under that sample's condition (first reference drawn)."""
    from torch.utils.data import default_collate

    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=g)[:count]
    noises, samples = [], []
    for i in range(0, len(index), batch):
        items = default_collate([dataset[int(j)] for j in index[i : i + batch]])
        noise = torch.randn(items["target_latent"].shape, generator=g)
        samples.append(generate(teacher, batch_condition(items), sampler="teacher", steps=steps,
                                guidance_scale=guidance_scale, noise=noise))
        noises.append(noise)
    return {"index": index, "noise": torch.cat(noises), "sample": torch.cat(samples)}


def _pool(out: Path, teacher: nn.Module, dataset: Dataset, config: DistillConfig) -> dict[str, torch.Tensor] | None:
    """The ODE-pair pool, computed once per run and kept in ``out`` for resumption."""
    if config.regression_weight <= 0:
        return None
    path = out / POOL_FILE
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    log.info("computing %d teacher ODE pairs (%d teacher steps each)", config.pool_size, config.teacher_steps)
    pool = teacher_pairs(teacher, dataset, config.pool_size, config.teacher_steps, config.guidance_scale, config.seed)
    save_file(pool, str(path))
    return pool


class _PoolDataset(Dataset):
    """The pool's samples with their dataset conditions (the reference is redrawn per call, so a
    pair may be seen with another of its reference candidates than it was generated with)."""

    def __init__(self, dataset: Dataset, pool: dict[str, torch.Tensor]):
        self.dataset, self.pool = dataset, pool

    def __len__(self) -> int:
        return len(self.pool["index"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.dataset[int(self.pool["index"][i])]
        return {**item, "pool_noise": self.pool["noise"][i], "pool_sample": self.pool["sample"][i]}


def distill(
    teacher: WorldFMDiT,
    dataset: Dataset,
    out: str | Path,
    config: DistillConfig = DistillConfig(),
    val_batch: dict[str, torch.Tensor] | None = None,
    decoder: nn.Module | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> WorldFMDiT:
    """Distil ``teacher`` on ``dataset`` (``models.pairs.PairDataset``); resumes from ``out``.

    Writes ``generator_{N}step.safetensors`` for each N in ``generator_steps`` (one network),
    ``state.safetensors``, ``log.jsonl`` and, with ``val_batch`` + ``decoder``, a strip
    (anchor | 1 step | 2 steps | ground truth) at the end. Returns the generator.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    teacher = teacher.to(device).eval().requires_grad_(False)
    generator = generator_from_teacher(teacher, config.init_from_teacher_x0).train().requires_grad_(True)
    critic = copy.deepcopy(teacher).train().requires_grad_(True)
    modules = {"generator": generator, "critic": critic}
    head = None
    if config.gan_weight > 0:
        head = modules["gan_head"] = GANHead(critic.config.hidden_size).to(device)
    g_opt = adamw(generator.parameters(), lr=config.generator_lr, weight_decay=0.0)
    critic_params = [*critic.parameters(), *(head.parameters() if head is not None else [])]
    c_opt = adamw(critic_params, lr=config.critic_lr, weight_decay=0.0)
    resumed = load_state(out, modules, {"generator": g_opt, "critic": c_opt})
    start = 0 if resumed is None else resumed[0]
    pool = _pool(out, teacher, dataset, config)
    torch.manual_seed(config.seed + 1 + start)
    batches = _infinite(pair_loader(dataset, config.batch_size, config.workers, config.seed + start))
    pool_batches = None
    if pool is not None:
        pool_set = _PoolDataset(dataset, pool)
        pool_batches = _infinite(pair_loader(pool_set, min(config.batch_size, len(pool_set)), 0, config.seed + start))
    (out / "distill_config.json").write_text(json.dumps(asdict(config), indent=2))
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="distill", unit="step",
               disable=not progress)
    t0, seen, window = time.perf_counter(), 0, []
    for step in bar:
        batch = to_device(next(batches), device)
        cond = batch_condition(batch)
        x0 = batch["target_latent"]
        b = x0.shape[0]
        k = config.generator_steps[step % len(config.generator_steps)] - 1  # which step this update trains
        # critic: denoising on detached generator samples
        critic_losses = []
        for _ in range(config.critic_updates):
            with torch.no_grad():
                fake = simulate(generator, torch.randn_like(x0), k, cond, torch.randn_like(x0))
            t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), device=device)
            loss_c = denoising_loss(critic, {**batch, "target_latent": fake}, t, torch.randn_like(x0))
            if head is not None:  # the classifier sees ground truth and samples at the same noise levels
                t_gan = torch.randint(config.min_t, config.max_t + 1, (b,), device=device)
                loss_cls = gan_critic_loss(gan_logits(critic, head, x0, cond, t_gan, torch.randn_like(x0)),
                                           gan_logits(critic, head, fake, cond, t_gan, torch.randn_like(x0)))
                loss_c = loss_c + config.gan_critic_weight * loss_cls
            c_opt.zero_grad(set_to_none=True)
            loss_c.backward()
            torch.nn.utils.clip_grad_norm_(critic_params, config.grad_clip)
            c_opt.step()
            critic_losses.append(loss_c.item())
        # generator: distribution matching (+ regression on teacher pairs)
        x = simulate(generator, torch.randn_like(x0), k, cond, torch.randn_like(x0))
        t = torch.randint(config.min_t, config.max_t + 1, (b,), device=device)
        loss_dmd = dmd_loss(x, teacher, critic, cond, t, torch.randn_like(x0), config.guidance_scale)
        loss_data = data_regression_loss(x, x0, cond.anchor_mask, config.hole_weight)
        loss_g = loss_dmd + config.data_regression_weight * loss_data
        loss_gan = torch.zeros(())
        if head is not None:  # through the critic, whose own weights this update leaves alone
            critic.requires_grad_(False)
            head.requires_grad_(False)
            t_gan = torch.randint(config.min_t, config.max_t + 1, (b,), device=device)
            loss_gan = gan_generator_loss(gan_logits(critic, head, x, cond, t_gan, torch.randn_like(x0)))
            loss_g = loss_g + config.gan_weight * loss_gan
            critic.requires_grad_(True)
            head.requires_grad_(True)
        loss_reg = torch.zeros(())
        if pool_batches is not None:
            pb = to_device(next(pool_batches), device)
            x_reg = generator_output(generator, pb["pool_noise"], DISTILLED_T, batch_condition(pb))
            loss_reg = (x_reg - pb["pool_sample"]).square().mean()
            loss_g = loss_g + config.regression_weight * loss_reg
        g_opt.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), config.grad_clip)
        g_opt.step()
        seen += b
        window.append((loss_dmd.item(), loss_reg.item(), float(np.mean(critic_losses)), loss_data.item(),
                       loss_gan.item()))
        bar.set_postfix(dmd=f"{loss_dmd.item():.4f}", reg=f"{loss_reg.item():.4f}", critic=f"{critic_losses[-1]:.4f}",
                        samples_s=f"{seen / (time.perf_counter() - t0):.1f}")
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            d, r, c, x0_err, gan = np.mean(window, axis=0)
            with open(out / LOG_FILE, "a") as fh:
                fh.write(json.dumps({"step": done, "dmd": float(d), "regression": float(r), "critic": float(c),
                                     "x0_mse": float(x0_err), "gan_generator": float(gan),
                                     "samples_per_s": seen / (time.perf_counter() - t0)}) + "\n")
            window = []
        if done % config.save_every == 0 or done == config.steps:
            save_state(out, done, modules, {"generator": g_opt, "critic": c_opt}, {"config": asdict(config)})
            for s in config.generator_steps:
                save_model(generator, out / f"generator_{s}step.safetensors")
    generator.eval()
    if val_batch is not None and decoder is not None:
        vb = to_device(val_batch, device)
        cond = batch_condition(vb)
        g = torch.Generator().manual_seed(config.seed)
        noise = torch.randn((vb["target_latent"].shape[0], 2, *vb["target_latent"].shape[1:]), generator=g).to(device)
        rows = [to_uint8(decoder(vb["anchor_latent"].cpu()))]
        for s in (1, 2):
            rows.append(to_uint8(decoder(generate(generator, cond, steps=s, noise=noise[:, :s]).cpu())))
        rows.append(to_uint8(decoder(vb["target_latent"].cpu())))
        save_strip([[r[i] for r in rows] for i in range(len(rows[0]))], out / "val" / "distilled.png")
    return generator
