"""Stand-in games for the UnrealCV tests, each with its own short socket folder."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from fake_unrealcv_server import BEHAVIOURS, FakeUnrealCVServer

MODES = sorted(BEHAVIOURS)


@pytest.fixture
def socket_dir():
    """A folder for 5.2-linux games' Unix sockets: short (AF_UNIX paths stop at 107 bytes,
    pytest's tmp_path can be longer) and never the real /tmp/unrealcv_<port>.socket."""
    path = tempfile.mkdtemp(prefix="ucv", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def game(socket_dir):
    """Start stand-in games (``game(behaves_like=..., **options)``); all stop after the test."""
    started: list[FakeUnrealCVServer] = []

    def start(**options) -> FakeUnrealCVServer:
        server = FakeUnrealCVServer(socket_dir=socket_dir, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
