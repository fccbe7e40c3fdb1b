"""The inference server: a ZeroMQ ROUTER served by a small pool of threads, none of which
blocks the others' I/O while it renders.

Threads (``workers`` + 1 of them, all running :meth:`Server._loop`)::

    whichever thread is free         takes the I/O lock, reads and handles requests
        |                            (hello, ping, close_scene at once; renders queued),
        |                            then takes a queued render if a render slot is free
        v
    Scheduler: one pending render per session, latest wins, sessions served round-robin
        |
    the same thread, lock released   pipeline.render -> encode; then, under the lock again,
                                     sends the frame itself and reads what came meanwhile
    build thread                     pipeline.build (offline stage) -> scene_ready, same way

At most ``workers`` threads render at once, so one is always free to answer pings. No
reply waits for another thread: the thread that rendered a frame sends it, and the
thread that read a render request renders it when a slot is free. (A design with one
I/O thread and worker threads spent two thread hand-offs per frame, 0.23 ms of a 0.6 ms
round trip; bench/bench_bridge.py.) ZeroMQ sockets are not thread-safe, so every
operation on the ROUTER happens under one lock, and threads wait for traffic by
selecting on its ``ZMQ_FD`` rather than with ``zmq.poll`` (which would touch the socket
outside the lock). ``ZMQ_FD`` is edge-triggered: a thread that leaves work behind (more
requests than one turn reads, a job it cannot take) says so on a wake socket.

Every render is answered exactly once: ``frame``, ``superseded`` (a newer render from the
same session replaced it while it was queued) or ``error``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import ipaddress
import logging
import queue
import re
import secrets
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from python_bridge import protocol as P
from python_bridge import timeline
from python_bridge.scenes import FILL_GUARD_WHEN, SceneState, SceneStore

log = logging.getLogger(__name__)

SERVER_NAME = "worldfm-bridge"
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class BindError(OSError):
    """The server could not listen on its endpoint; the message says why and what to try."""


class InsecureBindError(ValueError):
    """Binding a non-loopback address without CurveZMQ keys and without an explicit override."""


@dataclass
class ServerConfig:
    """How the server listens and what it accepts.

    ``curve_secret_file``: a zmq.auth secret certificate (``*.key_secret``); with it every
    connection is encrypted and only clients that know the server public key can talk.
    ``authorized_dir``: a folder of client public certificates to allow (default: any client
    that completes the CurveZMQ handshake). ``data_root``: folder under which ``open_scene``
    may name server-side datasets (None: uploads only).
    """

    bind: str = "tcp://127.0.0.1:5555"
    limits: P.Limits = field(default_factory=P.Limits)
    workers: int = 1
    heartbeat_ms: int = 1000
    client_timeout_s: float = 30.0
    curve_secret_file: Path | None = None
    authorized_dir: Path | None = None
    insecure: bool = False
    data_root: Path | None = None
    poll_ms: int = 50
    # Start the anchor's compiled kernels only after this long without a frame (None: at their
    # first use); models.anchor.splat.compiles_held says why.
    compile_when_idle_s: float | None = 1.0
    # When to measure each scene's fill guard (models.fill_guard: serve the model, or anchor + hole
    # filling, whichever comes closer to views of the scene left out of its cloud; docs/model.md,
    # "Fill guard"). "idle": between frames, window by window whenever no frame has been asked for
    # fill_guard_idle_s, so it costs no frame's time; the model serves until it is decided.
    # "build": before scene_ready, so every frame of the scene is chosen alike, seconds later.
    # "off": the model serves every frame.
    fill_guard: str = "idle"
    fill_guard_idle_s: float = 1.0

    def __post_init__(self) -> None:
        if self.fill_guard not in FILL_GUARD_WHEN:
            raise ValueError(f"fill_guard must be one of {', '.join(FILL_GUARD_WHEN)}; got {self.fill_guard!r}")


class _GuardAbandoned(Exception):
    """A fill guard measured between frames stops: its scene was closed, or the server stops."""


def guard_decision(guard: Any) -> dict:
    """A measured scene's ``fill_guard`` status in the ``stats`` reply (docs/protocol.md): which
    frames the scene gets from now on and the two scores that decided it, or ``unmeasured`` where
    the measurement gave no decision (too few views, or a failure the log names)."""
    if guard is None:
        return {"state": "unmeasured"}
    return {"state": "decided", "serves": "model" if guard.use_model else "anchor", "model_weight": guard.weight,
            "model_psnr": round(guard.model_psnr, 2), "fill_psnr": round(guard.fill_psnr, 2),
            "targets": guard.targets}


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:]+):", endpoint)
    if not m:
        return False
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, host names: may be reachable from outside


@dataclass
class _Session:
    id: str
    client: str
    last_seen: float
    identities: set[bytes] = field(default_factory=set)


@dataclass
class RenderJob:
    """A queued render: who asked (ROUTER identity, session), what (checked request), when."""

    identity: bytes
    session: str
    request: P.RenderRequest
    scene: SceneState
    received: float
    timings: dict | None = None  # the frame's stage timings (ms), once rendered


class Scheduler:
    """One pending render per session; a newer one replaces the queued one (latest wins).

    Sessions are served in the order their pending render first arrived, so a client that
    sends poses at 60 Hz cannot starve one that sends at 5 Hz. Not thread-safe: the server
    uses it under its I/O lock.
    """

    def __init__(self) -> None:
        self._pending: collections.OrderedDict[str, RenderJob] = collections.OrderedDict()

    def submit(self, job: RenderJob) -> RenderJob | None:
        """Queue ``job``; returns the job it superseded, if any (the caller answers it)."""
        old = self._pending.get(job.session)
        self._pending[job.session] = job  # replacing keeps the session's place in line
        return old

    def pop(self) -> RenderJob | None:
        """The next job in round-robin order, or None when none is queued."""
        return self._pending.popitem(last=False)[1] if self._pending else None

    def sessions(self) -> list[str]:
        """Sessions with a queued job."""
        return list(self._pending)

    def cancel(self, session: str) -> RenderJob | None:
        return self._pending.pop(session, None)

    def drain(self) -> list[RenderJob]:
        """Remove and return every queued job (the caller answers them)."""
        jobs = list(self._pending.values())
        self._pending.clear()
        return jobs

    def __len__(self) -> int:
        return len(self._pending)


def encode_image(rgb: np.ndarray, encoding: str, quality: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the frame blob: itself ("raw") or JPEG bytes as uint8 (n,)."""
    if encoding == "raw":
        return rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.reshape(-1)


