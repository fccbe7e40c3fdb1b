"""The server over real sockets: every message, every rejection, latest-wins, sessions, shutdown.

Servers bind ephemeral loopback ports and run the stub pipeline (tests/python_bridge/
stub_pipeline.py), so these tests check the bridge itself in milliseconds.
"""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from bridge_views import make_views
from python_bridge import protocol as P
from python_bridge.client import BridgeError, Client, FrameReply, ServerUnavailable, Superseded
from python_bridge.server import InsecureBindError, RenderJob, Scheduler, Server, ServerConfig, is_loopback
from server_stats import guard_status, wait_for_guard
from stub_pipeline import FAIL_X, GUARD, StubPipeline


def send(sock: zmq.Socket, mtype: str, rid: int, blobs=(), **fields) -> None:
    sock.send_multipart(P.encode(P.Message(mtype, rid, fields, list(blobs))))


def recv(sock: zmq.Socket) -> P.Message:
    return P.decode(sock.recv_multipart())


def hello(sock: zmq.Socket) -> dict:
    send(sock, P.HELLO, 1, client="test")
    reply = recv(sock)
    assert reply.type == P.WELCOME
    return reply.fields


def stream(client: Client, scene: str, seconds: float) -> float:
    """Frames for ``seconds`` with gaps of ~20 ms (far below any idle time the tests set); returns
    when the last one was asked for."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asked = time.monotonic()
        assert isinstance(client.render(scene, pose(1.0)), FrameReply)
        time.sleep(0.02)
    return asked


def open_scene(client: Client, n: int = 2) -> str:
    return client.open_scene(make_views(n), name="t").scene


def pose(x: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = x
    return m


def test_hello_welcome_describes_server_model_and_limits(make_server):
    server = make_server()
    with Client(server.endpoint, timeout_s=2) as c:
        w = c.welcome
    assert w["protocol"] == P.PROTOCOL_VERSION and w["server"] == "worldfm-bridge"
    assert w["model"]["name"] == "stub" and w["frame_size"] == [32, 24]
    assert w["encodings"] == ["raw", "jpeg"] and w["server_paths"] is False
    assert w["limits"]["max_scenes_per_client"] == P.Limits().max_scenes_per_client
    assert len(w["session"]) == 32


def test_open_render_close_roundtrip_raw_and_jpeg(make_server):
    stub = StubPipeline()
    server = make_server(stub)
    with Client(server.endpoint, timeout_s=2) as c:
        info = c.open_scene(make_views(5), name="five", batch=2)  # open_scene + 2 add_views
        assert (info.views, info.candidates, info.points) == (5, 5, 5 * 32 * 24)
        assert stub.built_views == [5]
        frame = c.render(info.scene, pose(1.0))
        assert frame.rgb.shape == (24, 32, 3) and frame.mode == "stub"
        assert frame.rgb[0, 0].tolist() == [110, 100, 100]  # colour encodes the pose it answers
        np.testing.assert_array_equal(frame.c2w, pose(1.0))
        assert {"queue_ms", "anchor_ms", "image_encode_ms", "total_ms"} <= set(frame.timings)
        K = np.array([[40.0, 0, 20], [0, 40, 10], [0, 0, 1]])
        jpeg = c.render(info.scene, pose(2.0), K=K, size=(40, 20), encoding="jpeg")
        assert jpeg.rgb.shape == (20, 40, 3)
        assert np.abs(jpeg.rgb.astype(int) - [120, 100, 100]).max() <= 3
        np.testing.assert_array_equal(jpeg.K, K)
        c.close_scene(info.scene)
        with pytest.raises(BridgeError) as err:
            c.render(info.scene, pose(0.0))
        assert err.value.code == P.E_UNKNOWN_SCENE


def test_ping_pong_without_session(make_server, raw_socket):
    sock = raw_socket(make_server().endpoint)
    send(sock, P.PING, 5, t_client=123.0)
    reply = recv(sock)
    assert (reply.type, reply.id, reply.fields["t_client"]) == (P.PONG, 5, 123.0)


def test_a_flood_beyond_one_turn_is_answered_in_full(make_server, raw_socket):
    """More requests than one locked turn reads (256), sent at once: every one is answered."""
    sock = raw_socket(make_server(poll_ms=60_000).endpoint)  # no periodic wake-ups to lean on
    for rid in range(1, 701):
        send(sock, P.PING, rid)
    assert sorted(recv(sock).id for _ in range(700)) == list(range(1, 701))


def test_requests_before_hello_are_refused(make_server, raw_socket):
    sock = raw_socket(make_server().endpoint)
    send(sock, P.RENDER, 3, scene="s-x", c2w=P.flat(np.eye(4)))
    reply = recv(sock)
    assert (reply.type, reply.id, reply.fields["code"]) == (P.ERROR, 3, P.E_NO_SESSION)


def expect_error(sock, code, rid=None):
    reply = recv(sock)
    assert reply.type == P.ERROR, reply
    assert reply.fields["code"] == code, reply.fields
    assert reply.fields["message"]
    if rid is not None:
        assert reply.id == rid
    return reply


def test_bad_traffic_gets_error_replies_and_server_keeps_serving(make_server, raw_socket):
    server = make_server()
    sock = raw_socket(server.endpoint)
    hello(sock)
    sock.send_multipart([msgpack.packb({"v": 2, "type": "hello", "id": 11})])
    assert expect_error(sock, P.E_VERSION, 11).fields["supported"] == [1]
    sock.send_multipart([b"\xc1\x00garbage"])
    expect_error(sock, P.E_MALFORMED)
    sock.send_multipart([msgpack.packb({"v": 1, "type": "ping", "id": 12}), b"unexpected"])
    expect_error(sock, P.E_MALFORMED, 12)
    send(sock, "teleport", 13)
    expect_error(sock, P.E_MALFORMED, 13)
    descs, blobs = P.view_fields(make_views(1))
    send(sock, P.OPEN_SCENE, 14, blobs=[blobs[0].astype(np.float32), blobs[1]], views=descs)
    expect_error(sock, P.E_BAD_REQUEST, 14)
    send(sock, P.OPEN_SCENE, 15, blobs=[blobs[0][:, :-1].copy(), blobs[1]], views=descs)
    expect_error(sock, P.E_BAD_REQUEST, 15)
    send(sock, P.OPEN_SCENE, 16, blobs=blobs[:1], views=descs)
    expect_error(sock, P.E_MALFORMED, 16)
    send(sock, P.RENDER, 17, scene="s-nope", c2w=P.flat(np.eye(4)))
    expect_error(sock, P.E_UNKNOWN_SCENE, 17)
    send(sock, P.RENDER, 18, scene="s-nope", c2w=[float("nan")] * 16)
    expect_error(sock, P.E_BAD_REQUEST, 18)
    send(sock, P.RENDER, 19, scene="s-nope", c2w=P.flat(np.diag([1.0, 3.0, 1.0, 1.0])))
    expect_error(sock, P.E_BAD_REQUEST, 19)
    send(sock, P.CLOSE_SCENE, 20, scene="s-nope")
    expect_error(sock, P.E_UNKNOWN_SCENE, 20)
    send(sock, P.OPEN_SCENE, 21, path="/etc")
    expect_error(sock, P.E_NOT_ALLOWED, 21)
    with Client(server.endpoint, timeout_s=2) as c:  # and another client is served as usual
        assert c.render(open_scene(c), pose(0.0)).rgb.shape == (24, 32, 3)


def test_oversized_payloads(make_server, raw_socket):
    limits = P.Limits(max_image_side=16, max_views_per_scene=3, max_message_bytes=1 << 16, max_scene_bytes=3000)
    server = make_server(limits=limits)
    sock = raw_socket(server.endpoint)
    hello(sock)
    descs, blobs = P.view_fields(make_views(1, width=20, height=12))
    send(sock, P.OPEN_SCENE, 2, blobs=blobs, views=descs)
    assert "16" in expect_error(sock, P.E_LIMIT, 2).fields["message"]
    descs, blobs = P.view_fields(make_views(2, width=16, height=12))
    send(sock, P.OPEN_SCENE, 3, blobs=blobs, views=descs, final=False)
    scene = recv(sock).fields["scene"]
    descs, blobs = P.view_fields(make_views(2, width=16, height=12))
    send(sock, P.ADD_VIEWS, 4, blobs=blobs, views=descs, scene=scene)
    assert "limit is 3" in expect_error(sock, P.E_LIMIT, 4).fields["message"]
    descs, blobs = P.view_fields(make_views(3, width=16, height=12))  # 3 x (576 + 768) bytes > 3000
    send(sock, P.OPEN_SCENE, 6, blobs=blobs, views=descs)
    assert "bytes of images" in expect_error(sock, P.E_LIMIT, 6).fields["message"]
    # A frame above ZMQ_MAXMSGSIZE makes libzmq drop that connection: no reply is possible,
    # but the server goes on serving everyone else.
    big = raw_socket(server.endpoint)
    big.send_multipart([msgpack.packb({"v": 1, "type": "ping", "id": 1}), b"x" * (1 << 17)])
    big.setsockopt(zmq.RCVTIMEO, 300)
    with pytest.raises(zmq.Again):
        big.recv_multipart()
    send(sock, P.PING, 5)
    assert recv(sock).type == P.PONG


def test_scene_limit_per_session(make_server):
    server = make_server(limits=P.Limits(max_scenes_per_client=2))
    with Client(server.endpoint, timeout_s=2) as c:
        a, _ = open_scene(c), open_scene(c)
        with pytest.raises(BridgeError) as err:
            open_scene(c)
        assert err.value.code == P.E_LIMIT
        c.close_scene(a)
        open_scene(c)


def test_scenes_belong_to_their_session(make_server):
    server = make_server()
    with Client(server.endpoint, timeout_s=2) as a, Client(server.endpoint, timeout_s=2) as b:
        scene = open_scene(a)
        assert b.render(scene, pose(0.0)).rgb.shape == (24, 32, 3)  # ids are capabilities for rendering
        with pytest.raises(BridgeError) as err:
            b.close_scene(scene)
        assert err.value.code == P.E_UNKNOWN_SCENE


def test_latest_wins_answers_every_render_once(make_server):
    stub = StubPipeline(gated=True)
    server = make_server(stub)
    with Client(server.endpoint, timeout_s=5) as c:
        scene = open_scene(c)
        first = c.render_async(scene, pose(1.0))
        assert stub.started.acquire(timeout=5)  # the worker holds the first render
        queued = [c.render_async(scene, pose(float(x))) for x in (2, 3, 4)]
        time.sleep(0.1)  # let the server read them all (the worker is blocked, so none can start)
        stub.gate.set()
        replies = {}
        while len(replies) < 4:
            r = c.poll(5)
            assert r is not None, "a render went unanswered"
            assert r.id not in replies, "a render was answered twice"
            replies[r.id] = r
    assert isinstance(replies[first], FrameReply) and replies[first].rgb[0, 0, 0] == 110
    assert [type(replies[i]) for i in queued] == [Superseded, Superseded, FrameReply]
    assert replies[queued[0]].by == queued[1] and replies[queued[1]].by == queued[2]
    assert replies[queued[2]].rgb[0, 0, 0] == 140
    assert c.outstanding == 0


def test_at_most_workers_render_at_once_and_a_thread_stays_free_for_io(make_server):
    stub = StubPipeline(gated=True)
    server = make_server(stub, workers=2)
    clients = [Client(server.endpoint, timeout_s=5) for _ in range(3)]
    try:
        rids = [c.render_async(open_scene(c), pose(float(i))) for i, c in enumerate(clients)]
        assert stub.started.acquire(timeout=5) and stub.started.acquire(timeout=5)
        assert not stub.started.acquire(timeout=0.3), "a third render started beside the two workers"
        with Client(server.endpoint, timeout_s=2) as other:  # both slots busy: I/O still answered
            assert other.ping() >= 0
            assert open_scene(other)
        stub.gate.set()
        replies = [c.poll(5) for c in clients]
        assert [r.id for r in replies] == rids and all(isinstance(r, FrameReply) for r in replies)
        assert [r.rgb[0, 0, 0] for r in replies] == [100, 110, 120]
    finally:
        for c in clients:
            c.close()


def test_anchor_kernels_compile_once_frames_pause(make_server, monkeypatch):
    """A compile beside a stream slows the frames a user watches (models.anchor.splat.compiles_held):
    the server holds the anchor kernels' compile while frames flow and starts it once none was
    asked for ``compile_when_idle_s``."""
    import torch

    from models.anchor import splat

    def kernel_fn(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    compiled = []  # when the compiler was asked for kernel_fn

    def recording_compile(fn, **kwargs):  # stands in for torch.compile: records, compiles nothing
        if fn is kernel_fn:
            compiled.append(time.monotonic())
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)
    kernel = splat._Compiled(kernel_fn)

    class CompilingPipeline(StubPipeline):
        def render(self, *args, **kwargs):
            assert torch.equal(kernel(torch.zeros(1)), torch.ones(1))  # eager until compiled: same numbers
            return super().render(*args, **kwargs)

    server = make_server(CompilingPipeline(), compile_when_idle_s=1.0)
    with Client(server.endpoint, timeout_s=5) as c:
        scene = open_scene(c)
        sent = stream(c, scene, 2.0)
        assert not compiled and kernel._held is not None, "the compile started while frames were flowing"
        assert kernel.settled.wait(10), "the compile never started after the frames paused"
    assert len(compiled) == 1 and compiled[0] - sent >= 1.0


DECIDED = {"state": "decided", "serves": "anchor", "model_weight": 0.0, "model_psnr": GUARD.model_psnr,
           "fill_psnr": GUARD.fill_psnr, "targets": GUARD.targets}


def test_the_fill_guard_is_measured_with_the_build_when_asked(make_server):
    """With ``fill_guard`` "build" the scene's guard is measured before ``scene_ready`` (so every
    frame of the scene is chosen alike, as ``worldfm render-path --fill-guard`` renders it), and
    ``stats`` says what it decided from then on; with "off", never, and ``stats`` says so."""
    for when in ("build", "off"):
        stub = StubPipeline()
        server = make_server(stub, fill_guard=when, fill_guard_idle_s=0.2)
        with Client(server.endpoint, timeout_s=5) as c:
            scene = open_scene(c)
            ready = time.monotonic()  # scene_ready has arrived
            assert guard_status(c) == (DECIDED if when == "build" else {"state": "off"})
            assert isinstance(c.render(scene, pose(1.0)), FrameReply)
            open_scene(c)
            time.sleep(0.6)  # a pause, in which an "idle" guard would measure
            assert guard_status(c) == (DECIDED if when == "build" else {"state": "off"})
        assert len(stub.guards_measured) == (2 if when == "build" else 0)
        assert all(t <= ready for t in stub.guards_measured[:1])  # the first scene's, before its scene_ready


def test_a_server_without_a_model_measures_no_fill_guard(make_server):
    """Nothing to guard without a generator (every frame is anchor + hole filling): ``stats`` says
    ``off`` at once and no window ever runs, whatever ``fill_guard`` says."""
    for when in ("idle", "build"):
        stub = StubPipeline()
        stub.describe = lambda: {"name": "stub", "frame_size": [32, 24], "steps": [], "provider": "none"}
        server = make_server(stub, fill_guard=when, fill_guard_idle_s=0.1)
        with Client(server.endpoint, timeout_s=5) as c:
            open_scene(c)
            time.sleep(0.5)  # pauses, in which an idle guard would measure
            assert guard_status(c) == {"state": "off"}
        assert not stub.guard_windows and not stub.guards_measured


def test_the_fill_guard_is_measured_between_frames_by_default(make_server):
    """The default ("idle") measures each scene's guard after its ``scene_ready``, a window at a
    time, each window only once no frame has been asked for ``fill_guard_idle_s``: none while a
    stream flows, all of them in the pause after it; a scene closed before its pause is dropped.
    ``stats`` follows each scene's guard: waiting, then decided (or abandoned), with the windows run."""
    stub = StubPipeline()
    server = make_server(stub, fill_guard_idle_s=0.5)
    assert server.config.fill_guard == "idle"
    with Client(server.endpoint, timeout_s=5) as c:
        for close_first in (False, True):
            asked = time.monotonic()
            scene = open_scene(c)
            opened = time.monotonic()
            last = stream(c, scene, 1.5)
            assert not stub.guard_windows, "a guard window ran while frames were flowing"
            assert guard_status(c) == {"state": "waiting", "windows": 0}
            if close_first:
                c.close_scene(scene)
                time.sleep(1.0)
                assert not stub.guard_windows and len(stub.guards_measured) == 1, "a closed scene's guard ran"
                assert guard_status(c) == {"state": "abandoned", "windows": 0}
                continue
            status = wait_for_guard(c, ("decided",))
            decided = time.monotonic()
            assert len(stub.guards_measured) == 1, "the guard never ran after the stream paused"
            assert len(stub.guard_windows) == 3 and stub.guard_windows[0] - last >= 0.5
            # decided_s counts from scene_ready to the decision, pauses waited included (rounded to 10 ms)
            assert last + 0.5 + 3 * stub.guard_window_s - opened - 0.005 <= status.pop("decided_s") <= decided - asked
            assert status == {**DECIDED, "windows": 3}
            stub.guard_windows.clear()


