"""Checkpoint loading: the published WorldFM key layout, PixArt (original and diffusers), our files."""

from __future__ import annotations

import logging
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from dit_fixtures import model_inputs
from published_format import published_shapes, random_state, save_as_numpy1, trainer_checkpoint, write_published_checkpoint

from models.checkpoints import (
    CheckpointError,
    PublishedWeights,
    load_model,
    load_pixart_weights,
    load_published_checkpoint,
    published_config,
    read_published_weights,
    read_state_dict,
    save_model,
)
from models.dit import build_model, get_config, xl


SMALL = dict(depth=2, d=64, latent=8)


def small_xl(**overrides):
    return replace(xl(), depth=2, hidden_size=64, num_heads=2, latent_size=8, **overrides)


def test_xl_state_dict_matches_published_layout_at_full_depth():
    model = build_model("xl", device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    published = published_shapes()
    published.pop("pos_embed")  # recomputed, not a weight
    assert ours == published


def test_published_checkpoint_loads_strictly_at_reduced_depth(tmp_path):
    state = random_state(published_shapes(**SMALL))
    path = tmp_path / "worldfm_1-step.pth"
    torch.save({"state_dict": state}, path)
    model = load_published_checkpoint(path, small_xl())
    loaded = model.state_dict()
    for key, value in state.items():
        if key != "pos_embed":
            assert torch.equal(loaded[key], value), key


def test_published_checkpoint_without_plucker_loads_when_plucker_unused(tmp_path):
    path = tmp_path / "old.pth"
    torch.save(random_state(published_shapes(**SMALL, plucker=False)), path)
    load_published_checkpoint(path, small_xl())
    with pytest.raises(CheckpointError, match="missing keys.*plucker_proj"):
        load_published_checkpoint(path, small_xl(plucker=True))


def test_mismatched_checkpoints_fail_with_the_offending_keys(tmp_path):
    deeper = tmp_path / "deeper.pth"
    torch.save(random_state(published_shapes(depth=3, d=64, latent=8)), deeper)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(15\): blocks\.2\."):
        load_published_checkpoint(deeper, small_xl())
    wider = tmp_path / "wider.pth"
    torch.save(random_state(published_shapes(depth=2, d=128, latent=8)), wider)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*x_embedder\.proj\.weight: checkpoint \(128, 4, 2, 2\)"):
        load_published_checkpoint(wider, small_xl())
    partial = random_state(published_shapes(**SMALL))
    del partial["blocks.1.mlp.fc2.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks\.1\.mlp\.fc2\.weight"):
        load_published_checkpoint(tmp_path / "partial.pth", small_xl())


def test_corrupted_and_unsafe_files_are_refused(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(random_state(published_shapes(**SMALL)), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="could not read checkpoint"):
        load_published_checkpoint(truncated, small_xl())
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "config": CheckpointError("a pickled object")}, pickled)
    with pytest.raises(CheckpointError, match=r"models\.checkpoints\.CheckpointError\).*--trust-pickle"):
        read_state_dict(pickled)
    assert read_state_dict(pickled, trust_pickle=True)["x"].shape == (1,)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nowhere.pth")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="could not read"):
        read_state_dict(broken)



def reduced_xl(**overrides):
    return replace(xl(), **{**dict(depth=2, hidden_size=144, num_heads=2, latent_size=8), **overrides})


def assert_holds(model, state):
    loaded = model.state_dict()
    for key, value in state.items():
        if key != "pos_embed":
            assert torch.equal(loaded[key], value), key


def test_trainer_checkpoint_loads_the_release_weights_and_names_what_it_ignores(tmp_path, caplog):
    """PixArt's trainer layout with an EMA copy, optimizer, numpy scalars pickled by numpy
    1.x and a Namespace: loaded without --trust-pickle, from 'state_dict' as the release
    does (not the EMA copy), the rest named in one log line."""
    path = tmp_path / "worldfm_1-step.pth"
    state = write_published_checkpoint(path)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    assert b"numpy.core.multiarray" in pickled and b"numpy._core" not in pickled
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        model = load_published_checkpoint(path, reduced_xl())
    assert_holds(model, state)
    lines = [r.getMessage() for r in caplog.records if "not model weights" in r.getMessage()]
    assert len(lines) == 1
    for entry in ("state_dict_ema (dict of", "optimizer (dict", "scheduler (dict", "epoch (int64)", "args (Namespace)"):
        assert entry in lines[0]


@pytest.mark.parametrize("layout", ["model", "ema", "nested", "flat-ddp"])
def test_weights_are_found_under_every_wrapper(tmp_path, layout, caplog):
    state = random_state(published_shapes(**SMALL))
    wrapped = {
        "model": {"model": state, "step": 3},
        "ema": {"ema": state, "config": {"lr": 1e-4}},
        "nested": {"model": {"state_dict": state}, "iteration": 7},
        "flat-ddp": {**{f"module.{k}": v for k, v in state.items()}, "step": np.int64(3)},
    }[layout]
    path = tmp_path / "ckpt.pth"
    save_as_numpy1(wrapped, path)
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        assert_holds(load_published_checkpoint(path, small_xl()), state)
    ignored = {"model": "step (int)", "ema": "config (dict of 1)", "nested": "iteration (int)", "flat-ddp": "step (int64)"}
    assert ignored[layout] in caplog.text


