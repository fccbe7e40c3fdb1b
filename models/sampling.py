"""Noise schedule and samplers: the published distilled 1/2-step samplers and a teacher sampler.

Schedule: the 1000-step DDPM "linear" schedule of IDDPM/PixArt (betas evenly spaced from
1e-4 to 0.02, ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``, t = 0..999).

Distilled samplers, exactly as the published WorldFM inference runs them (the model's first
C output channels are ``out``, ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``):

* 1 step: ``x0 = a_999 * z - s_999 * out(z, 999)`` with ``z`` standard normal. (For a
  v-predicting network this is exactly its x0; DMD trains the generator under this formula.)
* 2 steps: the same at t=999, then re-noise ``z' = a_200 * x0 + s_200 * n`` with fresh
  noise ``n`` and apply the formula again at t=200.

Teacher sampler for undistilled (noise-predicting) models: DPM-Solver++(2M) on a
time-uniform grid, optionally with classifier-free guidance against ``null_condition``.

``generate`` is the one entry point; ``FewStepGenerator`` is the distilled sampler as an
``nn.Module`` (noise, anchor, mask, reference, cameras -> latent) for ONNX export.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

NUM_TRAIN_TIMESTEPS = 1000
DISTILLED_T = 999  # the single timestep of the 1-step sampler and the first of the 2-step one
DISTILLED_MID_T = 200  # where the 2-step sampler re-noises to
BETA_START, BETA_END = 1e-4, 0.02


def linear_alphas_cumprod(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """``alpha_bar`` (T,) float64 of the IDDPM linear schedule (betas scaled by 1000/T)."""
    scale = 1000.0 / num_timesteps
    betas = torch.linspace(scale * BETA_START, scale * BETA_END, num_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


ALPHAS_CUMPROD = linear_alphas_cumprod()


def schedule_roots(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`` of every timestep, (2, T) float64, each
    correctly rounded.

    Why not ``tensor.sqrt()``: on the CPU torch takes a float tensor's square root through MKL's
    vector math library, whose results are not correctly rounded and differ between CPUs (this
    project's AMD EPYC VM against an Intel Haswell emulated by ``qemu-x86_64 -cpu Haswell``,
    2026-12-04, with retrain.sh's kernel pins). The noise every training step mixes in then
    differs, and with it the trained weights: the card's lineage would not reproduce on another
    machine (issue 16). Python's ``math.sqrt`` is IEEE's square root, the same everywhere."""
    values = alphas_cumprod.tolist()
    return torch.tensor([[math.sqrt(a) for a in values], [math.sqrt(1.0 - a) for a in values]], dtype=torch.float64)


SCHEDULE_ROOTS = schedule_roots(ALPHAS_CUMPROD)


def signal_noise(t: int) -> tuple[float, float]:
    """``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`` at integer timestep ``t``, as Python floats
    (:data:`SCHEDULE_ROOTS`'; ``abar ** 0.5`` gave the same at every t but 695)."""
    return float(SCHEDULE_ROOTS[0, t]), float(SCHEDULE_ROOTS[1, t])