def test_a_frame_asked_during_an_idle_fill_guard_pauses_it(make_server):
    """Frames asked for while the guard measures are served, and the guard's next window waits
    for the pause after them."""
    stub = StubPipeline(guard_window_s=0.5)  # time for the stream below to start inside the first window
    server = make_server(stub, fill_guard_idle_s=0.3)
    with Client(server.endpoint, timeout_s=5) as c:
        scene = open_scene(c)
        deadline = time.monotonic() + 10
        while not stub.guard_windows and time.monotonic() < deadline:  # the first window begins
            time.sleep(0.005)
        assert stub.guard_windows
        assert guard_status(c) == {"state": "measuring", "windows": 1}
        last = stream(c, scene, 1.0)
        assert guard_status(c)["windows"] == 1  # the stream held the next window back
        assert wait_for_guard(c, ("decided",))["windows"] == 3
    assert len(stub.guard_windows) == 3 and stub.guards_measured
    assert stub.guard_windows[1] - last >= 0.3  # the second window waited for the pause


def test_pipeline_failures_become_errors(make_server):
    server = make_server()
    with Client(server.endpoint, timeout_s=2) as c:
        scene = open_scene(c)
        with pytest.raises(BridgeError) as err:
            c.render(scene, pose(FAIL_X))
        assert err.value.code == P.E_INTERNAL and "stub failure" in err.value.message
        assert c.render(scene, pose(0.0)).mode == "stub"
    assert server.stats["frames"] == 1 and server.stats["errors"] == 1  # the failed render counts as an error


