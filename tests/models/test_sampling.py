"""Sampler arithmetic against hand-computed values, and generate() on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dit_fixtures import model_inputs

from models.dit import build_model, get_config
from models.sampling import (
    ALPHAS_CUMPROD,
    SCHEDULE_ROOTS,
    Condition,
    FewStepGenerator,
    add_noise,
    dpm_solver_pp,
    generate,
    guided,
    null_condition,
    signal_noise,
    teacher_timesteps,
)


def test_linear_schedule_matches_hand_computation():
    beta0 = 1e-4
    beta1 = 1e-4 + (0.02 - 1e-4) / 999
    assert ALPHAS_CUMPROD[0].item() == pytest.approx(1 - beta0, rel=1e-12)
    assert ALPHAS_CUMPROD[1].item() == pytest.approx((1 - beta0) * (1 - beta1), rel=1e-12)
    betas = np.linspace(1e-4, 0.02, 1000)
    assert ALPHAS_CUMPROD[999].item() == pytest.approx(float(np.prod(1 - betas)), rel=1e-9)
    assert ALPHAS_CUMPROD[200].item() == pytest.approx(float(np.prod(1 - betas[:201])), rel=1e-9)


class Recorder(torch.nn.Module):
    """A stand-in model: out = 0.5 * z + t / 1000 (plus junk sigma channels); records t."""

    def __init__(self):
        super().__init__()
        self.seen: list[float] = []

    def forward(self, z, t, *cond):
        self.seen.append(float(t[0]))
        out = 0.5 * z + t.reshape(-1, 1, 1, 1) / 1000
        return torch.cat([out, torch.full_like(z, 123.0)], dim=1)


def test_one_step_sampler_is_published_formula():
    z = torch.randn(1, 1, 4, 2, 2)
    model = Recorder()
    cond = tuple(torch.zeros(1) for _ in range(7))
    x0 = FewStepGenerator(model, steps=1)(z, *cond)
    abar = float(np.prod(1 - np.linspace(1e-4, 0.02, 1000)))
    a, s = math.sqrt(abar), math.sqrt(1 - abar)
    expect = a * z[:, 0] - s * (0.5 * z[:, 0] + 0.999)
    torch.testing.assert_close(x0, expect)
    assert model.seen == [999.0]


def test_two_step_sampler_renoises_to_200_with_the_second_noise():
    noise = torch.randn(1, 2, 4, 2, 2)
    model = Recorder()
    cond = tuple(torch.zeros(1) for _ in range(7))
    out = FewStepGenerator(model, steps=2)(noise, *cond)
    a1, s1 = signal_noise(999)
    x0 = a1 * noise[:, 0] - s1 * (0.5 * noise[:, 0] + 0.999)
    abar200 = float(np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:201]))
    a2, s2 = math.sqrt(abar200), math.sqrt(1 - abar200)
    z2 = a2 * x0 + s2 * noise[:, 1]
    torch.testing.assert_close(out, a2 * z2 - s2 * (0.5 * z2 + 0.2))
    assert model.seen == [999.0, 200.0]


def test_few_step_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1 or 2 steps"):
        FewStepGenerator(Recorder(), steps=3)
    with pytest.raises(ValueError, match="noise must hold 2"):
        FewStepGenerator(Recorder(), steps=2)(torch.randn(1, 1, 4, 2, 2), *(torch.zeros(1) for _ in range(7)))


def test_add_noise_matches_forward_process():
    x0, n = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, 500])
    z = add_noise(x0, n, t)
    a, s = signal_noise(500)
    torch.testing.assert_close(z[1], a * x0[1] + s * n[1])


def test_schedule_roots_are_correctly_rounded_and_add_noise_uses_them():
    """The roots the trainers mix noise with are IEEE square roots of the float64 schedule (the same
    on every CPU, unlike torch's float sqrt on the CPU), and add_noise multiplies by exactly them."""
    abar = ALPHAS_CUMPROD.tolist()
    assert SCHEDULE_ROOTS.dtype == torch.float64 and SCHEDULE_ROOTS.shape == (2, len(abar))
    assert SCHEDULE_ROOTS[0].tolist() == [math.sqrt(a) for a in abar]
    assert SCHEDULE_ROOTS[1].tolist() == [math.sqrt(1.0 - a) for a in abar]
    x0, n = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 200, 999])
    z = add_noise(x0, n, t)
    for i, step in enumerate(t.tolist()):
        a, s = (torch.tensor(math.sqrt(v), dtype=torch.float32) for v in (abar[step], 1.0 - abar[step]))
        assert torch.equal(z[i], a * x0[i] + s * n[i])


