"""The viewer's threads that talk to the bridge server, each through its own
:class:`python_bridge.client.Client` (protocol v1; the client is not thread-safe).

* :class:`SceneHost` opens scenes (makes or reads the views, uploads them, waits for the
  build) and keeps its session -- the scenes' owner -- alive with pings. Built scenes are
  cached by name, so a reload or a second tab starts at once.
* :class:`Link` is one browser tab's render loop. The page sends a pose whenever the camera
  moves (display rate); the link sends each one on at once as an async render, so the
  server's latest-wins queue (docs/protocol.md) always holds the newest pose and answers the
  older ones ``superseded``: a slow model never builds a queue. Frames go back through
  ``on_frame``, which keeps only the newest unsent one (:mod:`.gateway`).
* :func:`render_video` renders a recorded camera path to an MP4 through the render-path
  machinery (:func:`python_bridge.camera_path.render_path`: frame i with seed i, raw frames).
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import zmq

from python_bridge import protocol as P
from python_bridge.camera_path import CameraPath, render_path
from python_bridge.client import BridgeError, Client, FrameReply, SceneInfo, ServerUnavailable, Superseded
from python_bridge.viewer.catalog import Catalog, SceneNameError, StartView, start_view, thumbnails

log = logging.getLogger(__name__)

LIVE_SEED = 0  # one noise seed for every live frame: a still camera shows a still picture
RETRY_S = 1.0  # wait before connecting again to a server that did not answer


@dataclass
class ViewerScene:
    """A scene built on the server: its catalog ``name``, server ``scene_id``, the build
    report, how the page starts flying (``view``) and the views' thumbnails (JPEG)."""

    name: str
    scene_id: str
    info: SceneInfo
    view: StartView
    thumbnails: list[bytes] = field(default_factory=list)

    def describe(self) -> dict:
        """The ``scene`` message for the page (docs/viewer.md)."""
        return {
            "type": "scene",
            "name": self.name,
            "views": self.info.views,
            "points": self.info.points,
            "candidates": self.info.candidates,
            "build_ms": round(self.info.build_ms, 1),
            "start": P.flat(self.view.start),
            "up": [float(v) for v in self.view.up],
            "speed": self.view.speed,
            "size": list(self.view.size),
            "K": P.flat(self.view.K),
        }


@dataclass
class PoseRequest:
    """What the page wants rendered: pose ``n`` (its own counter), c2w (4, 4), generator
    ``steps`` (None: the server's default) and whether the anchor image comes back too."""

    n: int
    c2w: np.ndarray
    steps: int | None = None
    anchor: bool = False
    received: float = field(default_factory=time.perf_counter)


def pack(header: dict, parts: list) -> bytes:
    """A binary WebSocket message: uint32 LE header length, the JSON header, then the parts
    (whose byte lengths the header lists in ``parts``). See docs/viewer.md."""
    header = {**header, "parts": [len(p) for p in parts]}
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([struct.pack("<I", len(head)), head, *(memoryview(p).cast("B") for p in parts)])