def test_client_vanishing_mid_request_does_not_hurt_others(make_server):
    stub = StubPipeline(gated=True)
    server = make_server(stub)
    gone = Client(server.endpoint, timeout_s=2)
    scene = open_scene(gone)
    gone.render_async(scene, pose(1.0))
    assert stub.started.acquire(timeout=5)
    gone.render_async(scene, pose(2.0))
    gone.close()  # vanishes with one render running and one queued
    stub.gate.set()
    with Client(server.endpoint, timeout_s=2) as c:
        assert c.render(open_scene(c), pose(3.0)).rgb[0, 0, 0] == 130


def test_idle_sessions_expire_with_their_scenes(make_server):
    server = make_server(client_timeout_s=0.3)
    with Client(server.endpoint, timeout_s=2) as c:
        scene = open_scene(c)
        deadline = time.monotonic() + 5
        while len(server._scenes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server._scenes) == 0
        with pytest.raises(BridgeError) as err:
            c.render(scene, pose(0.0))
        assert err.value.code == P.E_NO_SESSION
        c.connect()  # hello again starts a new session
        c.render(open_scene(c), pose(0.0))


def test_pings_keep_a_session_alive(make_server):
    server = make_server(client_timeout_s=0.5)
    with Client(server.endpoint, timeout_s=2) as c:
        scene = open_scene(c)
        for _ in range(8):  # 1.6 s of pings, three timeouts' worth
            c.ping()
            time.sleep(0.2)
        assert c.render(scene, pose(0.0)).rgb.shape == (24, 32, 3)


