"""Fixtures for the bridge tests: an untrained tiny model folder, servers on ephemeral ports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

sys.path.insert(0, str(Path(__file__).parent))

from stub_pipeline import StubPipeline  # noqa: E402

from models.cameras import K_from_hfov, look_at  # noqa: E402
from models.scene import Camera, Frame  # noqa: E402
from python_bridge.server import Server, ServerConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An exported-model folder (manifest + 4 ONNX graphs, 32x32, steps 1 and 2), untrained."""
    from tiny_model import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny"))


def make_views(n: int = 2, width: int = 32, height: int = 24, depth: bool = True) -> list[Frame]:
    """``n`` posed RGB-D views of a plane 3 m ahead, cameras on a small arc."""
    rng = np.random.default_rng(n)
    frames = []
    for i in range(n):
        c2w = look_at([0.2 * i, -3.0, 1.0], [0.0, 0.0, 1.0])
        cam = Camera(K=K_from_hfov(60.0, width, height), c2w=c2w, width=width, height=height)
        rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        d = np.full((height, width), 3.0, np.float32) if depth else None
        frames.append(Frame(rgb=rgb, camera=cam, depth=d, name=f"v{i}"))
    return frames


@pytest.fixture
def stub() -> StubPipeline:
    return StubPipeline()


@pytest.fixture
def make_server():
    """Factory: ``make_server(pipeline, **config)`` -> a started Server on an ephemeral port; stopped after."""
    servers = []

    def factory(pipeline=None, **config) -> Server:
        config.setdefault("bind", "tcp://127.0.0.1:*")
        config.setdefault("poll_ms", 10)
        server = Server(pipeline or StubPipeline(), ServerConfig(**config)).start()
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
