"""One connection to a running Unreal game through its UnrealCV plugin.

The wire format is the plugin's (``FUnixSocketMessageHeader`` in ``UnixTcpServer.cpp`` on
branch ``5.2`` of github.com/unrealcv/unrealcv, ``FSocketMessageHeader`` in ``TcpServer.cpp``
on ``4.27`` and ``master``): every message is a little-endian uint32 magic ``0x9E2B83C1``, a
uint32 payload length and the payload. On accepting a client the plugin sends ``connected to
<project>``; requests are ``b"<id>:<command>"``, replies ``b"<id>:<body>"`` where the body is
text (``ok``, ``error <why>``, numbers) or raw bytes (PNG, ``npy``).

We speak it here rather than through the ``unrealcv`` 1.3.2 Python client, because what the
plugin does needs things that client cannot do:

* **A deadline on connecting.** The plugin serves one client at a time on its listener thread;
  a second client is not refused but *waits* in the listen backlog without the ``connected``
  message (``FTcpListener`` calls ``StartMessageService*`` on its own thread, which returns only
  when the client leaves). The client's ``connect`` reads that message with no timeout.
* **The transport switch.** On Linux, UnrealCV 1.0.x (branches ``5.2`` and ``4.27-stable``)
  serves TCP to its *first* client only: when it leaves, ``UUnixTcpServer::OnClientConnected``
  goes on to ``StartMessageServiceUDS`` and never returns, so from then on the game answers only
  on ``/tmp/unrealcv_<port>.socket`` (created at that moment). TCP connects still succeed
  (backlog) and then wait forever. We try the socket first when it exists, and switch to it when
  it appears while a TCP connection waits for its greeting.
* **Replies that belong to an earlier connection.** Requests are queued for the game thread and
  answered at its next tick to whichever client is connected then
  (``FUnrealcvServer::ProcessPendingRequest`` -> ``ProcessRequest`` -> ``SendData``), so after a
  reconnect the first reply can carry an id of the previous connection. The client raises
  ``AssertionError`` in its receive thread, which dies, and the request waits out its whole
  timeout. Each connection here draws its ids from a fresh random range and drops replies with
  any other id.
* **Quiet stdout.** The client prints ``=>Info: using ip-port socket`` on every connect.

On top of that this module classifies ``error`` replies (a command the plugin lacks, a camera
that does not exist, a transient failure worth retrying) and retries transient ones with a
bounded backoff.
"""

from __future__ import annotations

import logging
import os
import random
import re
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = 0x9E2B83C1
_HEADER = struct.Struct("<II")
# Largest reply accepted: the plugin refuses requests above 256 MiB (MaxPayloadSizeBytes,
# UnixTcpServer.cpp on 5.2); an 8K RGBA PNG or float npy stays well below it.
MAX_REPLY_BYTES = 256 * 1024 * 1024
# Ids stay below 10^8: master's request regex is "(\d{1,8}):(.*)" (UE4CVServer.cpp).
_ID_SPACE = 100_000_000
_REPLY = re.compile(rb"(\d+):")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_SOCKET_NAME = re.compile(r"^unrealcv_(\d+)\.socket$")

# `error ...` replies, matched case-insensitively on the text after "error".
# The dispatcher's miss ("No handler found for URI" on 5.2, "Can not find a handler for URI" on
# 4.27 and master, CommandDispatcher.cpp), master's catch-all `vget /camera/[uint]/[str]`
# answering `size`, `fov` ... with "Unrecognized capture mode <what>" (CameraHandler.cpp
# GetCameraViewMode), and stubbed handlers.
_MISSING = ("no handler found", "can not find a handler", "unrecognized capture mode", "not implemented")
# Camera ids the game does not have: "Invalid sensor id" (5.2, 4.27 FCameraHandler::GetCamera),
# "Invalid camera id N" / "Camera N can not be found." (master).
_NO_CAMERA = ("invalid sensor id", "invalid camera id", "can not be found")
# Failures that pass: the capture's render target not ready ("Captured data is empty",
# FCameraHandler::SaveData), the player pawn or its controller briefly missing while a level
# loads or the pawn respawns ("Argument Invalid" from SetCameraLocation/SetCameraRotation for
# camera 0, "The pawn is invalid" from MoveTo), no game world yet ("No valid world").
_TRANSIENT = {
    "captured data is empty": "the camera's render target is not ready (the level is still loading, or the "
    "camera has no size: check `vget /camera/N/size`)",
    "argument invalid": "the player pawn or its controller is missing (the level is loading, the pawn was "
    "destroyed, or the game mode spawns no pawn: use a game mode with a pawn, see docs/datagen.md); "
    "for `fov`/`size` it also means the camera id does not exist",
    "the pawn is invalid": "the player pawn is missing (the level is loading or the pawn was destroyed)",
    "no valid world": "the game has no world yet (still loading)",
}


