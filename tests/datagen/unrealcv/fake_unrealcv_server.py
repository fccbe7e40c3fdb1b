"""A stand-in for a game running the UnrealCV plugin: its wire protocol, transports, commands
and replies, per plugin build, over a procedural scene.

Every behaviour below was read in the plugin's source, github.com/unrealcv/unrealcv, on the
branch named; ``behaves_like`` picks the build:

============  ==============================================================================
``5.2-linux``  branch ``5.2`` (UnrealCV.uplugin VersionName ``1.0.1``; ``4.27-stable`` serves
               the same way) on Linux: FusionCamSensor commands, TCP for the first client only,
               then ``<socket_dir>/unrealcv_<port>.socket``; 32 requests per tick
``4.27``       branch ``4.27`` (VersionName ``0.3.10``): FusionCamSensor commands, TCP only
``master``     branch ``master`` (``0.3.10``): GTCaptureComponent commands, TCP only
============  ==============================================================================

Server (``UnixTcpServer.cpp`` on 5.2, ``TcpServer.cpp`` on 4.27 and master):

* Framing: uint32 magic ``0x9E2B83C1``, uint32 length, payload, little endian.
* One listener thread accepts *and serves* a client (``FTcpListener`` runs the accept delegate,
  ``StartMessageService*``, on its own thread until the client leaves), so a second client is
  neither refused nor greeted: it waits in the listen backlog (``Listening(1)`` on 5.2/4.27,
  ``Listening(8)`` on master) until the first one leaves.
* On accepting, the server sends ``connected to <project>`` (``GetProjectName()``).
* 5.2 on Linux: ``UUnixTcpServer::OnClientConnected`` serves the first TCP client, then calls
  ``StartMessageServiceUDS``, which unlinks and binds ``/tmp/unrealcv_<port>.socket`` and
  accepts Unix clients one at a time forever: the TCP port is never served again. The file
  does not exist before that first TCP session ends; a crashed game leaves it behind (only the
  destructor unlinks it).

Requests (``UnrealcvServer.cpp`` on 5.2/4.27, ``UE4CVServer.cpp`` on master):

* A request ``<id>:<command>`` is matched with ``(\\d{1,}):(.*)`` (master ``(\\d{1,8}):``), searched
  unanchored, and queued; the game thread takes queued requests at its next tick -- at most 32
  per tick on 5.2 (``MaxRequestsPerTick``), all of them on 4.27 and master -- and sends each
  reply ``<id>:<body>`` to *whichever client is connected then* (``TcpServer->SendData``), so a
  request queued by a client that has gone is answered to the next one.
* Commands go through ``FCommandDispatcher`` (CommandDispatcher.cpp): each URI template becomes
  a regex (``[uint]`` -> ``(\\d*)``, ``[str]`` -> ``([^ ]*)``, ``[float]`` ->
  ``([-+]?\\d*[.]?\\d+)``, then ``[ ]*$``), searched unanchored, from the last template bound to
  the first; no match answers ``error No handler found for URI '<uri>'`` (5.2) or ``error Can not
  find a handler for URI '<uri>'`` (4.27, master).

Commands and replies: see :meth:`FakeUnrealCVServer._bind_fusion` (CameraHandler.cpp on 5.2 and
4.27, FusionCamSensor) and :meth:`FakeUnrealCVServer._bind_legacy` (CameraHandler.cpp on master,
GTCaptureComponent).

Images: the "level" is a procedural scene (``datagen.procedural``) laid out in metres with
Unreal's Y axis mirrored (Unreal is left-handed; the scene frame is right-handed). The stand-in
casts one ray per pixel from the camera's Unreal pose with its own camera model (below: written
from Unreal's documented FRotator rules and its horizontal-FOV projection, checked against
``tests/data/camera_vectors.json`` in test_fake_unrealcv_server.py); the procedural renderer only
shades those rays. Nothing here converts through ``models.cameras``: the capture's conversion
is what the tests check against these images.

Faults for the robustness tests: :meth:`drop_after`, :meth:`crash` / :meth:`restart`,
:meth:`corrupt`, :meth:`fail`, :meth:`frozen`, ``missing`` commands, ``pose_offset_cm``, ``rotation_offset_deg`` and
``fall_cm_per_request``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import queue
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.procedural.renderer import Renderer, tile_order
from datagen.procedural.scenes import generate_scene

MAGIC = 0x9E2B83C1


@dataclass(frozen=True)
class Behaviour:
    """What differs between plugin builds."""

    name: str
    version: str  # UnrealCV.uplugin VersionName, the reply to `vget /unrealcv/version`
    legacy: bool  # GTCaptureComponent commands (master) instead of FusionCamSensor ones
    miss: str  # the dispatcher's reply when no template matches
    tcp_once_then_unix: bool  # UUnixTcpServer on Linux (5.2, 4.27-stable)
    requests_per_tick: int | None  # None: every queued request each tick
    backlog: int  # Listening(N) of the TCP listener
    request_pattern: bytes  # HandleRawMessage's regex


BEHAVIOURS = {
    "5.2-linux": Behaviour("5.2-linux", "1.0.1", legacy=False, miss="No handler found for URI '{}'",
                           tcp_once_then_unix=True, requests_per_tick=32, backlog=1, request_pattern=rb"(\d{1,}):(.*)"),
    "4.27": Behaviour("4.27", "0.3.10", legacy=False, miss="Can not find a handler for URI '{}'",
                      tcp_once_then_unix=False, requests_per_tick=None, backlog=1, request_pattern=rb"(\d{1,}):(.*)"),
    "master": Behaviour("master", "0.3.10", legacy=True, miss="Can not find a handler for URI '{}'",
                        tcp_once_then_unix=False, requests_per_tick=None, backlog=8,
                        request_pattern=rb"(\d{1,8}):(.*)"),
}


# -- wire ---------------------------------------------------------------------------------
def frame(payload: bytes) -> bytes:
    """One wire message: magic, length, payload."""
    return struct.pack("<II", MAGIC, len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes | None:
    """The next message's payload, or None when the peer closed (or sent a bad magic)."""
    head = _read_exact(sock, 8)
    if head is None:
        return None
    magic, size = struct.unpack("<II", head)
    if magic != MAGIC:
        return None
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        try:
            chunk = sock.recv(left)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def cnpy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the plugin's bundled cnpy writes it: v1.0, dict padded so header % 16 == 0."""
    array = np.ascontiguousarray(array, dtype="<f4")
    shape = ", ".join(str(s) for s in array.shape) + ("," if array.ndim == 1 else "")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }"
    header += " " * (16 - (10 + len(header)) % 16)
    header = header[:-1] + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + array.tobytes()


