"""Error classification, reconnects and deadlines of UnrealCVConnection, with scripted clients."""

from __future__ import annotations

import threading
import time

import pytest

from datagen.unrealcv.connection import (
    CommandError,
    ConnectionLostError,
    ConnectionSettings,
    Endpoint,
    GameNotRunningError,
    MissingCommandError,
    UnrealCVConnection,
)

FAST = ConnectionSettings(connect_timeout=0.5, request_timeout=1.0, connect_attempts=3, retry_backoff=0.01)


class ScriptedClient:
    """Stands in for unrealcv.Client: ``connect`` result and replies (or exceptions) in order."""

    def __init__(self, replies=(), connects=True, block: threading.Event | None = None):
        self.replies = list(replies)
        self.connects, self.block = connects, block
        self.connected = False
        self.disconnected = False

    def connect(self):
        if self.block is not None:
            self.block.wait()
        self.connected = self.connects
        return self.connects

    def isconnected(self):
        return self.connected

    def disconnect(self):
        self.connected, self.disconnected = False, True
        if self.block is not None:
            self.block.set()

    def request(self, command, timeout):
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


def _connection(*clients: ScriptedClient) -> UnrealCVConnection:
    """A connection that gets ``clients`` one after another from its client factory."""
    made = list(clients)
    return UnrealCVConnection(Endpoint(), FAST, client_factory=lambda: made.pop(0))


@pytest.mark.parametrize(
    "reply", ["error No handler found for URI 'vget /camera/0/fov'",  # plugin 1.0 (5.x branch)
              "error Can not find a handler for URI 'vget /camera/0/fov'",  # 4.x branches, 0.3.x
              "error Not Implemented"],
)
def test_missing_command_replies_become_missing_command_errors(reply):
    conn = _connection(ScriptedClient([reply]))
    with pytest.raises(MissingCommandError, match="does not support 'vget /camera/0/fov'"):
        conn.request("vget /camera/0/fov")


def test_other_errors_are_command_errors_and_keep_the_connection():
    client = ScriptedClient(["error Invalid sensor id", "90.0"])
    conn = _connection(client)
    with pytest.raises(CommandError, match="Invalid sensor id") as info:
        conn.request("vget /camera/7/fov")
    assert not isinstance(info.value, MissingCommandError)
    assert conn.request_text("vget /camera/0/fov") == "90.0" and not client.disconnected


@pytest.mark.parametrize("failure", [None, TimeoutError("no reply"), ConnectionError("reset")])
def test_lost_replies_drop_the_client_and_the_next_request_uses_a_fresh_one(failure):
    first, second = ScriptedClient([failure]), ScriptedClient(["ok"])
    conn = _connection(first, second)
    with pytest.raises(ConnectionLostError):
        conn.request("vget /camera/0/lit png")
    assert first.disconnected  # never reused: its request ids are out of step
    assert conn.request("vset /camera/0/fov 90") == "ok" and conn.connects == 2


def test_binary_where_text_is_expected_is_a_command_error():
    conn = _connection(ScriptedClient([b"\x89PNG..."]))
    with pytest.raises(CommandError, match="expected a text reply"):
        conn.request_text("vget /camera/0/location")


def test_connect_retries_then_reports_the_game_not_running():
    clients = [ScriptedClient(connects=False) for _ in range(3)]
    conn = _connection(*clients)
    with pytest.raises(GameNotRunningError, match="after 3 attempts: is the game running"):
        conn.connect()
    assert all(c.disconnected for c in clients)


def test_a_connect_that_hangs_is_abandoned_after_its_deadline():
    hung, good = ScriptedClient(block=threading.Event()), ScriptedClient()
    conn = _connection(hung, good)
    start = time.perf_counter()
    conn.connect()
    assert time.perf_counter() - start < 2 * FAST.connect_timeout + 0.5
    assert hung.disconnected and conn.connected and conn.connects == 1