def test_tensors_of_foreign_modules_are_ignored_but_extra_blocks_are_not(tmp_path, caplog):
    state = random_state(published_shapes(**SMALL))
    critic = {f"fake_score.{k}": v for k, v in list(state.items())[:5]}
    torch.save({"state_dict": {**state, **critic}}, tmp_path / "with_critic.pth")
    with caplog.at_level(logging.INFO, logger="models.checkpoints"):
        assert_holds(load_published_checkpoint(tmp_path / "with_critic.pth", small_xl()), state)
    assert "state_dict/fake_score.* (5 tensors of no module of this model)" in caplog.text


def test_code_in_a_checkpoint_is_refused_by_name_unless_trusted(tmp_path):
    path = tmp_path / "worldfm_2-step.pth"
    state = random_state(published_shapes(**SMALL))
    torch.save({"state_dict": state, "config": CheckpointError("a pickled object of the training code")}, path)
    with pytest.raises(CheckpointError, match=r"\(models\.checkpoints\.CheckpointError\).*--trust-pickle"):
        read_published_weights(path)
    assert_holds(load_published_checkpoint(path, small_xl(), trust_pickle=True), state)


def test_published_config_is_read_off_the_weights():
    full = PublishedWeights({k: torch.empty(s, device="meta") for k, s in published_shapes().items()}, "state_dict")
    assert published_config(full) == xl()
    small = PublishedWeights(random_state(published_shapes(depth=3, d=144, latent=8)), "")
    assert published_config(small, image_size=64) == reduced_xl(depth=3)
    del small.tensors["x_embedder.proj.weight"]
    with pytest.raises(CheckpointError, match=r"x_embedder\.proj\.weight .* is missing"):
        published_config(small)
    odd = PublishedWeights(random_state(published_shapes(depth=1, d=64, latent=8)), "")
    with pytest.raises(CheckpointError, match="width 64 is not a multiple of the XL head size 72"):
        published_config(odd)

def test_our_safetensors_round_trip_restores_config_and_outputs(tmp_path):
    config = get_config("tiny")
    model = build_model(config).eval()
    with torch.no_grad():
        model.final_layer.linear.weight.normal_(std=0.1)
    save_model(model, tmp_path / "tiny.safetensors")
    loaded = load_model(tmp_path / "tiny.safetensors")
    assert loaded.config == config
    args = model_inputs(config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**args), model(**args))
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a worldfm-dit file"):
        load_model(other)


def test_pixart_original_layout_initialises_a_mask_channel_model(tmp_path):
    shapes = published_shapes(**SMALL, caption_tokens=120, plucker=False)  # PixArt-alpha: 120 caption tokens
    state = random_state(shapes)
    torch.save({"state_dict": state}, tmp_path / "PixArt-XL-2-512x512.pth")
    config = replace(small_xl(), checkpoint_compat=False, anchor_mask_channel=True, prope=True, plucker=True)
    model = build_model(config)
    report = load_pixart_weights(model, tmp_path / "PixArt-XL-2-512x512.pth")
    assert report.adapted == ["x_embedder.proj.weight"]
    assert all(k.startswith("plucker_proj.") for k in report.kept_init) and len(report.kept_init) == 4
    assert any(k.startswith("blocks.0.cross_attn.") for k in report.ignored)
    w = model.x_embedder.proj.weight
    assert torch.equal(w[:, :4], state["x_embedder.proj.weight"]) and w[:, 4].abs().sum() == 0
    assert torch.equal(model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])


def test_pixart_load_refuses_a_deeper_model(tmp_path):
    torch.save(random_state(published_shapes(**SMALL, plucker=False)), tmp_path / "p.pth")
    model = build_model(replace(small_xl(), depth=3, checkpoint_compat=False))
    with pytest.raises(CheckpointError, match="missing blocks.2"):
        load_pixart_weights(model, tmp_path / "p.pth")


def test_diffusers_pixart_converts_to_the_same_function(tmp_path):
    """A diffusers PixArtTransformer2DModel on the width-concatenated latents (cross-attention
    zeroed, as the published inference disables it) equals our model's target output."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(0)
    ref = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=32, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=64, caption_channels=32, sample_size=8, patch_size=2, norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(std=0.05)
        for block in ref.transformer_blocks:
            block.attn2.to_out[0].weight.zero_()
            block.attn2.to_out[0].bias.zero_()
    ref.save_pretrained(tmp_path / "pixart" / "transformer")

    config = replace(small_xl(), checkpoint_compat=False)
    ours = build_model(config).eval()
    report = load_pixart_weights(ours, tmp_path / "pixart")
    assert not report.adapted and not report.kept_init
    args = model_inputs(config)
    latents = torch.cat([args["z_t"], args["anchor_latent"], args["ref_latent"]], dim=-1)
    with torch.no_grad():
        expect = ref(latents, encoder_hidden_states=torch.zeros(2, 3, 32), timestep=args["t"]).sample[..., :8]
        torch.testing.assert_close(ours(**args), expect, rtol=1e-4, atol=1e-4)
