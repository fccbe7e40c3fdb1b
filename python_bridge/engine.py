"""ONNX Runtime execution of an exported model folder (the contract in models/export.py).

The folder holds ``manifest.json`` and the graphs ``encoder``, ``generator_N`` (one per
step count) and ``decoder``. Per frame the pipeline calls :meth:`Engine.encode` on the
anchor rendering (and once per reference candidate, cached by the caller), then
:meth:`Engine.generate` and :meth:`Engine.decode` (which, for a decoder graph that asks for
them, also takes the filled anchor image and its mask). Latents stay ``OrtValue`` objects on
the execution device between graphs (IO binding), so with CUDA only the anchor image goes
up and the final RGB comes down.

Providers: CUDA when its libraries load, else CPU; the probe runs once per process, logs
one line, and silences ONNX Runtime's own load-failure messages.

Precision: a folder exported with ``--fp16`` also holds fp16 generator graphs
(``graphs_fp16``, float32 inputs and outputs like the others). ``precision="auto"`` runs
them on CUDA and the fp32 graphs on CPU (ONNX Runtime's CPU kernels would only cast fp16
back to fp32); ``"fp16"`` and ``"fp32"`` force a choice.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.model_folder import FORMAT, FORMAT_VERSION, GRAPH_INPUTS, file_sha256

log = logging.getLogger(__name__)

# Present wherever the NVIDIA kernel driver is loaded (also inside containers given a GPU).
_NVIDIA_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


class ModelFolderError(ValueError):
    """An exported-model folder that does not follow the contract; the message says what is off."""


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``: graph files (fp32, and fp16 variants of some), image size
    (H, W), latent shape (C, h, w), steps, and the anchor style the model was trained with
    (``anchor_style``, a ``models.anchor.styles`` name; ``None`` when the manifest names none)."""

    folder: Path
    name: str
    image_size: tuple[int, int]
    latent_shape: tuple[int, int, int]
    steps: tuple[int, ...]
    graphs: dict[str, Path]
    graphs_fp16: dict[str, Path]
    config: dict
    static_batch: bool = False  # graphs with batch fixed to 1 (``"batch": 1``), which load in a fraction of the time
    anchor_style: str | None = None

    @property
    def anchor_filled(self) -> bool:
        """Whether the generator reads the anchor with its holes filled by push-pull
        (``models.dit.DiTConfig.anchor_filled`` in the config; black holes otherwise)."""
        return bool(self.config.get("anchor_filled", False))

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> "Manifest":
        """Read and check ``folder/manifest.json``; with ``verify`` also check each graph's sha256."""
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.is_file():
            raise ModelFolderError(f"{folder} has no manifest.json; export a model with `worldfm export` first")
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFolderError(f"{path} is not valid JSON: {exc}") from None
        if m.get("format") != FORMAT or m.get("version") != FORMAT_VERSION:
            raise ModelFolderError(
                f"{path}: expected format {FORMAT!r} version {FORMAT_VERSION}; "
                f"got {m.get('format')!r} version {m.get('version')!r}"
            )
        try:
            steps = tuple(int(s) for s in m["steps"])
            graphs = {k: folder / v for k, v in m["graphs"].items()}
            graphs_fp16 = {k: folder / v for k, v in m.get("graphs_fp16", {}).items()}
            image_size = tuple(int(x) for x in m["image_size"])
            latent_shape = tuple(int(x) for x in m["latent_shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFolderError(f"{path}: missing or malformed field ({exc!r})") from None
        needed = ["encoder", "decoder", *(f"generator_{s}" for s in steps)]
        missing = [g for g in needed if g not in graphs or not graphs[g].is_file()]
        if missing or len(image_size) != 2 or len(latent_shape) != 3 or not steps:
            raise ModelFolderError(f"{path}: graphs {missing} missing, or bad image_size/latent_shape/steps")
        if bad := [g for g, p in graphs_fp16.items() if g not in graphs or not p.is_file()]:
            raise ModelFolderError(f"{path}: fp16 graphs {bad} missing or without an fp32 counterpart")
        if verify:
            for fname, digest in m.get("sha256", {}).items():
                actual = file_sha256(folder / fname)
                if actual != digest:
                    raise ModelFolderError(f"{folder / fname}: sha256 {actual} does not match the manifest; re-export")
        return cls(
            folder,
            str(m.get("name", folder.name)),
            image_size,
            latent_shape,
            steps,
            graphs,
            graphs_fp16,
            dict(m.get("config", {})),
            m.get("batch") == 1,
            m.get("anchor_style"),
        )


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity set where the OS has one (Linux), else
    all of them.

    Why not ``os.cpu_count()``: that counts the host's CPUs, so in a container or under
    ``taskset`` limited to fewer, ONNX Runtime's pool got more threads than the CPUs it may use,
    which then take turns. On the one-core stand-in for issue 16's ~100 GFLOP/s machine
    (``taskset -c 0 python bench/bench_stream.py``, alternating pairs at a quiet hour) one
    thread gave 15.4-15.8 against 14.7-14.8 frames/s; at a busy hour the rounds' spread hid it."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def usable_providers(preference: str = "auto") -> tuple[str, ...]:
    """Execution providers to use, best first: ("CUDAExecutionProvider", "CPUExecutionProvider") or CPU only.

    ``preference`` is "auto", "cuda" or "cpu". CUDA counts as usable only if a session
    really gets it (onnxruntime-gpu lists it even when cuDNN/CUDA libraries are missing).
    """
    import onnxruntime as ort

    if preference not in ("auto", "cuda", "cpu"):
        raise ValueError(f"provider must be auto, cuda or cpu; got {preference!r}")
    cpu = ("CPUExecutionProvider",)
    if preference == "cpu" or "CUDAExecutionProvider" not in ort.get_available_providers():
        chosen, why = cpu, "CUDA not requested" if preference == "cpu" else "this onnxruntime has no CUDA provider"
    elif sys.platform == "linux" and not any(os.path.exists(p) for p in _NVIDIA_DRIVER_PATHS):
        # Loading the CUDA provider library only to see it fail costs about a second.
        chosen, why = cpu, "no NVIDIA driver on this machine"
    else:
        ort.set_default_logger_severity(4)  # the probe's failure is expected; keep stderr clean
        try:
            sess = ort.InferenceSession(_identity_model(), providers=["CUDAExecutionProvider", *cpu])
            ok = "CUDAExecutionProvider" in sess.get_providers()
        except Exception:  # a broken CUDA install can fail in many ways; all mean "use CPU"
            ok = False
        finally:
            ort.set_default_logger_severity(2)
        chosen = ("CUDAExecutionProvider", *cpu) if ok else cpu
        why = "CUDA libraries load" if ok else (
            "CUDA provider present but its libraries do not load: this onnxruntime-gpu needs the CUDA and cuDNN "
            "versions it was built for; README, 'Installing with a GPU'")
    if preference == "cuda" and chosen == cpu:
        raise RuntimeError(f"CUDA execution was requested but is not usable ({why}); use provider 'auto' or 'cpu'")
    log.info("onnxruntime %s: using %s (%s)", ort.__version__, chosen[0], why)
    return chosen


def _identity_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class Engine:
    """The ONNX sessions of one exported model, ready to run frames.

    Thread-safe: ONNX Runtime sessions may run concurrently, and each call builds its own
    IO binding. On CPU, ``threads`` sets the intra-op pool (default: every core) and
    ``spinning`` lets idle pool threads busy-wait (faster only on cores nothing else uses).
    ``precision``: "auto", "fp16" or "fp32" (module docstring).
    """

    def __init__(
        self,
        folder: str | Path,
        provider: str = "auto",
        threads: int | None = None,
        verify: bool = True,
        warmup: bool = True,
        spinning: bool = False,
        precision: str = "auto",
    ) -> None:
        import onnxruntime as ort

        if precision not in ("auto", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, fp16 or fp32; got {precision!r}")
        self._ort = ort
        self.manifest = Manifest.load(folder, verify=verify)
        if not self.manifest.static_batch:
            log.warning(
                "%s was exported with a dynamic batch: its sessions take seconds longer to create than they need; "
                "run `worldfm model optimise %s` once", self.manifest.folder, self.manifest.folder,
            )
        self.providers = usable_providers(provider)
        self.provider = self.providers[0]
        self.device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        if precision == "fp16" and not self.manifest.graphs_fp16:
            raise ModelFolderError(f"{self.manifest.folder} has no fp16 graphs; export it with `worldfm export --fp16`")
        half = precision == "fp16" or (precision == "auto" and self.device == "cuda")
        self.fp16_graphs = sorted(self.manifest.graphs_fp16) if half else []
        self.graph_files = {**self.manifest.graphs, **{g: self.manifest.graphs_fp16[g] for g in self.fp16_graphs}}
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if self.device == "cpu":
            # One frame at a time per graph: all cores on each op, no inter-op pool fighting it.
            opts.intra_op_num_threads = threads or usable_cpus()
            opts.inter_op_num_threads = 1
            # By default idle pool threads sleep instead of spinning: the cores are shared with
            # the I/O loop, the anchor splatting and often the clients, which spinning threads
            # starve (frames 2-3x slower on a busy 2-core machine; bench/bench_bridge.py --model).
            # Spinning only inside a run ("session.force_spinning_stop" = 1) was measured too: `worldfm demo`,
            # alternating pairs on the 2-core VM, 2026-12-03: 15.9-16.0 against 14.7-15.1 frames/s quiet,
            # but 9.7-10.4 against 13.1-13.4 frames/s (p95 130 against 100 ms) beside one busy-loop process.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.sessions = {
            name: ort.InferenceSession(str(path), opts, providers=list(self.providers))
            for name, path in self.graph_files.items()
        }
        for name, sess in self.sessions.items():
            # A graph may lack contract inputs it does not use (the ONNX exporter drops them,
            # e.g. cameras for a model without PRoPE); it may not ask for anything else.
            want = GRAPH_INPUTS["generator" if name.startswith("generator_") else name]
            have = [i.name for i in sess.get_inputs()]
            if not set(have) <= set(want) or want[0] not in have:
                raise ModelFolderError(f"{self.graph_files[name]}: inputs {have} do not match the contract {want}")
        self._in_types = {
            name: {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in s.get_inputs()}
            for name, s in self.sessions.items()
        }
        if warmup:
            self.warm_up()

    @property
    def precision(self) -> str:
        """``fp16`` when every generator graph in use is fp16, ``fp32`` when none is, else ``mixed``."""
        if not self.fp16_graphs:
            return "fp32"
        generators = [g for g in self.graph_files if g.startswith("generator_")]
        return "fp16" if len(self.fp16_graphs) == len(generators) else "mixed"

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frames the generator produces."""
        return self.manifest.image_size

    @property
    def steps(self) -> tuple[int, ...]:
        return self.manifest.steps

    def _value(self, graph: str, name: str, array: np.ndarray):
        """A numpy input as an OrtValue on the execution device, in the graph's input dtype."""
        arr = np.ascontiguousarray(array, dtype=self._in_types[graph][name])
        return self._ort.OrtValue.ortvalue_from_numpy(arr, self.device, 0)

    def _run(self, graph: str, inputs: dict):
        """Run ``graph`` with OrtValue/numpy ``inputs``; the single output stays on the device."""
        sess = self.sessions[graph]
        binding = sess.io_binding()
        for name, value in inputs.items():
            if name not in self._in_types[graph]:
                continue  # an input this graph does not use (dropped at export)
            if isinstance(value, np.ndarray):
                value = self._value(graph, name, value)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(sess.get_outputs()[0].name, self.device, 0)
        sess.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def encode(self, rgb: np.ndarray):
        """RGB uint8 (H, W, 3) at the model's image size -> latent OrtValue (1, C, h, w)."""
        self._check_image(rgb)
        image = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
        return self._run("encoder", {"image": image})

    def generate(
        self,
        steps: int,
        anchor_latent,
        anchor_mask: np.ndarray,
        ref_latent,
        ref_K: np.ndarray,
        ref_c2w: np.ndarray,
        tgt_K: np.ndarray,
        tgt_c2w: np.ndarray,
        rng: np.random.Generator,
    ):
        """One distilled sample -> latent OrtValue (1, C, h, w).

        ``anchor_mask`` (H, W) bool/float, 1 where the point cloud covers the pixel. K (3, 3)
        pixels of the model image size; c2w (4, 4) metres, raw (the graph normalises).
        """
        graph = f"generator_{steps}"
        if graph not in self.sessions:
            raise ValueError(f"this model has {list(self.steps)}-step generators; {steps} steps was asked")
        c, h, w = self.manifest.latent_shape
        noise = rng.standard_normal((1, steps, c, h, w), dtype=np.float32)
        return self._run(
            graph,
            {
                "noise": noise,
                "anchor_latent": anchor_latent,
                "anchor_mask": np.asarray(anchor_mask, dtype=np.float32)[None, None],
                "ref_latent": ref_latent,
                "ref_K": np.asarray(ref_K)[None],
                "ref_c2w": np.asarray(ref_c2w)[None],
                "tgt_K": np.asarray(tgt_K)[None],
                "tgt_c2w": np.asarray(tgt_c2w)[None],
            },
        )

    @property
    def decoder_uses_anchor(self) -> bool:
        """Whether :meth:`decode` needs the anchor rendering (an anchor decoder, docs/model.md)."""
        return "anchor" in self._in_types["decoder"]

    def decode(self, latent, anchor: np.ndarray | None = None, anchor_mask: np.ndarray | None = None) -> np.ndarray:
        """Latent OrtValue (1, C, h, w) -> RGB uint8 (H, W, 3).

        A model whose decoder uses the anchor also takes ``anchor``, the anchor rendering
        with its holes filled (RGB uint8 (H, W, 3), e.g. ``models.anchor.fill_holes``), and
        ``anchor_mask`` (H, W), 1 where points cover the pixel; other decoders ignore them.
        """
        inputs = {"latent": latent}
        if self.decoder_uses_anchor:
            if anchor is None or anchor_mask is None:
                raise ValueError(f"model {self.manifest.name} decodes with the anchor: pass anchor and anchor_mask")
            self._check_image(anchor)
            inputs["anchor"] = anchor.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
            inputs["anchor_mask"] = np.asarray(anchor_mask, dtype=np.float32)[None, None]
        image = self._run("decoder", inputs).numpy()[0].astype(np.float32)
        return np.clip((image.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

    def warm_up(self) -> float:
        """Run every graph once on dummy inputs (first runs allocate and tune); returns ms."""
        t0 = time.perf_counter()
        h, w = self.image_size
        rgb = np.zeros((h, w, 3), np.uint8)
        K = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
        latent = self.encode(rgb)
        for s in self.steps:
            self.decode(
                self.generate(s, latent, np.ones((h, w)), latent, K, np.eye(4), K, np.eye(4), np.random.default_rng(0)),
                rgb, np.ones((h, w)),
            )
        ms = (time.perf_counter() - t0) * 1e3
        log.info(
            "model %s warmed up in %.0f ms (%s, %s, steps %s)",
            self.manifest.name, ms, self.provider, self.precision, list(self.steps),
        )
        return ms

    def _check_image(self, rgb: np.ndarray) -> None:
        h, w = self.image_size
        if rgb.dtype != np.uint8 or rgb.shape != (h, w, 3):
            raise ValueError(f"the model takes uint8 ({h}, {w}, 3) images; got {rgb.dtype} {rgb.shape}")

    def describe(self) -> dict:
        """Model and provider info for the ``welcome`` message."""
        h, w = self.image_size
        return {
            "name": self.manifest.name,
            "frame_size": [w, h],
            "steps": list(self.steps),
            "latent_shape": list(self.manifest.latent_shape),
            "dtype": self.precision,
            "fp16_graphs": self.fp16_graphs,
            "provider": self.provider,
        }
