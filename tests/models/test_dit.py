"""The frame model: shapes for every config and mode, camera invariance, reference isolation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from dit_fixtures import model_inputs as inputs
from dit_fixtures import random_rigid

from models.dit import (
    CONFIGS,
    NUM_VIEWS,
    DiTConfig,
    build_model,
    flops_per_step,
    get_config,
    plucker_rays,
    sincos_pos_embed,
    token_grid,
)


def randomised(config: DiTConfig, seed: int = 0) -> torch.nn.Module:
    """A model whose zero-initialised layers (final layer, Plücker output) are made random,
    so that every input can reach the output."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return model


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_every_small_config_runs_and_returns_target_shape(name):
    config = get_config(name)
    out = build_model(config).eval()(**inputs(config))
    assert out.shape == (2, config.out_channels, config.latent_size, config.latent_size)
    assert torch.isfinite(out).all()


def test_every_path_keeps_tensors_on_the_model_device():
    """The meta device stands in for an accelerator: any tensor created on the CPU fails."""
    config = get_config("tiny", ref_isolated=True)
    model = build_model(config, device="meta")
    args = {k: v.to("meta") for k, v in inputs(get_config("tiny", latent_size=12)).items()}
    assert model(**args).shape == (2, config.out_channels, 12, 12)


def test_xl_full_depth_shapes_on_meta_device():
    config = get_config("xl")
    model = build_model(config, device="meta")
    args = {k: v.to("meta") for k, v in inputs(get_config("xl", latent_size=64), batch=1).items()}
    out = model(**args)
    assert out.shape == (1, 8, 64, 64)
    assert sum(p.numel() for p in model.parameters()) > 600e6  # PixArt-Sigma XL/2 is ~611 M



# Half precision keeps ~3 significant digits per product, bfloat16 ~2; through a few blocks
# the output stays within these fractions of its largest value (measured: fp16 ~1e-3, bf16 ~1e-2).
HALF_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["half", "bfloat16"])
@pytest.mark.parametrize("name", ["demo", "tiny", "xl"])
def test_half_precision_models_take_float32_inputs_and_match_float32(name, dtype):
    """``model.half()`` / ``.to(torch.bfloat16)`` run on the float32 inputs the samplers and
    the server pass (the model casts them, as the published release does) and agree with the
    float32 model; the sampler's latent comes back in float32."""
    from models.sampling import FewStepGenerator

    config = get_config(name) if name != "xl" else get_config("xl", depth=2, hidden_size=144, num_heads=2, latent_size=8)
    model = randomised(config)
    args = inputs(config)
    with torch.no_grad():
        want = model(**args)
        z = torch.randn(2, 2, config.latent_channels, config.latent_size, config.latent_size)
        want_x0 = FewStepGenerator(model, 2)(z, *(args[k] for k in list(args)[2:]))
        model.to(dtype)
        got = model(**args)
        got_x0 = FewStepGenerator(model, 2)(z, *(args[k] for k in list(args)[2:]))
    assert got.dtype == dtype and got_x0.dtype == torch.float32
    assert 0 < (got.float() - want).abs().max() <= HALF_TOLERANCE[dtype] * want.abs().max()
    assert (got_x0 - want_x0).abs().max() <= HALF_TOLERANCE[dtype] * want_x0.abs().max()

@pytest.mark.parametrize(
    "overrides",
    [
        dict(prope=False, plucker=False, anchor_mask_channel=False),
        dict(prope=True, plucker=False),
        dict(prope=False, plucker=True),
        dict(ref_isolated=True),
        dict(learn_sigma=False, patch_size=1),
        dict(checkpoint_compat=True, prope=False, plucker=False, anchor_mask_channel=False),
    ],
)
def test_tiny_modes_run(overrides):
    config = get_config("tiny", **overrides)
    out = randomised(config)(**inputs(config))
    assert out.shape == (2, config.out_channels, config.latent_size, config.latent_size)


def test_other_latent_sizes_recompute_position_embeddings():
    config = get_config("tiny")
    model = build_model(config).eval()
    args = inputs(get_config("tiny", latent_size=12))
    assert model(**args).shape == (2, config.out_channels, 12, 12)