def test_a_session_does_not_expire_while_its_scene_builds(make_server, raw_socket):
    """A build slower than the client timeout, waited for by a client that never pings."""
    server = make_server(StubPipeline(build_delay_s=1.5), client_timeout_s=0.3)
    sock = raw_socket(server.endpoint)
    hello(sock)
    descs, blobs = P.view_fields(make_views(2))
    send(sock, P.OPEN_SCENE, 2, blobs, views=descs, name="slow")
    ready = recv(sock)
    assert ready.type == P.SCENE_READY, ready.fields
    send(sock, P.RENDER, 3, scene=ready.fields["scene"], c2w=P.flat(pose(1.0)))
    frame = recv(sock)
    assert frame.type == P.FRAME, frame.fields


def test_a_session_does_not_expire_while_its_render_runs(make_server, raw_socket):
    server = make_server(StubPipeline(render_delay_s=1.2), client_timeout_s=0.3)
    sock = raw_socket(server.endpoint)
    hello(sock)
    descs, blobs = P.view_fields(make_views(2))
    send(sock, P.OPEN_SCENE, 2, blobs, views=descs)
    scene = recv(sock).fields["scene"]
    send(sock, P.RENDER, 3, scene=scene, c2w=P.flat(pose(1.0)))
    assert recv(sock).type == P.FRAME
    send(sock, P.RENDER, 4, scene=scene, c2w=P.flat(pose(2.0)))  # the session lives on after the render
    assert recv(sock).type == P.FRAME


