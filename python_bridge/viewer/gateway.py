"""The viewer's HTTP + WebSocket gateway (aiohttp): one page, one socket per tab.

What crosses it (the page protocol, docs/viewer.md): JSON text messages both ways, and
binary frames down (``workers.pack``). Frames go down latest-wins with a window of
:data:`FRAME_WINDOW` frames the page has not acknowledged, so neither the server, the
gateway nor the socket buffers ever queue frames for a slow tab.

Security: the gateway binds loopback unless told otherwise; every request but the page's
static files needs the per-launch token that the printed URL carries; the WebSocket also
checks its ``Origin`` and the ``Host`` header (so another site, or a DNS-rebinding page,
cannot drive it from the user's browser); messages from the page are capped at the bridge
server's header size and validated field by field; the page names scenes only from the
catalog, and what it downloads are files the gateway wrote into its own temporary folder
under names it made.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import shlex
import shutil
import tempfile
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from models.cameras import CameraError, validate_c2w
from python_bridge import protocol as P
from python_bridge.camera_path import CameraPath, save_camera_path
from python_bridge.server import is_loopback
from python_bridge.viewer.catalog import Catalog, SceneNameError
from python_bridge.viewer.workers import Link, PoseRequest, SceneHost, ViewerScene, pack, render_video

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
FRAME_WINDOW = 2  # frames sent and not yet acknowledged by the page: one shown, one on its way
RECORD_FPS = 24.0
MAX_RECORD_S = 600.0
_MAX_RECORD_POSES = int(MAX_RECORD_S * RECORD_FPS)
MAX_RECORDINGS = 8  # older recordings (and their files) are dropped
HEADERS = {
    # The page loads nothing from elsewhere and may be framed by nobody; the token in its
    # URL must not leak through a Referer.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class ViewerStartError(RuntimeError):
    """The gateway could not start (server unreachable, port taken); the message says what to do."""


@dataclass
class Recording:
    """A recorded flight: the camera ``path`` through ``scene`` and the files made from it."""

    id: str
    scene: ViewerScene
    path: CameraPath
    folder: Path
    video_state: str = "none"  # none | rendering | ready | failed
    video_fill: bool = False  # the MP4's frames were the fill the scene's guard chose (render_command)

    @property
    def json_file(self) -> Path:
        return self.folder / "path.json"

    @property
    def video_file(self) -> Path:
        return self.folder / "path.mp4"

    def download_name(self, suffix: str) -> str:
        """The file name a download gets: ``worldfm-SCENE-ID.json`` / ``.mp4``."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", self.scene.name).strip("-")
        return f"worldfm-{stem}-{self.id}.{suffix}"


def parse_pose(data: dict, steps_allowed: list[int]) -> PoseRequest:
    """A ``pose`` message from the page -> :class:`PoseRequest`; ValueError says what is wrong."""
    n = data.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 2**53:
        raise ValueError("pose: 'n' must be an integer in [0, 2^53)")
    c2w = data.get("c2w")
    if (
        not isinstance(c2w, list)
        or len(c2w) != 16
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c2w)
    ):
        raise ValueError("pose: 'c2w' must be 16 numbers (a 4x4 camera-to-world matrix, row-major)")
    try:
        pose = validate_c2w(np.asarray(c2w, dtype=np.float64).reshape(4, 4))
    except CameraError as exc:
        raise ValueError(f"pose: {exc}") from None
    steps = data.get("steps")
    if steps is not None and (isinstance(steps, bool) or steps not in steps_allowed):
        raise ValueError(f"pose: 'steps' must be one of {steps_allowed} or null; got {steps!r}")
    anchor = data.get("anchor", False)
    if not isinstance(anchor, bool):
        raise ValueError("pose: 'anchor' must be true or false")
    return PoseRequest(n, pose, steps, anchor)


