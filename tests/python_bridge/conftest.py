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
    """``n`` posed RGB-D views of a checkerboard wall (the plane y = 0), cameras 3 m away on a small arc.

    Colours and depths are exact ray-plane intersections, so every view agrees with every other.
    """
    frames = []
    j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    for k in range(n):
        c2w = look_at([0.2 * k, -3.0, 1.0], [0.0, 0.0, 1.0])
        K = K_from_hfov(60.0, width, height)
        rays_cam = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)  # z = 1
        rays = rays_cam @ c2w[:3, :3].T
        t = -c2w[1, 3] / rays[..., 1]  # z-depth, since each camera-space ray has z = 1
        hit = c2w[:3, 3] + t[..., None] * rays
        cell = (np.floor(hit[..., 0] / 0.25) + np.floor(hit[..., 2] / 0.25)).astype(int)
        palette = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.uint8)
        rgb = palette[cell % 3]
        cam = Camera(K=K, c2w=c2w, width=width, height=height)
        frames.append(Frame(rgb=rgb, camera=cam, depth=t.astype(np.float32) if depth else None, name=f"v{k}"))
    return frames


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
