"""Stage-3 distillation: the DMD gradient, backward simulation, and a short tiny run."""

from __future__ import annotations

import math

import pytest
import torch

from models.checkpoints import load_model
from models.dit import build_model
from models.distill import dmd_loss, generator_output, simulate, x0_from_eps
from models.sampling import FewStepGenerator, add_noise
from models.train import batch_condition, read_log


def _model(seed: int):
    torch.manual_seed(seed)
    model = build_model("tiny")
    for p in model.final_layer.parameters():  # zero-initialised; give it an output
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def test_dmd_gradient_vanishes_when_critic_equals_teacher_and_points_from_fake_to_real(val_batch):
    cond = batch_condition(val_batch)
    x = torch.randn_like(val_batch["target_latent"], requires_grad=True)
    t = torch.full((x.shape[0],), 500)
    noise = torch.randn_like(x)
    teacher, critic = _model(0), _model(1)
    assert float(dmd_loss(x, teacher, teacher, cond, t, noise, 1.0)) == 0.0
    loss = dmd_loss(x, teacher, critic, cond, t, noise, 1.0)
    loss.backward()
    with torch.no_grad():
        z_t = add_noise(x, noise, t)
        real = x0_from_eps(z_t, teacher(z_t, t.float(), *cond.model_args())[:, :4], t)
        fake = x0_from_eps(z_t, critic(z_t, t.float(), *cond.model_args())[:, :4], t)
        norm = (x - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(x.grad, (fake - real) / norm / x.numel(), rtol=1e-4, atol=1e-9)


def test_x0_from_eps_inverts_the_forward_process():
    x0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 400, 990])
    torch.testing.assert_close(x0_from_eps(add_noise(x0, eps, t), eps, t), x0, rtol=1e-3, atol=1e-3)


def test_backward_simulation_reproduces_the_published_two_step_sampler(val_batch):
    model = _model(2)
    cond = batch_condition(val_batch)
    noise = torch.randn(val_batch["target_latent"].shape[0], 2, 4, 8, 8)
    with torch.no_grad():
        want = FewStepGenerator(model, 2)(noise, *cond.model_args())
        one = FewStepGenerator(model, 1)(noise[:, :1], *cond.model_args())
    got = simulate(model, noise[:, 0], 1, cond, noise[:, 1])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(generator_output(model, noise[:, 0], 999, cond), one)
    got.sum().backward()  # the gradient flows through the last step only, and it does flow
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_distillation_run_moves_the_generator_toward_the_teacher(distill_run, teacher_run):
    records = read_log(distill_run)
    reg = [r["regression"] for r in records]
    assert len(records) == 3 and reg[-1] < reg[0], records
    g1 = load_model(distill_run / "generator_1step.safetensors")
    g2 = load_model(distill_run / "generator_2step.safetensors")
    teacher = load_model(teacher_run / "teacher.safetensors")
    same = all(torch.equal(a, b) for a, b in zip(g1.state_dict().values(), g2.state_dict().values()))
    moved = any(not torch.equal(a, b) for a, b in zip(g1.state_dict().values(), teacher.state_dict().values()))
    assert same and moved
    assert (distill_run / "val" / "distilled.png").is_file()


def test_data_regression_pulls_the_generator_to_the_ground_truth(teacher_run, pair_dataset, tmp_path):
    from models.distill import DistillConfig, distill

    config = DistillConfig(steps=20, batch_size=8, generator_lr=1e-3, critic_lr=1e-3, critic_updates=1,
                           regression_weight=0.0, data_regression_weight=1.0, save_every=20, log_every=10)
    distill(load_model(teacher_run / "teacher.safetensors"), pair_dataset, tmp_path, config, progress=False)
    records = read_log(tmp_path)
    assert records[-1]["x0_mse"] < records[0]["x0_mse"], records


def test_data_regression_loss_weights_the_holes():
    from models.distill import data_regression_loss

    x0 = torch.zeros(1, 2, 2, 2)
    x = torch.zeros(1, 2, 2, 2)
    x[..., 0, 0] = 1.0  # the error sits in the top-left latent cell
    covered = torch.ones(1, 1, 8, 8)
    hole_top_left = covered.clone()
    hole_top_left[..., :4, :4] = 0.0  # that cell is all hole
    plain = (x - x0).square().mean()
    assert torch.isclose(data_regression_loss(x, x0, hole_top_left, 0.0), plain)
    assert torch.isclose(data_regression_loss(x, x0, covered, 3.0), plain)  # no holes: uniform
    # weights 4, 1, 1, 1 normalised to mean 1: the hole cell's error counts 4 / 1.75
    assert torch.isclose(data_regression_loss(x, x0, hole_top_left, 3.0), plain * 4 / 1.75)


@pytest.mark.parametrize("ref_isolated", [False, True])
def test_fresh_generator_starts_at_the_teachers_x0(val_batch, ref_isolated):
    from dataclasses import replace

    from models.distill import generator_from_teacher
    from models.sampling import generate

    torch.manual_seed(4)
    teacher = build_model(replace(build_model("tiny").config, ref_isolated=ref_isolated))
    for p in teacher.final_layer.parameters():
        torch.nn.init.normal_(p, std=0.05)
    teacher.eval()
    cond = batch_condition(val_batch)
    z = torch.randn_like(val_batch["target_latent"])
    t = torch.full((z.shape[0],), 999)
    with torch.no_grad():
        want = x0_from_eps(z, teacher(z, t.float(), *cond.model_args())[:, :4], t)  # (z - s eps) / a
        got = generate(generator_from_teacher(teacher), cond, steps=1, noise=z[:, None])  # the exported sampler
        plain = generate(generator_from_teacher(teacher, from_x0=False), cond, steps=1, noise=z[:, None])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # The teacher copied as is starts at a z - s eps instead: not its x0 estimate.
    assert (plain - want).abs().mean() > 10 * (got - want).abs().mean() + 0.1


def test_gan_losses_reward_separating_real_from_fake():
    from models.distill import gan_critic_loss, gan_generator_loss

    zero, sure = torch.zeros(2, 3), torch.full((2, 3), 6.0)
    assert torch.isclose(gan_critic_loss(zero, zero), torch.tensor(2 * math.log(2)))
    assert gan_critic_loss(sure, -sure) < 0.01 < gan_critic_loss(-sure, sure)  # right vs wrong classifier
    assert gan_generator_loss(sure) < 0.01 < gan_generator_loss(-sure)  # fooled vs not


def test_gan_term_trains_a_head_on_the_critic_and_resumes(teacher_run, pair_dataset, tmp_path):
    from dataclasses import replace

    from safetensors import safe_open

    from models.distill import DistillConfig, distill

    config = DistillConfig(steps=4, batch_size=4, critic_updates=1, regression_weight=0.0, gan_weight=0.1,
                           gan_critic_weight=0.1, save_every=2, log_every=2, generator_steps=(1,))
    teacher = load_model(teacher_run / "teacher.safetensors")
    distill(teacher, pair_dataset, tmp_path, replace(config, steps=2), progress=False)
    distill(teacher, pair_dataset, tmp_path, config, progress=False)  # resumes at step 2
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == [2, 4]
    assert all(math.isfinite(r["gan_generator"]) and r["gan_generator"] > 0 for r in records)
    with safe_open(str(tmp_path / "state.safetensors"), framework="pt") as f:
        assert any(k.startswith("gan_head") for k in f.keys())