def test_teacher_timesteps_are_time_uniform():
    assert teacher_timesteps(1) == [999]
    assert teacher_timesteps(4) == [999, 749, 500, 250]


def test_dpm_solver_recovers_a_point_mass_exactly():
    """With the exact noise predictor of a single data point every x0 estimate is that point."""
    target = torch.randn(1, 4, 3, 3)

    def eps_fn(z, t):
        a, s = signal_noise(int(t[0]))
        return (z - a * target) / s

    out = dpm_solver_pp(eps_fn, torch.randn(1, 4, 3, 3), steps=5)
    torch.testing.assert_close(out, target, rtol=1e-4, atol=1e-4)


def test_dpm_solver_follows_the_gaussian_probability_flow():
    """For data N(0, sd^2) the ODE maps z_T linearly to sd * z_T / sqrt(a_T^2 sd^2 + s_T^2)."""
    sd = 0.5

    def eps_fn(z, t):
        a, s = signal_noise(int(t[0]))
        return s * z / (a * a * sd * sd + s * s)

    noise = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    a, s = signal_noise(999)
    expect = sd * noise / math.sqrt(a * a * sd * sd + s * s)
    torch.testing.assert_close(dpm_solver_pp(eps_fn, noise, steps=25), expect, rtol=2e-2, atol=2e-2)
    coarse = (dpm_solver_pp(eps_fn, noise, steps=5) - expect).abs().mean()
    fine = (dpm_solver_pp(eps_fn, noise, steps=25) - expect).abs().mean()
    assert fine < coarse  # converges with more steps


def test_guidance_combination():
    fn = guided(lambda z, t: 3 * z, lambda z, t: z, scale=4.5)
    z = torch.ones(1, 1, 1, 1)
    assert fn(z, torch.zeros(1)).item() == pytest.approx(1 + 4.5 * 2)


def test_generate_on_tiny_model_all_samplers():
    config = get_config("tiny")
    model = build_model(config).eval()
    args = model_inputs(config)
    cond = Condition(*(args[k] for k in ("anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w")))
    gen = torch.Generator().manual_seed(0)
    for kwargs in (dict(steps=1), dict(steps=2), dict(sampler="teacher", steps=3, guidance_scale=4.5)):
        out = generate(model, cond, generator=gen, **kwargs)
        assert out.shape == args["z_t"].shape and torch.isfinite(out).all()
    uncond = null_condition(cond)
    assert uncond.ref_latent.abs().sum() == 0 and torch.equal(uncond.tgt_c2w, cond.tgt_c2w)
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(model, cond, sampler="euler")


def test_few_step_generator_exports_to_onnx_and_runs_in_onnxruntime(tmp_path):
    """The export contract's generator graph: traced once, same numbers in ONNX Runtime,
    including a batch size other than the traced one."""
    import warnings

    import onnxruntime as ort

    config = get_config("tiny")
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        model.final_layer.linear.weight.normal_(std=0.1)
        model.plucker_proj[2].weight.normal_(std=0.1)
    generator = FewStepGenerator(model, steps=2).eval()
    names = ["noise", "anchor_latent", "anchor_mask", "ref_latent", "ref_K", "ref_c2w", "tgt_K", "tgt_c2w"]

    def example(batch):
        a = model_inputs(config, batch=batch, seed=batch)
        noise = torch.randn(batch, 2, *a["z_t"].shape[1:])
        return (noise, *(a[n] for n in names[1:]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(generator, example(2), str(tmp_path / "g.onnx"), input_names=names, output_names=["latent"],
                          opset_version=17, dynamo=False, dynamic_axes={n: {0: "batch"} for n in names + ["latent"]})
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        args = example(batch)
        out = session.run(None, {n: a.contiguous().numpy() for n, a in zip(names, args)})[0]
        with torch.no_grad():
            expect = generator(*args)
        torch.testing.assert_close(torch.from_numpy(out), expect, rtol=1e-4, atol=1e-4)