class UnrealCVError(RuntimeError):
    """Base class of everything this package raises about the game or its plugin."""


class GameNotRunningError(UnrealCVError):
    """No UnrealCV server answered at the endpoint, or none confirmed the connection."""


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


class CameraNotFoundError(CommandError):
    """The game has no camera with the id a command names."""

    def __init__(self, command: str, reply: str):
        super().__init__(command, reply)
        self.args = (
            f"the game has no such camera: {command!r} got {reply!r}. `vget /cameras` lists the cameras of "
            "UnrealCV 4.22+ builds (`vset /cameras/spawn` adds one); 0.3.x builds have only camera 0",
        )


class GameNotReadyError(CommandError):
    """A transient failure that did not pass within the retries."""

    def __init__(self, command: str, reply: str, tries: int, seconds: float, advice: str):
        super().__init__(command, reply)
        self.args = (
            f"UnrealCV kept answering {reply!r} to {command!r} ({tries} tries over {seconds:.1f} s): {advice}",
        )


def _error_kind(reply: str) -> str | None:
    """'missing', 'camera', a key of ``_TRANSIENT``, or None (any other error)."""
    detail = reply[len("error"):].strip().lower()
    if any(m in detail for m in _MISSING):
        return "missing"
    if any(m in detail for m in _NO_CAMERA):
        return "camera"
    return next((m for m in _TRANSIENT if m in detail), None)


@dataclass(frozen=True)
class Endpoint:
    """Where a game listens: TCP ``host:port`` and/or the plugin's Unix socket.

    ``unix_socket`` is tried first when it exists; ``port`` None means the socket only.
    """

    host: str = "127.0.0.1"
    port: int | None = 9000
    unix_socket: str | None = None

    @classmethod
    def for_port(cls, host: str, port: int, socket_dir: str = "/tmp") -> "Endpoint":
        """The game on ``port``; on this machine also its socket ``<socket_dir>/unrealcv_<port>.socket``
        (the path UnixTcpServer.cpp hard-codes with socket_dir /tmp)."""
        local = host in LOCAL_HOSTS
        return cls(host, port, str(Path(socket_dir) / f"unrealcv_{port}.socket") if local else None)

    @classmethod
    def for_socket(cls, path: str) -> "Endpoint":
        """The game behind socket ``path``; a plugin-named socket also gives its TCP port on 127.0.0.1
        (before its first TCP client has left, a 1.0.x game has no socket yet)."""
        match = _SOCKET_NAME.match(Path(path).name)
        return cls("127.0.0.1", int(match.group(1)) if match else None, path)

    def describe(self) -> str:
        if self.port is None:
            return f"unix:{self.unix_socket}"
        return f"{self.host}:{self.port}" + (f" (or unix:{self.unix_socket})" if self.unix_socket else "")


@dataclass(frozen=True)
class ConnectionSettings:
    """Deadlines (seconds) and retry counts for one connection."""

    connect_timeout: float = 10.0  # per attempt, greeting included
    request_timeout: float = 60.0
    connect_attempts: int = 5
    retry_backoff: float = 0.5  # first pause between attempts; doubles each time, max 8 s
    error_retries: int = 4  # resends of a command the game answered with a transient error

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "request_timeout", "retry_backoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds; got {getattr(self, name)}")
        if self.connect_attempts < 1 or self.error_retries < 0:
            raise ValueError("connect_attempts must be >= 1 and error_retries >= 0")


class _NoGreeting(Exception):
    """A connection was accepted (or sits in the backlog) but not confirmed before the deadline."""


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete reply before the deadline")
        sock.settimeout(remaining)
        try:
            k = sock.recv_into(view[got:])
        except TimeoutError as exc:  # socket.timeout
            raise TimeoutError("no complete reply before the deadline") from exc
        if k == 0:
            raise ConnectionError("the game closed the connection")
        got += k
    return buf


