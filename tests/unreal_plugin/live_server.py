"""Start the real bridge servers for the C++ client core's live tests.

The C++ tests (unreal_plugin/.../tests/TestLive*.cpp, ServerProcess.h) run this with the
project's Python (``WORLDFM_PYTHON``). It serves ``python_bridge.server.Server`` around
``python_bridge.pipeline.FramePipeline`` with no model -- the anchor fallback, i.e. the real
scene build and per-frame path without network weights. Starting Python and importing the
pipeline is the slow part (seconds; tens of seconds on a loaded machine), so one process can
serve several differently configured servers at once, each on its own port:

* ``main``: bound to ``--bind``, sessions expire after ``--client-timeout-s``;
* ``expiring`` (with ``--expiring-timeout-s S``): sessions expire after S seconds;
* ``curve`` (with ``--curve-dir DIR``): CurveZMQ keys made in DIR, encryption required.

It prints ``SERVER <name> <endpoint>`` for each (``SERVER curve <endpoint> <public key>``)
and then ``READY`` once all of them accept connections. SIGTERM or SIGINT stops them.

    python tests/unreal_plugin/live_server.py --bind tcp://127.0.0.1:* --expiring-timeout-s 1.5
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when not installed

from python_bridge.pipeline import FramePipeline  # noqa: E402
from python_bridge.server import Server, ServerConfig  # noqa: E402


def _config(args: argparse.Namespace, **overrides: object) -> ServerConfig:
    fields = {"bind": "tcp://127.0.0.1:*", "heartbeat_ms": args.heartbeat_ms,
              "client_timeout_s": args.client_timeout_s, "poll_ms": 10}
    fields.update(overrides)
    return ServerConfig(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="tcp://127.0.0.1:*", help="main server's endpoint; * picks a free port")
    parser.add_argument("--heartbeat-ms", type=int, default=200, help="heartbeat interval advertised in welcome")
    parser.add_argument("--client-timeout-s", type=float, default=30.0, help="main server: sessions expire after this")
    parser.add_argument("--expiring-timeout-s", type=float, help="also serve 'expiring': sessions expire after this")
    parser.add_argument("--curve-dir", type=Path, help="also serve 'curve': CurveZMQ keys made in this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="live_server %(levelname)s %(name)s: %(message)s")

    servers: list[tuple[str, Server, str]] = [
        ("main", Server(FramePipeline(splat_radius=1), _config(args, bind=args.bind)), "")
    ]
    if args.expiring_timeout_s is not None:
        config = _config(args, client_timeout_s=args.expiring_timeout_s)
        servers.append(("expiring", Server(FramePipeline(splat_radius=1), config), ""))
    if args.curve_dir is not None:
        import zmq.auth

        args.curve_dir.mkdir(parents=True, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(args.curve_dir, "server")
        public_key = zmq.auth.load_certificate(public_file)[0].decode("ascii")
        config = _config(args, curve_secret_file=Path(secret_file))
        servers.append(("curve", Server(FramePipeline(splat_radius=1), config), " " + public_key))

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    for name, server, key in servers:
        server.start()
        print(f"SERVER {name} {server.endpoint}{key}", flush=True)
    print("READY", flush=True)
    while not stopped.wait(0.2):
        pass
    for _, server, _ in servers:
        server.stop()  # answers what is still queued
    return 0


if __name__ == "__main__":
    sys.exit(main())
