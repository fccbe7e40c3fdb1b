"""`worldfm model optimise`: an older dynamic-batch export gets static batch-1 graphs, the same frames."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx

from python_bridge.cli import main
from python_bridge.engine import Engine


def _run_all(engine: Engine, seed: int = 0) -> np.ndarray:
    h, w = engine.image_size
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
    latent = engine.encode(rgb)
    out = engine.generate(2, latent, np.ones((h, w)), latent, K, np.eye(4), K, np.eye(4), np.random.default_rng(1))
    return engine.decode(out).astype(np.int16)


def test_optimise_gives_static_graphs_and_the_same_frames(tiny_model_dir, tmp_path, caplog):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    with caplog.at_level("WARNING", logger="python_bridge.engine"):
        before = _run_all(Engine(folder, provider="cpu", warmup=False))
    assert "worldfm model optimise" in caplog.text  # the engine tells users of old folders what to do
    assert main(["model", "optimise", str(folder)]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["batch"] == 1 and set(manifest["parity"]["optimise"]["max_abs_error"]) == set(manifest["graphs"])
    graph = onnx.load(str(folder / "generator_2step.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][0] == 1
    assert not [n for n in graph.node if n.op_type == "Shape"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="python_bridge.engine"):
        after = _run_all(Engine(folder, provider="cpu", warmup=False))  # sha256 in the manifest match again
    assert "optimise" not in caplog.text
    assert np.abs(after - before).max() <= 1
    assert main(["model", "optimise", str(folder)]) == 0  # a second run has nothing to do


def test_optimise_leaves_the_folder_alone_when_a_graph_would_change(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import models.export as export

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    original = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = export.optimise_graph

    def doubling(model: onnx.ModelProto) -> onnx.ModelProto:
        model = real(model)
        out = model.graph.output[0].name
        model.graph.node[-1].output[0] = out + "_half"
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"))
        model.graph.node.append(onnx.helper.make_node("Mul", [out + "_half", "two"], [out]))
        return model

    monkeypatch.setattr(export, "optimise_graph", doubling)
    assert main(["model", "optimise", str(folder)]) == 2
    assert "differs from the original" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == original


def test_optimise_refuses_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["model", "optimise", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err

