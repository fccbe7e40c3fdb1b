"""UnrealCVConnection against stand-in games: transports, deadlines, error replies, stale replies."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from conftest import MODES
from fake_unrealcv_server import MAGIC, Raw, frame, read_frame

from datagen.unrealcv.config import load_config
from datagen.unrealcv.connection import (
    CameraNotFoundError,
    CommandError,
    ConnectionLostError,
    ConnectionSettings,
    Endpoint,
    GameNotReadyError,
    GameNotRunningError,
    MissingCommandError,
    UnrealCVConnection,
)
from datagen.unrealcv.workers import endpoints_of, scene_name

FAST = ConnectionSettings(connect_timeout=1.0, request_timeout=2.0, connect_attempts=3, retry_backoff=0.01,
                          error_retries=2)


def _connection(server, settings: ConnectionSettings = FAST) -> UnrealCVConnection:
    return UnrealCVConnection(Endpoint.for_port("127.0.0.1", server.port, os.path.dirname(server.socket_path)),
                              settings)


@pytest.mark.parametrize(
    "reply, error",
    [("No handler found for URI 'vget /unrealcv/version'", MissingCommandError),  # 5.2
     ("Can not find a handler for URI 'vget /unrealcv/version'", MissingCommandError),  # 4.27, master
     ("Unrecognized capture mode version", MissingCommandError),  # master's catch-all
     ("Invalid sensor id", CameraNotFoundError),  # 5.2, 4.27
     ("Invalid camera id 7", CameraNotFoundError),  # master
     ("Camera 7 can not be found.", CameraNotFoundError),  # master
     ("Invalid filename type, filename jpg", CommandError)],
)
def test_error_replies_are_classified_and_keep_the_connection(game, reply, error):
    server = game()
    server.fail("version", reply)
    with _connection(server) as conn:
        with pytest.raises(error) as info:
            conn.request("vget /unrealcv/version")
        assert type(info.value) is error and reply in str(info.value)
        assert conn.request_text("vget /unrealcv/version") == "1.0.1" and conn.connects == 1


def test_transient_errors_are_resent_until_they_pass_or_the_retries_run_out(game):
    server = game()
    server.fail("version", "Captured data is empty", times=2)
    with _connection(server) as conn:
        assert conn.request_text("vget /unrealcv/version") == "1.0.1" and conn.error_retries == 2
        server.fail("version", "Argument Invalid", times=3)
        with pytest.raises(GameNotReadyError, match=r"kept answering 'error Argument Invalid' .* \(3 tries over .*"
                           r"the player pawn or its controller is missing"):
            conn.request("vget /unrealcv/version")
    assert server.commands.count("vget /unrealcv/version") == 6


def test_a_request_that_times_out_drops_the_link_and_its_late_reply_is_ignored(game):
    server = game(behaves_like="4.27")
    with _connection(server, ConnectionSettings(request_timeout=0.2, retry_backoff=0.01)) as conn:
        with server.frozen():  # the game thread hangs past the deadline
            with pytest.raises(ConnectionLostError, match="no reply .* within 0.2 s"):
                conn.request("vget /unrealcv/version")
            assert not conn.connected and conn.timeouts == 1
            conn.connect()  # the new link: the old request is still queued in the game
        # Its reply comes first on the new link, with the old link's id: dropped.
        assert conn.request_text("vget /camera/0/size") == "32 24"
        assert conn.stale_replies == 1 and conn.connects == 2


@pytest.mark.parametrize("mode", MODES)
def test_reconnecting_finds_the_transport_the_game_serves(game, mode):
    server = game(behaves_like=mode)
    conn = _connection(server)
    conn.connect()
    assert conn.transport == f"tcp:127.0.0.1:{server.port}"
    conn.close()
    conn.connect()  # 5.2 on Linux: TCP waits forever now; its socket answers
    expected = f"unix:{server.socket_path}" if mode == "5.2-linux" else f"tcp:127.0.0.1:{server.port}"
    assert conn.transport == expected and conn.request_text("vget /unrealcv/version") == server.behaviour.version
    conn.close()


def test_a_socket_file_left_by_a_crashed_game_is_skipped(game):
    server = game(behaves_like="5.2-linux")
    with _connection(server) as conn:  # the first client, over TCP ...
        conn.request_text("vget /unrealcv/version")
    with _connection(server) as conn:  # ... then the socket
        assert conn.transport.startswith("unix:")
        server.crash()
    assert os.path.exists(server.socket_path)  # nobody listens there now
    server.restart()
    with _connection(server) as conn:
        assert conn.transport.startswith("tcp:") and conn.request_text("vget /unrealcv/version") == "1.0.1"


def test_nothing_listening_is_reported_after_the_attempts(game):
    server = game()
    server.crash()
    start = time.perf_counter()
    with pytest.raises(GameNotRunningError, match="after 3 attempts .*is the game running"):
        _connection(server).connect()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("mode", MODES)
def test_a_game_that_never_confirms_is_given_up_after_the_deadline(game, mode):
    server = game(behaves_like=mode)
    other = Raw(("127.0.0.1", server.port))  # holds the game: we wait in its backlog
    assert other.greeting(2.0) is not None
    settings = ConnectionSettings(connect_timeout=0.3, connect_attempts=2, retry_backoff=0.01)
    start = time.perf_counter()
    with pytest.raises(GameNotRunningError, match="never confirmed it .*one client at a time"):
        _connection(server, settings).connect()
    assert time.perf_counter() - start < 2 * 0.3 + 0.5
    other.close()


def test_a_reply_larger_than_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr("datagen.unrealcv.connection.MAX_REPLY_BYTES", 1000)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        conn.sendall(frame(b"connected to Liar"))
        read_frame(conn)
        conn.sendall(struct.pack("<II", MAGIC, 10**9))  # a length no reply should have
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    conn = UnrealCVConnection(Endpoint("127.0.0.1", listener.getsockname()[1]), FAST)
    with pytest.raises(ConnectionLostError, match="exceeds the 1000-byte limit"):
        conn.request("vget /unrealcv/version")
    assert not conn.connected
    listener.close()


def test_nothing_is_printed_to_stdout(game, capfd):
    server = game()
    with _connection(server) as conn:
        conn.request("vget /camera/0/lit png")
    assert capfd.readouterr().out == ""


def test_a_game_is_the_same_scene_folder_over_tcp_or_its_socket():
    by_port = endpoints_of(load_config(None, {"connection": {"ports": [9003]}}))[0]
    by_socket = endpoints_of(load_config(None, {"connection": {"unix_sockets": ["/tmp/unrealcv_9003.socket"]}}))[0]
    assert by_port == Endpoint("127.0.0.1", 9003, "/tmp/unrealcv_9003.socket") == by_socket
    assert scene_name(by_port) == scene_name(by_socket) == "unrealcv_9003"
    other = Endpoint.for_socket("/run/game/ucv.sock")  # not named by the plugin: socket only
    assert other.port is None and scene_name(other) == "unrealcv_ucv"
    assert Endpoint.for_port("10.0.0.5", 9000).unix_socket is None  # another machine's socket is not ours