class Connection:
    """One tab: its WebSocket, its :class:`Link` to the server, its recording.

    Everything here runs on the event loop; the link's callbacks hop onto it.
    """

    def __init__(self, gateway: "Gateway", ws: web.WebSocketResponse) -> None:
        self.gateway, self.ws = gateway, ws
        self.loop = asyncio.get_running_loop()
        self.link = Link(gateway.endpoint, self._link_frame, self._link_event, gateway.client_options)
        self._control: deque[str | bytes] = deque()
        self._frame: bytes | None = None
        self._unacked = 0
        self._wake = asyncio.Event()
        self.wanted: str | None = None  # the scene the page asked for last
        self.scene: ViewerScene | None = None
        self.pose: np.ndarray | None = None  # the newest pose the page sent (what a recording samples)
        self._recording: list[np.ndarray] | None = None
        self._record_task: asyncio.Task | None = None
        self._record_start = 0.0  # loop time of the recording's first sample

    # ---------------------------------------------------------------- outbound

    def send(self, message: dict | bytes) -> None:
        """Queue a control message (JSON) or a binary one; they go before any frame."""
        self._control.append(message if isinstance(message, bytes) else json.dumps(message))
        self._wake.set()

    def _link_frame(self, payload: bytes) -> None:  # link thread
        self.loop.call_soon_threadsafe(self._offer_frame, payload)

    def _link_event(self, event: dict) -> None:  # link thread
        self.loop.call_soon_threadsafe(self._on_link_event, event)

    def _offer_frame(self, payload: bytes) -> None:
        self._frame = payload  # replacing any the page has not taken yet: latest wins
        self._wake.set()

    def _on_link_event(self, event: dict) -> None:
        if event["type"] == "scene_lost":  # the server lost it (restart, expiry): build it again
            self.gateway.host.forget(event["scene_id"])
            if self.scene is not None and self.scene.scene_id == event["scene_id"]:
                self.send({"type": "error", "message": f"the server lost scene {event['name']}; building it again"})
                self.open(event["name"])
            return
        self.send(event)

    async def sender(self) -> None:
        """The only writer of the socket: control messages first, then the newest frame."""
        while not self.ws.closed:
            await self._wake.wait()
            self._wake.clear()
            while self._control:
                message = self._control.popleft()
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                else:
                    await self.ws.send_str(message)
            if self._frame is not None and self._unacked < FRAME_WINDOW:
                frame, self._frame = self._frame, None
                self._unacked += 1
                await self.ws.send_bytes(frame)

    # ---------------------------------------------------------------- inbound

    def handle(self, data: object) -> None:
        """One JSON message from the page (docs/viewer.md); ValueError for a bad one."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError("a message is a JSON object with a string 'type'")
        kind = data["type"]
        if kind == "pose":
            request = parse_pose(data, self.gateway.steps)
            self.pose = request.c2w
            self.link.want(request)
        elif kind == "ack":
            self._unacked = max(0, self._unacked - 1)
            self._wake.set()
        elif kind == "open":
            self.open(self.gateway.catalog.resolve(data.get("scene")).name)
        elif kind == "scenes":
            self.send({"type": "scenes", "scenes": self.gateway.catalog.listing()})
        elif kind == "record":
            if not isinstance(data.get("on"), bool):
                raise ValueError("record: 'on' must be true or false")
            if data["on"]:
                self.start_recording()
            else:
                self.stop_recording()
        elif kind == "render_video":
            self.gateway.start_video(self, data.get("rec"))
        else:
            raise ValueError(f"unknown message type {kind!r}")

    def open(self, name: str) -> None:
        """Switch to scene ``name``: stop rendering the current one, build or fetch the new one."""
        self.stop_recording()
        self.wanted, self.scene, self._frame = name, None, None  # no frame of the old scene goes out
        self.link.show(None)
        self.send({"type": "opening", "name": name})

        def progress(stage: str, done: int, total: int) -> None:  # scene-host thread
            message = {"type": "progress", "name": name, "stage": stage, "done": done, "total": total}
            self.loop.call_soon_threadsafe(self.send, message)

        def done(scene: ViewerScene | None, error: str | None) -> None:  # scene-host thread (or this one)
            self.loop.call_soon_threadsafe(self._opened, name, scene, error)

        self.gateway.host.open(name, progress, done)

    def _opened(self, name: str, scene: ViewerScene | None, error: str | None) -> None:
        if name != self.wanted or self.ws.closed:
            return  # the page picked another scene meanwhile
        if scene is None:
            self.send({"type": "open_failed", "name": name, "message": error})
            return
        self.scene, self.pose = scene, scene.view.start
        self.link.show(scene)
        self.send(scene.describe())
        for i, jpeg in enumerate(scene.thumbnails):
            self.send(pack({"type": "thumbnail", "index": i}, [jpeg]))

    # ---------------------------------------------------------------- recording

    def start_recording(self) -> None:
        if self.scene is None:
            raise ValueError("record: no scene is open yet")
        if self._recording is not None:
            return
        self._recording, self._record_start = [], self.loop.time()
        self._record_task = asyncio.ensure_future(self._sample())
        self.send({"type": "recording", "on": True})

    async def _sample(self) -> None:
        """Sample the newest pose at RECORD_FPS on the loop's clock (a still camera is recorded too)."""
        while self._recording is not None:
            due = self._top_up()
            if due >= _MAX_RECORD_POSES:
                self.send({"type": "error", "message": f"recordings stop after {MAX_RECORD_S:g} s"})
                self.stop_recording()
                return
            await asyncio.sleep(self._record_start + due / RECORD_FPS - self.loop.time())

    def _top_up(self) -> int:
        """Extend the recording with the newest pose to the samples due since it started,
        at most MAX_RECORD_S worth; returns the count due. Also on stopping: a loop starved of CPU
        wakes the sampler late, and a recording stopped before its next wake lost the time since
        the last (the browser test's 0.9 s flight once came back as 6 poses, on 2 cores shared
        with 3 other busy processes, 2026-12-04)."""
        due = min(_MAX_RECORD_POSES, int((self.loop.time() - self._record_start) * RECORD_FPS) + 1)
        self._recording.extend([self.pose] * (due - len(self._recording)))
        return due

    def stop_recording(self) -> None:
        if self._recording is not None:
            self._top_up()
        poses, self._recording = self._recording, None
        if poses is None:
            return
        if self._record_task is not None and self._record_task is not asyncio.current_task():
            self._record_task.cancel()
        scene = self.scene
        if not poses or scene is None:
            self.send({"type": "recording", "on": False})
            return
        rec = self.gateway.add_recording(scene, np.stack(poses))
        self.send(
            {
                "type": "recorded",
                "rec": rec.id,
                "frames": len(rec.path),
                "seconds": round(len(rec.path) / RECORD_FPS, 2),
                "json": self.gateway.download_url(rec, "path.json"),
                "command": self.gateway.render_command(rec),
            }
        )

    async def close(self) -> None:
        self._recording = None
        if self._record_task is not None:
            self._record_task.cancel()
        await self.loop.run_in_executor(None, self.link.close)