def signal_noise_at(t: torch.Tensor, like: torch.Tensor,
                    roots: torch.Tensor = SCHEDULE_ROOTS) -> tuple[torch.Tensor, torch.Tensor]:
    """``sqrt(abar_t)`` and ``sqrt(1 - abar_t)`` at timesteps ``t`` (B,) long, each (B, 1, ...)
    to broadcast against ``like`` (B, ...), in its dtype and on its device. ``roots``: the (2, T)
    table, :data:`SCHEDULE_ROOTS` or a module's copy of it (a buffer on its device, which an ONNX
    export bakes into the graph)."""
    picked = roots.to(like.device)[:, t].to(like.dtype).reshape(2, -1, *([1] * (like.dim() - 1)))
    return picked[0], picked[1]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Forward process ``q(z_t | x0)``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``; ``t``: (B,) long."""
    signal, sigma = signal_noise_at(t, x0)
    return signal * x0 + sigma * noise


@dataclass(frozen=True)
class Condition:
    """What one frame is generated from (batch B, per-view latent (C, h, w), image H x W).

    ``anchor_latent``/``ref_latent``: (B, C, h, w); ``anchor_mask``: (B, 1, H, W);
    ``ref_K``/``tgt_K``: (B, 3, 3) pixels; ``ref_c2w``/``tgt_c2w``: (B, 4, 4) metres.
    """

    anchor_latent: torch.Tensor
    anchor_mask: torch.Tensor
    ref_latent: torch.Tensor
    ref_K: torch.Tensor
    ref_c2w: torch.Tensor
    tgt_K: torch.Tensor
    tgt_c2w: torch.Tensor

    def model_args(self) -> tuple[torch.Tensor, ...]:
        """The conditioning arguments of ``WorldFMDiT.forward`` after ``(z_t, t)``."""
        return (self.anchor_latent, self.anchor_mask, self.ref_latent, self.ref_K, self.ref_c2w, self.tgt_K, self.tgt_c2w)


def null_condition(cond: Condition) -> Condition:
    """The unconditional input for classifier-free guidance: no anchor, no reference.

    Latents and mask are zeroed; cameras are kept (they carry no image content). Training
    must drop conditions the same way for guidance to mean anything.
    """
    return replace(
        cond,
        anchor_latent=torch.zeros_like(cond.anchor_latent),
        anchor_mask=torch.zeros_like(cond.anchor_mask),
        ref_latent=torch.zeros_like(cond.ref_latent),
    )


ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t (B,C,h,w), t (B,)) -> (B,C,h,w)


def _prediction(model: nn.Module, cond: Condition) -> ModelFn:
    """The first C output channels (C = latent channels) of ``model`` under ``cond``."""

    def fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(z, t, *cond.model_args())[:, : z.shape[1]]

    return fn


class FewStepGenerator(nn.Module):
    """The published distilled sampler as a module: (noise, condition) -> clean latent.

    ``forward(noise (B, steps, C, h, w), anchor_latent, anchor_mask, ref_latent, ref_K,
    ref_c2w, tgt_K, tgt_c2w) -> latent (B, C, h, w)``: ``noise[:, 0]`` is the initial noise,
    ``noise[:, 1]`` the re-noising of the 2-step sampler. Timesteps and schedule values are
    constants, so the module traces to a fixed graph for export.
    """

    def __init__(self, model: nn.Module, steps: int, mid_t: int = DISTILLED_MID_T):
        super().__init__()
        if steps not in (1, 2):
            raise ValueError(f"the distilled samplers take 1 or 2 steps; got {steps}")
        if not 0 <= mid_t < DISTILLED_T:
            raise ValueError(f"mid_t must be in [0, {DISTILLED_T}); got {mid_t}")
        self.model = model
        self.timesteps = [DISTILLED_T, mid_t][:steps]

    def forward(
        self,
        noise: torch.Tensor,
        anchor_latent: torch.Tensor,
        anchor_mask: torch.Tensor,
        ref_latent: torch.Tensor,
        ref_K: torch.Tensor,
        ref_c2w: torch.Tensor,
        tgt_K: torch.Tensor,
        tgt_c2w: torch.Tensor,
    ) -> torch.Tensor:
        cond = (anchor_latent, anchor_mask, ref_latent, ref_K, ref_c2w, tgt_K, tgt_c2w)
        if noise.shape[1] != len(self.timesteps):
            raise ValueError(f"noise must hold {len(self.timesteps)} draws (B, steps, C, h, w); got {tuple(noise.shape)}")
        z = noise[:, 0]
        for i, t in enumerate(self.timesteps):
            a, s = signal_noise(t)
            if i > 0:  # re-noise the previous estimate to this step's level
                z = a * x0 + s * noise[:, i]
            t_batch = torch.full((z.shape[0],), float(t), dtype=torch.float32, device=z.device)
            out = self.model(z, t_batch, *cond)[:, : z.shape[1]]
            x0 = a * z - s * out
        return x0


def teacher_timesteps(steps: int) -> list[int]:
    """``steps`` integer timesteps from 999 down, evenly spaced in time (the last above 0)."""
    if steps < 1:
        raise ValueError(f"the teacher sampler needs at least 1 step; got {steps}")
    last = NUM_TRAIN_TIMESTEPS - 1
    return [round(last - i * last / steps) for i in range(steps)]


def dpm_solver_pp(model_fn: ModelFn, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """DPM-Solver++(2M) for a noise-predicting ``model_fn``; returns the clean latent.

    Works on the data prediction ``x0 = (z - s eps) / a`` in log-SNR ``lambda = log(a/s)``:
    first order (DDIM) for the first step, second-order multistep after, and the final
    step to t = 0 (s = 0) returns the last x0 estimate.
    """
    ts = teacher_timesteps(steps)
    z = noise
    prev_x0, prev_h = None, None
    for i, t in enumerate(ts):
        a_s, s_s = signal_noise(t)
        eps = model_fn(z, torch.full((z.shape[0],), float(t), device=z.device))
        x0 = (z - s_s * eps) / a_s
        if i == len(ts) - 1:
            break
        a_t, s_t = signal_noise(ts[i + 1])
        h = math.log(a_t / s_t) - math.log(a_s / s_s)  # step in log-SNR
        d = x0 if prev_x0 is None else x0 + (x0 - prev_x0) * (h / (2.0 * prev_h))
        z = (s_t / s_s) * z - a_t * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x0


def guided(model_fn: ModelFn, uncond_fn: ModelFn, scale: float) -> ModelFn:
    """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` (scale 1 = conditional)."""

    def fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = model_fn(z, t), uncond_fn(z, t)
        return uncond + scale * (cond - uncond)

    return fn


@torch.no_grad()
def generate(
    model: nn.Module,
    cond: Condition,
    *,
    sampler: str = "distilled",
    steps: int = 1,
    guidance_scale: float = 1.0,
    mid_t: int = DISTILLED_MID_T,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate target latents (B, C, h, w) for ``cond``.

    ``sampler="distilled"``: the published 1- or 2-step sampler (``steps`` in {1, 2});
    ``noise`` (B, steps, C, h, w). ``sampler="teacher"``: DPM-Solver++(2M) with ``steps``
    model evaluations (x2 with guidance, ``guidance_scale != 1``); ``noise`` (B, C, h, w).
    Noise is drawn from ``generator`` when not given.
    """
    b, c, h, w = cond.anchor_latent.shape
    device, dtype = cond.anchor_latent.device, cond.anchor_latent.dtype
    if sampler == "distilled":
        if noise is None:
            noise = torch.randn((b, steps, c, h, w), generator=generator, device=device, dtype=dtype)
        return FewStepGenerator(model, steps, mid_t)(noise, *cond.model_args())
    if sampler == "teacher":
        if noise is None:
            noise = torch.randn((b, c, h, w), generator=generator, device=device, dtype=dtype)
        fn = _prediction(model, cond)
        if guidance_scale != 1.0:
            fn = guided(fn, _prediction(model, null_condition(cond)), guidance_scale)
        return dpm_solver_pp(fn, noise, steps)
    raise ValueError(f"unknown sampler {sampler!r}; use 'distilled' or 'teacher'")