def test_position_embedding_matches_pixart_formula_at_a_point():
    """Column in the first half, row in the second, each [sin, cos]; width stretched to base."""
    dim, base = 8, 4
    emb = sincos_pos_embed(dim, 2, 12, base, 1.0)  # 2 rows x 12 columns
    row, col = 1, 5
    x, y = col * base / 12, row * base / 2
    omega = torch.tensor([1.0, 1.0 / 100.0], dtype=torch.float64)  # 10000^(-k/2), k = 0, 1
    expect = torch.cat([torch.sin(x * omega), torch.cos(x * omega), torch.sin(y * omega), torch.cos(y * omega)])
    torch.testing.assert_close(emb[row * 12 + col].double(), expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("overrides", [dict(prope=True, plucker=False), dict(prope=False, plucker=True)])
def test_output_is_invariant_to_a_global_rigid_transform_but_not_to_moving_a_camera(overrides):
    config = get_config("tiny", **overrides)
    model = randomised(config)
    args = inputs(config)
    with torch.no_grad():
        base = model(**args)
        G = random_rigid(torch.Generator().manual_seed(5), 1, scale=4.0)[0].float()
        moved = dict(args, ref_c2w=G @ args["ref_c2w"], tgt_c2w=G @ args["tgt_c2w"])
        torch.testing.assert_close(model(**moved), base, rtol=1e-4, atol=1e-4)
        shifted = args["tgt_c2w"].clone()
        shifted[:, :3, 3] += torch.tensor([0.3, -0.2, 0.1])
        assert (model(**dict(args, tgt_c2w=shifted)) - base).abs().max() > 1e-3


def test_plucker_rays_match_a_direct_computation():
    """Ray through pixel (u, v): d = R K^-1 [u, v, 1] normalised, moment = camera centre x d."""
    gen = torch.Generator().manual_seed(3)
    c2w = random_rigid(gen, 2, scale=1.0).float()[None]  # (1, 2, 4, 4)
    K = torch.tensor([[[40.0, 2.0, 30.0], [0.0, 50.0, 20.0], [0.0, 0.0, 1.0]]]).repeat(2, 1, 1)[None]  # with skew
    token_view, token_xy = token_grid(2, 3, views=2)
    rays = plucker_rays(K, c2w, (40, 60), token_view, token_xy, (2, 3))
    i = 10  # view 1, row 1, column 1
    assert token_view[i] == 1 and token_xy[i].tolist() == [1, 1]
    u, v = 1.5 * 60 / 3, 1.5 * 40 / 2
    d = c2w[0, 1, :3, :3] @ torch.linalg.solve(K[0, 1], torch.tensor([u, v, 1.0]))
    d = d / d.norm()
    torch.testing.assert_close(rays[0, i], torch.cat([torch.linalg.cross(c2w[0, 1, :3, 3], d), d]))


def test_cameras_are_ignored_without_camera_conditioning():
    config = get_config("tiny", prope=False, plucker=False)
    model = randomised(config)
    args = inputs(config)
    with torch.no_grad():
        shifted = args["tgt_c2w"].clone()
        shifted[:, :3, 3] += 1.0
        torch.testing.assert_close(model(**dict(args, tgt_c2w=shifted)), model(**args))


def test_anchor_mask_reaches_the_output_only_with_the_mask_channel():
    for with_channel in (True, False):
        config = get_config("tiny", anchor_mask_channel=with_channel)
        model = randomised(config)
        args = inputs(config)
        with torch.no_grad():
            delta = (model(**dict(args, anchor_mask=1 - args["anchor_mask"])) - model(**args)).abs().max()
        assert (delta > 1e-4) == with_channel


@pytest.mark.parametrize("isolated", [False, True])
def test_an_ablated_input_never_reaches_the_output_and_the_rest_still_does(isolated, tmp_path):
    from models.checkpoints import load_model, save_model

    full = randomised(get_config("tiny", ref_isolated=isolated))
    args = inputs(full.config)
    changed = {"anchor": dict(anchor_latent=-args["anchor_latent"], anchor_mask=1 - args["anchor_mask"]),
               "reference": dict(ref_latent=-args["ref_latent"])}
    for name in ("anchor", "reference"):
        model = build_model(replace(full.config, ablate=(name,))).eval()
        model.load_state_dict(full.state_dict())  # same weights: only the config differs
        save_model(model, tmp_path / f"{name}.safetensors")
        model = load_model(tmp_path / f"{name}.safetensors")  # the ablation survives a checkpoint
        assert model.config.ablate == (name,)
        other = "reference" if name == "anchor" else "anchor"
        with torch.no_grad():
            base = model(**args)
            torch.testing.assert_close(model(**dict(args, **changed[name])), base)  # ignored
            assert (model(**dict(args, **changed[other])) - base).abs().max() > 1e-4  # still used
            assert (full(**dict(args, **changed[name])) - full(**args)).abs().max() > 1e-4  # used unablated
            if isolated:  # the cached-reference path the export uses ignores it too
                keys, values = model.reference_kv(args["ref_latent"], args["ref_K"], args["t"])
                cached = model.forward_with_reference_kv(
                    args["z_t"], args["t"], args["anchor_latent"], args["anchor_mask"], keys, values,
                    args["ref_K"], args["ref_c2w"], args["tgt_K"], args["tgt_c2w"],
                )
                torch.testing.assert_close(cached, base, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="only"):
        get_config("tiny", ablate=("camera",))


def test_isolated_reference_equals_joint_attention_with_a_mask(monkeypatch):
    """Slow reference: the joint model (same weights) with an attention mask that stops
    reference queries from seeing target and anchor keys."""
    config = get_config("tiny", ref_isolated=True)
    model = randomised(config)
    joint = build_model(replace(config, ref_isolated=False)).eval()
    joint.load_state_dict(model.state_dict())
    args = inputs(config)
    n = (config.latent_size // config.patch_size) ** 2
    plain = F.scaled_dot_product_attention

    def masked(q, k, v, **kwargs):
        view = torch.arange(NUM_VIEWS * n) // n  # view-major tokens
        mask = ~((view[:, None] == 2) & (view[None, :] != 2))
        return plain(q, k, v, attn_mask=mask)

    with torch.no_grad():
        isolated = model(**args)
        monkeypatch.setattr(F, "scaled_dot_product_attention", masked)
        expect = joint(**args)
        monkeypatch.setattr(F, "scaled_dot_product_attention", plain)
        unmasked = joint(**args)
    torch.testing.assert_close(isolated, expect, rtol=1e-4, atol=1e-5)
    assert (unmasked - expect).abs().max() > 1e-4  # the mask matters


@pytest.mark.parametrize("overrides", [dict(), dict(prope=False, plucker=False, anchor_mask_channel=False)])
def test_cached_reference_keys_values_give_the_full_forward(overrides):
    config = get_config("tiny", ref_isolated=True, **overrides)
    model = randomised(config)
    args = inputs(config)
    with torch.no_grad():
        keys, values = model.reference_kv(args["ref_latent"], args["ref_K"], args["t"])
        assert keys.shape == (config.depth, 2, config.num_heads, (config.latent_size // config.patch_size) ** 2, config.head_dim)
        cached = model.forward_with_reference_kv(
            args["z_t"], args["t"], args["anchor_latent"], args["anchor_mask"], keys, values,
            args["ref_K"], args["ref_c2w"], args["tgt_K"], args["tgt_c2w"],
        )
        torch.testing.assert_close(cached, model(**args), rtol=1e-4, atol=1e-5)


def test_reference_cache_needs_an_isolated_reference():
    config = get_config("tiny")
    args = inputs(config)
    with pytest.raises(ValueError, match="ref_isolated=True"):
        build_model(config).reference_kv(args["ref_latent"], args["ref_K"], args["t"])


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="head_dim"):
        DiTConfig(name="bad", hidden_size=36, num_heads=3, prope=True)
    with pytest.raises(KeyError, match="unknown model config"):
        get_config("huge")
    assert set(CONFIGS) == {"tiny", "demo", "xl"}


@pytest.mark.parametrize("isolated", [False, True])
def test_flops_per_step_matches_the_analytic_count(isolated):
    """Blocks: 2 N (qkv + proj + mlp weights) + 4 D x (query-key pairs) for scores and
    values -- N^2 jointly, n^2 + 2n * 3n with an isolated reference; plus the patch
    embedding (all tokens), final layer (target tokens) and timestep MLPs."""
    c = get_config("demo", ref_isolated=isolated)
    n_all, d, p = c.tokens, c.hidden_size, c.patch_size
    n = n_all // NUM_VIEWS
    hidden = int(d * c.mlp_ratio)
    pairs = n * n + 2 * n * n_all if isolated else n_all * n_all
    block = 2 * n_all * (3 * d * d + d * d + 2 * d * hidden) + 4 * pairs * d
    embed = 2 * n_all * c.in_channels * p * p * d
    final = 2 * n * d * p * p * c.out_channels
    timestep = 2 * (256 * d + d * d + d * 6 * d) * (2 if isolated else 1)  # the reference pass embeds t again
    expect = c.depth * block + embed + final + timestep
    assert flops_per_step(c) == pytest.approx(expect, rel=0.01)


def test_cached_reference_flops_count_only_target_and_anchor():
    c = get_config("demo", ref_isolated=True)
    n_all, d, p = c.tokens, c.hidden_size, c.patch_size
    n = n_all // NUM_VIEWS
    hidden = int(d * c.mlp_ratio)
    block = 2 * 2 * n * (3 * d * d + d * d + 2 * d * hidden) + 4 * (2 * n * n_all) * d
    expect = c.depth * block + 2 * 2 * n * c.in_channels * p * p * d + 2 * n * d * p * p * c.out_channels
    expect += 2 * (256 * d + d * d + d * 6 * d)
    assert flops_per_step(c, cached_reference=True) == pytest.approx(expect, rel=0.01)