class Gateway:
    """Serves the page and its WebSocket on ``host:port``, talking to the server at ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        catalog: Catalog,
        default_scene: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        views: int = 12,
        client_options: dict | None = None,
        limits: P.Limits | None = None,
    ) -> None:
        self.endpoint, self.catalog, self.default_scene = endpoint, catalog, default_scene
        self.bind_host, self.port = host, port
        self.client_options = client_options or {"timeout_s": 2.0, "retries": 2}
        self.limits = limits or P.Limits()
        self.token = secrets.token_urlsafe(24)
        self.host = SceneHost(endpoint, catalog, views, self.client_options)
        self.recordings: OrderedDict[str, Recording] = OrderedDict()
        self.connections: set[Connection] = set()
        self._video_lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="worldfm-view-"))
        self._page = (STATIC / "index.html").read_text()

    # ---------------------------------------------------------------- lifecycle

    @property
    def model(self) -> dict:
        return self.host.welcome.get("model", {})

    @property
    def steps(self) -> list[int]:
        return [int(s) for s in self.model.get("steps", [])]

    @property
    def steps_arg(self) -> str:
        """The render-path option matching the MP4 export's quality (the model's most steps)."""
        return f" --steps {max(self.steps)}" if self.steps else " --no-model"

    @property
    def url(self) -> str:
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def start(self) -> str:
        """Connect to the server, start the scene host and the HTTP site; returns the page URL."""
        self.host.start()
        await asyncio.get_running_loop().run_in_executor(None, self.host.ready.wait)
        if self.host.error:
            raise ViewerStartError(
                f"the bridge server at {self.endpoint} did not answer ({self.host.error}); "
                "start it with `worldfm serve` or leave out --server"
            )
        app = web.Application(client_max_size=self.limits.max_header_bytes)
        app.add_routes(
            [
                web.get("/", self._index),
                web.get("/static/{name}", self._static),
                web.get("/ws", self._websocket),
                web.get("/recordings/{rec}/{file}", self._download),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind_host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self.host.stop()
            raise ViewerStartError(
                f"cannot listen on {self.bind_host}:{self.port} ({exc.strerror}); pick another with --port (0: any free port)"
            ) from None
        self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.get_running_loop().run_in_executor(None, self.host.stop)
        shutil.rmtree(self._workdir, ignore_errors=True)

    # ---------------------------------------------------------------- HTTP

    def _host_ok(self, host: str) -> bool:
        """Whether a ``Host`` header names this gateway: a page that DNS rebinding brought here
        carries its own site's name. A wildcard bind (``--insecure``) cannot know its names."""
        if self.bind_host in ("0.0.0.0", "::", ""):
            return True
        names = {"127.0.0.1", "localhost", "[::1]"} if is_loopback(f"tcp://{self.bind_host}:0") else set()
        names.add(f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host)
        return host in {f"{name}:{self.port}" for name in names}

    def _check(self, request: web.Request) -> None:
        """Host header (DNS rebinding) and token; raises 403 with what to do."""
        if not self._host_ok(request.host):
            raise web.HTTPForbidden(text=f"unexpected Host {request.host!r}; open the URL `worldfm view` printed")
        if not secrets.compare_digest(request.query.get("token", ""), self.token):
            raise web.HTTPForbidden(
                text="missing or wrong token: open the URL that `worldfm view` printed (it carries the token)"
            )

    async def _index(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.Response(text=self._page, content_type="text/html", headers=HEADERS)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:  # a fixed list: nothing else of the file system is reachable
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={**HEADERS, "Content-Type": STATIC_TYPES[name]})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self._check(request)
        rec = self.recordings.get(request.match_info["rec"])
        name = request.match_info["file"]
        if rec is None or name not in ("path.json", "path.mp4"):
            raise web.HTTPNotFound(text="no such recording (recordings last until `worldfm view` stops)")
        if name == "path.mp4" and rec.video_state != "ready":
            raise web.HTTPNotFound(text="the video is not rendered yet: press 'Render MP4' first")
        disposition = f'attachment; filename="{rec.download_name(name.rsplit(".", 1)[1])}"'
        headers = {**HEADERS, "Content-Disposition": disposition}
        return web.FileResponse(rec.folder / name, headers=headers)

    def render_command(self, rec: Recording) -> str:
        """The ``worldfm render-path`` line that renders a recording's JSON offline, as the MP4 export does;
        with ``--fill-guard`` once the export's frames were the fill the scene's guard chose (render-path
        then measures the guard and chooses alike)."""
        try:
            folder = self.catalog.resolve(rec.scene.name).folder
        except SceneNameError:  # the folder left the data root meanwhile
            folder = None
        scene = shlex.quote(str(folder)) if folder else "SCENE_FOLDER"  # procedural scenes have no folder
        guard = " --fill-guard" if rec.video_fill and self.steps else ""
        return f"worldfm render-path {scene} --path {rec.download_name('json')} --out render{guard}{self.steps_arg}"

    def download_url(self, rec: Recording, name: str) -> str:
        return f"/recordings/{rec.id}/{name}?token={self.token}"

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        self._check(request)
        origin = request.headers.get("Origin", "")
        if origin != f"http://{request.host}":  # the page's own origin (the Host is checked above)
            raise web.HTTPForbidden(
                text=f"WebSocket from origin {origin!r} refused: only the viewer's own page may connect"
            )
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_header_bytes, compress=False, heartbeat=10.0)
        await ws.prepare(request)
        conn = Connection(self, ws)
        self.connections.add(conn)
        conn.link.start()
        sender = asyncio.ensure_future(conn.sender())
        conn.send(
            {
                "type": "welcome",
                "model": self.model,
                "frame_size": list(self.host.frame_size),
                "scenes": self.catalog.listing(),
                "default": self.default_scene,
                "record_fps": RECORD_FPS,
                "max_record_s": MAX_RECORD_S,
                "max_message_bytes": self.limits.max_header_bytes,
            }
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        conn.handle(json.loads(msg.data))
                    except (ValueError, SceneNameError) as exc:  # JSONDecodeError is a ValueError
                        conn.send({"type": "error", "message": str(exc)})
                elif msg.type == WSMsgType.BINARY:
                    conn.send({"type": "error", "message": "the page sends JSON text messages only"})
        finally:
            sender.cancel()
            self.connections.discard(conn)
            await conn.close()
        return ws

    # ---------------------------------------------------------------- recordings

    def add_recording(self, scene: ViewerScene, poses: np.ndarray) -> Recording:
        """Keep a recorded path (writing its camera-path JSON); the oldest beyond MAX_RECORDINGS go."""
        rec_id = secrets.token_hex(6)
        folder = self._workdir / rec_id
        folder.mkdir()
        rec = Recording(rec_id, scene, CameraPath(poses, scene.view.K, scene.view.size, RECORD_FPS), folder)
        save_camera_path(rec.json_file, rec.path)
        self.recordings[rec_id] = rec
        while len(self.recordings) > MAX_RECORDINGS:
            _, old = self.recordings.popitem(last=False)
            if old.video_state != "rendering":
                shutil.rmtree(old.folder, ignore_errors=True)
        return rec

    def start_video(self, conn: Connection, rec_id: object) -> None:
        """Render a recording to MP4 on a worker thread, reporting progress to ``conn``."""
        rec = self.recordings.get(rec_id) if isinstance(rec_id, str) else None
        if rec is None:
            raise ValueError("render_video: no such recording")
        if rec.video_state == "ready":
            conn.send({"type": "video_ready", "rec": rec.id, "url": self.download_url(rec, "path.mp4"),
                       "command": self.render_command(rec)})
            return
        if not self._video_lock.acquire(blocking=False):
            raise ValueError("a video is being rendered already; wait for it to finish")
        rec.video_state = "rendering"
        loop = conn.loop
        last = [0.0]

        def progress(done: int, total: int) -> None:  # worker thread; at most ~4 messages a second
            now = loop.time()
            if done == total or now - last[0] >= 0.25:
                last[0] = now
                loop.call_soon_threadsafe(
                    conn.send, {"type": "video_progress", "rec": rec.id, "done": done, "total": total}
                )

        def work() -> None:
            partial = rec.folder / "partial.mp4"
            try:
                steps = max(self.steps) if self.steps else None
                modes = render_video(self.endpoint, rec.scene, rec.path, partial, steps, progress, self.client_options)
                partial.replace(rec.video_file)
                rec.video_fill = "anchor" in modes
                rec.video_state = "ready"
                reply = {"type": "video_ready", "rec": rec.id, "url": self.download_url(rec, "path.mp4"),
                         "command": self.render_command(rec)}
            except Exception as exc:  # report any failure to the page; the viewer keeps running
                log.exception("rendering recording %s failed", rec.id)
                rec.video_state = "failed"
                reply = {"type": "error", "message": f"rendering the video failed: {exc}"}
            finally:
                self._video_lock.release()
            loop.call_soon_threadsafe(conn.send, reply)

        threading.Thread(target=work, name="viewer-video", daemon=True).start()