class Server:
    """The bridge server around a pipeline with ``build(frames)``, ``render(...)``,
    ``measure_fill_guard(built, before_window)`` (see ``config.fill_guard``), ``describe()`` and ``frame_size`` (see
    python_bridge.pipeline.FramePipeline).

    ``load_path`` turns a server-side path into frames for ``open_scene`` with ``path``
    (only used when ``config.data_root`` is set).
    """

    def __init__(
        self,
        pipeline: Any,
        config: ServerConfig | None = None,
        load_path: Callable[[Path], list] | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config or ServerConfig()
        self.limits = self.config.limits
        self._load_path = load_path
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._scheduler = Scheduler()
        self._scenes = SceneStore(self.limits.max_scenes_per_client)
        self._sessions: dict[str, _Session] = {}
        self._session_of: dict[bytes, str] = {}
        self._new_sessions: dict[bytes, collections.deque[float]] = {}  # identity -> times it started sessions
        self._builder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="worldfm-build")
        # fill_guard "idle": (scene, its build, its entry in _builds, whose "fill_guard" the guard updates,
        # time.monotonic() of its scene_ready)
        self._guards: queue.SimpleQueue[tuple[SceneState, Any, dict, float]] = queue.SimpleQueue()
        self._model_steps = tuple(pipeline.describe().get("steps", ()))  # empty: no generator, steps ignored
        self._auth = None
        self.stats = {"requests": 0, "frames": 0, "superseded": 0, "errors": 0}  # changed under the I/O lock
        self._started = time.monotonic()
        self._builds: collections.deque[dict] = collections.deque(maxlen=16)  # for stats, newest last
        self._first_frame: dict | None = None  # {"timings": ...} of the first frame sent
        # The I/O lock guards the ROUTER and all request state (sessions, scenes, scheduler,
        # _rendering); whichever thread holds it is the one talking to clients.
        self._lock = threading.Lock()
        self._rendering = 0  # threads inside pipeline.render, at most config.workers
        self._running: dict[str, int] = {}  # session -> its renders inside pipeline.render
        self._next_expiry = 0.0
        self._last_frame = time.monotonic()  # when a render last finished or a scene became ready (idle waits)
        self._router = self._bind()
        self._router_fd = self._router.getsockopt(zmq.FD)
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)

    # ------------------------------------------------------------------ setup and lifecycle

    def _bind(self) -> zmq.Socket:
        cfg = self.config
        if cfg.curve_secret_file is None and not is_loopback(cfg.bind) and not cfg.insecure:
            raise InsecureBindError(
                f"refusing to bind {cfg.bind} without encryption: pass CurveZMQ keys (worldfm serve --curve-keys DIR, "
                "made with `worldfm serve --make-keys DIR`) or --insecure if this network is trusted"
            )
        sock = self._ctx.socket(zmq.ROUTER)
        if "://[" in cfg.bind:  # tcp://[::1]:PORT; only then, so IPv4 endpoints keep reading tcp://127.0.0.1:PORT
            sock.setsockopt(zmq.IPV6, 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown peers raise instead of vanishing silently
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self.config.heartbeat_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5 * self.config.heartbeat_ms)
        sock.setsockopt(zmq.LINGER, 500)
        if cfg.curve_secret_file is not None:
            public, secret = zmq.auth.load_certificate(str(cfg.curve_secret_file))
            if secret is None:
                raise ValueError(f"{cfg.curve_secret_file} holds no secret key; pass the server's .key_secret file")
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(
                domain="*", location=str(cfg.authorized_dir) if cfg.authorized_dir else zmq.auth.CURVE_ALLOW_ANY
            )
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        try:
            sock.bind(cfg.bind)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise BindError(f"cannot listen on {cfg.bind}: {exc} (is another server on that port, or the address "
                            "mistyped? endpoints look like tcp://127.0.0.1:5555 or tcp://[::1]:5555)") from None
        return sock

    def start(self) -> "Server":
        """Run the server on a background thread (tests, demo); returns self. Idempotent."""
        if getattr(self, "_io_thread", None) is not None:
            return self
        t = threading.Thread(target=self.serve_forever, name="worldfm-io", daemon=True)
        t.start()
        self._io_thread = t
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads) and wait for it."""
        self._stop.set()
        self._wake()
        io = getattr(self, "_io_thread", None)
        if io is not None and io is not threading.current_thread():
            io.join(timeout)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve on this thread and ``workers`` more; returns after :meth:`stop`, having answered
        everything still queued."""
        helpers = [
            threading.Thread(target=self._loop, name=f"worldfm-serve-{i}", daemon=True)
            for i in range(1, self.config.workers + 1)
        ]
        if self.config.fill_guard == "idle":
            helpers.append(threading.Thread(target=self._guard_loop, name="worldfm-fill-guard", daemon=True))
        for t in helpers:
            t.start()
        log.info(
            "serving on %s (%s, %d worker(s))", self.endpoint, self.pipeline.describe().get("name"), self.config.workers
        )
        timeline.mark("listening")
        with contextlib.ExitStack() as held:
            if self.config.compile_when_idle_s is not None:
                from models.anchor import splat

                held.enter_context(splat.compiles_held())
            try:
                self._loop()
            finally:
                self._shutdown(helpers)

    def _loop(self) -> None:
        """Take turns at the ROUTER; render the job a turn hands out; wait for traffic when idle."""
        selector = selectors.DefaultSelector()
        selector.register(self._router_fd, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        reply: list | None = None
        finished: tuple[RenderJob, str] | None = None  # the job rendered and its reply's message type
        woken = False  # by the ROUTER: a request is likely waiting
        try:
            while True:
                job = self._turn(reply, finished=finished, can_render=True, woken=woken)
                woken = False
                if job is not None:
                    reply, rendered = self._render_reply(job)  # outside the lock
                    finished = job, rendered
                    continue
                reply, finished = None, None
                if self._stop.is_set():
                    return
                for key, _ in selector.select(self.config.poll_ms / 1e3):
                    if key.fileobj is self._wake_r:
                        try:
                            self._wake_r.recv(4096)
                        except BlockingIOError:
                            pass  # another waiting thread emptied it first
                    else:
                        woken = True
        finally:
            selector.close()

    def _turn(self, reply: list | Callable[[], list] | None = None, finished: tuple[RenderJob, str] | None = None,
              can_render: bool = False, woken: bool = False) -> RenderJob | None:
        """One turn at the ROUTER, under the I/O lock: send ``reply`` (a finished render's, with
        ``finished`` the job and its reply's message type; or a build's, made under the lock
        when callable), read and handle the requests waiting (bounded; ``woken``: the ROUTER
        woke this thread), expire idle sessions when due and, if ``can_render`` and a render
        slot is free, take the next queued job.

        Reading ``ZMQ_EVENTS`` (which every socket operation does) resets the edge-triggered
        ``ZMQ_FD``, so threads waiting on it would miss what this turn leaves behind: requests
        beyond the bound, or jobs this thread cannot take. The turn says so on the wake socket.
        """
        with self._lock:
            if finished is not None:
                job, rendered = finished
                self._rendering -= 1
                self._last_frame = time.monotonic()
                self._running[job.session] -= 1
                if not self._running[job.session]:
                    del self._running[job.session]
                if rendered == P.FRAME and not self._scenes.holds(job.scene):  # closed while rendering
                    rendered = P.ERROR
                    closed = P.error(P.E_UNKNOWN_SCENE, f"scene {job.scene.id} was closed", job.request.id)
                    reply = [job.identity, *P.encode(closed)]
                self._count("frames" if rendered == P.FRAME else "errors")
                if rendered == P.FRAME and self._first_frame is None:
                    self._first_frame = {"timings": job.timings}
                    at = timeline.mark("first_frame")
                    log.info("first frame sent %.2f s after process start; stages (ms) %s", at,
                             {k: round(v, 1) for k, v in self._first_frame["timings"].items()})
            if callable(reply):
                reply = reply()
            if reply is not None:
                self._send(reply)
            now = time.monotonic()
            if now >= self._next_expiry:
                self._expire_sessions()
                self._next_expiry = now + 1.0
            self._compile_if_idle(now)
            more = self._read_requests(woken)  # last, so its final ZMQ_EVENTS read covers every send above
            job = None
            if can_render and not self._stop.is_set() and self._rendering < self.config.workers:
                job = self._scheduler.pop()
                if job is not None:
                    self._rendering += 1
                    self._running[job.session] = self._running.get(job.session, 0) + 1
            waiting_jobs = len(self._scheduler) and self._rendering < self.config.workers and not self._stop.is_set()
            if more or waiting_jobs:
                self._wake()
            return job

    def _quiet_for(self, now: float) -> float:
        """Seconds since a frame was last rendered, asked for or queued (0 while one is); under the I/O lock."""
        if self._rendering or len(self._scheduler):
            return 0.0
        return now - self._last_frame

    def _compile_if_idle(self, now: float) -> None:
        """Start the anchor kernels' held compiles once no frame was rendered, asked for or
        queued for ``compile_when_idle_s``: the user has paused, so the compile takes no frame's
        time (a stream that never pauses keeps the eager kernels, ~2 ms slower per frame)."""
        wait = self.config.compile_when_idle_s
        if wait is None or self._quiet_for(now) < wait:
            return
        splat = sys.modules.get("models.anchor.splat")  # loaded only where scenes render anchors
        if splat is not None and splat.start_held_compiles():
            log.info("no frame for %.1f s: compiling the anchor kernels in the background", now - self._last_frame)

    def _guard_loop(self) -> None:
        """Measure the fill guard of each scene built since, between frames (``fill_guard`` "idle").

        Why between frames: for a 24-view scene the measurement rebuilds the cloud 21 times and
        renders 42 views both ways, ~5 s on a 2-core CPU (bench/bench_fill_guard.py); before
        ``scene_ready`` that is ~5 s more to the first frame, beside a stream it would take each
        frame's CPU. Waiting for a pause before each window avoids both: a window is ~0.25 s, and
        a frame asked for meanwhile shares the CPU with it until the window ends. Until the guard
        is decided the model serves the scene, as it does where the guard chooses it. Pauses are
        the server's: a stream of any client holds every scene's guard back."""
        while not self._stop.is_set():
            try:
                scene, built, entry, ready = self._guards.get(timeout=0.1)
            except queue.Empty:
                continue
            start = time.monotonic()
            try:
                window = functools.partial(self._guard_window, scene, entry)
                self.pipeline.measure_fill_guard(built, before_window=window)
            except _GuardAbandoned:
                self._set_guard_status(entry, {"state": "abandoned"})
                log.info("fill guard of scene %s abandoned after %.1f s (closed, or the server stops); "
                         "the model served it", scene.id, time.monotonic() - start)
                continue
            except Exception:
                log.exception("fill guard of scene %s failed; the model serves it", scene.id)
            self._set_guard_status(entry, {**guard_decision(built.fill_guard),
                                           "decided_s": round(time.monotonic() - ready, 2)})

    def _built_guard_status(self, built: Any) -> dict:
        """A new build's ``fill_guard`` status: measured already (``build``), waiting for the
        stream's first pause (``idle``), or ``off`` (also with no model: nothing to guard)."""
        if self.config.fill_guard == "off" or not self._model_steps:
            return {"state": "off"}
        if self.config.fill_guard == "idle":
            return {"state": "waiting", "windows": 0}
        return guard_decision(built.fill_guard)

    def _guard_window(self, scene: SceneState, entry: dict) -> None:
        """Before each window of an idle guard: wait for a pause (:meth:`_await_pause`), then count
        the window in the scene's ``stats`` status."""
        self._await_pause(scene)
        with self._lock:
            entry["fill_guard"] = {"state": "measuring", "windows": entry["fill_guard"]["windows"] + 1}

    def _set_guard_status(self, entry: dict, status: dict) -> None:
        """Replace an idle guard's status in the ``stats`` reply, keeping its count of windows
        begun (under the I/O lock, under which the reply is encoded)."""
        with self._lock:
            entry["fill_guard"] = {**status, "windows": entry["fill_guard"]["windows"]}

    def _await_pause(self, scene: SceneState) -> None:
        """Return once no frame has been asked for ``fill_guard_idle_s``; raise _GuardAbandoned if
        ``scene`` is closed or the server stops first."""
        while True:
            if self._stop.is_set() or not self._scenes.holds(scene):
                raise _GuardAbandoned
            with self._lock:
                quiet = self._quiet_for(time.monotonic())
            if quiet >= self.config.fill_guard_idle_s:
                return
            self._stop.wait(min(0.05, self.config.fill_guard_idle_s - quiet))

    def _wake(self) -> None:
        """Wake the threads waiting for traffic (no lock needed: safe from signal handlers)."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # full: they will wake anyway; closed: the server has stopped

    def _shutdown(self, helpers: list[threading.Thread]) -> None:
        for t in helpers:
            t.join(30.0)  # each answers the render it holds
        self._builder.shutdown(wait=True, cancel_futures=True)  # a build in flight answers under the lock
        with self._lock:
            for job in self._scheduler.drain():
                self._reply_to(job.identity, P.error(P.E_SHUTTING_DOWN, "the server is shutting down", job.request.id))
            self._router.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._auth is not None:
            self._auth.stop()
        log.info("server stopped (%s)", self.stats)

    # ------------------------------------------------------------------ under the I/O lock

    def _send(self, frames: list) -> None:
        try:
            P.send_parts(self._router, frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away; EAGAIN: it stopped reading
            log.debug("dropping a reply to a vanished or stalled client: %s", exc)

    def _count(self, key: str) -> None:
        self.stats[key] += 1

    def _reply_to(self, identity: bytes, msg: P.Message) -> None:
        if msg.type == P.ERROR:
            self._count("errors")
        self._send([identity, *P.encode(msg)])

    def _read_requests(self, woken: bool = False) -> bool:
        """Read and handle waiting requests, at most 256 (so one turn cannot hold the lock for
        long under a flood); returns whether more are waiting.

        Asks ZMQ_EVENTS before each receive rather than catching zmq.Again, which costs more,
        except for the first when the ROUTER has just woken this thread: then a request is
        most likely there and the receive alone finds out. Either way libzmq processes its
        commands, so ZMQ_FD's edge state stays current."""
        for i in range(256):
            if not (woken and i == 0) and not self._router.getsockopt(zmq.EVENTS) & P.POLLIN:
                return False
            try:
                identity, *body = P.recv_parts(self._router, zmq.NOBLOCK, copied=2)
            except zmq.Again:  # woken by something else: a peer connecting, a pipe freed
                return False
            self._count("requests")
            try:
                msg = P.decode(body, self.limits)
                reply = self._handle(identity, msg)
            except P.ProtocolError as exc:
                reply = P.error_from(exc, P.peek_id(body[0]) if body else None)
                if exc.code == P.E_VERSION:
                    reply.fields["supported"] = [P.PROTOCOL_VERSION]
            except Exception as exc:  # a bug must cost one request, never the server
                log.exception("internal error handling a request")
                reply = P.error(P.E_INTERNAL, f"internal server error: {exc}", P.peek_id(body[0]) if body else None)
            if reply is not None:
                self._reply_to(identity, reply)
        return bool(self._router.getsockopt(zmq.EVENTS) & P.POLLIN)

    def _handle(self, identity: bytes, msg: P.Message) -> P.Message | None:
        rid = msg.id
        session = self._sessions.get(self._session_of.get(identity, ""))
        if session is not None:
            session.last_seen = time.monotonic()  # any message, pings included, keeps a session alive
        if msg.type == P.PING:
            return P.Message(
                P.PONG,
                rid,
                {"t_client": P.finite_number(msg.fields, "t_client", rid), "t_server": time.time(),
                 "queued": len(self._scheduler)},
            )
        if msg.type == P.HELLO:
            return self._hello(identity, msg)
        if msg.type == P.STATS:
            return P.Message(P.STATS, rid, self._stats())
        if msg.type not in P.REQUEST_TYPES:
            raise P.ProtocolError(
                P.E_MALFORMED, f"unknown message type {msg.type!r}; requests are {list(P.REQUEST_TYPES)}", rid
            )
        if session is None:
            raise P.ProtocolError(P.E_NO_SESSION, "send hello first (or again: your session expired)", rid)
        session = session.id
        if msg.type == P.RENDER:
            return self._render(identity, session, msg)
        if msg.type == P.OPEN_SCENE:
            return self._open_scene(identity, session, msg)
        if msg.type == P.ADD_VIEWS:
            scene = self._own_scene(session, msg)
            return self._add_views(identity, scene, msg)
        scene = self._own_scene(session, msg)  # close_scene
        self._scenes.close(scene.id, rid)
        scene.built = None  # renders still queued for it are answered unknown_scene
        return P.Message(P.SCENE_CLOSED, rid, {"scene": scene.id})

    def _hello(self, identity: bytes, msg: P.Message) -> P.Message:
        client = P.name_field(msg.fields, "client", self.limits, msg.id, "unnamed")
        session = P.require(msg.fields, "session", str, msg.id, optional=True)
        if session is not None and not _SESSION_RE.match(session):
            raise P.ProtocolError(P.E_BAD_REQUEST, "'session' must be 8-64 characters of [A-Za-z0-9_-]", msg.id)
        session = session or secrets.token_hex(16)
        now = time.monotonic()
        if session not in self._sessions:
            self._count_new_session(identity, now, msg.id)
            if len(self._sessions) >= self.limits.max_sessions:
                raise P.ProtocolError(
                    P.E_LIMIT,
                    f"the server has {len(self._sessions)} sessions (its limit); try again when idle ones have expired",
                    msg.id,
                )
        state = self._sessions.setdefault(session, _Session(session, client, now))
        state.last_seen = now
        state.identities.add(identity)
        self._session_of[identity] = session
        return P.Message(
            P.WELCOME,
            msg.id,
            {
                "server": SERVER_NAME,
                "protocol": P.PROTOCOL_VERSION,
                "session": session,
                "model": self.pipeline.describe(),
                "frame_size": list(self.pipeline.frame_size),
                "encodings": list(P.ENCODINGS),
                "heartbeat_ms": self.config.heartbeat_ms,
                "client_timeout_ms": int(self.config.client_timeout_s * 1000),
                "server_paths": self.config.data_root is not None and self._load_path is not None,
                "limits": self.limits.as_dict(),
            },
        )

    def _stats(self) -> dict:
        """The ``stats`` reply's fields (docs/protocol.md): counters, start-up milestones, recent
        builds and the first frame's stages. No scene ids: they are capabilities."""
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "sessions": len(self._sessions),
            "scenes": len(self._scenes),
            "queued": len(self._scheduler),
            "rendering": self._rendering,
            "counters": dict(self.stats),
            "startup_s": timeline.marks(),
            "builds": list(self._builds),
            "first_frame": self._first_frame,
        }

    def _count_new_session(self, identity: bytes, now: float, rid: int | None) -> None:
        """Allow a connection at most ``max_new_sessions_per_minute`` new sessions in any 60 s;
        a hello that resumes a session it knows costs nothing. Without this one socket
        saying hello in a loop fills ``max_sessions`` and locks every other client out."""
        recent = self._new_sessions.setdefault(identity, collections.deque())
        while recent and recent[0] < now - 60.0:
            recent.popleft()
        if len(recent) >= self.limits.max_new_sessions_per_minute:
            raise P.ProtocolError(
                P.E_LIMIT,
                f"this connection started {len(recent)} sessions in the last minute (the limit); "
                "say hello with the session you already have",
                rid,
            )
        recent.append(now)

    def _own_scene(self, session: str, msg: P.Message) -> SceneState:
        scene = self._scenes.get(P.require(msg.fields, "scene", str, msg.id), msg.id)
        if scene.owner != session:
            raise P.ProtocolError(P.E_UNKNOWN_SCENE, f"scene {scene.id!r} belongs to another session", msg.id)
        return scene

    def _open_scene(self, identity: bytes, session: str, msg: P.Message) -> P.Message | None:
        rid = msg.id
        name = P.name_field(msg.fields, "name", self.limits, rid, "scene")
        path = P.require(msg.fields, "path", str, rid, optional=True)
        if path is not None:
            if "views" in msg.fields or msg.blobs:
                raise P.ProtocolError(P.E_BAD_REQUEST, "open_scene takes either 'path' or 'views', not both", rid)
            resolved = self._server_path(path, rid)
            scene = self._scenes.create(session, name, rid)
            self._start_build(identity, scene, rid, lambda: self._load_under_root(resolved, rid))
            return None
        views = P.parse_views(msg, self.limits)
        final = P.require(msg.fields, "final", bool, rid, optional=True)
        self._check_scene_size([], views, rid)  # before the scene exists: a refused upload opens nothing
        scene = self._scenes.create(session, name, rid)
        return self._accept_views(identity, scene, views, final is not False, rid)

    def _add_views(self, identity: bytes, scene: SceneState, msg: P.Message) -> P.Message | None:
        if scene.built is not None or scene.building:
            raise P.ProtocolError(
                P.E_BAD_REQUEST, f"scene {scene.id} is already built; open a new scene for more views", msg.id
            )
        views = P.parse_views(msg, self.limits)
        final = P.require(msg.fields, "final", bool, msg.id, optional=True)
        return self._accept_views(identity, scene, views, final is not False, msg.id)

    def _check_scene_size(self, held: list, views: list, rid: int | None) -> None:
        """Refuse views that would take a scene past ``max_views_per_scene`` or
        ``max_scene_bytes``; the scene keeps the views it ``held`` (nothing is dropped)."""
        count = len(held) + len(views)
        if count > self.limits.max_views_per_scene:
            raise P.ProtocolError(
                P.E_LIMIT,
                f"the scene would hold {count} views; the limit is {self.limits.max_views_per_scene} "
                f"(these {len(views)} views were refused; the scene keeps its {len(held)})",
                rid,
            )
        nbytes = sum(f.rgb.nbytes + (f.depth.nbytes if f.depth is not None else 0) for f in [*held, *views])
        if nbytes > self.limits.max_scene_bytes:
            raise P.ProtocolError(
                P.E_LIMIT,
                f"the scene would hold {nbytes} bytes of images; the limit is {self.limits.max_scene_bytes} "
                f"(these {len(views)} views were refused; the scene keeps its {len(held)})",
                rid,
            )

    def _accept_views(self, identity: bytes, scene: SceneState, views: list, final: bool, rid: int | None):
        self._check_scene_size(scene.views, views, rid)
        scene.views.extend(views)
        if not final:
            return P.Message(P.VIEWS_ADDED, rid, {"scene": scene.id, "views": len(scene.views)})
        if not scene.views:
            self._scenes.close(scene.id, rid)
            raise P.ProtocolError(P.E_BAD_REQUEST, "a scene needs at least one view", rid)
        frames, scene.views = scene.views, []
        self._start_build(identity, scene, rid, lambda: frames)
        return None

    def _server_path(self, path: str, rid: int | None) -> Path:
        root = self.config.data_root
        if root is None or self._load_path is None:
            raise P.ProtocolError(
                P.E_NOT_ALLOWED,
                "this server does not open server-side paths; upload views instead "
                "(start it with --data-root to allow paths)",
                rid,
            )
        P.name_field({"path": path}, "path", self.limits, rid, "")  # at most max_name_chars
        if "\0" in path:
            raise P.ProtocolError(P.E_BAD_REQUEST, "'path' may not contain NUL characters", rid)
        try:
            resolved = (root / path).resolve()
            inside = resolved.is_relative_to(root.resolve())
            exists = inside and resolved.exists()
        except (OSError, ValueError, RuntimeError) as exc:  # too long a component, a symlink loop
            raise P.ProtocolError(P.E_BAD_REQUEST, f"path {path!r} cannot be opened ({type(exc).__name__})", rid)
        if not inside:
            raise P.ProtocolError(P.E_NOT_ALLOWED, f"path {path!r} leaves the server's data root", rid)
        if not exists:
            raise P.ProtocolError(P.E_BAD_REQUEST, f"no such scene under the data root: {path!r}", rid)
        return resolved

    def _load_under_root(self, resolved: Path, rid: int | None) -> list:
        """The views of a server-side scene; read errors name the scene relative to the data
        root, so a reply never shows the server's file system layout."""
        try:
            return self._load_path(resolved)
        except (ValueError, OSError) as exc:
            root = str(self.config.data_root.resolve())
            reason = str(exc).replace(root, "<data-root>")
            raise P.ProtocolError(P.E_BAD_REQUEST, f"scene build failed: {reason}", rid) from None

    def _start_build(self, identity: bytes, scene: SceneState, rid: int | None, frames: Callable[[], list]) -> None:
        timeline.mark("scene_uploaded")
        scene.building = True
        self._builder.submit(self._build, identity, scene, rid, frames)

    def _render(self, identity: bytes, session: str, msg: P.Message) -> P.Message | None:
        req = P.parse_render(msg, self.limits)
        offered = self._model_steps
        if req.steps is not None and offered and req.steps not in offered:
            raise P.ProtocolError(
                P.E_BAD_REQUEST, f"'steps' must be one of {list(offered)} (welcome.model.steps); got {req.steps}", req.id
            )
        scene = self._scenes.get(req.scene, req.id)
        if scene.built is None:
            raise P.ProtocolError(P.E_BAD_REQUEST, f"scene {scene.id} is not built yet; wait for scene_ready", req.id)
        old = self._scheduler.submit(RenderJob(identity, session, req, scene, time.perf_counter()))
        if old is not None:
            self._count("superseded")
            self._reply_to(old.identity, P.Message(P.SUPERSEDED, old.request.id, {"by": req.id, "scene": old.scene.id}))
        return None

    def _expire_sessions(self) -> None:
        """Expire sessions idle for ``client_timeout_s``. A session the server holds work for (a
        scene building, a render queued or running) is not idle: its client is waiting on us,
        and the timeout counts again from when that work ends."""
        now = time.monotonic()
        busy = {*self._running, *self._scheduler.sessions(), *self._scenes.building_owners()}
        for sid in busy:
            if sid in self._sessions:
                self._sessions[sid].last_seen = now
        for ident in [i for i, times in self._new_sessions.items() if not times or times[-1] < now - 60.0]:
            del self._new_sessions[ident]
        deadline = now - self.config.client_timeout_s
        for sid in [s.id for s in self._sessions.values() if s.last_seen < deadline]:
            state = self._sessions.pop(sid)
            for ident in state.identities:
                self._session_of.pop(ident, None)
            job = self._scheduler.cancel(sid)
            if job is not None:
                self._reply_to(job.identity, P.error(P.E_NO_SESSION, "session expired", job.request.id))
            dropped = self._scenes.drop_owner(sid)
            log.info(
                "session %s (%s) idle for %.0f s: expired, %d scene(s) dropped",
                sid[:8],
                state.client,
                self.config.client_timeout_s,
                len(dropped),
            )

    # ------------------------------------------------------------------ outside the lock

    def _render_reply(self, job: RenderJob) -> tuple[list, str]:
        """The frames answering ``job`` and their message type: its frame, or an error if
        rendering or encoding failed."""
        try:
            msg = self._run_job(job)
            return [job.identity, *P.encode(msg)], msg.type
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("render %s: no reply could be made", job.request.id)
            error = P.error(P.E_INTERNAL, f"reply encoding failed: {exc}", job.request.id)
            return [job.identity, *P.encode(error)], error.type

    def _run_job(self, job: RenderJob) -> P.Message:
        req, rid = job.request, job.request.id
        started = time.perf_counter()
        try:
            built = job.scene.built
            if built is None:  # closed while queued
                raise P.ProtocolError(P.E_UNKNOWN_SCENE, f"scene {job.scene.id} was closed", rid)
            result = self.pipeline.render(built, req.c2w, req.K, req.size, req.steps, req.seed)
            t_enc = time.perf_counter()
            blobs = [encode_image(result.rgb, req.encoding, req.quality)]
            if req.anchor and result.anchor is not None:
                blobs.append(encode_image(result.anchor, req.encoding, req.quality))
            timings = {
                "queue_ms": (started - job.received) * 1e3,
                **result.timings,
                "image_encode_ms": (time.perf_counter() - t_enc) * 1e3,
            }
            timings["total_ms"] = (time.perf_counter() - job.received) * 1e3
            job.timings = timings
            h, w = result.rgb.shape[:2]
            return P.Message(
                P.FRAME,
                rid,
                {
                    "scene": job.scene.id,
                    "c2w": P.flat(result.c2w),
                    "K": P.flat(result.K),
                    "size": [w, h],
                    "encoding": req.encoding,
                    "t_client": req.t_client,
                    "t_server": time.time(),
                    "reference": result.reference,
                    "mode": result.mode,
                    "timings": timings,
                },
                blobs,
            )
        except P.ProtocolError as exc:
            return P.error_from(exc, rid)
        except ValueError as exc:  # camera or request values the pipeline cannot use
            return P.error(P.E_BAD_REQUEST, str(exc), rid)
        except Exception as exc:
            log.exception("render %s failed", rid)
            return P.error(P.E_INTERNAL, f"render failed: {exc}", rid)

    def _build(self, identity: bytes, scene: SceneState, rid: int | None, frames: Callable[[], list]) -> None:
        try:
            views = frames()
            if len(views) > self.limits.max_views_per_scene:
                raise P.ProtocolError(
                    P.E_LIMIT, f"the scene has {len(views)} views; the limit is {self.limits.max_views_per_scene}", rid
                )
            built = self.pipeline.build(views, self.limits.max_points)
            if self.config.fill_guard == "build" and self._model_steps:
                self.pipeline.measure_fill_guard(built)  # before scene_ready: every frame of the scene chosen alike
            log.info(
                "scene %s (%s): %d views -> %d points, %d candidates in %.0f ms",
                scene.id,
                scene.name,
                len(views),
                built.points,
                len(built.candidates),
                built.build_ms,
            )
            ready = P.Message(
                P.SCENE_READY,
                rid,
                {
                    "scene": scene.id,
                    "name": scene.name,
                    "views": len(views),
                    "points": built.points,
                    "candidates": len(built.candidates),
                    "build_ms": built.build_ms,
                },
            )

            def reply() -> list:  # under the I/O lock: the scene may have been closed meanwhile
                scene.building = False
                entry = {"name": scene.name, "views": len(views), "points": built.points,
                         "build_ms": built.build_ms, "stages": dict(built.stages),
                         "fill_guard": self._built_guard_status(built)}
                self._builds.append(entry)
                timeline.mark("anchor_ready")
                if not self._scenes.holds(scene):
                    if entry["fill_guard"]["state"] == "waiting":
                        entry["fill_guard"] = {"state": "abandoned", "windows": 0}
                    error = P.error(P.E_UNKNOWN_SCENE, f"scene {scene.id} was closed while it was building", rid)
                    return [identity, *P.encode(error)]
                scene.built = built
                self._last_frame = time.monotonic()  # its client's stream starts now: not a pause
                if entry["fill_guard"]["state"] == "waiting":
                    self._guards.put((scene, built, entry, self._last_frame))
                return [identity, *P.encode(ready)]
        except Exception as exc:
            try:
                self._scenes.close(scene.id, rid)
            except P.ProtocolError:
                pass  # the client closed it meanwhile
            scene.building = False
            if isinstance(exc, P.ProtocolError):
                failed = P.error_from(exc, rid)
            elif isinstance(exc, (ValueError, OSError)):  # unusable views, unreadable dataset
                failed = P.error(P.E_BAD_REQUEST, f"scene build failed: {exc}", rid)
            else:
                log.exception("scene build failed")
                failed = P.error(P.E_INTERNAL, f"scene build failed: {exc}", rid)
            reply = [identity, *P.encode(failed)]
        self._turn(reply)  # it also reads what came meanwhile, and wakes a renderer
