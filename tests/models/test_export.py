"""ONNX export: parity with PyTorch, the contract the engine runs, weights stored once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.checkpoints import load_model
from models.export import (
    FP16_ATOL,
    FP16_RTOL,
    FP16_WEIGHTS_FILE,
    WEIGHTS_FILE,
    ExportError,
    example_inputs,
    parity_check,
)
from models.sampling import FewStepGenerator
from training_fixtures import IMAGE_SIZE


def test_manifest_follows_the_contract(export_dir):
    m = json.loads((export_dir / "manifest.json").read_text())
    assert m["format"] == "worldfm-onnx" and m["version"] == 1 and m["steps"] == [1, 2]
    assert m["image_size"] == [IMAGE_SIZE, IMAGE_SIZE] and m["latent_shape"] == [4, 8, 8]
    assert set(m["graphs"]) == {"encoder", "decoder", "generator_1", "generator_2"}
    assert WEIGHTS_FILE in m["sha256"] and m["opset"] == 17
    assert set(m["parity"]["max_abs_error"]) == set(m["graphs"])
    assert set(m["graphs_fp16"]) == set(m["parity"]["fp16"]["max_abs_error"]) == {"generator_1", "generator_2"}
    assert FP16_WEIGHTS_FILE in m["sha256"] and all(f in m["sha256"] for f in m["graphs_fp16"].values())


def test_graphs_have_a_static_batch_and_no_shape_arithmetic(export_dir):
    """Tracing a dynamic batch left thousands of Shape/Gather nodes that ONNX Runtime spent
    seconds on at session creation; the export folds them (models.export.optimise_graph)."""
    import onnx

    assert json.loads((export_dir / "manifest.json").read_text())["batch"] == 1
    for file in ("encoder.onnx", "decoder.onnx", "generator_1step.onnx", "generator_2step.onnx"):
        graph = onnx.load(str(export_dir / file), load_external_data=False).graph
        assert all(v.type.tensor_type.shape.dim[0].dim_value == 1 for v in [*graph.input, *graph.output]), file
        assert not [n for n in graph.node if n.op_type == "Shape"], file


def test_fp16_graphs_hold_half_precision_weights_and_float32_io(export_dir):
    import onnx

    assert (export_dir / FP16_WEIGHTS_FILE).stat().st_size < 0.6 * (export_dir / WEIGHTS_FILE).stat().st_size
    graph = onnx.load(str(export_dir / "generator_1step.fp16.onnx"), load_external_data=False).graph
    weights = {t.name: t.data_type for t in graph.initializer}
    products = [x for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv") for x in n.input if x in weights]
    assert len(products) > 10 and {weights[x] for x in products} == {onnx.TensorProto.FLOAT16}
    assert {i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]} == {onnx.TensorProto.FLOAT}


def test_generator_weights_are_stored_once(export_dir, distill_run):
    params = sum(p.numel() for p in load_model(distill_run / "generator_1step.safetensors").parameters())
    assert (export_dir / WEIGHTS_FILE).stat().st_size < 1.2 * 4 * params


def test_engine_runs_the_export_and_matches_pytorch(export_dir, distill_run, val_batch):
    """The bridge engine, unchanged, on our folder: same noise -> same latent as PyTorch."""
    from python_bridge.engine import Engine

    engine = Engine(export_dir, provider="cpu")
    gen = load_model(distill_run / "generator_2step.safetensors")
    b = {k: v[:1] for k, v in val_batch.items()}
    rng_seed = 7
    out = engine.generate(2, b["anchor_latent"].numpy(), b["anchor_mask"][0, 0].numpy(), b["ref_latent"].numpy(),
                          b["ref_K"][0].numpy(), b["ref_c2w"][0].numpy(), b["tgt_K"][0].numpy(),
                          b["tgt_c2w"][0].numpy(), np.random.default_rng(rng_seed)).numpy()
    noise = torch.from_numpy(np.random.default_rng(rng_seed).standard_normal((1, 2, 4, 8, 8), dtype=np.float32))
    with torch.no_grad():
        want = FewStepGenerator(gen, 2)(noise, *(b[k] for k in ("anchor_latent", "anchor_mask", "ref_latent", "ref_K",
                                                               "ref_c2w", "tgt_K", "tgt_c2w"))).numpy()
    np.testing.assert_allclose(out, want, atol=1e-4 + 1e-3 * np.abs(want).max())
    image = engine.decode(out)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8


def test_engine_precision_picks_the_graphs(export_dir, distill_run, val_batch, tmp_path):
    """auto on CPU runs fp32; fp16 (which CUDA would pick) matches PyTorch fp32 within the fp16 bound."""
    import shutil

    from python_bridge.engine import Engine, ModelFolderError

    assert Engine(export_dir, provider="cpu", warmup=False).precision == "fp32"
    engine = Engine(export_dir, provider="cpu", precision="fp16")
    assert engine.precision == "fp16" and engine.describe()["dtype"] == "fp16"
    assert engine.graph_files["generator_1"].name == "generator_1step.fp16.onnx"
    gen = load_model(distill_run / "generator_1step.safetensors")
    b = {k: v[:1] for k, v in val_batch.items()}
    out = engine.generate(1, b["anchor_latent"].numpy(), b["anchor_mask"][0, 0].numpy(), b["ref_latent"].numpy(),
                          b["ref_K"][0].numpy(), b["ref_c2w"][0].numpy(), b["tgt_K"][0].numpy(),
                          b["tgt_c2w"][0].numpy(), np.random.default_rng(3)).numpy()
    noise = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 1, 4, 8, 8), dtype=np.float32))
    with torch.no_grad():
        want = FewStepGenerator(gen, 1)(noise, *(b[k] for k in ("anchor_latent", "anchor_mask", "ref_latent", "ref_K",
                                                               "ref_c2w", "tgt_K", "tgt_c2w"))).numpy()
    err = np.abs(out - want).max()
    assert 0 < err <= FP16_ATOL + FP16_RTOL * np.abs(want).max()  # half precision: close, not identical
    plain = tmp_path / "plain"
    shutil.copytree(export_dir, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    manifest["graphs_fp16"] = {}
    (plain / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="export --fp16"):
        Engine(plain, provider="cpu", precision="fp16", warmup=False)
    with pytest.raises(ValueError, match="precision"):
        Engine(export_dir, provider="cpu", precision="int8", warmup=False)


def test_parity_check_rejects_a_graph_that_differs(export_dir, distill_run):
    gen = load_model(distill_run / "generator_1step.safetensors")
    with torch.no_grad():
        gen.final_layer.linear.bias.add_(0.5)
    inputs = {"generator_1": example_inputs((4, 8, 8), IMAGE_SIZE, 1, seed=1)}
    with pytest.raises(ExportError, match="differs from PyTorch"):
        parity_check(export_dir, {"generator_1": FewStepGenerator(gen, 1)}, inputs)


def test_re_export_replaces_its_files_and_keeps_the_rest(distill_run, tmp_path):
    from models.export import export_model
    from python_bridge.engine import Engine
    from training_fixtures import tiny_autoencoder

    out = tmp_path / "model"
    gen = load_model(distill_run / "generator_1step.safetensors")
    export_model({1: gen, 2: gen}, tiny_autoencoder(), out, "tiny")
    (out / "MODEL_CARD.md").write_text("card")
    export_model({1: gen}, tiny_autoencoder(), out, "tiny")  # now without the 2-step graph
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == [1] and not (out / "generator_2step.onnx").exists()  # stale graph gone
    assert (out / "MODEL_CARD.md").read_text() == "card"  # the card survives
    export_model({1: gen, 2: gen}, tiny_autoencoder(), out, "tiny", fp16=[1])  # fp16 for the 1-step graph only
    half = json.loads((out / "manifest.json").read_text())["graphs_fp16"]
    assert half == {"generator_1": "generator_1step.fp16.onnx"}
    engine = Engine(out, provider="cpu", precision="fp16", warmup=False)
    assert engine.precision == "mixed" and engine.describe()["fp16_graphs"] == ["generator_1"]
    with pytest.raises(ExportError, match=r"fp16 graphs asked for \[3\] steps"):
        export_model({1: gen}, tiny_autoencoder(), out, "tiny", fp16=[3])
    (out / "manifest.json").write_text("not json")
    with pytest.raises(ExportError, match="not a manifest this exporter wrote"):
        export_model({1: gen}, tiny_autoencoder(), out, "tiny")


def test_parity_fails_a_broken_network_even_when_its_final_layer_is_zero(tmp_path, monkeypatch):
    """A freshly initialised generator outputs ``a * noise`` whatever its blocks compute, so
    comparing its graph with PyTorch passes even when the export broke the blocks; the probe
    (the same network with a random final layer, exported the same way) does not."""
    from copy import deepcopy

    from models import export
    from models.dit import build_model
    from training_fixtures import tiny_autoencoder

    trace = export._onnx_export

    def broken_trace(module, inputs, output, path):
        if isinstance(module, FewStepGenerator):  # an exporter bug inside the network
            module = deepcopy(module)
            with torch.no_grad():
                module.model.blocks[0].mlp.fc2.weight.add_(0.5)
        trace(module, inputs, output, path)

    fresh = build_model("tiny")
    errors = export.export_model({1: fresh}, tiny_autoencoder(), tmp_path / "good", "fresh")
    manifest = json.loads((tmp_path / "good" / "manifest.json").read_text())
    assert set(manifest["parity"]["probe"]["max_abs_error"]) == {"generator_1"} and "probe_generator_1" in errors
    monkeypatch.setattr(export, "_onnx_export", broken_trace)
    with pytest.raises(ExportError, match=r"\.parity-probe-.*generator_1\.onnx: ONNX differs from PyTorch"):
        export.export_model({1: fresh}, tiny_autoencoder(), tmp_path / "broken", "broken")
    trained = deepcopy(fresh)
    with torch.no_grad():
        trained.final_layer.linear.weight.normal_(std=0.1)
    with pytest.raises(ExportError, match=r"broken/generator_1step\.onnx: ONNX differs from PyTorch"):
        export.export_model({1: trained}, tiny_autoencoder(), tmp_path / "broken", "broken")
