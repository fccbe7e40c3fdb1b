"""The ONNX engine on the untrained tiny export: contract checks, providers, determinism."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from python_bridge.engine import Engine, Manifest, ModelFolderError, usable_cpus, usable_providers


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> Engine:
    return Engine(tiny_model_dir, provider="auto")


def test_manifest_fields(tiny_model_dir):
    m = Manifest.load(tiny_model_dir)
    assert m.image_size == (32, 32) and m.latent_shape == (4, 4, 4) and m.steps == (1, 2)
    assert set(m.graphs) == {"encoder", "decoder", "generator_1", "generator_2"}


def test_providers_end_with_cpu_and_engine_uses_the_first(engine):
    providers = usable_providers("auto")
    assert providers[-1] == "CPUExecutionProvider"
    assert engine.provider == providers[0]
    assert usable_providers("cpu") == ("CPUExecutionProvider",)
    with pytest.raises(ValueError, match="auto, cuda or cpu"):
        usable_providers("tpu")


def run(engine: Engine, steps: int, seed: int, anchor: np.ndarray) -> np.ndarray:
    K = np.array([[32.0, 0, 16], [0, 32, 16], [0, 0, 1]])
    latent = engine.encode(anchor)
    out = engine.generate(
        steps, latent, np.ones((32, 32)), latent, K, np.eye(4), K, np.eye(4), np.random.default_rng(seed)
    )
    return engine.decode(out)


def test_frames_are_deterministic_per_seed_and_depend_on_inputs(engine):
    anchor = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    a = run(engine, 1, 7, anchor)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, run(engine, 1, 7, anchor))
    assert not np.array_equal(a, run(engine, 1, 8, anchor))
    assert not np.array_equal(a, run(engine, 1, 7, 255 - anchor))
    assert not np.array_equal(run(engine, 2, 7, anchor), a)


def test_bad_calls_say_what_is_wrong(engine):
    with pytest.raises(ValueError, match=r"\(32, 32, 3\)"):
        engine.encode(np.zeros((16, 16, 3), np.uint8))
    latent = engine.encode(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="3 steps"):
        engine.generate(
            3, latent, np.ones((32, 32)), latent, np.eye(3), np.eye(4), np.eye(3), np.eye(4), np.random.default_rng(0)
        )


def test_folder_errors(tiny_model_dir, tmp_path):
    with pytest.raises(ModelFolderError, match="no manifest.json"):
        Manifest.load(tmp_path)
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "decoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelFolderError, match="sha256"):
        Manifest.load(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["graphs"]["decoder"] = "encoder.onnx"  # a graph with the wrong inputs
    manifest["sha256"] = {}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="do not match the contract"):
        Engine(folder, warmup=False)
    manifest["format"] = "something-else"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="worldfm-onnx"):
        Manifest.load(folder)
    del manifest["steps"]
    manifest["format"] = "worldfm-onnx"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="steps"):
        Manifest.load(folder)


def test_graphs_may_lack_inputs_they_do_not_use(tmp_path):
    from tiny_model import export_tiny

    folder = export_tiny(tmp_path / "no-cameras", steps=(1,), cameras=False)
    engine = Engine(folder)  # warm-up runs every graph
    assert "ref_K" not in {i.name for i in engine.sessions["generator_1"].get_inputs()}
    a = run(engine, 1, 3, np.zeros((32, 32, 3), np.uint8))
    np.testing.assert_array_equal(a, run(engine, 1, 3, np.zeros((32, 32, 3), np.uint8)))


def test_the_shipped_demo_folder_verifies_and_fits_its_budget():
    """Every file the manifest lists matches its hash, the fp16 twin is listed, and the folder
    stays within the 25 MB the issue allows for a model in the repository."""
    from python_bridge.demo import DEFAULT_MODEL

    m = Manifest.load(DEFAULT_MODEL, verify=True)
    assert set(m.graphs_fp16) <= set(m.graphs) and m.graphs_fp16
    assert sum(f.stat().st_size for f in DEFAULT_MODEL.iterdir()) <= 25_000_000


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
                    reason="needs CPU affinity (Linux) and 2 or more CPUs")
def test_cpu_pool_has_as_many_threads_as_cpus_this_process_may_use(tiny_model_dir):
    """Under ``taskset`` or a container's cpuset, ONNX Runtime's pool matches the CPUs allowed,
    not the host's: more threads than CPUs take turns on one core."""
    allowed = os.sched_getaffinity(0)
    assert usable_cpus() == len(allowed)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert usable_cpus() == 1
        pinned = Engine(tiny_model_dir, provider="cpu", warmup=False)
    finally:
        os.sched_setaffinity(0, allowed)
    assert {s.get_session_options().intra_op_num_threads for s in pinned.sessions.values()} == {1}
    free = Engine(tiny_model_dir, provider="cpu", warmup=False)
    assert {s.get_session_options().intra_op_num_threads for s in free.sessions.values()} == {len(allowed)}