def _recv_frame(sock: socket.socket, deadline: float) -> bytes:
    magic, size = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if magic != MAGIC:
        raise ConnectionError(f"bad message magic 0x{magic:08X}: not an UnrealCV server, or the stream is out of step")
    if size > MAX_REPLY_BYTES:
        raise ConnectionError(f"reply of {size} bytes exceeds the {MAX_REPLY_BYTES}-byte limit")
    return bytes(_recv_exact(sock, size, deadline))


class _Link:
    """One confirmed connection: sends requests, reads their replies, drops other replies."""

    def __init__(self, sock: socket.socket, transport: str):
        self.sock = sock
        self.transport = transport
        self._next_id = random.randrange(_ID_SPACE)
        self.stale = 0  # replies dropped because their id was not the one awaited

    def request(self, command: str, timeout: float) -> bytes:
        rid = self._next_id
        self._next_id = (rid + 1) % _ID_SPACE
        payload = f"{rid}:{command}".encode()
        self.sock.settimeout(timeout)
        self.sock.sendall(_HEADER.pack(MAGIC, len(payload)) + payload)
        deadline = time.monotonic() + timeout
        while True:
            message = _recv_frame(self.sock, deadline)
            match = _REPLY.match(message)
            if match and int(match.group(1)) == rid:
                return message[match.end():]
            self.stale += 1
            log.info("dropped a reply meant for another request (%r...) on %s", message[:24], self.transport)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _connect_unix(path: str, deadline: float) -> socket.socket | None:
    """A connected Unix socket, or None when nobody listens there (a file a crashed game left)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(max(deadline - time.monotonic(), 1e-3))
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    return sock


def _greeted(sock: socket.socket, transport: str, deadline: float) -> _Link:
    """Wait for ``connected to <project>``; replies of an earlier connection may come first."""
    try:
        while True:
            message = _recv_frame(sock, deadline)
            if message.startswith(b"connected"):
                log.info("%s on %s", message.decode("utf-8", "replace"), transport)
                return _Link(sock, transport)
            log.info("dropped a message before the greeting on %s: %r...", transport, message[:24])
    except TimeoutError as exc:
        sock.close()
        raise _NoGreeting(transport) from exc
    except (ConnectionError, OSError):
        sock.close()
        raise


def open_link(endpoint: Endpoint, timeout: float) -> _Link:
    """Connect to ``endpoint`` and wait for the plugin's confirmation, within ``timeout`` seconds.

    Raises :class:`GameNotRunningError` (nothing listens), :class:`_NoGreeting` (accepted but
    not confirmed: another client holds the game), ``ConnectionError``/``OSError``.
    """
    deadline = time.monotonic() + timeout
    path = endpoint.unix_socket
    if path and os.path.exists(path):
        sock = _connect_unix(path, deadline)
        if sock is not None:
            return _greeted(sock, f"unix:{path}", deadline)
    if endpoint.port is None:
        raise GameNotRunningError(f"nothing listens on {path}")
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=max(deadline - time.monotonic(), 1e-3))
    except (ConnectionRefusedError, TimeoutError) as exc:
        raise GameNotRunningError(f"nothing accepts connections on {endpoint.host}:{endpoint.port}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = f"tcp:{endpoint.host}:{endpoint.port}"
    # A 1.0.x game on Linux that already served its TCP client never confirms: its listener
    # thread now serves the Unix socket. Watch for that socket while waiting.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sock.close()
            raise _NoGreeting(transport)
        readable, _, _ = select.select([sock], [], [], min(0.05, remaining))
        if readable:
            return _greeted(sock, transport, deadline)
        if path and os.path.exists(path):
            unix = _connect_unix(path, deadline)
            if unix is not None:
                sock.close()
                log.info("%s serves its Unix socket now (UnrealCV 1.0.x on Linux); switching to it", transport)
                return _greeted(unix, f"unix:{path}", deadline)


class UnrealCVConnection:
    """A reconnecting request/reply channel to one game.

    ``request`` never resends after a lost connection by itself: the caller knows which
    requests belong together (set a pose, then capture at it) and redoes the whole group after
    a :class:`ConnectionLostError`, calling :meth:`connect` (which :meth:`request` also does
    lazily) to get a fresh link. Transient ``error`` replies are resent here, with backoff.
    """

    def __init__(self, endpoint: Endpoint, settings: ConnectionSettings = ConnectionSettings()):
        self.endpoint = endpoint
        self.settings = settings
        self._link: _Link | None = None
        self.connects = 0  # successful connects, so reconnects = connects - 1
        self.timeouts = 0  # requests that got no reply within request_timeout
        self.error_retries = 0  # resends after transient error replies
        self._stale_closed = 0  # stale replies counted on links already closed
        self.transport = ""  # where the last connection went: tcp:host:port or unix:path

    def __enter__(self) -> "UnrealCVConnection":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stale_replies(self) -> int:
        """Replies dropped because they answered a request of an earlier connection."""
        return self._stale_closed + (self._link.stale if self._link else 0)

    @property
    def connected(self) -> bool:
        return self._link is not None

    def connect(self) -> None:
        """Connect (if not connected), retrying with exponential backoff.

        Raises :class:`GameNotRunningError` when every attempt fails.
        """
        if self._link is not None:
            return
        s = self.settings
        delay, busy = s.retry_backoff, False
        for attempt in range(1, s.connect_attempts + 1):
            try:
                self._link = open_link(self.endpoint, s.connect_timeout)
            except _NoGreeting as exc:
                busy, why = True, f"{exc} accepted the connection but sent no confirmation"
            except (GameNotRunningError, ConnectionError, OSError) as exc:
                busy, why = False, str(exc)
            else:
                self.connects += 1
                self.transport = self._link.transport
                return
            if attempt < s.connect_attempts:
                log.info("%s (attempt %d/%d); retrying in %.1f s", why, attempt, s.connect_attempts, delay)
                time.sleep(delay)
                delay = min(2 * delay, 8.0)
        where = self.endpoint.describe()
        if busy:
            raise GameNotRunningError(
                f"the game at {where} accepted the connection but never confirmed it ({s.connect_attempts} attempts "
                f"of {s.connect_timeout:g} s): another client holds it (UnrealCV serves one client at a time and "
                "makes the next one wait): close that client (an editor session, a notebook, another capture). "
                "A game with UnrealCV 1.0.x on Linux also stops serving TCP after its first client: then only its "
                "/tmp/unrealcv_<port>.socket answers, so run the capture on the game's machine (docs/datagen.md)"
            )
        raise GameNotRunningError(
            f"no UnrealCV server answered at {where} after {s.connect_attempts} attempts ({why}): is the game "
            "running with the UnrealCV plugin enabled, on this port (-UnrealCVPort=N, or Port in its unrealcv.ini; "
            "`vget /unrealcv/status` prints both)?"
        )

    def close(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            self._stale_closed += link.stale
            link.close()

    def request(self, command: str) -> str | bytes:
        """Send ``command`` and return its reply: UTF-8 text as ``str``, anything else as ``bytes``.

        Raises :class:`ConnectionLostError` (link dropped; reconnect and redo),
        :class:`MissingCommandError`, :class:`CameraNotFoundError`, :class:`GameNotReadyError`
        (a transient error that outlasted ``error_retries``) or :class:`CommandError`.
        """
        s = self.settings
        start, delay = time.monotonic(), s.retry_backoff
        for attempt in range(s.error_retries + 1):
            reply = self._request_once(command)
            if not (isinstance(reply, str) and reply.startswith("error")):
                return reply
            kind = _error_kind(reply)
            if kind == "missing":
                raise MissingCommandError(command, reply)
            if kind == "camera":
                raise CameraNotFoundError(command, reply)
            if kind is None:
                raise CommandError(command, reply)
            if attempt == s.error_retries:
                raise GameNotReadyError(command, reply, attempt + 1, time.monotonic() - start, _TRANSIENT[kind])
            self.error_retries += 1
            log.info("%r answered %r; trying again in %.2f s", command, reply, delay)
            time.sleep(delay)
            delay = min(2 * delay, 8.0)
        raise AssertionError("unreachable")

    def _request_once(self, command: str) -> str | bytes:
        self.connect()
        try:
            body = self._link.request(command, self.settings.request_timeout)
        except TimeoutError as exc:
            self.timeouts += 1
            self.close()  # a late reply would answer nothing: start a fresh link
            raise ConnectionLostError(
                f"no reply from {self.transport} to {command!r} within {self.settings.request_timeout:g} s"
            ) from exc
        except (ConnectionError, OSError) as exc:
            self.close()
            raise ConnectionLostError(f"lost the connection to {self.transport} during {command!r}: {exc}") from exc
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:  # PNG and npy payloads never decode (their first bytes are > 0x7F)
            return body

    def request_text(self, command: str) -> str:
        """:meth:`request` for commands that answer text; raises if bytes come back."""
        reply = self.request(command)
        if not isinstance(reply, str):
            raise CommandError(command, f"expected a text reply, got {len(reply)} bytes of binary data")
        return reply
