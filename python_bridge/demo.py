"""``worldfm demo``: the whole system on one machine, no GPU and no Unreal needed.

1. generate a seeded procedural scene and render posed RGB-D source views (datagen);
2. start the bridge server in-process on a loopback port;
3. connect a client over TCP, upload the views, fly a smooth path through them;
4. write ``flythrough.mp4``, a ``strip.png`` (reference | anchor | generated | ground truth)
   and print frames per second and latency percentiles per stage.

The model is ``models/weights/demo-256/`` when it exists (or ``--model``); otherwise the
server runs its fallback (point-cloud anchor + hole filling) and says so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

import models
from models.metrics import psnr

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(models.__path__[0]) / "weights" / "demo-256"  # shipped inside the models package
STRIP_ROWS = 4


@dataclass
class DemoReport:
    """What the demo measured: sustained FPS, client latency and per-stage server timings (ms)."""

    frames: int
    fps: float
    mode: str
    model: str
    provider: str
    latency_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    psnr_generated: float | None = None
    psnr_anchor: float | None = None
    outputs: list[Path] = field(default_factory=list)
    startup_s: dict[str, float] = field(default_factory=dict)  # milestones, s since process start (timeline)

    def summary(self) -> str:
        lines = [
            f"{self.frames} frames, {self.fps:.1f} frames/s sustained, mode {self.mode} "
            f"(model {self.model}, {self.provider})",
            f"{'stage':<16}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
        ]
        rows = {"client latency": self.latency_ms, **self.stages}
        for name, values in rows.items():
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            lines.append(f"{name:<16}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}")
        if self.psnr_generated is not None:
            lines.append(
                f"PSNR vs ground truth on the strip frames: generated {self.psnr_generated:.2f} dB, "
                f"anchor {self.psnr_anchor:.2f} dB"
            )
        if self.startup_s:
            lines.append("start-up, seconds since the process started: "
                         + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in self.startup_s.items()))
        lines += [f"wrote {p}" for p in self.outputs]
        return "\n".join(lines)

    def to_json(self) -> dict:
        """Everything measured, for scripts (written as ``report.json`` beside the video)."""
        stats = {k: dict(zip(("p50", "p95", "p99"), np.percentile(v, [50, 95, 99]).round(2).tolist()))
                 for k, v in {"client_latency_ms": self.latency_ms, **self.stages}.items()}
        return {"frames": self.frames, "fps": round(self.fps, 2), "mode": self.mode, "model": self.model,
                "provider": self.provider, "psnr_generated": self.psnr_generated, "psnr_anchor": self.psnr_anchor,
                "startup_s": self.startup_s, "latency": stats, "outputs": [str(p) for p in self.outputs]}


def make_scene(seed: int, kind: str, views: int, size: int, progress: Callable[[int, int], None] | None = None):
    """Procedural scene, its renderer and ``views`` posed RGB-D source frames (size x size).

    ``progress(done, total)`` is called after each view (``worldfm view`` shows it in the page)."""
    from datagen.procedural.renderer import Renderer
    from datagen.procedural.scenes import generate_scene
    from datagen.procedural.trajectories import plan_cameras

    scene = generate_scene(seed, kind)
    cameras, info = plan_cameras(scene, views, size, size)
    renderer = Renderer(scene)
    frames = []
    for i, cam in enumerate(tqdm(cameras, desc="source views", unit="view", leave=False)):
        frames.append(renderer.render(cam, name=f"view_{i:03d}"))
        if progress is not None:
            progress(i + 1, len(cameras))
    log.info(
        "procedural %s scene (seed %d): %d views along a %s path, baseline %.2f m",
        kind,
        seed,
        views,
        info["trajectory"],
        info["baseline_m"],
    )
    return renderer, frames


def model_folder(model: Path | None, fallback: bool = False) -> Path | None:
    """The exported model the commands load: ``model``, else the shipped default when it is
    there; None for the fallback (``fallback`` set, or no model anywhere)."""
    if fallback:
        return None
    return model or (DEFAULT_MODEL if (DEFAULT_MODEL / "manifest.json").is_file() else None)


def load_pipeline(model: Path | None, provider: str, steps: int | None, fallback: bool = False,
                  precision: str = "auto", anchor_style: str | None = None, threads: int | None = None):
    """The frame pipeline: with the exported model at ``model`` (or the default folder) or the fallback.

    ``precision`` picks fp16 or fp32 graphs (:class:`python_bridge.engine.Engine`).
    ``fallback`` forces the anchor + hole-filling path even when a model is present, so the
    classical baseline can be watched side by side with the model. ``anchor_style`` overrides
    the anchor style (default: the model's, else the best; ``models.anchor.styles``).
    ``threads`` caps ONNX Runtime's CPU threads (default: every core).
    """
    from python_bridge import timeline
    from python_bridge.pipeline import FramePipeline

    timeline.mark("imports")
    if fallback:
        log.info("--no-model: running the point-cloud anchor + classical hole filling, no generator")
        return FramePipeline(None, anchor_style=anchor_style)
    folder = model_folder(model)
    if folder is None:
        log.warning(
            "no model at %s (pass --model DIR to use one): running the FALLBACK, "
            "point-cloud anchor + classical hole filling, no generator",
            DEFAULT_MODEL,
        )
        return FramePipeline(None, anchor_style=anchor_style)
    from python_bridge.engine import Engine

    pipeline = FramePipeline(Engine(folder, provider=provider, precision=precision, threads=threads), steps=steps,
                             anchor_style=anchor_style)
    timeline.mark("engine_ready")
    return pipeline


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(image).copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def run_demo(
    out_dir: Path = Path("demo"),
    model: Path | None = None,
    frames: int = 48,
    views: int = 12,
    size: int = 256,
    steps: int | None = None,
    seed: int = 0,
    kind: str = "indoor",
    provider: str = "auto",
    fps: float = 24.0,
    fallback: bool = False,
    precision: str = "auto",
    anchor_style: str | None = None,
    client_timeout_s: float = 30.0,
    compile_when_idle_s: float | None = 1.0,
    fill_guard: str = "idle",
) -> DemoReport:
    """Run the demo end to end and return its measurements (see the module docstring).

    ``client_timeout_s`` is the server's session timeout (``worldfm serve --client-timeout``),
    ``compile_when_idle_s`` when it compiles the anchor kernels (``--compile-when-idle``),
    ``fill_guard`` when the server measures the scene's fill guard (``--fill-guard``: idle, build or off)."""
    import imageio.v2 as imageio

    from models.scene import Camera
    from python_bridge.camera_path import interpolate_poses
    from python_bridge import timeline
    from python_bridge.client import Client
    from python_bridge.server import Server, ServerConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    renderer, source = make_scene(seed, kind, views, size)
    timeline.mark("scene_rendered")
    pipeline = load_pipeline(model, provider, steps, fallback, precision, anchor_style)
    K = source[0].camera.K
    path = interpolate_poses(np.stack([f.camera.c2w for f in source]), frames)
    strip_at = set(np.linspace(0, frames - 1, STRIP_ROWS).round().astype(int).tolist())
    generated, strip, latency, stages = [], [], [], {}
    with (
        Server(pipeline, ServerConfig(bind="tcp://127.0.0.1:*", client_timeout_s=client_timeout_s,
                                     compile_when_idle_s=compile_when_idle_s,
                                     fill_guard=fill_guard)).start() as server,
        Client(server.endpoint, timeout_s=60, name="worldfm-demo") as client,
    ):
        log.info("uploading %d views and building the anchor (the offline stage; seconds on a CPU)", len(source))
        info = client.open_scene(source, name=f"procedural-{kind}-{seed}")
        log.info(
            "scene %s: %d points, %d reference candidates, built in %.0f ms",
            info.scene,
            info.points,
            info.candidates,
            info.build_ms,
        )
        start = time.perf_counter()
        for i, c2w in enumerate(tqdm(path, desc="flythrough", unit="frame")):
            reply = client.render(
                info.scene, c2w, K=K, size=(size, size), seed=seed * 100_003 + i, anchor=i in strip_at
            )
            timeline.mark("first_frame_received")
            generated.append(np.array(reply.rgb))
            latency.append(reply.latency_ms)
            for stage, ms in reply.timings.items():
                stages.setdefault(stage, []).append(ms)
            if i in strip_at:
                strip.append((i, reply))
        elapsed = time.perf_counter() - start
        describe = client.welcome["model"]
    report = DemoReport(
        frames, frames / elapsed, reply.mode, describe.get("name", "?"), describe.get("provider", "?"), latency, stages,
        startup_s=timeline.marks(),
    )
    video = out_dir / "flythrough.mp4"
    imageio.mimwrite(video, generated, fps=fps, quality=8, macro_block_size=1)
    rows, ps_gen, ps_anchor = [], [], []
    for i, reply in strip:
        truth = renderer.render(Camera(K=K, c2w=path[i], width=size, height=size)).rgb
        ref = source[reply.reference].rgb if reply.reference is not None else np.zeros_like(truth)
        anchor = reply.anchor_rgb if reply.anchor_rgb is not None else np.zeros_like(truth)
        ps_gen.append(psnr(reply.rgb, truth))
        ps_anchor.append(psnr(anchor, truth))
        rows.append(
            np.concatenate(
                [
                    _label(ref, f"reference #{reply.reference}"),
                    _label(anchor, "anchor"),
                    _label(reply.rgb, "generated" if reply.mode == "model" else "fallback: anchor + fill"),
                    _label(truth, "ground truth"),
                ],
                1,
            )
        )
    strip_path = out_dir / "strip.png"
    imageio.imwrite(strip_path, np.concatenate(rows, 0))
    report.psnr_generated, report.psnr_anchor = float(np.mean(ps_gen)), float(np.mean(ps_anchor))
    report.outputs = [video, strip_path, out_dir / "report.json"]
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return report