def png_bytes(rgba: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


class Raw:
    """A bare socket client: exactly what goes over the wire, nothing more."""

    def __init__(self, address, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.connect(address)

    def greeting(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return read_frame(self.sock)
        except TimeoutError:
            return None
        finally:
            self.sock.settimeout(None)

    def send(self, rid: int, command: str) -> None:
        self.sock.sendall(frame(f"{rid}:{command}".encode()))

    def ask(self, command: str, rid: int = 1) -> bytes:
        self.send(rid, command)
        reply = read_frame(self.sock)
        assert reply.startswith(f"{rid}:".encode()), reply[:40]
        return reply[len(f"{rid}:"):]

    def close(self) -> None:
        self.sock.close()


# -- Unreal's camera, from its documentation -----------------------------------------------
def rotator_axes(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """(3, 3) whose columns are the forward, right and up axes of an ``FRotator`` in Unreal's world.

    Unreal's world is left-handed, X forward, Y right, Z up. FRotator (degrees), as Epic's
    MakeRotator documents it: Pitch turns about the right axis, "+Up"; Yaw about the up axis,
    "+Right"; Roll about the forward axis, "+Clockwise" looking along it. They apply yaw first,
    then pitch about the new Y axis, then roll about the new X axis (Verse ApplyYaw/ApplyPitch/
    ApplyRoll), i.e. axes = Yaw @ Pitch @ Roll applied to the identity.
    """
    p, y, r = np.radians([pitch, yaw, roll])
    yaw_m = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])  # +X toward +Y
    pitch_m = np.array([[math.cos(p), 0, -math.sin(p)], [0, 1, 0], [math.sin(p), 0, math.cos(p)]])  # +X toward +Z
    roll_m = np.array([[1, 0, 0], [0, math.cos(r), math.sin(r)], [0, -math.sin(r), math.cos(r)]])  # +Z toward +Y
    return yaw_m @ pitch_m @ roll_m


def pixel_directions(rotation: tuple[float, float, float], hfov_deg: float, width: int, height: int):
    """Unit ray directions (H, W, 3) in Unreal's world, and their cosines with the view axis (H, W).

    Unreal's FOV is horizontal: the projection puts the image's left and right *edges* at
    +-tan(hfov / 2) and keeps pixels square; row 0 is the top of the image (up is +Z of the
    camera); each pixel is sampled at its centre, (j + 0.5, i + 0.5) of a W x H viewport.
    """
    forward, right, up = rotator_axes(*rotation).T
    half = math.tan(math.radians(hfov_deg) / 2)
    x = (2 * (np.arange(width) + 0.5) / width - 1) * half  # along right
    y = (1 - 2 * (np.arange(height) + 0.5) / height) * half * height / width  # along up
    d = forward + x[None, :, None] * right + y[:, None, None] * up
    norm = np.linalg.norm(d, axis=-1)
    return d / norm[..., None], 1.0 / norm


_LEVEL_AXES = np.array([1.0, -1.0, 1.0])  # Unreal world <-> the procedural scene's frame (Y mirrored)


def unreal_to_level(v_cm: np.ndarray) -> np.ndarray:
    """Unreal point (cm) -> where it lies in the procedural scene (metres)."""
    return np.asarray(v_cm, float) * _LEVEL_AXES / 100.0


def level_to_unreal(p_m: np.ndarray) -> np.ndarray:
    """Point in the procedural scene (metres) -> Unreal world (cm)."""
    return np.asarray(p_m, float) * _LEVEL_AXES * 100.0


class _NoGround:
    """A Landscape as the FusionCamSensor depth capture sees it: not at all (see ``_depth_sees``)."""

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.full(len(d), np.inf, np.float32)


@dataclass
class _Camera:
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov: float = 90.0


class _Dispatcher:
    """FCommandDispatcher (CommandDispatcher.cpp): templates to regexes, last bound tried first."""

    _TYPES = {"uint": r"(\d*)", "str": r"([^ ]*)", "float": r"([-+]?\d*[.]?\d+)"}

    def __init__(self, miss: str):
        self.miss = miss
        self.routes: list[tuple[re.Pattern, Callable[[list[str]], bytes | None]]] = []

    def bind(self, template: str, handler: Callable[[list[str]], bytes | None]) -> None:
        parts = re.split(r"\[(\w+)\]", template)  # literal, type, literal, ...
        pattern = "".join(self._TYPES[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))
        self.routes.append((re.compile(pattern + "[ ]*$"), handler))

    def exec(self, uri: str) -> bytes | None:
        for pattern, handler in reversed(self.routes):
            match = pattern.search(uri)  # FRegexMatcher::FindNext: not anchored at the start
            if match:
                return handler(list(match.groups()))
        return b"error " + self.miss.format(uri).encode()


class FakeUnrealCVServer:
    """A game with the UnrealCV plugin on ``127.0.0.1:<port>`` (0 picks a free port).

    ``behaves_like``: a key of :data:`BEHAVIOURS`. ``socket_dir``: where a 5.2-linux game creates
    ``unrealcv_<port>.socket`` (the plugin hard-codes /tmp; tests use their own folder).
    ``missing``: command words (``fov``, ``size``, ``normal`` ...) whose handlers this build lacks.
    ``pose_offset_cm``: added to every location set for camera 0, as a game pushes a colliding
    player pawn; ``rotation_offset_deg``: added to every rotation set for it (pitch, yaw, roll),
    as a pawn whose camera sits tilted on it. ``fall_cm_per_request``: camera 0 sinks this much
    per request, as a pawn with gravity does per tick. ``plane_depth``: a master build with the
    ``plane_depth`` capture mode enabled (ServerConfig.cpp has it commented out of
    SupportedModes). ``tick_s``: a frame.
    """

    def __init__(
        self,
        scene_seed: int = 0,
        scene_kind: str = "indoor",
        width: int = 32,
        height: int = 24,
        fov: float = 90.0,
        behaves_like: str = "5.2-linux",
        socket_dir: str | os.PathLike = "/tmp",
        missing: tuple[str, ...] = (),
        port: int = 0,
        pose_offset_cm: tuple[float, float, float] = (0.0, 0.0, 0.0),
        rotation_offset_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
        fall_cm_per_request: float = 0.0,
        plane_depth: bool = False,
        tick_s: float = 0.001,
        project: str = "FakeUnrealGame",
    ):
        if behaves_like not in BEHAVIOURS:
            raise ValueError(f"behaves_like must be one of {sorted(BEHAVIOURS)}; got {behaves_like!r}")
        self.behaviour = BEHAVIOURS[behaves_like]
        self.scene = generate_scene(scene_seed, scene_kind)
        self.renderer = Renderer(self.scene)
        # UnrealCV 4.22+ renders depth for annotated mesh components only (DepthCamSensor.cpp
        # CaptureDepth: ShowOnlyComponents = annotation components, PRM_UseShowOnlyList), and
        # FObjectAnnotator::CreateAnnotationComponent annotates UMeshComponents only: a Landscape
        # (the outdoor ground) is absent. 0.3.x renders depth as a post-process of the full scene.
        self._depth_sees = self.renderer
        if not self.behaviour.legacy and scene_kind == "outdoor":
            self._depth_sees = Renderer(dataclasses.replace(self.scene, enclosure=_NoGround()))
        self.width, self.height = width, height
        self.missing = set(missing)
        self.pose_offset_cm = np.asarray(pose_offset_cm, float)
        self._pawn_offsets = {"location": self.pose_offset_cm, "rotation": np.asarray(rotation_offset_deg, float)}
        self.fall_cm_per_request = fall_cm_per_request
        self.plane_depth = plane_depth
        self.tick_s = tick_s
        self.project = project
        ids = (0,) if self.behaviour.legacy else (0, 1)  # 0.3.x: the pawn's camera only
        self.cameras = {i: _Camera(fov=fov) for i in ids}
        self.config_fov = fov
        self.commands: list[str] = []  # every command executed, in order ...
        self.ticks: list[int] = []  # ... and the game-thread tick that ran it
        self.render_seconds = 0.0  # time spent rendering, to tell the client's share of a capture
        self.connections = 0
        self.transports: list[str] = []  # "tcp" / "unix" per connection served
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._client: socket.socket | None = None
        self._pending: queue.Queue[tuple[int, str]] = queue.Queue()  # FUnrealcvServer::PendingRequest
        self._late: tuple[int, str] | None = None  # a request answered after the next connect
        self._late_after = 0
        self._tick_lock = threading.Lock()
        self._drop_after: int | None = None
        self._drop_crash = self._drop_late = False
        self._corrupt: list[tuple[str, str]] = []  # (command word, mode), consumed in order
        self._fail: list[tuple[str, str]] = []  # (command word, error text), consumed in order
        self._cache: tuple[tuple, dict] | None = None
        self._generation = 0  # one per game process; a crashed one's threads stop serving
        self._down = False
        self._stopped = threading.Event()
        self._tcp: socket.socket | None = None
        self._unix: socket.socket | None = None
        self.socket_path = ""
        self.port = port
        self._dispatcher = _Dispatcher(self.behaviour.miss)
        (self._bind_legacy if self.behaviour.legacy else self._bind_fusion)()
        self._socket_dir = Path(socket_dir)
        self._listen_tcp()
        self._game = threading.Thread(target=self._game_loop, daemon=True, name="fake-unreal-game")

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeUnrealCVServer:
        self._game.start()
        self._launch()
        return self

    def stop(self) -> None:
        """Quit the game cleanly: the destructor unlinks the socket (UUnixTcpServer::~UUnixTcpServer)."""
        self._stopped.set()
        self._shut_down()
        self._game.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            if self.socket_path:
                os.unlink(self.socket_path)

    def __enter__(self) -> FakeUnrealCVServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listen_tcp(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart() rebinds the port
        listener.bind(("127.0.0.1", self.port))
        listener.listen(self.behaviour.backlog)
        self.port = listener.getsockname()[1]
        self.socket_path = str(self._socket_dir / f"unrealcv_{self.port}.socket")
        self._tcp = listener

    def _launch(self) -> None:
        generation = self._generation
        threading.Thread(target=self._tcp_loop, args=(self._tcp, generation), daemon=True).start()

    def _shut_down(self) -> None:
        with self._lock:
            self._generation += 1
            listeners, self._tcp, self._unix = (self._tcp, self._unix), None, None
        for listener in listeners:
            if listener is not None:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept
                listener.close()
        self._close_client()
        while not self._pending.empty():
            self._pending.get_nowait()
        self._late = None

    # -- faults --------------------------------------------------------------------------
    def drop_after(self, requests: int, crash: bool = False, late_reply: bool = False) -> None:
        """Read ``requests`` more requests, then close the connection on the next one.

        ``late_reply``: that last request is still answered, by a game thread busy until the
        next client connects, so its reply (old id) reaches the new client first -- what the
        plugin does with a request queued by a client that has gone. ``crash``: the game
        process dies there (see :meth:`crash`).
        """
        with self._lock:
            self._drop_after, self._drop_crash, self._drop_late = requests, crash, late_reply

    def crash(self) -> None:
        """The game process dies: nothing listens, queued requests are lost, and a 5.2-linux
        game's socket file stays behind (only a clean exit unlinks it)."""
        with self._lock:
            self._down = True
        self._shut_down()

    def restart(self) -> None:
        """A new game process on the same port: TCP first again."""
        with self._lock:
            self._down = False
        self._listen_tcp()
        self._launch()

    def corrupt(self, word: str, mode: str, times: int = 1) -> None:
        """Spoil the next ``times`` replies to commands naming ``word`` (``lit``, ``depth`` ...).

        ``mode``: ``truncate`` (cut the payload in half), ``garbage`` (random bytes),
        ``black`` (an all-black image), ``nan`` (a NaN depth map), ``small`` (half size),
        ``hang`` (never answer).
        """
        with self._lock:
            self._corrupt.extend([(word, mode)] * times)

    def fail(self, word: str, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` commands naming ``word`` with ``error <reply>``: e.g.
        ``Captured data is empty`` (FCameraHandler::SaveData while the render target is not
        ready) or ``Argument Invalid`` (SetCameraLocation while the pawn is invalid)."""
        with self._lock:
            self._fail.extend([(word, reply)] * times)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The game thread stalls (a long frame): requests queue up meanwhile."""
        with self._tick_lock:
            yield

    def pending(self) -> int:
        return self._pending.qsize()

    # -- network -------------------------------------------------------------------------
    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def _live(self, generation: int) -> bool:
        return generation == self._generation and not self._stopped.is_set()

    def _tcp_loop(self, listener: socket.socket, generation: int) -> None:
        """The FTcpListener thread: accepts a client and serves it itself, so the next one waits."""
        while self._live(generation):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._serve(conn, "tcp", generation)
            if self.behaviour.tcp_once_then_unix:
                self._unix_loop(generation)  # OnClientConnected -> StartMessageServiceUDS, never returns
                return

    def _unix_loop(self, generation: int) -> None:
        """StartMessageServiceUDS: unlink, bind, listen(1), serve Unix clients one at a time."""
        with self._lock:
            if not self._live(generation):
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.socket_path)
            listener.listen(1)
            self._unix = listener
        while self._live(generation):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self._serve(conn, "unix", generation)

    def _serve(self, conn: socket.socket, transport: str, generation: int) -> None:
        """StartMessageService*: greet, then queue every request until the client leaves."""
        with self._lock:
            live = self._live(generation)
            if live:
                self._client = conn
        try:
            if not live:
                return
            with self._send_lock:
                conn.sendall(frame(f"connected to {self.project}".encode()))
            with self._lock:
                self.connections += 1
                self.transports.append(transport)
            pattern = re.compile(self.behaviour.request_pattern)
            while True:
                raw = read_frame(conn)
                if raw is None:
                    break
                match = pattern.search(raw)  # '.' stops at a newline, as ICU's does
                if match is None:
                    continue  # logged and ignored ("Malformed raw message")
                request = (int(match.group(1)), match.group(2).decode("utf-8"))
                with self._lock:
                    drop = self._drop_after == 0
                    self._drop_after = None if self._drop_after in (0, None) else self._drop_after - 1
                if drop:
                    if self._drop_late:
                        self._late, self._late_after = request, self.connections
                    if self._drop_crash:
                        self.crash()
                    break
                self._pending.put(request)
        except OSError:
            pass
        finally:
            with self._lock:
                if self._client is conn:
                    self._client = None
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _send(self, payload: bytes) -> None:
        """TcpServer->SendData: to whichever client is connected now; nowhere if none."""
        with self._send_lock:
            conn = self._client
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(frame(payload))

    # -- the game thread -----------------------------------------------------------------
    def _game_loop(self) -> None:
        """FUnrealcvServer::Tick -> ProcessPendingRequest, once per frame."""
        tick = 0
        while not self._stopped.is_set():
            with self._tick_lock:  # held by frozen(): a frame that takes long
                if self._late is not None and self.connections > self._late_after:
                    late, self._late = self._late, None
                    tick += 1
                    self._execute(late, tick)
                try:
                    batch = [self._pending.get(timeout=0.02)]
                except queue.Empty:
                    continue
                limit = self.behaviour.requests_per_tick or math.inf
                while len(batch) < limit:
                    try:
                        batch.append(self._pending.get_nowait())
                    except queue.Empty:
                        break
                tick += 1
                for request in batch:
                    self._execute(request, tick)
            time.sleep(self.tick_s)

    def _execute(self, request: tuple[int, str], tick: int) -> None:
        rid, command = request
        self.commands.append(command)
        self.ticks.append(tick)
        pawn = self.cameras[0]
        x, y, z = pawn.location
        pawn.location = (x, y, z - self.fall_cm_per_request)
        words = set(re.split(r"[/\s]+", command))
        with self._lock:
            fault = next((i for i, (w, _) in enumerate(self._fail) if w in words), None)
            reply = self._fail.pop(fault)[1] if fault is not None else None
        body = b"error " + reply.encode() if reply is not None else self._dispatcher.exec(command)
        if body is not None:  # None: a hung request, never answered
            self._send(f"{rid}:".encode() + body)

    # -- commands ------------------------------------------------------------------------
    def _bind(self, template: str, handler: Callable[[list[str]], bytes | None]) -> None:
        if not set(re.split(r"[/\s]+", template)) & self.missing:
            self._dispatcher.bind(template, handler)

    def _status(self) -> bytes:
        """FPluginHandler::GetUnrealCVStatus + FServerConfig::ToString (FOV "%.1f" on 5.2, "%f" before)."""
        fov = f"{self.config_fov:.1f}" if self.behaviour.name == "5.2-linux" else f"{self.config_fov:f}"
        text = (f"Is Listening\n{'Client Connected' if self._client else 'No Client Connected'}\n{self.port}\n"
                f"Configuration\nConfig file: /game/Binaries/Linux/unrealcv.ini\nPort: {self.port}\n"
                f"Width: {self.width}\nHeight: {self.height}\nFOV: {fov}\nEnableInput: true\nEnableRightEye: false")
        return (text if self.behaviour.name == "5.2-linux" else text + "\n").encode()

    def _bind_fusion(self) -> None:
        """CameraHandler.cpp / PluginHandler.cpp, branches 5.2 and 4.27 (FusionCamSensor)."""

        def sensor(args: list[str]) -> _Camera | None:  # FCameraHandler::GetCamera
            return self.cameras.get(int(args[0]))

        def get_vector(what: str) -> Callable:
            def handler(args):
                cam = sensor(args)
                return b"error Invalid sensor id" if cam is None else ("%.3f %.3f %.3f" % getattr(cam, what)).encode()
            return handler

        def set_vector(what: str) -> Callable:
            def handler(args):
                cam = sensor(args)
                if cam is None:
                    return b"error Invalid sensor id"
                value = tuple(float(a) for a in args[1:])
                if args[0] == "0":  # camera 0 moves the player pawn
                    value = tuple(np.asarray(value) + self._pawn_offsets[what])
                setattr(cam, what, value)
                return b"ok"
            return handler

        def capture(what: str, fmt: str) -> Callable:
            def handler(args):  # GetCameraLit/Depth/Normal/ObjMask -> SaveData -> SerializeData
                cam = sensor(args)
                if cam is None:
                    return b"error Invalid sensor id"
                if args[1] != fmt:  # png for FColor data, npy for float data (binary when no '.')
                    return f"error Invalid filename type, filename {args[1]}".encode()
                return self._image(cam, what)
            return handler

        def get_fov(args):  # GetFOV returns InvalidArgument, not the sensor error
            cam = sensor(args)
            return b"error Argument Invalid" if cam is None else ("%f" % cam.fov).encode()

        def set_fov(args):
            cam = sensor(args)
            if cam is None:
                return b"error Argument Invalid"
            cam.fov = float(args[1])
            return b"ok"

        def get_size(args):
            return b"error Argument Invalid" if sensor(args) is None else f"{self.width} {self.height}".encode()

        def set_size(args):
            if sensor(args) is None:
                return b"error Argument Invalid"
            self.width, self.height = int(args[1]), int(args[2])
            return b"ok"

        self._bind("vget /unrealcv/status", lambda args: self._status())
        self._bind("vget /unrealcv/version", lambda args: self.behaviour.version.encode())
        self._bind("vget /camera/[uint]/location", get_vector("location"))
        self._bind("vset /camera/[uint]/location [float] [float] [float]", set_vector("location"))
        self._bind("vget /camera/[uint]/rotation", get_vector("rotation"))
        self._bind("vset /camera/[uint]/rotation [float] [float] [float]", set_vector("rotation"))
        self._bind("vget /camera/[uint]/lit [str]", capture("lit", "png"))
        self._bind("vget /camera/[uint]/depth [str]", capture("depth", "npy"))
        self._bind("vget /camera/[uint]/normal [str]", capture("normal", "png"))
        self._bind("vget /camera/[uint]/object_mask [str]", capture("object_mask", "png"))
        self._bind("vget /camera/[uint]/fov", get_fov)
        self._bind("vset /camera/[uint]/fov [float]", set_fov)
        self._bind("vset /camera/[uint]/size [uint] [uint]", set_size)
        self._bind("vget /camera/[uint]/size", get_size)

    def _bind_legacy(self) -> None:
        """CameraHandler.cpp / PluginHandler.cpp on master (GTCaptureComponent), in its bind order."""
        modes = ("lit", "depth", "object_mask", "normal")  # FServerConfig SupportedModes

        def view_mode(args):  # GetCameraViewMode: the catch-all `vget /camera/[uint]/[str]`
            if int(args[0]) not in self.cameras:
                return f"error Invalid camera id {int(args[0])}".encode()
            if args[1] not in modes:
                return f"error Unrecognized capture mode {args[1]}".encode()
            return f"/game/Binaries/Linux/{len(self.commands):08d}.png".encode()  # a file it wrote

        def get_location(args):  # the capture component's location; rotation: the pawn's control rotation
            if int(args[0]) not in self.cameras:
                return f"error Camera {int(args[0])} can not be found.".encode()
            return ("%.3f %.3f %.3f" % self.cameras[0].location).encode()

        def set_vector(what: str) -> Callable:
            def handler(args):  # the pawn / its controller, whatever the id ("TODO: multiple cameras")
                value = tuple(np.asarray([float(a) for a in args[1:]]) + self._pawn_offsets[what])
                setattr(self.cameras[0], what, value)
                return b"ok"
            return handler

        def get_fov(args):
            if int(args[0]) not in self.cameras:
                return f"error Camera {int(args[0])} can not be found.".encode()
            return ("%.3f" % self.cameras[0].fov).encode()

        def set_fov(args):
            if args[0] != "0":
                return b"error Setting field of view is only supported for camera 0"
            self.cameras[0].fov = float(args[1])
            return b"ok"

        def binary(what: str, empty_when_invalid: bool) -> Callable:
            def handler(args):  # GetPngBinary / GetNpyBinaryFloat16
                cam = self.cameras.get(int(args[0]))
                if cam is None:
                    return b"" if empty_when_invalid else f"error Invalid camera id {int(args[0])}".encode()
                if what == "plane_depth" and not self.plane_depth:
                    return b""  # CaptureNpyFloat16: no capture component for the mode -> empty array
                return self._image(cam, what)
            return handler

        self._bind("vget /camera/[uint]/[str]", view_mode)
        self._bind("vget /camera/[uint]/[str] [str]", lambda args: view_mode(args[:2]))
        self._bind("vget /camera/[uint]/object_mask [str]", binary("object_mask", False))  # a viewport screenshot
        self._bind("vget /camera/[uint]/location", get_location)
        self._bind("vget /camera/[uint]/rotation", lambda args: ("%.3f %.3f %.3f" % self.cameras[0].rotation).encode())
        self._bind("vset /camera/[uint]/location [float] [float] [float]", set_vector("location"))
        self._bind("vset /camera/[uint]/rotation [float] [float] [float]", set_vector("rotation"))
        self._bind("vget /camera/[uint]/horizontal_fieldofview", get_fov)
        self._bind("vset /camera/[uint]/horizontal_fieldofview [float]", set_fov)
        self._bind("vget /camera/[uint]/lit png", binary("lit", False))
        self._bind("vget /camera/[uint]/normal png", binary("normal", False))
        self._bind("vget /camera/[uint]/depth npy", binary("depth", True))
        self._bind("vget /camera/[uint]/plane_depth npy", binary("plane_depth", True))
        self._bind("vget /unrealcv/status", lambda args: self._status())
        self._bind("vget /unrealcv/version", lambda args: self.behaviour.version.encode())

    # -- images --------------------------------------------------------------------------
    def view(self, cam: _Camera, width: int, height: int) -> dict[str, np.ndarray]:
        """What the game renders for ``cam``: ``rgb`` (H, W, 3), ``t`` (H, W) cm along each ray to
        the first surface the depth capture sees (inf: none), ``cos`` (H, W) of each ray with the
        view axis, ``ids`` (H, W) of what the depth capture saw, ``dirs`` (H, W, 3) Unreal rays."""
        key = (cam.location, cam.rotation, cam.fov, width, height)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        start = time.perf_counter()
        dirs, cos = pixel_directions(cam.rotation, cam.fov, width, height)
        order = tile_order(width, height)  # rays in 8 x 8 tiles: what makes the tracer's culling fast
        origin = unreal_to_level(cam.location)
        level_dirs = (dirs.reshape(-1, 3) * _LEVEL_AXES)[order]
        traced, t_lit, ids = self.renderer.trace(origin, level_dirs)
        if self._depth_sees is not self.renderer:
            _, t_lit, ids = self._depth_sees.trace(origin, level_dirs)
        rgb = np.empty((width * height, 3), np.uint8)
        t = np.empty(width * height, np.float64)
        seen = np.empty(width * height, np.int64)
        rgb[order], t[order], seen[order] = traced, t_lit * 100.0, ids
        out = {"rgb": rgb.reshape(height, width, 3), "t": t.reshape(height, width), "cos": cos,
               "ids": np.where(np.isfinite(t), seen, -2).reshape(height, width), "dirs": dirs}
        self.render_seconds += time.perf_counter() - start
        self._cache = (key, out)
        return out

    def _image(self, cam: _Camera, what: str) -> bytes | None:
        with self._lock:
            fault = next((i for i, (w, _) in enumerate(self._corrupt) if w == what), None)
            mode = self._corrupt.pop(fault)[1] if fault is not None else None
        if mode == "hang":
            return None
        w, h = (self.width // 2, self.height // 2) if mode == "small" else (self.width, self.height)
        view = self.view(cam, w, h)
        if what in ("depth", "plane_depth"):
            # Z-depth (SCS_SceneDepth) on FusionCamSensor builds and for 0.3.x plane_depth; 0.3.x
            # `depth` (SceneDepthWorldUnits) is the distance to the camera centre. Both come from a
            # PF_FloatRGBA target read with ReadFloat16Pixels: half-float cm, written as '<f4'
            # (DepthCamSensor.cpp, GTCaptureComponent.cpp CaptureNpyFloat16); no surface overflows
            # half-float to +inf.
            distance = self.behaviour.legacy and what == "depth"
            cm = view["t"] if distance else view["t"] * view["cos"]
            with np.errstate(over="ignore"):
                cm = cm.astype(np.float16).astype(np.float32)
            if mode == "nan":
                cm[:] = np.nan
            payload = cnpy_bytes(cm)
        else:
            if what == "lit":
                rgb = view["rgb"]
            elif what == "normal":
                rgb = _world_normals(view)
            else:  # object mask: one colour per annotated object, black where none
                rgb = np.where((view["ids"] >= -1)[..., None], _PALETTE[(view["ids"] + 1) % len(_PALETTE)], 0)
                rgb = rgb.astype(np.uint8)
            if mode == "black":
                rgb = np.zeros_like(rgb)
            # The lit alpha carries inverted opacity, not colour; here it is 0 throughout.
            payload = png_bytes(np.concatenate([rgb, np.zeros((h, w, 1), np.uint8)], axis=2))
        if mode == "truncate":
            payload = payload[: len(payload) // 2]
        elif mode == "garbage":
            payload = b"\x89" + np.random.default_rng(len(payload)).bytes(len(payload))
        return payload


_PALETTE = np.random.default_rng(7).integers(40, 256, (64, 3)).astype(np.uint8)


def _world_normals(view: dict[str, np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 world-space normals in Unreal axes, (n + 1) / 2, from the depth's surface."""
    points = view["dirs"] * np.where(np.isfinite(view["t"]), view["t"], 0.0)[..., None]
    n = np.cross(np.gradient(points, axis=0), np.gradient(points, axis=1))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n *= -np.sign(np.sum(n * view["dirs"], axis=-1, keepdims=True) + 1e-12)  # face the camera
    return np.clip((n + 1.0) * 127.5, 0, 255).astype(np.uint8)


def orbit_overrides(server: FakeUnrealCVServer, views: int, radius_cm: float = 80.0, **plan) -> dict:
    """Config overrides for a small orbit inside the server's scene (for ``load_config``).

    Short timeouts and backoffs keep fault tests fast.
    """
    centre = level_to_unreal((np.asarray(server.scene.walk_lo) + np.asarray(server.scene.walk_hi)) / 2)
    return {
        "connection": {"ports": [server.port], "socket_dir": str(Path(server.socket_path).parent),
                       "connect_attempts": 3, "retry_backoff": 0.01, "connect_timeout": 2.0, "request_timeout": 5.0},
        # Rings above and below the centre: the views look down and up, not only around.
        "plan": {"kind": "orbit", "views": views, "center": [float(c) for c in centre], "radius": radius_cm,
                 "heights": (-30.0, 30.0), **plan},
    }


def main() -> None:
    """Serve a procedural scene until interrupted, to try `worldfm datagen unrealcv` without Unreal."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--behaves-like", default="5.2-linux", choices=sorted(BEHAVIOURS),
                        help="which UnrealCV build to imitate (5.2-linux: TCP once, then its Unix socket)")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--socket-dir", default="/tmp", help="where a 5.2-linux game creates unrealcv_<port>.socket")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0, help="procedural scene seed")
    parser.add_argument("--kind", default="indoor", choices=("indoor", "outdoor"))
    parser.add_argument("--tick-ms", type=float, default=1000 / 60, help="game frame time")
    args = parser.parse_args()
    server = FakeUnrealCVServer(args.seed, args.kind, *args.size, behaves_like=args.behaves_like, port=args.port,
                                socket_dir=args.socket_dir, tick_s=args.tick_ms / 1000).start()
    orbit = orbit_overrides(server, views=1, radius_cm=100.0)["plan"]
    print(f"{args.behaves_like}: serving {args.kind} scene {args.seed} on port {server.port}; try:\n"
          f"  worldfm datagen unrealcv --port {server.port} --out /tmp/unrealcv_demo --views 32 "
          f"--center {' '.join(f'{c:.0f}' for c in orbit['center'])} --radius 100", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print(f"served {len(server.commands)} commands; {server.render_seconds:.1f} s of it rendering")
        server.stop()


if __name__ == "__main__":
    main()