def test_a_scene_closed_while_building_gets_no_scene_ready(make_server, raw_socket):
    server = make_server(StubPipeline(build_delay_s=0.5))
    sock = raw_socket(server.endpoint)
    hello(sock)
    descs, blobs = P.view_fields(make_views(2))
    send(sock, P.OPEN_SCENE, 2, blobs, views=descs)
    deadline = time.monotonic() + 5
    while not server._scenes.building_owners() and time.monotonic() < deadline:
        time.sleep(0.01)
    (scene_id,) = [s.id for s in server._scenes._scenes.values()]
    send(sock, P.CLOSE_SCENE, 3, scene=scene_id)
    replies = {m.id: m for m in (recv(sock), recv(sock))}
    assert replies[3].type == P.SCENE_CLOSED
    assert replies[2].type == P.ERROR and replies[2].fields["code"] == P.E_UNKNOWN_SCENE
    assert "closed while it was building" in replies[2].fields["message"]


def test_a_waiting_client_keeps_its_session_alive(make_server):
    server = make_server(client_timeout_s=0.3)
    with Client(server.endpoint, timeout_s=2) as c:
        scene = open_scene(c)
        assert c.poll(1.5) is None  # nothing outstanding: the wait alone must keep the session
        assert c.render(scene, pose(0.0)).rgb.shape == (24, 32, 3)
        assert c.stray_replies == 0  # the keep-alive pongs were taken, not counted as strays


