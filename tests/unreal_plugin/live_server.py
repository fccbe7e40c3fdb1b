"""Start the real bridge server for the C++ client core's live tests.

The C++ tests (unreal_plugin/.../tests/TestLiveServer.cpp) run this with the project's
Python (``WORLDFM_PYTHON``). It serves ``python_bridge.server.Server`` around
``python_bridge.pipeline.FramePipeline`` with no model -- the anchor fallback, i.e. the
real scene build and per-frame path without network weights -- and prints one line,
``READY <endpoint>`` once it accepts connections (``READY <endpoint> <server public key>``
with ``--curve-dir``, which makes CurveZMQ keys there and serves encrypted). SIGTERM or
SIGINT stops it.

    python tests/unreal_plugin/live_server.py --bind tcp://127.0.0.1:* --heartbeat-ms 200
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo, when not installed

from python_bridge.pipeline import FramePipeline  # noqa: E402
from python_bridge.server import Server, ServerConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="tcp://127.0.0.1:*", help="ZeroMQ endpoint; port * picks a free one")
    parser.add_argument("--heartbeat-ms", type=int, default=200, help="heartbeat interval advertised in welcome")
    parser.add_argument("--client-timeout-s", type=float, default=30.0, help="idle sessions expire after this")
    parser.add_argument("--curve-dir", type=Path, help="make CurveZMQ server keys in this folder and require them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="live_server %(levelname)s %(name)s: %(message)s")

    public_key = ""
    secret_file = None
    if args.curve_dir is not None:
        import zmq.auth

        args.curve_dir.mkdir(parents=True, exist_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(args.curve_dir, "server")
        public_key = " " + zmq.auth.load_certificate(public_file)[0].decode("ascii")
    config = ServerConfig(bind=args.bind, heartbeat_ms=args.heartbeat_ms, client_timeout_s=args.client_timeout_s,
                          poll_ms=10, curve_secret_file=Path(secret_file) if secret_file else None)
    server = Server(FramePipeline(splat_radius=1), config)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    signal.signal(signal.SIGINT, lambda *_: server.stop(0))
    print(f"READY {server.endpoint}{public_key}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
