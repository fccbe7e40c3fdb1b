"""Fixtures for the bridge tests: an untrained tiny model folder, servers on ephemeral ports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import zmq

sys.path.insert(0, str(Path(__file__).parent))

from stub_pipeline import StubPipeline  # noqa: E402

from python_bridge.server import Server, ServerConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An exported-model folder (manifest + 4 ONNX graphs, 32x32, steps 1 and 2), untrained."""
    from tiny_model import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def stub() -> StubPipeline:
    return StubPipeline()


@pytest.fixture
def make_server():
    """Factory: ``make_server(pipeline, load_path, **config)`` -> a started Server on an ephemeral port.

    Every server made is stopped after the test."""
    servers = []

    def factory(pipeline=None, load_path=None, **config) -> Server:
        config.setdefault("bind", "tcp://127.0.0.1:*")
        config.setdefault("poll_ms", 10)
        server = Server(pipeline or StubPipeline(), ServerConfig(**config), load_path=load_path).start()
        servers.append(server)
        return server

    yield factory
    for s in servers:
        s.stop()


@pytest.fixture
def raw_socket():
    """Factory for bare DEALER sockets (for malformed traffic); closed after the test."""
    socks = []

    def factory(endpoint: str) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(endpoint)
        socks.append(sock)
        return sock

    yield factory
    for s in socks:
        s.close(0)
