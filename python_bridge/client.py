"""The Python client of the bridge (and the reference the C++ plugin core follows).

One DEALER socket. Requests carry increasing ids; a blocking call waits for the reply with
its id and keeps any other reply (answers to earlier async renders) for :meth:`Client.poll`.
When a blocking request times out the client follows the zguide "Lazy Pirate" pattern:
close the socket, open a fresh one, say hello again with the same session (so scenes
survive a reconnect) and resend, up to ``retries`` times.

A game loop typically calls :meth:`Client.render_async` every tick with the newest pose and
:meth:`Client.poll` for whatever frames are ready; the server keeps only the newest queued
pose per session and answers older ones ``superseded``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import zmq

from models import cameras
from models.scene import Frame
from python_bridge import protocol as P

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class BridgeError(RuntimeError):
    """The server answered ``error``: ``code`` (see protocol.E_*), its message, the request id."""

    def __init__(self, code: str, message: str, request_id: int | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.request_id = code, message, request_id

    @property
    def id(self) -> int | None:
        """The request id, like ``FrameReply.id`` and ``Superseded.id`` (what :meth:`Client.poll` returns)."""
        return self.request_id


class ServerUnavailable(ConnectionError):
    """No reply after every retry: the server is down, unreachable, or the keys do not match."""


@dataclass
class FrameReply:
    """A rendered frame: ``rgb`` uint8 (H, W, 3), the camera it answers (c2w (4, 4), K (3, 3)),
    the reference candidate used, the server's ``mode`` and per-stage ``timings`` (ms), plus
    the client-measured ``latency_ms`` from send to receive."""

    id: int
    rgb: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    reference: int | None
    mode: str
    timings: dict[str, float]
    t_client: float | None
    latency_ms: float
    anchor_rgb: np.ndarray | None = None  # the anchor rendering, when the render asked for it
    # The image parts as received when the encoding is JPEG (frame, then anchor): what a
    # gateway forwards to a browser without encoding the frame a second time.
    encoded: list[np.ndarray] = field(default_factory=list)


@dataclass
class Superseded:
    """An async render the server dropped because a newer one (``by``) replaced it in the queue."""

    id: int
    by: int | None


@dataclass
class SceneInfo:
    """``scene_ready``: the scene id to render, its views, fused points, candidates, build time (ms)."""

    scene: str
    views: int
    points: int
    candidates: int
    build_ms: float


class Client:
    """A connection to one bridge server. Not thread-safe: use one client per thread.

    The server expires sessions idle for ``welcome["client_timeout_ms"]`` unless it holds
    work for them; every wait of this client (a blocking request, :meth:`poll`) pings every
    ``welcome["heartbeat_ms"]``, so only a client that stops calling it for longer idles.

    ``server_key``: the server's CurveZMQ public key (z85 bytes) when it runs encrypted;
    the client then makes an ephemeral key pair unless ``client_keys`` (public, secret) is given.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout_s: float = 5.0,
        retries: int = 3,
        name: str = "python",
        server_key: bytes | None = None,
        client_keys: tuple[bytes, bytes] | None = None,
        context: zmq.Context | None = None,
        connect: bool = True,
    ) -> None:
        self.endpoint, self.timeout_s, self.retries, self.name = endpoint, timeout_s, retries, name
        self._ctx = context or zmq.Context.instance()
        self._server_key = server_key
        self._client_keys = client_keys or (zmq.curve_keypair() if server_key else None)
        self.session = secrets.token_hex(16)
        self._ids = itertools.count(1)
        self._inbox: deque[P.Message] = deque()
        self._async: dict[int, float] = {}  # request id -> perf_counter at send
        self._lost: deque[BridgeError] = deque()  # async renders forgotten by a reconnect, for poll()
        self._keepalive_ids: set[int] = set()  # pings sent by long waits; their pongs are dropped
        self._sock: zmq.Socket | None = None
        self._rcvtimeo_ms = -1  # ZMQ_RCVTIMEO of the socket, changed only when a wait needs another
        self.stray_replies = 0  # replies to no outstanding request (e.g. late ones after a reconnect)
        self.welcome: dict = {}
        if connect:
            self.connect()

    # ------------------------------------------------------------------ connection

    def _open_socket(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IPV6, 1)  # so tcp://[::1]:PORT connects
        if self._server_key is not None:
            sock.curve_serverkey = self._server_key
            sock.curve_publickey, sock.curve_secretkey = self._client_keys
        sock.connect(self.endpoint)
        self._sock = sock
        self._rcvtimeo_ms = -1  # libzmq's default: block

    def connect(self) -> dict:
        """Open the socket and handshake; returns the ``welcome`` fields (model, frame size, limits)."""
        if self._sock is None:
            self._open_socket()
        self.welcome = self._request(P.HELLO, {"client": self.name, "session": self.session}).fields
        return self.welcome

    def _reconnect(self) -> None:
        """Lazy Pirate: drop the socket (and its queued messages), open a new one, hello again."""
        if self._sock is not None:
            self._sock.close(0)
        self._open_socket()
        self._inbox.clear()
        self._keepalive_ids.clear()
        for rid in self._async:  # their replies would come to the old socket: answer them here
            self._lost.append(
                BridgeError(
                    "connection_lost",
                    "the client reconnected before this render was answered; send the pose again",
                    rid,
                )
            )
        self._async.clear()
        msg = P.Message(P.HELLO, next(self._ids), {"client": self.name, "session": self.session})
        self._send(msg)
        self.welcome = self._wait(msg.id, self.timeout_s).fields

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def socket(self) -> zmq.Socket | None:
        """The current DEALER socket, for a caller that waits on it together with its own
        sockets (``zmq.select``) and then calls :meth:`poll`; never read or write it directly.
        A reconnect replaces it, so fetch it again before every wait."""
        return self._sock

    # ------------------------------------------------------------------ messaging

    def _send(self, msg: P.Message) -> None:
        P.send_parts(self._sock, P.encode(msg))

    def _recv(self, timeout_s: float) -> P.Message | None:
        """The next message, or None after ``timeout_s``.

        A blocking receive under ZMQ_RCVTIMEO, set only when the timeout changes: polling
        first and receiving after costs one more pass through libzmq per reply."""
        timeout_ms = max(0, round(timeout_s * 1000))
        if timeout_ms != self._rcvtimeo_ms:
            self._sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo_ms = timeout_ms
        try:
            parts = P.recv_parts(self._sock)
        except zmq.Again:
            return None
        return P.decode(parts)  # the protocol's default limits

    def _recv_alive(self, deadline: float) -> P.Message | None:
        """The next message other than a keep-alive pong, or None at ``deadline`` (monotonic).

        Waits in slices of the server's heartbeat and pings after each empty one, so a wait
        of any length -- a slow scene build, a long :meth:`poll` -- never lets the session
        expire. The first slice is the heartbeat itself (or the whole wait when shorter), so
        ZMQ_RCVTIMEO rarely changes."""
        while True:
            remaining = deadline - time.monotonic()
            msg = self._recv(min(remaining, self._keepalive_s))
            if msg is not None:
                if msg.id in self._keepalive_ids and msg.type == P.PONG:
                    self._keepalive_ids.discard(msg.id)
                    continue
                return msg
            if deadline - time.monotonic() <= 0:
                return None
            if self.welcome:  # a session exists to keep alive
                ping = P.Message(P.PING, next(self._ids), {"t_client": time.time()})
                self._keepalive_ids.add(ping.id)
                self._send(ping)

    @property
    def _keepalive_s(self) -> float:
        """How often a waiting client pings: every heartbeat (``welcome``; 1 s before it), and at
        least three times per client timeout."""
        w = self.welcome
        return min(w.get("heartbeat_ms", 1000), w.get("client_timeout_ms", 30_000) / 3) / 1000.0

    def _wait(self, rid: int, timeout_s: float) -> P.Message:
        """The reply to ``rid`` (other replies go to the inbox); raises on timeout or ``error``."""
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._recv_alive(deadline)
            if msg is None:
                raise TimeoutError(f"no reply to request {rid} within {timeout_s:g} s")
            if msg.id != rid:
                self._inbox.append(msg)
                continue
            if msg.type == P.ERROR:
                raise BridgeError(msg.fields.get("code", "?"), msg.fields.get("message", ""), rid)
            return msg

    def _request(
        self,
        mtype: str,
        fields: dict,
        blobs: Sequence[np.ndarray] = (),
        retry: bool = True,
        timeout_s: float | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> P.Message:
        """Send one request and wait for its reply, reconnecting and resending on timeouts.

        ``on_sent`` is called after each send, before the wait (upload progress)."""
        timeout_s = timeout_s or self.timeout_s
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            msg = P.Message(mtype, next(self._ids), fields, list(blobs))
            self._send(msg)
            if on_sent is not None:
                on_sent()
            try:
                return self._wait(msg.id, timeout_s)
            except TimeoutError:
                if attempt + 1 == attempts:
                    break
                log.warning(
                    "no reply from %s in %.1f s; reconnecting (%d/%d)",
                    self.endpoint,
                    timeout_s,
                    attempt + 1,
                    self.retries,
                )
                try:
                    self._reconnect()
                except TimeoutError:
                    continue
        raise ServerUnavailable(
            f"{self.endpoint} did not answer {mtype} after {attempts} attempt(s) of "
            f"{timeout_s:g} s; is `worldfm serve` running there (and the CurveZMQ key right)?"
        )

    # ------------------------------------------------------------------ API

    def ping(self) -> float:
        """Round-trip time to the server in milliseconds."""
        t0 = time.perf_counter()
        self._request(P.PING, {"t_client": time.time()})
        return (time.perf_counter() - t0) * 1e3

    def stats(self) -> dict:
        """The server's ``stats`` reply (docs/protocol.md): counters, start-up milestones, recent
        builds with each scene's fill guard status, the first frame's stages."""
        return self._request(P.STATS, {}).fields

    def open_scene(
        self,
        frames: Sequence[Frame],
        name: str = "scene",
        batch: int = 16,
        build_timeout_s: float = 300.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> SceneInfo:
        """Upload posed views (``models.scene.Frame``, depth recommended) in batches; wait for the build.

        ``progress(sent, total)`` is called as each batch goes out (views sent so far); after
        the last one the server builds the scene, so a user interface can show both stages."""
        if not frames:
            raise ValueError("open_scene needs at least one view")
        batch = max(1, min(batch, int(self.welcome.get("limits", {}).get("max_views_per_message", batch))))
        chunks = [frames[i : i + batch] for i in range(0, len(frames), batch)]
        scene = None
        for i, chunk in enumerate(chunks):
            descs, blobs = P.view_fields(chunk)
            final = i == len(chunks) - 1
            fields = {"views": descs, "final": final}
            if scene is None:
                fields["name"] = name
                mtype = P.OPEN_SCENE
            else:
                fields["scene"] = scene
                mtype = P.ADD_VIEWS
            sent = min((i + 1) * batch, len(frames))
            # Uploads are not resent on timeout: a resend could open the scene twice.
            reply = self._request(
                mtype,
                fields,
                blobs,
                retry=False,
                timeout_s=build_timeout_s if final else max(self.timeout_s, 30.0),
                on_sent=None if progress is None else functools.partial(progress, sent, len(frames)),
            )
            scene = reply.fields["scene"]
        return _scene_info(reply)

    def open_scene_path(self, path: str, name: str = "scene", build_timeout_s: float = 300.0) -> SceneInfo:
        """Open a dataset folder or meta.json that lives on the server (if it allows paths)."""
        return _scene_info(
            self._request(P.OPEN_SCENE, {"path": path, "name": name}, retry=False, timeout_s=build_timeout_s)
        )

    def close_scene(self, scene: str) -> None:
        self._request(P.CLOSE_SCENE, {"scene": scene})

    def _render_fields(
        self,
        scene: str,
        c2w: np.ndarray,
        K: np.ndarray | None,
        size: tuple[int, int] | None,
        encoding: str,
        steps: int | None,
        seed: int | None,
        anchor: bool = False,
    ) -> dict:
        fields = {"scene": scene, "c2w": P.flat(c2w), "t_client": time.time(), "encoding": encoding}
        if anchor:
            fields["anchor"] = True
        if K is not None:
            fields["K"] = P.flat(K)
        if size is not None:
            fields["size"] = [int(size[0]), int(size[1])]
        if steps is not None:
            fields["steps"] = int(steps)
        if seed is not None:
            fields["seed"] = int(seed)
        return fields

    def render(
        self,
        scene: str,
        c2w: np.ndarray,
        K: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
        encoding: str = "raw",
        steps: int | None = None,
        seed: int | None = None,
        timeout_s: float | None = None,
        anchor: bool = False,
    ) -> FrameReply:
        """Render one frame and wait for it. c2w (4, 4) metres, K (3, 3) pixels of ``size`` (W, H).

        ``seed`` fixes the generator noise; ``anchor`` also returns the anchor rendering.
        """
        t0 = time.perf_counter()
        reply = self._request(
            P.RENDER, self._render_fields(scene, c2w, K, size, encoding, steps, seed, anchor), timeout_s=timeout_s
        )
        if reply.type == P.SUPERSEDED:  # only when async renders were outstanding as well
            raise BridgeError("superseded", "a newer render replaced this one", reply.id)
        return _frame(reply, (time.perf_counter() - t0) * 1e3)

    def render_async(
        self,
        scene: str,
        c2w: np.ndarray,
        K: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
        encoding: str = "raw",
        steps: int | None = None,
        seed: int | None = None,
        anchor: bool = False,
    ) -> int:
        """Queue a render without waiting; returns its request id. Collect replies with :meth:`poll`."""
        fields = self._render_fields(scene, c2w, K, size, encoding, steps, seed, anchor)
        msg = P.Message(P.RENDER, next(self._ids), fields)
        self._async[msg.id] = time.perf_counter()
        self._send(msg)
        return msg.id

    @property
    def outstanding(self) -> int:
        """Async renders not answered yet (by the server or, after a reconnect, by the client)."""
        return len(self._async) + len(self._lost)

    def poll(self, timeout_s: float = 0.0) -> FrameReply | Superseded | BridgeError | None:
        """The next answer to an async render (a frame, superseded, or the error), or None on timeout.

        Every async render is answered once; renders outstanding when the client had to
        reconnect come back as ``BridgeError`` with code ``connection_lost``.
        """
        if self._lost:
            return self._lost.popleft()
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._inbox.popleft() if self._inbox else self._recv_alive(deadline)
            if msg is None:
                return None
            sent = self._async.pop(msg.id, None) if msg.id is not None else None
            if sent is None:
                self.stray_replies += 1
                log.debug("ignoring a reply to unknown request %s (%s)", msg.id, msg.type)
                continue
            if msg.type == P.SUPERSEDED:
                return Superseded(msg.id, msg.fields.get("by"))
            if msg.type == P.ERROR:
                return BridgeError(msg.fields.get("code", "?"), msg.fields.get("message", ""), msg.id)
            return _frame(msg, (time.perf_counter() - sent) * 1e3)


def _scene_info(msg: P.Message) -> SceneInfo:
    f = msg.fields
    return SceneInfo(f["scene"], int(f["views"]), int(f["points"]), int(f["candidates"]), float(f["build_ms"]))


def _frame(msg: P.Message, latency_ms: float) -> FrameReply:
    f = msg.fields
    if msg.type != P.FRAME or len(msg.blobs) not in (1, 2):
        raise BridgeError(
            P.E_MALFORMED, f"expected a frame with an image; got {msg.type} with {len(msg.blobs)}", msg.id
        )
    images = [_image(blob, f.get("encoding"), tuple(f["size"]), msg.id) for blob in msg.blobs]
    return FrameReply(
        msg.id,
        images[0],
        np.asarray(f["c2w"]).reshape(4, 4),
        np.asarray(f["K"]).reshape(3, 3),
        f.get("reference"),
        f.get("mode", "?"),
        f.get("timings", {}),
        f.get("t_client"),
        latency_ms,
        images[1] if len(images) == 2 else None,
        list(msg.blobs) if f.get("encoding") == "jpeg" else [],
    )


def _image(blob: np.ndarray, encoding: str | None, size: tuple[int, int], rid: int | None) -> np.ndarray:
    """A frame blob -> RGB uint8 (H, W, 3): raw as received (zero-copy view) or JPEG-decoded."""
    if encoding == "jpeg":
        bgr = cv2.imdecode(np.asarray(blob), cv2.IMREAD_COLOR)
        if bgr is None:
            raise BridgeError(P.E_MALFORMED, "the frame's JPEG could not be decoded", rid)
        blob = bgr[..., ::-1]
    w, h = size
    if blob.shape != (h, w, 3):
        raise BridgeError(P.E_MALFORMED, f"frame image is {blob.shape}, header says {w}x{h}", rid)
    return blob


# ---------------------------------------------------------------------- pose helpers (models.cameras)


def pose_from_unreal(location_cm: Sequence[float], rotation_pyr_deg: Sequence[float]) -> np.ndarray:
    """Unreal camera (location cm, pitch/yaw/roll degrees) -> c2w (4, 4) in our convention."""
    return cameras.ue_to_c2w(np.asarray(location_cm), np.asarray(rotation_pyr_deg))


def pose_from_opengl(c2w_gl: np.ndarray) -> np.ndarray:
    """nerfstudio/OpenGL camera-to-world -> ours."""
    return cameras.opengl_to_c2w(c2w_gl)


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w (4, 4) of a camera at ``eye`` looking at ``target`` (world Z up by default)."""
    return cameras.look_at(np.asarray(eye), np.asarray(target), np.asarray(up))


def intrinsics_from_hfov(hfov_deg: float, width: int, height: int) -> np.ndarray:
    """K (3, 3) pixels for a centred camera with horizontal FOV ``hfov_deg``."""
    return cameras.K_from_hfov(hfov_deg, width, height)