def test_scheduler_is_round_robin_and_latest_wins():
    sched = Scheduler()

    def job(session, rid):
        req = P.RenderRequest(rid, "s", np.eye(4), None, None, None, "raw", 90, None, None)
        return RenderJob(b"id", session, req, None, 0.0)

    assert sched.submit(job("a", 1)) is None
    assert sched.submit(job("b", 2)) is None
    assert sched.submit(job("a", 3)).request.id == 1  # superseded, a keeps its place
    assert [sched.pop().request.id for _ in range(2)] == [3, 2]
    assert sched.pop() is None
    sched.submit(job("c", 4))
    sched.submit(job("d", 5))
    assert sched.cancel("c").request.id == 4
    assert [j.request.id for j in sched.drain()] == [5]
    assert sched.pop() is None and len(sched) == 0


def test_shutdown_answers_queued_renders(make_server):
    stub = StubPipeline(gated=True)
    server = make_server(stub)
    c = Client(server.endpoint, timeout_s=2)
    scene = open_scene(c)
    running = c.render_async(scene, pose(1.0))
    assert stub.started.acquire(timeout=5)
    queued = c.render_async(scene, pose(2.0))
    time.sleep(0.1)
    server._stop.set()  # what SIGINT/SIGTERM do
    time.sleep(0.1)
    stub.gate.set()
    server.stop()
    replies = {r.id: r for r in (c.poll(3), c.poll(3))}
    c.close()
    assert isinstance(replies[running], FrameReply)
    assert isinstance(replies[queued], BridgeError) and replies[queued].code == P.E_SHUTTING_DOWN


