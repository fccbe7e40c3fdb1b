"""Export a trained model to the ONNX folder that ``python_bridge.engine`` runs.

The folder contract is /work/notes/export_contract.md (summarised in docs/training.md):
``manifest.json`` plus the graphs

* ``encoder``: image (B, 3, H, W) in [-1, 1] -> scaled latent (B, C, h, w)
  (``models.autoencoder.LatentEncoder``; used for the anchor rendering every frame and
  once per reference image, whose latent the server caches);
* ``generator_N`` (N = 1, 2): noise (B, N, C, h, w), anchor_latent, anchor_mask
  (B, 1, H, W), ref_latent, ref_K, ref_c2w, tgt_K, tgt_c2w -> latent: the distilled
  sampler ``models.sampling.FewStepGenerator`` unrolled, its noise an input so the graph
  is deterministic and the caller owns the randomness;
* ``decoder``: latent -> image (B, 3, H, W) in [-1, 1]; an anchor decoder
  (``models.autoencoder.AnchorDecoder``) also takes ``anchor`` (B, 3, H, W) in [-1, 1], the
  anchor rendering with holes filled by push-pull, and ``anchor_mask`` (B, 1, H, W).

Batch is 1 everywhere: the server renders one frame at a time, and static shapes let the
exporter and onnx-simplifier fold away the shape arithmetic that tracing a dynamic batch
leaves in the graph (thousands of Shape/Gather/Unsqueeze nodes, which ONNX Runtime spends
about a millisecond each on when it creates a session: the demo model's 2-step generator
went from 8 s to well under 1 s; :func:`optimise_graph`). Folders exported before this
(``"batch"`` missing from the manifest) are converted in place by ``worldfm model optimise``
(:func:`optimise_folder`). Weights of generator graphs live in one external file
(``generator.weights``) with identical tensors stored once: a generator distilled for both
step counts is one network, and two inline copies would double the shipped size. The same
file is what lets a network over protobuf's 2 GB limit be exported at all (the published
XL is 2.4 GB in fp32): no graph file ever holds its weights inline, and the manifest's
sha256 covers the weights files like the graphs.

fp16 for CUDA (``fp16=True``): the generator graphs are also written traced under
``torch.autocast(float16)`` -- matrix products and their weights in half precision, while
what the model keeps in float32 on purpose (camera normalisation, PRoPE transforms,
position and timestep embeddings) stays float32, and inputs and outputs stay float32, so
the engine feeds both variants alike. Their weights go to ``generator.fp16.weights``; the
manifest lists them under ``graphs_fp16``, and the engine picks them on the CUDA provider.
Encoder and decoder stay fp32 (convolution stacks that cost little on a GPU; the demo
folder's size budget). onnxconverter-common's fp16 conversion was tried first and emits
invalid graphs for these models.

Parity: :func:`parity_check` runs every graph in ONNX Runtime (CPU; it runs fp16 graphs
too) and the PyTorch fp32 module on the same random inputs; the export fails unless
``max |onnx - torch| <= atol + rtol * max |torch|`` for every graph, with
``PARITY_ATOL``/``PARITY_RTOL`` for fp32 graphs and the looser ``FP16_ATOL``/``FP16_RTOL``
for fp16 ones. The measured errors are recorded in the manifest. A network whose final
layer is zero (freshly initialised) outputs zero whatever its blocks compute, so that
comparison could not fail; its generator graphs are then also exported and checked with a
random final layer (``parity.probe`` in the manifest).

``anchor_style`` in the manifest names how the server renders anchors for this model
(``models.anchor``); ``"release"`` for the published weights (``worldfm import-published``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data
from torch import nn
from tqdm import tqdm

from models.autoencoder import AnchorDecoder, FastDecoder, LatentDecoder, LatentEncoder, downsample_factor
from models.dit import WorldFMDiT
from models.model_folder import FORMAT, FORMAT_VERSION, file_sha256
from models.sampling import FewStepGenerator

log = logging.getLogger(__name__)

OPSET = 17
PARITY_ATOL, PARITY_RTOL = 1e-4, 1e-3
FP16_ATOL, FP16_RTOL = 1e-3, 1e-2  # half precision: ~3 significant digits per product
WEIGHTS_FILE = "generator.weights"
FP16_WEIGHTS_FILE = "generator.fp16.weights"
_EXTERNAL_MIN_BYTES = 1024  # smaller tensors stay inline


class ExportError(RuntimeError):
    """An export that failed its parity check or could not be written; the message says why."""


def example_inputs(latent_shape: tuple[int, int, int], image_size: int, steps: int, batch: int = 1,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Plausible random generator inputs: unit-normal latents, a partial mask, a camera moved 0.3 m."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = latent_shape
    K = torch.tensor([[image_size * 0.9, 0, image_size / 2], [0, image_size * 0.9, image_size / 2], [0, 0, 1.0]])
    tgt = torch.eye(4)
    tgt[:3, 3] = torch.tensor([0.3, -0.1, 0.2])
    return {
        "noise": torch.randn(batch, steps, c, h, w, generator=g),
        "anchor_latent": torch.randn(batch, c, h, w, generator=g),
        "anchor_mask": (torch.rand(batch, 1, image_size, image_size, generator=g) > 0.3).float(),
        "ref_latent": torch.randn(batch, c, h, w, generator=g),
        "ref_K": K.expand(batch, 3, 3).clone(),
        "ref_c2w": torch.eye(4).expand(batch, 4, 4).clone(),
        "tgt_K": K.expand(batch, 3, 3).clone(),
        "tgt_c2w": tgt.expand(batch, 4, 4).clone(),
    }


def _onnx_export(module: nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path) -> None:
    torch.onnx.export(
        module.eval(), tuple(inputs.values()), str(path), input_names=list(inputs), output_names=[output],
        opset_version=OPSET, dynamo=False,
    )


# onnx-simplifier holds the whole model in one protobuf (< 2 GiB) and, measured on a 1.9 GB
# graph, peaked at 5.8x its tensors (10.8 GB): a network's graph above this keeps its nodes.
_SIMPLIFY_MAX_BYTES = 400_000_000


def _tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of a model's initializers and Constant tensors (``ByteSize`` fails beyond 2 GiB)."""
    constants = (a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")
    return sum(len(t.raw_data) for t in (*model.graph.initializer, *constants))


def optimise_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same computation with batch fixed to 1 and shape arithmetic folded into constants.

    Inputs and outputs get a static leading dimension of 1; onnx-simplifier then propagates
    shapes and folds every node whose value no longer depends on the inputs. A model over
    ``_SIMPLIFY_MAX_BYTES`` (the published XL: 1.8 GB fp32) keeps its nodes: static shapes
    alone let ONNX Runtime fold most of them, and simplifying would need several times its size.
    """
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    if (size := _tensor_bytes(model)) > _SIMPLIFY_MAX_BYTES:
        log.info("graph of %.1f GB: too big for onnx-simplifier; batch fixed to 1 only", size / 1e9)
        return model
    import onnxsim

    with _native_output_to_devnull():  # it prints a line per node it cannot evaluate ahead of time
        simplified, _ = onnxsim.simplify(model, check_n=0)  # faithfulness: parity_check / optimise_folder
    return simplified


@contextlib.contextmanager
def _native_output_to_devnull():
    """Silence what native code writes to file descriptors 1 and 2 (Python's own output too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _compact(model: onnx.ModelProto) -> None:
    """Shrink an exported ``onnx.ModelProto`` in place without changing what it computes.

    The tracer names every node and intermediate value after its module path, which is
    most of a small graph's bytes: values get short names, node names, doc strings and
    value_info go, and large ``Constant`` nodes become initializers (so
    :class:`_WeightStore` can store them once).
    """
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    names: dict[str, str] = {}

    fresh = (f"v{i}" for i in itertools.count() if f"v{i}" not in keep)  # kept names may look like ours

    def short(name: str) -> str:
        if name == "" or name in keep:
            return name
        if name not in names:
            names[name] = next(fresh)
        return names[name]

    nodes = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.raw_data and len(value.raw_data) >= _EXTERNAL_MIN_BYTES:
            tensor = numpy_helper.from_array(numpy_helper.to_array(value), short(node.output[0]))
            graph.initializer.append(tensor)
            continue
        node.name, node.doc_string = "", ""
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    model.doc_string = ""


class _WeightStore:
    """One external-data file beside the graphs, filled graph by graph as they are exported.

    :meth:`add` moves a graph's large initializers into the file, storing byte-identical
    tensors once (graphs of one network then point at the same offsets). Graphs go in as
    they are traced, so only one network's tensors are ever held as an ONNX model in memory,
    and a network over protobuf's 2 GB limit never has to be serialised inline.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stored: dict[str, tuple[int, int]] = {}
        self._fh = open(path, "wb")

    def __enter__(self) -> _WeightStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def add(self, model: onnx.ModelProto) -> None:
        for tensor in model.graph.initializer:
            raw = tensor.raw_data
            if len(raw) < _EXTERNAL_MIN_BYTES:
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest not in self._stored:
                self._stored[digest] = (self._fh.tell(), len(raw))
                self._fh.write(raw)
            offset, length = self._stored[digest]
            set_external_data(tensor, self.path.name, offset=offset, length=length)
            tensor.ClearField("raw_data")


def _externalize(paths: list[Path], weights: Path) -> None:
    """Move the large initializers of the ONNX files ``paths`` into one file ``weights``
    beside them (:class:`_WeightStore`), rewriting each file."""
    with _WeightStore(weights) as store:
        for path in paths:
            model = onnx.load(str(path))
            store.add(model)
            onnx.save(model, str(path))


def parity_check(folder: Path, modules: dict[str, nn.Module], inputs: dict[str, dict[str, torch.Tensor]],
                 rtol: float = PARITY_RTOL, atol: float = PARITY_ATOL, graphs: str = "graphs") -> dict[str, float]:
    """Run each graph of ``folder`` (per its manifest's ``graphs`` map, or ``graphs_fp16``) in
    ONNX Runtime on CPU against the torch module of the same name; returns max |onnx - torch|
    per graph, raises ``ExportError`` on a miss."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return _parity({g: folder / manifest[graphs][g] for g in modules}, modules, inputs, rtol, atol)


def _parity(files: dict[str, Path], modules: dict[str, nn.Module], inputs: dict[str, dict[str, torch.Tensor]],
            rtol: float, atol: float) -> dict[str, float]:
    """:func:`parity_check` on the ONNX files ``files`` (graph name -> path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16 graphs on the CPU provider warn about every node it cannot fold
    errors = {}
    for name, module in tqdm(modules.items(), desc="parity check", unit="graph", leave=False):
        sess = ort.InferenceSession(str(files[name]), options, providers=["CPUExecutionProvider"])
        types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in sess.get_inputs()}
        # the exporter drops inputs a graph does not use (e.g. cameras of a model without pose paths)
        feed = {k: v.numpy().astype(types[k]) for k, v in inputs[name].items() if k in types}
        got = sess.run(None, feed)[0].astype(np.float32)
        del sess  # a large graph's weights, before the torch module runs
        with torch.no_grad():
            want = module(*inputs[name].values()).numpy()
        err = float(np.abs(got - want).max())
        bound = atol + rtol * float(np.abs(want).max())
        errors[name] = err
        if not err <= bound:
            raise ExportError(f"{files[name]}: ONNX differs from PyTorch by {err:.3g} "
                              f"(bound {bound:.3g}); the export is not faithful -- check the ops of this graph")
    return errors


def _final_layer_is_zero(model: WorldFMDiT) -> bool:
    """Whether ``model``'s output is zero whatever its input (a freshly initialised model)."""
    layer = model.final_layer.linear
    return not bool(layer.weight.count_nonzero() or layer.bias.count_nonzero())


def _probe_parity(out: Path, generators: dict[int, WorldFMDiT], inputs: dict[str, dict[str, torch.Tensor]],
                  ) -> dict[str, float]:
    """Parity of the generator graphs of networks whose final layer is zero, made meaningful.

    Such a network outputs zero for any input, so its graph and the PyTorch module agree
    even if the export broke every block (the sampler then returns ``a * noise`` in both).
    Here each such network is copied with a random final layer (unit-scale output), its
    generator graphs are exported the same way into a scratch folder and checked against
    the copy: what the exporter does to the blocks must then reach the output.
    """
    copies: dict[int, WorldFMDiT] = {}
    probes: dict[str, nn.Module] = {}
    for s, net in generators.items():
        if id(net) not in copies:
            copy = deepcopy(net)
            with torch.no_grad():
                copy.final_layer.linear.weight.normal_(std=copy.config.hidden_size**-0.5)
            copies[id(net)] = copy
        probes[f"generator_{s}"] = FewStepGenerator(copies[id(net)], s).eval()
    with tempfile.TemporaryDirectory(prefix=".parity-probe-", dir=out) as scratch:
        files = {g: Path(scratch) / f"{g}.onnx" for g in probes}
        with _WeightStore(Path(scratch) / WEIGHTS_FILE) as store:
            for g, module in probes.items():
                _export_graph(module, inputs[g], "latent", files[g], store=store)
        return _parity(files, probes, inputs, PARITY_RTOL, PARITY_ATOL)


def _write_manifest(folder: Path, name: str, config: dict, image_size: int, latent_shape: tuple[int, int, int],
                    steps: list[int], graphs: dict[str, str], graphs_fp16: dict[str, str], extra_files: list[str],
                    parity: dict, anchor_style: str | None) -> None:
    files = sorted({*graphs.values(), *graphs_fp16.values(), *extra_files})
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "name": name, "config": config,
        "image_size": [image_size, image_size], "latent_shape": list(latent_shape), "steps": steps,
        "opset": OPSET, "dtype": "fp32", "batch": 1, "graphs": graphs, "graphs_fp16": graphs_fp16,
        "sha256": {f: file_sha256(folder / f) for f in files},
        "parity": parity,
        **({"anchor_style": anchor_style} if anchor_style else {}),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _clear_previous_export(out: Path) -> None:
    """Delete what an earlier export wrote into ``out`` -- the files its manifest lists, and the
    manifest -- and nothing else: a model card, evaluation or notes beside them stay."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return
    try:
        listed = json.loads(manifest.read_text()).get("sha256", {})
    except (json.JSONDecodeError, AttributeError):
        raise ExportError(f"{manifest} is not a manifest this exporter wrote; export into another folder") from None
    for name in listed:
        if Path(name).name == name:  # a plain file name, never a path out of the folder
            (out / name).unlink(missing_ok=True)
    manifest.unlink()


def export_model(
    generators: dict[int, WorldFMDiT],
    autoencoder: nn.Module,
    out: str | Path,
    name: str,
    info: dict | None = None,
    decoder: FastDecoder | AnchorDecoder | None = None,
    fp16: bool | Sequence[int] = False,
    anchor_style: str | None = None,
) -> dict[str, float]:
    """Write the exported model into folder ``out`` (replacing an earlier export there, keeping
    other files) for ``generators`` (steps -> distilled network; the
    same network may serve several step counts) and ``autoencoder`` (a diffusers VAE), whose
    decoder graph is ``decoder`` when given (a fast or anchor decoder trained for that
    autoencoder; an anchor decoder's graph also takes ``anchor`` and ``anchor_mask``).
    With ``fp16``, also the generators' fp16 graphs for CUDA (module docstring): ``True``
    for every step count, or the step counts to write them for.

    Returns the parity errors (max abs difference per graph; fp16 graphs as
    ``generator_N_fp16``; ``probe_generator_N`` for the probe of a network whose final layer
    is zero, :func:`_probe_parity`). ``info`` is merged into the manifest's ``config`` (e.g.
    training provenance). ``anchor_style``: recorded in the manifest for the server to
    render anchors that way (``"release"`` for the published weights; default ``points``).
    """
    out = Path(out)
    steps = sorted(generators)
    half_steps = steps if fp16 is True else sorted(fp16 or [])
    if unknown := set(half_steps) - set(steps):
        raise ExportError(f"fp16 graphs asked for {sorted(unknown)} steps; the generators are for {steps}")
    _clear_previous_export(out)
    out.mkdir(parents=True, exist_ok=True)
    model = generators[steps[0]]
    cfg = model.config
    f = downsample_factor(autoencoder)
    if f != cfg.vae_downsample:
        raise ExportError(f"the autoencoder downsamples {f}x but the model expects {cfg.vae_downsample}x")
    size = cfg.image_size
    latent_shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    encoder = LatentEncoder(autoencoder).eval()
    if decoder is not None and decoder.downsample != f:
        raise ExportError(f"the fast decoder upsamples {decoder.downsample}x but the autoencoder downsamples {f}x")
    decoder = (LatentDecoder(autoencoder) if decoder is None else decoder).eval()
    g = torch.Generator().manual_seed(0)
    modules: dict[str, nn.Module] = {"encoder": encoder, "decoder": decoder}
    inputs = {"encoder": {"image": torch.rand(1, 3, size, size, generator=g) * 2 - 1},
              "decoder": {"latent": torch.randn(1, *latent_shape, generator=g)}}
    if isinstance(decoder, AnchorDecoder):
        inputs["decoder"]["anchor"] = torch.rand(1, 3, size, size, generator=g) * 2 - 1
        inputs["decoder"]["anchor_mask"] = (torch.rand(1, 1, size, size, generator=g) > 0.3).float()
    graphs = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    for s in steps:
        modules[f"generator_{s}"] = FewStepGenerator(generators[s].eval(), s).eval()
        inputs[f"generator_{s}"] = example_inputs(latent_shape, size, s, seed=s)
        graphs[f"generator_{s}"] = f"generator_{s}step.onnx"
    half = {f"generator_{s}": f"generator_{s}step.fp16.onnx" for s in half_steps}
    outputs = {"encoder": "latent", "decoder": "image"}
    with tqdm(total=len(graphs) + len(half), desc=f"export {name}", unit="graph") as bar:
        for graph in ("encoder", "decoder"):
            _export_graph(modules[graph], inputs[graph], outputs[graph], out / graphs[graph])
            bar.update()
        with _WeightStore(out / WEIGHTS_FILE) as store:
            for s in steps:
                graph = f"generator_{s}"
                _export_graph(modules[graph], inputs[graph], "latent", out / graphs[graph], store=store)
                bar.update()
        if half:
            with _WeightStore(out / FP16_WEIGHTS_FILE) as store:
                for graph, file in half.items():
                    _export_graph(modules[graph], inputs[graph], "latent", out / file, autocast=torch.float16,
                                  store=store)
                    bar.update()
    extra = [WEIGHTS_FILE, *([FP16_WEIGHTS_FILE] if half else [])]
    config = {**asdict(cfg), "autoencoder": dict(autoencoder.config), **(info or {})}
    config["autoencoder"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config["autoencoder"].items()}
    if isinstance(decoder, FastDecoder | AnchorDecoder):
        config["decoder"] = decoder.config
    manifest_args = (out, name, config, size, latent_shape, steps, graphs, half, extra)
    _write_manifest(*manifest_args, {}, anchor_style)
    errors = parity_check(out, modules, inputs)
    parity = {"max_abs_error": errors, "atol": PARITY_ATOL, "rtol": PARITY_RTOL}
    if half:
        errors_fp16 = parity_check(out, {g: modules[g] for g in half}, inputs, FP16_RTOL, FP16_ATOL, "graphs_fp16")
        parity["fp16"] = {"max_abs_error": errors_fp16, "atol": FP16_ATOL, "rtol": FP16_RTOL}
        errors = {**errors, **{f"{g}_fp16": e for g, e in errors_fp16.items()}}
    if zero := {s: net for s, net in generators.items() if _final_layer_is_zero(net)}:
        probe = _probe_parity(out, zero, inputs)
        parity["probe"] = {"why": "final layer is zero (freshly initialised): generator graphs re-exported and "
                                  "checked with it random", "max_abs_error": probe}
        errors = {**errors, **{f"probe_{g}": e for g, e in probe.items()}}
    _write_manifest(*manifest_args, parity, anchor_style)
    log.info("exported %s to %s; parity (max abs error) %s", name, out, errors)
    return errors


def _export_graph(module: nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path,
                  autocast: torch.dtype | None = None, store: _WeightStore | None = None) -> None:
    """Trace ``module`` into the compacted ONNX file ``path`` (under ``torch.autocast`` to
    ``autocast``), its large tensors moved into ``store`` when given.

    The tracer writes into a scratch folder beside ``path``: for a network over 2 GB (the
    published XL is 2.4 GB in fp32) it stores every tensor as a file of its own, which the
    scratch folder takes away once the graph is loaded back.
    """
    precision = torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as scratch:
        traced = Path(scratch) / path.name
        with torch.no_grad(), precision:
            _onnx_export(module, inputs, output, traced)
        model_proto = optimise_graph(onnx.load(str(traced)))  # with any external tensors the tracer wrote
    _compact(model_proto)
    if store is not None:
        store.add(model_proto)
    onnx.save(model_proto, str(path))


def optimise_folder(folder: str | Path) -> dict[str, float]:
    """Give an export written before graphs had a static batch (no ``"batch"`` in its manifest)
    the graphs :func:`export_model` writes today, in place.

    Every graph goes through :func:`optimise_graph` and :func:`_compact`; generator weights are
    shared again through their external files. Before anything in ``folder`` is replaced, each
    new graph runs beside its original in ONNX Runtime on the same random batch-1 inputs and
    must agree within the export's parity bounds (``ExportError`` otherwise, the folder left
    as it was). Returns max |new - original| per graph (fp16 graphs as ``generator_N_fp16``).
    """
    import onnxruntime as ort

    folder = Path(folder)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    if manifest.get("batch") == 1:
        log.info("%s already has static batch-1 graphs; nothing to do", folder)
        return {}
    work = folder / ".optimise"
    if work.exists():
        for stale in work.iterdir():
            stale.unlink()
    work.mkdir(exist_ok=True)
    groups = [(manifest["graphs"], WEIGHTS_FILE, "", PARITY_ATOL, PARITY_RTOL),
              (manifest.get("graphs_fp16", {}), FP16_WEIGHTS_FILE, "_fp16", FP16_ATOL, FP16_RTOL)]
    written: list[str] = []
    errors: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for graphs, weights, suffix, atol, rtol in groups:
        for file in graphs.values():
            model = optimise_graph(onnx.load(str(folder / file)))
            _compact(model)
            onnx.save(model, str(work / file))
            written.append(file)
        shared = [work / f for g, f in graphs.items() if g.startswith("generator_")]
        if shared:
            _externalize(shared, work / weights)
            written.append(weights)
        for name, file in graphs.items():
            old = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
            new = ort.InferenceSession(str(work / file), providers=["CPUExecutionProvider"])
            feed = _random_feed(old, name, manifest, rng)
            want = old.run(None, feed)[0].astype(np.float32)
            got = new.run(None, {k: v for k, v in feed.items() if k in {i.name for i in new.get_inputs()}})[0]
            err = float(np.abs(got.astype(np.float32) - want).max())
            errors[name + suffix] = err
            if not err <= atol + rtol * float(np.abs(want).max()):
                raise ExportError(f"{folder / file}: the optimised graph differs from the original by {err:.3g}; "
                                  f"the folder was left unchanged (the new files are in {work})")
    for file in written:
        (work / file).replace(folder / file)
    work.rmdir()
    manifest["batch"] = 1
    manifest["sha256"] = {f: file_sha256(folder / f) for f in sorted({*manifest["sha256"], *written})}
    manifest.setdefault("parity", {})["optimise"] = {"max_abs_error": errors}
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("optimised %s: graphs now have a static batch; max |new - old| %s", folder, errors)
    return errors


def _random_feed(session, graph: str, manifest: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Plausible batch-1 inputs for ``graph`` of an export folder (cameras from :func:`example_inputs`)."""
    size = int(manifest["image_size"][0])
    latent_shape = tuple(manifest["latent_shape"])
    cameras = example_inputs(latent_shape, size, 1)
    feed = {}
    for spec in session.get_inputs():
        shape = [1, *spec.shape[1:]]
        dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        if spec.name in ("ref_K", "ref_c2w", "tgt_K", "tgt_c2w"):
            value = cameras[spec.name].numpy()
        elif spec.name == "anchor_mask":
            value = (rng.random(shape) > 0.3).astype(np.float32)
        elif spec.name in ("image", "anchor"):
            value = rng.uniform(-1, 1, shape)
        else:  # latents and noise
            value = rng.standard_normal(shape)
        feed[spec.name] = value.astype(dtype)
    return feed
