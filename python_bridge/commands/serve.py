"""``worldfm serve``, ``worldfm demo`` and ``worldfm render-path``: the bridge's commands.

Heavy imports (onnxruntime, torch through models.anchor) stay inside the handlers so
``worldfm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from python_bridge.scenes import FILL_GUARD_WHEN

log = logging.getLogger(__name__)


def prepare_runtime() -> None:
    """Environment for serving, set before torch is imported (explicit settings win).

    * Idle OpenMP threads (torch's, which splat the anchor) sleep instead of spinning: the
      frame path alternates torch (anchor) and ONNX Runtime (model) on the same cores as the
      I/O loop, and spinning OpenMP threads starve ONNX Runtime (frames 4-6x slower on a busy
      2-core machine). libgomp reads OMP_WAIT_POLICY when torch loads.
    * torch.compile's on-disk cache lives under the user's cache folder, not /tmp, so the
      compiled splatting kernels survive reboots and /tmp cleaners: later runs load them in
      seconds instead of compiling for 10+ (``$XDG_CACHE_HOME/worldfm/torchinductor``).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "worldfm" / "torchinductor"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))


def _seconds(text: str) -> float:
    """argparse type: a duration of >= 0 seconds (argparse reports the error and exits 2)."""
    value = float(text)
    if not value >= 0:  # (also NaN)
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds; got {text}")
    return value


def _add_compile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile-when-idle", type=_seconds, default=1.0, metavar="SECONDS",
                        help="compile the anchor's faster kernels in the background only after SECONDS without a "
                             "frame (default 1: a compile beside a stream slows the frames being watched; 0: at once)")


FILL_GUARD_HELP = ("render views of the scene left out of its cloud with the model and as anchor + hole filling, "
                   "and serve the closer of the two for that scene (models/fill_guard.py)")


def add_fill_guard_arg(parser: argparse.ArgumentParser) -> None:
    """``--fill-guard [idle|build|off]`` for the commands that serve a stream of frames."""
    parser.add_argument("--fill-guard", choices=FILL_GUARD_WHEN, nargs="?", const="build", default="idle",
                        help=FILL_GUARD_HELP + ": idle (default) measures between frames, whenever none was asked "
                             "for a second, and the model serves until it is decided; build (also the bare flag) "
                             "measures before the scene is ready, a few seconds more before the first frame; off")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="exported model folder (manifest.json + ONNX); default models/weights/demo-256 if "
        "present, else the anchor + hole-filling fallback",
    )
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="run the anchor + classical hole-filling fallback even when a model is present",
    )
    parser.add_argument("--steps", type=int, default=None, help="generator steps (1 or 2; default: the model's fewest)")
    parser.add_argument(
        "--provider",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="ONNX Runtime execution provider (default auto: CUDA when usable)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp16", "fp32"],
        default="auto",
        help="generator graphs: fp16 ones (from `worldfm export --fp16`) or fp32 (default auto: fp16 on CUDA when "
        "the model has them, fp32 otherwise)",
    )
    # (Checked against models.anchor.styles when the pipeline loads: importing it here would load torch.)
    parser.add_argument("--anchor", default=None, metavar="STYLE",
                        help="anchor style: mesh, points, ... (default: the model manifest's, else mesh; docs/anchor.md)")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the real-time inference server (ZeroMQ, protocol v1)",
        description="Serve generated frames to game engines and scripts over ZeroMQ. See docs/protocol.md.",
    )
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555", help="endpoint (default tcp://127.0.0.1:5555)")
    _add_model_args(serve)
    serve.add_argument("--workers", type=int, default=1,
                       help="frames rendered at once (default 1); the server runs one thread more, free for I/O")
    serve.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="let clients open dataset folders under this directory by path (default: uploads only)",
    )
    serve.add_argument(
        "--curve-keys",
        type=Path,
        default=None,
        help="folder with server.key_secret (CurveZMQ); required to bind a non-loopback address",
    )
    serve.add_argument(
        "--authorized-keys",
        type=Path,
        default=None,
        help="folder of client public keys (*.key) to accept; default: any client with the server key",
    )
    serve.add_argument(
        "--make-keys",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a CurveZMQ key pair for the server and one client into DIR, then exit",
    )
    serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback bind without encryption (trusted networks only)"
    )
    serve.add_argument("--client-timeout", type=float, default=30.0, help="seconds before an idle client expires")
    _add_compile_arg(serve)
    add_fill_guard_arg(serve)
    serve.set_defaults(func=run_serve)

    demo = subparsers.add_parser(
        "demo",
        help="procedural scene -> server -> client flythrough video, with timings",
        description="The end-to-end demo on this machine: no GPU or Unreal needed.",
    )
    _add_model_args(demo)
    demo.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default demo/)")
    demo.add_argument("--frames", type=int, default=48, help="flythrough frames (default 48)")
    demo.add_argument("--views", type=int, default=12, help="source views of the scene (default 12)")
    demo.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    demo.add_argument("--seed", type=int, default=0, help="procedural scene seed (default 0)")
    demo.add_argument("--kind", choices=["indoor", "outdoor"], default="indoor", help="scene kind (default indoor)")
    demo.add_argument("--client-timeout", type=float, default=30.0,
                      help="seconds before the in-process server expires an idle session (default 30)")
    _add_compile_arg(demo)
    add_fill_guard_arg(demo)
    demo.set_defaults(func=run_demo)

    path = subparsers.add_parser(
        "render-path",
        help="render a camera path offline to PNGs and an MP4",
        description="Frame-accurate offline rendering through the same pipeline as the "
        "server. PATH is a camera-path JSON (see python_bridge/camera_path.py) "
        "or a WorldFM meta.json.",
    )
    path.add_argument("scene", type=Path, help="dataset scene folder (datagen format)")
    path.add_argument("--path", type=Path, required=True, help="camera path JSON or WorldFM meta.json")
    path.add_argument("--out", type=Path, required=True, help="output folder for frame_00000.png ... and path.mp4")
    _add_model_args(path)
    path.add_argument("--seed", type=int, default=0, help="noise seed of frame 0; frame i uses seed + i")
    path.add_argument("--fill-guard", action="store_true",
                      help=FILL_GUARD_HELP + "; measured before the first frame, as `worldfm serve --fill-guard build` "
                                             "does (a few seconds more)")
    path.add_argument(
        "--size", type=int, nargs=2, metavar=("W", "H"), default=None, help="output size (default: the path's)"
    )
    path.set_defaults(func=run_render_path)


