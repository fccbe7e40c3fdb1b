"""``worldfm view``: explore a generated world interactively in the browser.

Starts the inference server in this process (or connects to one with ``--server``), serves
the viewer page on 127.0.0.1 and prints its URL (which carries a per-launch token). See
docs/viewer.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import webbrowser
from pathlib import Path

from python_bridge.commands.serve import _add_model_args, prepare_runtime

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    view = subparsers.add_parser(
        "view",
        help="fly through a generated world in the browser",
        description="Serve an interactive viewer page: WASD + mouse-look, generated / anchor / side-by-side / wipe "
        "views, live timings, scene picker, path recording to MP4 and camera-path JSON. See docs/viewer.md.",
    )
    _add_model_args(view)
    view.add_argument(
        "--scene",
        default=None,
        help="scene to open first: procedural:SEED[:indoor|:outdoor], a dataset scene folder, or data:NAME under "
        "--data-root (default: the first scene under --data-root, else procedural:0)",
    )
    view.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="offer the dataset scenes directly under this folder in the page's scene picker (only those)",
    )
    view.add_argument(
        "--server",
        default=None,
        metavar="ENDPOINT",
        help="use a running `worldfm serve` (e.g. tcp://127.0.0.1:5555) instead of starting one here",
    )
    view.add_argument("--host", default="127.0.0.1", help="address of the page (default 127.0.0.1, this machine only)")
    view.add_argument("--port", type=int, default=8080, help="port of the page (default 8080; 0: any free port)")
    view.add_argument(
        "--insecure",
        action="store_true",
        help="allow a --host other than loopback (the page and its token then travel unencrypted)",
    )
    view.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    view.add_argument("--views", type=int, default=12, help="source views of procedural scenes (default 12)")
    view.set_defaults(func=run_view)


def _scene_choice(args: argparse.Namespace):
    """The catalog and the first scene's name from ``--scene`` / ``--data-root``; ValueError if unusable."""
    from python_bridge.viewer.catalog import Catalog, SceneNameError

    if args.data_root is not None and not args.data_root.is_dir():
        raise ValueError(f"--data-root {args.data_root} is not a folder")
    if args.scene is None:
        catalog = Catalog(args.data_root)
        return catalog, catalog.default()
    folder = Path(args.scene)
    if (folder / "transforms.json").is_file():
        catalog = Catalog(args.data_root, [folder])
        return catalog, catalog.default()
    catalog = Catalog(args.data_root)
    try:
        return catalog, catalog.resolve(args.scene).name
    except SceneNameError as exc:
        raise ValueError(f"--scene: {exc}; or give a dataset scene folder (one holding transforms.json)") from None


def run_view(args: argparse.Namespace) -> int:
    prepare_runtime()
    from python_bridge.server import is_loopback

    if not is_loopback(f"tcp://{args.host}:0") and not args.insecure:
        print(
            f"error: --host {args.host} would let other machines open the viewer; pass --insecure to allow it "
            "on a trusted network (the page and its token are not encrypted)",
            file=sys.stderr,
        )
        return 2
    if args.views < 1 or not 0 <= args.port < 65536:
        print("error: need --views >= 1 and --port in 0..65535", file=sys.stderr)
        return 2
    try:
        catalog, first = _scene_choice(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = None
    endpoint = args.server
    if endpoint is None:
        from python_bridge.demo import load_pipeline
        from python_bridge.server import Server, ServerConfig

        try:
            pipeline = load_pipeline(args.model, args.provider, args.steps, args.no_model, args.precision)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        server = Server(pipeline, ServerConfig(bind="tcp://127.0.0.1:*")).start()
        endpoint = server.endpoint
    try:
        return asyncio.run(_serve(args, catalog, first, endpoint))
    finally:
        if server is not None:
            server.stop()


async def _serve(args: argparse.Namespace, catalog, first: str, endpoint: str) -> int:
    from python_bridge.viewer.gateway import Gateway, ViewerStartError

    gateway = Gateway(endpoint, catalog, first, host=args.host, port=args.port, views=args.views)
    try:
        url = await gateway.start()
    except ViewerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def built(scene, error: str | None) -> None:
        if error:
            log.warning("%s", error)

    # The first scene builds while the browser starts; the page shows its progress.
    gateway.host.open(first, lambda *_: None, built)
    print(
        f"worldfm view: open {url}  (model {gateway.model.get('name', '?')}, server {endpoint}; Ctrl+C to stop)",
        flush=True,
    )
    if not args.no_browser:
        webbrowser.open(url)
    await stop.wait()
    await gateway.stop()
    print("worldfm view: stopped", flush=True)
    return 0