def test_loopback_detection_and_insecure_bind_refused():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:1") and is_loopback("ipc:///tmp/x")
    assert is_loopback("tcp://localhost:5") and not is_loopback("tcp://*:5555") and not is_loopback("tcp://0.0.0.0:1")
    with pytest.raises(InsecureBindError, match="--insecure"):
        Server(StubPipeline(), ServerConfig(bind="tcp://0.0.0.0:*"))


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CurveZMQ")
def test_curve_encryption(tmp_path, make_server):
    import zmq.auth

    public_file, secret_file = zmq.auth.create_certificates(tmp_path, "server")
    server = make_server(curve_secret_file=secret_file)
    server_public, _ = zmq.auth.load_certificate(public_file)
    with Client(server.endpoint, timeout_s=2, server_key=server_public) as c:
        assert c.render(open_scene(c), pose(0.0)).rgb.shape == (24, 32, 3)
    with pytest.raises(ServerUnavailable):
        Client(server.endpoint, timeout_s=0.3, retries=0)  # plain-text clients get nothing


def test_ipv6_loopback(make_server):
    server = make_server(bind="tcp://[::1]:*")
    assert server.endpoint.startswith("tcp://[::1]:")
    with Client(server.endpoint, timeout_s=2) as c:
        assert c.render(open_scene(c), pose(0.0)).rgb.shape == (24, 32, 3)


def test_lazy_pirate_reconnects_after_a_lost_reply():
    """A fake server that loses the first ping: the client times out, reconnects, says hello, resends."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    hellos, pings, stop = [], [], threading.Event()

    def fake_server():
        while not stop.is_set():
            if not router.poll(50):
                continue
            ident, *body = router.recv_multipart()
            msg = P.decode(body)
            if msg.type == P.HELLO:
                hellos.append((ident, msg.fields["session"]))
                router.send_multipart([ident, *P.encode(P.Message(P.WELCOME, msg.id, {}))])
            elif msg.type == P.PING:
                pings.append(ident)
                if len(pings) > 1:  # the first one is "lost"
                    router.send_multipart([ident, *P.encode(P.Message(P.PONG, msg.id, {}))])

    thread = threading.Thread(target=fake_server)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=0.3, retries=2) as client:
            client.ping()
    finally:
        stop.set()
        thread.join(5)
        router.close(0)
    assert len(pings) == 2 and len(hellos) == 2
    assert hellos[0][0] != hellos[1][0]  # a fresh socket after the timeout
    assert hellos[0][1] == hellos[1][1]  # with the same session, so scenes survive
    assert pings[1] == hellos[1][0]


def test_unreachable_server_raises_after_retries():
    ctx = zmq.Context.instance()
    probe = ctx.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)  # a port with nobody listening
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable, match="worldfm serve"):
        Client(f"tcp://127.0.0.1:{port}", timeout_s=0.2, retries=2)
    assert time.monotonic() - t0 < 5


def test_server_side_paths_stay_under_the_data_root(tmp_path, make_server):
    from datagen.dataset import read_scene, write_scene
    from models.scene import Scene

    write_scene(Scene("wall", make_views(2)), tmp_path / "root" / "wall")
    (tmp_path / "outside").mkdir()
    server = make_server(data_root=tmp_path / "root", load_path=lambda p: read_scene(p).frames)
    with Client(server.endpoint, timeout_s=5) as c:
        info = c.open_scene_path("wall", name="wall")
        assert info.views == 2 and c.render(info.scene, pose(0.0)).rgb.shape == (24, 32, 3)
        for bad, code in (("../outside", P.E_NOT_ALLOWED), ("missing", P.E_BAD_REQUEST)):
            with pytest.raises(BridgeError) as err:
                c.open_scene_path(bad)
            assert err.value.code == code


def test_async_renders_outstanding_at_a_reconnect_are_answered_by_the_client(make_server):
    stub = StubPipeline(gated=True)
    server = make_server(stub)
    with Client(server.endpoint, timeout_s=0.3, retries=1) as c:
        scene = open_scene(c)
        rid = c.render_async(scene, pose(1.0))
        assert stub.started.acquire(timeout=5)  # the render is running and will not finish yet
        c._reconnect()  # what a timed-out blocking request does (Lazy Pirate)
        assert c.outstanding == 1
        lost = c.poll(0)
        assert isinstance(lost, BridgeError) and lost.code == "connection_lost" and lost.id == rid
        assert c.outstanding == 0
        stub.gate.set()
        assert c.poll(0.3) is None  # the late frame went to the old socket, not to this one