def run_serve(args: argparse.Namespace) -> int:
    prepare_runtime()
    from python_bridge import protocol as P
    from python_bridge.demo import load_pipeline
    from python_bridge.server import InsecureBindError, Server, ServerConfig

    if args.make_keys is not None:
        return _make_keys(args.make_keys)
    secret = None
    if args.curve_keys is not None:
        secret = args.curve_keys / "server.key_secret"
        if not secret.is_file():
            print(
                f"error: {secret} not found; create keys with `worldfm serve --make-keys {args.curve_keys}`",
                file=sys.stderr,
            )
            return 2
        if secret.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; restrict it: chmod 600 %s", secret, secret)
    load_path = None
    if args.data_root is not None:
        from datagen.dataset import read_scene

        def load_path(p: Path) -> list:
            return read_scene(p).frames

    config = ServerConfig(
        bind=args.bind,
        workers=args.workers,
        client_timeout_s=args.client_timeout,
        curve_secret_file=secret,
        authorized_dir=args.authorized_keys,
        insecure=args.insecure,
        data_root=args.data_root,
        compile_when_idle_s=args.compile_when_idle,
        fill_guard=args.fill_guard,
        limits=P.Limits(),
    )
    try:
        pipeline = load_pipeline(args.model, args.provider, args.steps, args.no_model, args.precision, args.anchor)
        server = Server(pipeline, config, load_path=load_path)
    except (InsecureBindError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    print(f"worldfm serve: listening on {server.endpoint} (Ctrl+C to stop)", flush=True)
    server.serve_forever()
    return 0


def _make_keys(folder: Path) -> int:
    """Write CurveZMQ key pairs for the server and one client (ZeroMQ's certificate files,
    docs/protocol.md); the secret halves are readable by their owner only (0600), and are
    never readable by others even while being written (umask)."""
    import zmq.auth

    old_umask = os.umask(0o077)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("server", "client"):
            _, secret = zmq.auth.create_certificates(folder, name)
            os.chmod(secret, 0o600)
    finally:
        os.umask(old_umask)
    print(
        f"wrote server.key / server.key_secret and client.key / client.key_secret to {folder}\n"
        f"serve with --curve-keys {folder}; give clients server.key (the public key) only"
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    prepare_runtime()
    from python_bridge.demo import run_demo as demo

    if args.frames < 2 or args.views < 1 or args.size < 16:
        print("error: need --frames >= 2, --views >= 1 and --size >= 16", file=sys.stderr)
        return 2
    report = demo(
        out_dir=args.out,
        model=args.model,
        fallback=args.no_model,
        frames=args.frames,
        views=args.views,
        size=args.size,
        steps=args.steps,
        seed=args.seed,
        kind=args.kind,
        provider=args.provider,
        precision=args.precision,
        anchor_style=args.anchor,
        client_timeout_s=args.client_timeout,
        compile_when_idle_s=args.compile_when_idle,
        fill_guard=args.fill_guard,
    )
    print(report.summary())
    return 0


def run_render_path(args: argparse.Namespace) -> int:
    prepare_runtime()
    from tqdm import tqdm

    from datagen.dataset import DatasetError, read_scene
    from models.anchor.splat import compiles_held
    from models.cameras import scale_K
    from python_bridge.camera_path import CameraPathError, load_camera_path, render_path
    from python_bridge.demo import load_pipeline

    try:
        path = load_camera_path(args.path)
        scene = read_scene(args.scene)
    except (CameraPathError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = tuple(args.size) if args.size else path.size
    K = scale_K(path.K, path.size, size)
    pipeline = load_pipeline(args.model, args.provider, args.steps, args.no_model, args.precision, args.anchor)
    built = pipeline.build(scene.frames)
    log.info("scene %s: %d views -> %d points in %.0f ms", scene.name, len(scene.frames), built.points, built.build_ms)
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / "path.mp4"
    # Offline and never idle: the anchor's splat kernels stay eager (python_bridge.batch.JobRunner says why).
    with compiles_held(), tqdm(total=len(path), desc="render-path", unit="frame") as bar:
        if args.fill_guard:  # as `worldfm serve --fill-guard build` builds the scene
            pipeline.measure_fill_guard(built)
        count = render_path(
            path,
            lambda c2w, seed: pipeline.render(built, c2w, K, size, steps=args.steps, seed=seed).rgb,
            video,
            seed=args.seed,
            frames_dir=args.out,
            progress=lambda done, total: bar.update(1),
        )
    print(f"{count} frames -> {args.out}/frame_*.png and {video}")
    return 0
