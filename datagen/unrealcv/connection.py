"""One connection to a running Unreal game through the real ``unrealcv.Client``.

The client (PyPI ``unrealcv`` 1.x) frames each message as a little-endian uint32 magic
``0x9E2B83C1``, a uint32 payload length and the payload; requests are ``b"<id>:<command>"``,
replies ``b"<id>:<body>"`` where the body is text (``ok``, ``error <why>``, numbers) or raw
bytes (PNG, ``npy``). This module adds what a long capture needs on top of it:

* connect with a deadline and retries (the client's own ``connect`` can block forever on a
  server that accepts but never confirms, e.g. when another client already holds the game:
  UnrealCV serves one client at a time);
* typed errors that say what to do: :class:`GameNotRunningError`, :class:`ConnectionLostError`,
  :class:`MissingCommandError` (the plugin build lacks a command), :class:`CommandError`;
* after a lost connection or a timed-out request the client is thrown away, never reused:
  its request/reply ids would be out of step and every later reply would be misattributed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import unrealcv

log = logging.getLogger(__name__)

# Replies of UnrealCV's command dispatcher when no handler matches (1.x: "No handler found
# for URI '...'"; 0.3.x: "Can not find a handler ...") or when a handler is a stub.
_MISSING_MARKERS = ("no handler found", "can not find a handler", "not implemented")


class UnrealCVError(RuntimeError):
    """Base class of everything this package raises about the game or its plugin."""


class GameNotRunningError(UnrealCVError):
    """No UnrealCV server answered at the endpoint."""


class ConnectionLostError(UnrealCVError):
    """The connection broke (or a reply never came) in the middle of a request."""


class CommandError(UnrealCVError):
    """The server answered a command with ``error ...``."""

    def __init__(self, command: str, reply: str):
        super().__init__(f"UnrealCV command {command!r} failed: {reply}")
        self.command = command
        self.reply = reply


class MissingCommandError(CommandError):
    """The running UnrealCV plugin does not implement a command we need."""

    def __init__(self, command: str, reply: str):
        super().__init__(command, reply)
        self.args = (
            f"the UnrealCV plugin in this game does not support {command!r} (it replied {reply!r}); "
            "build the game with an UnrealCV plugin that has it (see docs/datagen.md for the "
            "versions this capture targets), or turn off the option that needs it",
        )


@dataclass(frozen=True)
class Endpoint:
    """Where a game listens: TCP ``host:port`` or, on Linux, a unix socket path.

    UnrealCV 1.x on Linux also listens on ``/tmp/unrealcv_<port>.socket``, which is faster
    for large images on the same machine.
    """

    host: str = "127.0.0.1"
    port: int = 9000
    unix_socket: str | None = None

    def describe(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"

    def make_client(self) -> unrealcv.Client:
        if self.unix_socket:
            return unrealcv.Client(self.unix_socket, "unix")
        return unrealcv.Client((self.host, self.port), "inet")


@dataclass(frozen=True)
class ConnectionSettings:
    """Deadlines (seconds) and retry counts for one connection."""

    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    connect_attempts: int = 5
    retry_backoff: float = 0.5  # first pause between attempts; doubles each time, max 8 s


class UnrealCVConnection:
    """A reconnecting request/reply channel to one game.

    ``request`` never retries by itself: the caller knows which requests belong together
    (set a pose, then capture at it) and redoes the whole group after a
    :class:`ConnectionLostError`, calling :meth:`connect` (which :meth:`request` also does
    lazily) to get a fresh client.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        settings: ConnectionSettings = ConnectionSettings(),
        client_factory: Callable[[], unrealcv.Client] | None = None,
    ):
        self.endpoint = endpoint
        self.settings = settings
        self._client_factory = client_factory or endpoint.make_client
        self._client: unrealcv.Client | None = None
        self.connects = 0  # successful connects, so reconnects = connects - 1

    def __enter__(self) -> "UnrealCVConnection":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.isconnected()

    def connect(self) -> None:
        """Connect (if not connected), retrying with exponential backoff.

        Raises :class:`GameNotRunningError` when every attempt fails.
        """
        if self.connected:
            return
        self._drop_client()
        delay = self.settings.retry_backoff
        for attempt in range(1, self.settings.connect_attempts + 1):
            client = self._try_connect()
            if client is not None:
                self._client = client
                self.connects += 1
                log.info("connected to UnrealCV at %s", self.endpoint.describe())
                return
            if attempt < self.settings.connect_attempts:
                log.info(
                    "no UnrealCV server at %s (attempt %d/%d); retrying in %.1f s",
                    self.endpoint.describe(), attempt, self.settings.connect_attempts, delay,
                )
                time.sleep(delay)
                delay = min(2 * delay, 8.0)
        raise GameNotRunningError(
            f"no UnrealCV server answered at {self.endpoint.describe()} after "
            f"{self.settings.connect_attempts} attempts: is the game running with the UnrealCV "
            "plugin enabled, on this port (see Port in its unrealcv.ini, or `vget /unrealcv/status`), "
            "and with no other client connected (UnrealCV serves one client at a time)?"
        )

    def _try_connect(self) -> unrealcv.Client | None:
        """One attempt with a deadline; the client's own connect has none."""
        client = self._client_factory()
        # The client re-reads a dead socket RECONNECT_ATTEMPTS times with growing sleeps
        # (about a minute in all) before reporting a lost connection; we reconnect ourselves.
        client.RECONNECT_ATTEMPTS = 1
        client.RECONNECT_BASE_DELAY = 0.01
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(bool(client.connect())), daemon=True)
        thread.start()
        thread.join(self.settings.connect_timeout)
        if result and result[0]:
            return client
        client.disconnect()  # also unblocks a connect stuck waiting for the confirmation
        return None

    def close(self) -> None:
        self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.disconnect()

    def request(self, command: str) -> str | bytes:
        """Send ``command`` and return its reply: text as ``str``, binary payloads as ``bytes``.

        Raises :class:`ConnectionLostError` (client dropped; reconnect and redo),
        :class:`MissingCommandError` or :class:`CommandError` (the game said ``error ...``).
        """
        self.connect()
        client = self._client
        try:
            reply = client.request(command, timeout=self.settings.request_timeout)
        except (ConnectionError, TimeoutError, OSError) as exc:
            self._drop_client()
            raise ConnectionLostError(
                f"lost the connection to {self.endpoint.describe()} during {command!r}: {exc}"
            ) from exc
        if reply is None:  # the client could not parse the frame: the stream is out of step
            self._drop_client()
            raise ConnectionLostError(
                f"no well-formed reply from {self.endpoint.describe()} to {command!r}"
            )
        if isinstance(reply, str) and reply.startswith("error"):
            detail = reply[len("error"):].strip()
            if any(marker in detail.lower() for marker in _MISSING_MARKERS):
                raise MissingCommandError(command, reply)
            raise CommandError(command, reply)
        return reply

    def request_text(self, command: str) -> str:
        """:meth:`request` for commands that answer text; raises if bytes come back."""
        reply = self.request(command)
        if not isinstance(reply, str):
            raise CommandError(command, f"expected a text reply, got {len(reply)} bytes of binary data")
        return reply