class SceneHost(threading.Thread):
    """Opens scenes by catalog name on the server and keeps them (and their session) alive.

    ``open`` may be called from any thread; its callbacks run on this thread.
    """

    def __init__(self, endpoint: str, catalog: Catalog, views: int, client_options: dict | None = None) -> None:
        super().__init__(name="viewer-scenes", daemon=True)
        self.endpoint, self.catalog, self.views = endpoint, catalog, views
        self.client_options = client_options or {}
        self.welcome: dict = {}
        self.ready = threading.Event()  # set once the first hello succeeded (or failed: see error)
        self.error: str | None = None
        self._jobs: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[Callable, Callable]]] = {}
        self._cache: OrderedDict[str, ViewerScene] = OrderedDict()
        self._stopping = threading.Event()

    @property
    def frame_size(self) -> tuple[int, int]:
        w, h = self.welcome.get("frame_size", (256, 256))
        return int(w), int(h)

    def open(
        self,
        name: str,
        progress: Callable[[str, int, int], None],
        done: Callable[[ViewerScene | None, str | None], None],
    ) -> None:
        """Open ``name`` (already resolved by the catalog): ``progress(stage, done, total)``
        while it builds, then ``done(scene, None)`` or ``done(None, error message)``."""
        with self._lock:
            scene = self._cache.get(name)
            if scene is None:
                first = name not in self._waiters
                self._waiters.setdefault(name, []).append((progress, done))
                if first:
                    self._jobs.put(name)
                return
            self._cache.move_to_end(name)
        done(scene, None)

    def forget(self, scene_id: str) -> None:
        """The server no longer has ``scene_id`` (it restarted, or the scene expired): the
        next ``open`` of its name builds it again."""
        with self._lock:
            for name, scene in list(self._cache.items()):
                if scene.scene_id == scene_id:
                    del self._cache[name]

    def stop(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        self.join(timeout=10)

    def run(self) -> None:
        client = Client(self.endpoint, name="worldfm-view-scenes", connect=False, **self.client_options)
        try:
            self.welcome = client.connect()
        except (ServerUnavailable, BridgeError) as exc:
            self.error = str(exc)
            self.ready.set()
            return
        self.ready.set()
        heartbeat_s = self.welcome.get("heartbeat_ms", 1000) / 1e3
        with client:
            while not self._stopping.is_set():
                try:
                    name = self._jobs.get(timeout=heartbeat_s)
                except queue.Empty:
                    name = ""
                if name is None:
                    break
                try:
                    if name:
                        self._build(client, name)
                    else:
                        client.ping()  # the scenes belong to this session: keep it from expiring
                except ServerUnavailable as exc:
                    log.warning("scene host: %s", exc)
                    self._stopping.wait(RETRY_S)

    def _notify(self, name: str, scene: ViewerScene | None, error: str | None) -> None:
        with self._lock:
            waiters = self._waiters.pop(name, [])
            if scene is not None:
                self._cache[name] = scene
        for _, done in waiters:
            done(scene, error)

    def _progress(self, name: str, stage: str, done: int, total: int) -> None:
        with self._lock:
            waiters = list(self._waiters.get(name, []))
        for progress, _ in waiters:
            progress(stage, done, total)

    def _build(self, client: Client, name: str) -> None:
        try:
            source = self.catalog.resolve(name)
            width, height = self.frame_size
            frames = source.load(self.views, width, lambda *p: self._progress(name, *p))
            self._evict(client)

            def uploaded(sent: int, total: int) -> None:  # after the last batch the server builds
                self._progress(name, "upload" if sent < total else "build", sent, total)

            info = client.open_scene(frames, name=name, progress=uploaded)
            scene = ViewerScene(name, info.scene, info, start_view(frames, (width, height)), thumbnails(frames))
        except (SceneNameError, BridgeError, ServerUnavailable, ValueError, OSError) as exc:
            log.warning("scene %s: %s", name, exc)
            self._notify(name, None, f"could not open {name}: {exc}")
            if isinstance(exc, ServerUnavailable):
                raise
            return
        log.info("scene %s: %d views, %d points, built in %.0f ms", name, info.views, info.points, info.build_ms)
        self._notify(name, scene, None)

    def _evict(self, client: Client) -> None:
        """Close the least recently opened scene when the server's per-session limit is reached."""
        limit = int(self.welcome.get("limits", {}).get("max_scenes_per_client", 4))
        while True:
            with self._lock:
                if len(self._cache) < limit:
                    return
                _, old = self._cache.popitem(last=False)
            try:
                client.close_scene(old.scene_id)
            except BridgeError:
                pass  # already gone on the server


class Link(threading.Thread):
    """One tab's render loop: every new pose goes up as an async render; answers come back.

    ``show``, ``want`` and ``close`` are called from the gateway's event loop;
    ``on_frame(payload)`` and ``on_event(message)`` are called from this thread.
    """

    def __init__(
        self,
        endpoint: str,
        on_frame: Callable[[bytes], None],
        on_event: Callable[[dict], None],
        client_options: dict | None = None,
    ) -> None:
        super().__init__(name="viewer-link", daemon=True)
        self.endpoint, self.on_frame, self.on_event = endpoint, on_frame, on_event
        self.client_options = client_options or {}
        self._lock = threading.Lock()
        self._want: PoseRequest | None = None
        self._scene: ViewerScene | None = None
        self._stopping = threading.Event()
        # A socket pair wakes the loop from its wait on the client socket (zmq.select takes both).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def show(self, scene: ViewerScene | None) -> None:
        """Render ``scene`` from now on; poses and frames of the previous one are dropped."""
        with self._lock:
            self._scene, self._want = scene, None
        self._wake()

    def want(self, request: PoseRequest) -> None:
        """Render this pose next (replacing any pose not sent yet)."""
        with self._lock:
            self._want = request
        self._wake()

    def close(self) -> None:
        self._stopping.set()
        self._wake()
        self.join(timeout=10)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or the link is closing)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                client = Client(self.endpoint, name="worldfm-view", **self.client_options)
            except (ServerUnavailable, BridgeError) as exc:
                self.on_event({"type": "server", "state": "unavailable", "message": str(exc)})
                self._stopping.wait(RETRY_S)
                continue
            with client:
                try:
                    self._serve(client)
                except ServerUnavailable as exc:
                    self.on_event({"type": "server", "state": "unavailable", "message": str(exc)})

    def _serve(self, client: Client) -> None:
        heartbeat_s = client.welcome.get("heartbeat_ms", 1000) / 1e3
        sent: dict[int, tuple[PoseRequest, ViewerScene]] = {}
        next_ping = 0.0
        while not self._stopping.is_set():
            with self._lock:
                request, scene, self._want = self._want, self._scene, None
            if request is not None and scene is not None:
                v = scene.view
                rid = client.render_async(
                    scene.scene_id, request.c2w, K=v.K, size=v.size, encoding="jpeg",
                    steps=request.steps, seed=LIVE_SEED, anchor=request.anchor,
                )  # fmt: skip
                sent[rid] = (request, scene)
            while True:
                try:
                    reply = client.poll(0)
                except BridgeError as exc:  # a frame that could not be read: that request is lost
                    self.on_event({"type": "error", "message": f"bad frame from the server: {exc}"})
                    sent.pop(exc.request_id, None)
                    continue
                if reply is None:
                    break
                self._answer(reply, sent)
            now = time.monotonic()
            if now >= next_ping:  # also notices a dead server while renders are outstanding
                rtt = client.ping()
                self.on_event({"type": "server", "state": "connected", "ping_ms": round(rtt, 2)})
                next_ping = time.monotonic() + heartbeat_s
                continue  # the ping may have collected replies: answer them first
            zmq.select([client.socket, self._wake_r], [], [], max(0.0, next_ping - now))
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass

    def _answer(self, reply: FrameReply | Superseded | BridgeError, sent: dict) -> None:
        request, scene = sent.pop(reply.id, (None, None))
        if request is None or isinstance(reply, Superseded):
            return
        with self._lock:
            current = self._scene
        if isinstance(reply, BridgeError):
            if reply.code == "connection_lost":  # the client reconnected: ask for this pose again
                with self._lock:
                    if self._want is None and current is scene:
                        self._want = request
            elif reply.code == P.E_UNKNOWN_SCENE and current is scene:
                self.on_event({"type": "scene_lost", "name": scene.name, "scene_id": scene.scene_id})
            elif current is scene:
                self.on_event({"type": "error", "message": f"render failed: {reply}"})
            return
        if current is not scene or not reply.encoded:
            return  # a frame of the scene the page just left
        header = {
            "type": "frame",
            "n": request.n,
            "c2w": P.flat(reply.c2w),
            "reference": reply.reference,
            "mode": reply.mode,
            "steps": request.steps,
            "timings": {k: round(v, 2) for k, v in reply.timings.items()},
            "server_ms": round(reply.latency_ms, 2),  # gateway -> server -> gateway
            "gateway_ms": round((time.perf_counter() - request.received) * 1e3, 2),
        }
        self.on_frame(pack(header, reply.encoded))


def render_video(
    endpoint: str,
    scene: ViewerScene,
    path: CameraPath,
    out: Path,
    steps: int | None,
    progress: Callable[[int, int], None],
    client_options: dict | None = None,
) -> set[str]:
    """Render ``path`` through the server at full quality (raw frames, ``steps``; frame i
    with seed i, as ``worldfm render-path --seed 0`` does) into the MP4 ``out``; returns the
    frames' modes (``anchor`` among them: the scene's fill guard had chosen the fill)."""
    options = {**(client_options or {}), "timeout_s": max(30.0, (client_options or {}).get("timeout_s", 0))}
    modes: set[str] = set()
    with Client(endpoint, name="worldfm-view-video", **options) as client:

        def render(c2w: np.ndarray, seed: int) -> np.ndarray:
            reply = client.render(scene.scene_id, c2w, K=path.K, size=path.size, steps=steps, seed=seed)
            modes.add(reply.mode)
            return reply.rgb

        render_path(path, render, out, seed=0, progress=progress)
    return modes
