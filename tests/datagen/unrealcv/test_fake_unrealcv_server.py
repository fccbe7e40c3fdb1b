"""The stand-in itself: its camera model against the shared vectors, and each plugin build's
transport, queueing and replies as read in the plugin's source (see fake_unrealcv_server.py)."""

from __future__ import annotations

import collections
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODES
from fake_unrealcv_server import (
    Raw,
    level_to_unreal,
    pixel_directions,
    read_frame,
    rotator_axes,
    unreal_to_level,
)

VECTORS = json.loads((Path(__file__).parents[2] / "data" / "camera_vectors.json").read_text())


def _wait_for(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def test_rotator_axes_match_the_shared_camera_vectors():
    # c2w columns are the camera's right, down and forward in the scene frame (docs/conventions.md).
    for pose in VECTORS["poses"]:
        forward, right, up = rotator_axes(*pose["ue_rotation_pitch_yaw_roll_deg"]).T
        c2w = np.array(pose["c2w"])
        np.testing.assert_allclose(unreal_to_level(forward * 100), c2w[:3, 2], atol=1e-9)
        np.testing.assert_allclose(unreal_to_level(right * 100), c2w[:3, 0], atol=1e-9)
        np.testing.assert_allclose(unreal_to_level(-up * 100), c2w[:3, 1], atol=1e-9)
        np.testing.assert_allclose(unreal_to_level(pose["ue_location_cm"]), c2w[:3, 3], atol=1e-9)
        np.testing.assert_allclose(level_to_unreal(c2w[:3, 3]), pose["ue_location_cm"], atol=1e-7)


@pytest.mark.parametrize("case", range(len(VECTORS["fov"])))
def test_pixel_rays_match_the_shared_intrinsics(case):
    fov = VECTORS["fov"][case]
    w, h, K = fov["width"], fov["height"], np.array(fov["K"])
    dirs, cos = pixel_directions((0.0, 0.0, 0.0), fov["hfov_deg"], w, h)  # forward +X, right +Y, up +Z
    rng = np.random.default_rng(case)
    rows = np.r_[0, h - 1, h // 2, rng.integers(0, h, 50)]
    cols = np.r_[0, w - 1, w // 2, rng.integers(0, w, 50)]
    d = dirs[rows, cols]
    in_camera = np.stack([d[:, 1], -d[:, 2], d[:, 0]], axis=1)  # right, down, forward
    expected = np.stack([cols + 0.5, rows + 0.5, np.ones(len(rows))], axis=1) @ np.linalg.inv(K).T
    np.testing.assert_allclose(in_camera / in_camera[:, 2:], expected, atol=1e-9)
    np.testing.assert_allclose(cos[rows, cols], d[:, 0], atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_greeting_version_and_the_dispatchers_own_words(game, mode):
    server = game(behaves_like=mode)
    client = Raw(("127.0.0.1", server.port))
    assert client.greeting(2.0) == b"connected to FakeUnrealGame"
    asked = ("/unrealcv/version", "/camera/0/size", "/camera/0/fov")
    version, size, fov = (client.ask(f"vget {what}") for what in asked)
    miss, camera_miss = client.ask("vget /bogus"), client.ask("vget /camera/0/bogus npy")
    client.close()
    if mode == "5.2-linux":
        assert (version, size, fov) == (b"1.0.1", b"32 24", b"90.000000")
        assert miss == b"error No handler found for URI 'vget /bogus'"
        assert camera_miss == b"error No handler found for URI 'vget /camera/0/bogus npy'"
    elif mode == "4.27":
        assert (version, size, fov) == (b"0.3.10", b"32 24", b"90.000000")
        assert miss == b"error Can not find a handler for URI 'vget /bogus'"
        assert camera_miss == b"error Can not find a handler for URI 'vget /camera/0/bogus npy'"
    else:  # master's catch-alls `vget /camera/[uint]/[str]` and `... [str] [str]`
        assert version == b"0.3.10"
        assert (size, fov) == (b"error Unrecognized capture mode size", b"error Unrecognized capture mode fov")
        assert miss == b"error Can not find a handler for URI 'vget /bogus'"
        assert camera_miss == b"error Unrecognized capture mode bogus"


@pytest.mark.parametrize("mode", MODES)
def test_a_camera_the_game_lacks(game, mode):
    server = game(behaves_like=mode)
    client = Raw(("127.0.0.1", server.port))
    client.greeting(2.0)
    replies = [client.ask(f"vget /camera/7/{what}") for what in ("location", "fov", "lit png")]
    client.close()
    if mode == "master":
        assert replies == [b"error Camera 7 can not be found.", b"error Invalid camera id 7",
                           b"error Invalid camera id 7"]
    else:  # FCameraHandler::GetCamera says so, but GetFOV/GetSize answer InvalidArgument instead
        assert replies == [b"error Invalid sensor id", b"error Argument Invalid", b"error Invalid sensor id"]


@pytest.mark.parametrize("mode", MODES)
def test_tcp_then_unix_socket_only_on_5_2_linux(game, mode):
    server = game(behaves_like=mode)
    assert not os.path.exists(server.socket_path)  # not before the first TCP client has left
    first = Raw(("127.0.0.1", server.port))
    assert first.greeting(2.0) == b"connected to FakeUnrealGame"
    first.close()
    second = Raw(("127.0.0.1", server.port))  # TCP connects still succeed: the backlog
    if mode == "5.2-linux":
        _wait_for(lambda: os.path.exists(server.socket_path))
        assert second.greeting(0.3) is None  # ... but the listener thread serves the socket now
        unix = Raw(server.socket_path, socket.AF_UNIX)
        assert unix.greeting(2.0) == b"connected to FakeUnrealGame"
        assert unix.ask("vget /unrealcv/version") == b"1.0.1"
        unix.close()
        _wait_for(lambda: len(server.transports) == 2)
        assert server.transports == ["tcp", "unix"]
    else:
        assert second.greeting(2.0) == b"connected to FakeUnrealGame"
        _wait_for(lambda: len(server.transports) == 2)
        assert not os.path.exists(server.socket_path) and server.transports == ["tcp", "tcp"]
    second.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_second_client_waits_unanswered_until_the_first_leaves(game, mode):
    server = game(behaves_like=mode)
    address, family = ("127.0.0.1", server.port), socket.AF_INET
    if mode == "5.2-linux":  # after its first TCP client, the game serves one Unix client at a time
        Raw(address).close()
        _wait_for(lambda: os.path.exists(server.socket_path))
        address, family = server.socket_path, socket.AF_UNIX
    first = Raw(address, family)
    assert first.greeting(2.0) is not None
    second = Raw(address, family)  # not refused ...
    assert second.greeting(0.3) is None  # ... not greeted either
    first.close()
    assert second.greeting(2.0) == b"connected to FakeUnrealGame"
    assert second.ask("vget /unrealcv/version") in (b"1.0.1", b"0.3.10")
    second.close()


@pytest.mark.parametrize("mode", MODES)
def test_requests_per_tick(game, mode):
    server = game(behaves_like=mode)
    client = Raw(("127.0.0.1", server.port))
    client.greeting(2.0)
    with server.frozen():  # a long frame: requests queue up
        for rid in range(40):
            client.send(rid, "vget /unrealcv/version")
        _wait_for(lambda: server.pending() == 40)
    replies = [read_frame(client.sock) for _ in range(40)]
    client.close()
    assert [r.split(b":")[0] for r in replies] == [str(i).encode() for i in range(40)]  # in order
    per_tick = sorted(collections.Counter(server.ticks).values(), reverse=True)
    assert per_tick == ([32, 8] if mode == "5.2-linux" else [40])


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_goes_to_whoever_is_connected_when_the_game_thread_gets_to_it(game, mode):
    server = game(behaves_like=mode)
    first = Raw(("127.0.0.1", server.port))
    first.greeting(2.0)
    with server.frozen():
        first.send(57, "vget /unrealcv/version")
        _wait_for(lambda: server.pending() == 1)
        first.close()
        _wait_for(lambda: server._client is None)
        if mode == "5.2-linux":
            _wait_for(lambda: os.path.exists(server.socket_path))
            second = Raw(server.socket_path, socket.AF_UNIX)
        else:
            second = Raw(("127.0.0.1", server.port))
        assert second.greeting(2.0) == b"connected to FakeUnrealGame"
    assert read_frame(second.sock) in (b"57:1.0.1", b"57:0.3.10")  # the first client's reply
    second.close()


@pytest.mark.parametrize("mode", MODES)
def test_depth_is_half_float_and_only_0_3_sees_the_landscape(game, mode):
    server = game(behaves_like=mode, scene_kind="outdoor", width=48, height=32)
    client = Raw(("127.0.0.1", server.port))
    client.greeting(2.0)
    centre = level_to_unreal((np.asarray(server.scene.walk_lo) + np.asarray(server.scene.walk_hi)) / 2)
    client.ask("vset /camera/0/location {:.3f} {:.3f} {:.3f}".format(*centre))
    client.ask("vset /camera/0/rotation -60 0 0")  # looking down at the ground
    depth = np.load(io.BytesIO(client.ask("vget /camera/0/depth npy")), allow_pickle=False)
    client.close()
    assert depth.dtype == np.float32 and depth.shape == (32, 48)
    assert np.array_equal(depth.astype(np.float16).astype(np.float32), depth)  # every value is a half float
    finite = depth[np.isfinite(depth)]
    assert len(np.unique(finite)) > 10
    missing = np.mean(~np.isfinite(depth[16:]))  # the lower half of the image sees only ground
    assert missing == 0 if mode == "master" else missing > 0.5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.filterwarnings("ignore:The connected UnrealCV server is too old:UserWarning")
def test_the_official_client_talks_to_the_stand_in(game, mode):
    import unrealcv  # the [test] extra: the official client, here only to check the stand-in

    server = game(behaves_like=mode)
    client = unrealcv.Client(("127.0.0.1", server.port), "inet")
    assert client.connect()
    assert client.request("vget /unrealcv/version") == server.behaviour.version
    assert client.request("vget /camera/0/lit png")[:8] == b"\x89PNG\r\n\x1a\n"
    client.disconnect()
