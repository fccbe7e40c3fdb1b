"""docs/protocol.md, rule by rule, against a live server: the one table of documented behaviour.

Each row of ``RULES`` quotes the words of docs/protocol.md it checks (they must appear in the
doc verbatim), names what it covers (a request field ``type.field``, a limit
``limits.name``, an error code ``code.name``), sends raw messages over a bare DEALER socket
-- the way a client written from the doc alone would -- and states the reply the doc
promises. ``test_the_table_covers_the_doc`` reads the doc back: every field of a request's
table, every limit in ``welcome.limits`` and every error code must have a row (or a named
test elsewhere in ``ELSEWHERE``), so the doc and the server cannot drift apart unnoticed.

Servers run the stub pipeline (steps [1]) with small limits, one fresh server per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import pytest
import zmq

from bridge_views import make_views
from datagen.dataset import write_scene
from models.scene import Scene
from python_bridge import protocol as P
from stub_pipeline import StubPipeline

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()

LIMITS = P.Limits(
    max_message_bytes=1 << 20,
    max_header_bytes=16 << 10,
    max_image_side=64,
    max_render_side=64,
    max_views_per_message=4,
    max_views_per_scene=6,
    max_scene_bytes=40_000,  # six 32x24 RGB-D views are 6 * 5376 bytes; eight are more
    max_scenes_per_client=2,
    max_sessions=3,
    max_name_chars=16,
    max_new_sessions_per_minute=2,  # below max_sessions: the per-connection limit must be what refuses
)
EYE = P.flat(np.eye(4))


class Conn:
    """A bare DEALER socket speaking raw msgpack headers, as a client written from the doc would."""

    def __init__(self, endpoint: str, rules_root: Path) -> None:
        self.endpoint = endpoint
        self.root = rules_root
        self.sock = self.socket()
        self._ids = iter(range(100, 1 << 20))

    def socket(self) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        sock.connect(self.endpoint)
        return sock

    def send(self, header: dict | bytes, blobs=(), sock: zmq.Socket | None = None) -> None:
        raw = header if isinstance(header, bytes) else msgpack.packb(header, use_bin_type=True)
        (sock or self.sock).send_multipart([raw, *blobs])

    def ask(self, mtype: str, blobs=(), sock: zmq.Socket | None = None, **fields) -> P.Message:
        """A well-formed request of ``mtype`` (blob descriptors included); its reply."""
        (sock or self.sock).send_multipart(P.encode(P.Message(mtype, next(self._ids), fields, list(blobs))))
        return self.recv(sock)

    def recv(self, sock: zmq.Socket | None = None) -> P.Message:
        return P.decode((sock or self.sock).recv_multipart())

    def hello(self, sock: zmq.Socket | None = None, **fields) -> P.Message:
        return self.ask(P.HELLO, sock=sock, **fields)

    def views(self, n: int = 2, **overrides) -> tuple[list[dict], list[np.ndarray]]:
        descs, blobs = P.view_fields(make_views(n))
        for d in descs:
            d.update(overrides)
        return descs, [np.ascontiguousarray(b) for b in blobs]

    def scene(self) -> str:
        """A built scene of this connection's session (hello first)."""
        descs, blobs = self.views()
        reply = self.ask(P.OPEN_SCENE, blobs, views=descs)
        assert reply.type == P.SCENE_READY, reply.fields
        return reply.fields["scene"]

    def close(self) -> None:
        self.sock.close(0)


@dataclass
class Rule:
    """One documented behaviour: ``doc`` (verbatim words of docs/protocol.md), what it ``covers``,
    ``run`` (sends, returns the reply to judge), the reply it must be (``expect``: a message type or
    ``error:<code>``) and an optional further ``check`` of that reply."""

    doc: str
    covers: tuple[str, ...]
    run: Callable[[Conn], P.Message]
    expect: str
    check: Callable[[P.Message], bool] | None = None
    pipeline: Callable[[], StubPipeline] = StubPipeline
    paths: bool = False  # serve --data-root (with the scenes of ``data_root``)
    name: str = field(default="")


def render_fields(scene: str, **extra) -> dict:
    return {"scene": scene, "c2w": EYE, **extra}


def hello_then(fn: Callable[[Conn], P.Message]) -> Callable[[Conn], P.Message]:
    def run(c: Conn) -> P.Message:
        assert c.hello().type == P.WELCOME
        return fn(c)

    return run


def with_scene(fn: Callable[[Conn, str], P.Message]) -> Callable[[Conn], P.Message]:
    return hello_then(lambda c: fn(c, c.scene()))


def new_sessions(c: Conn) -> P.Message:
    for i in range(LIMITS.max_new_sessions_per_minute):
        assert c.hello(session=f"session-{i:04d}").type == P.WELCOME
    refused = c.hello(session="session-9999")
    assert refused.type == P.ERROR and refused.fields["code"] == P.E_LIMIT, refused.fields
    assert "this connection" in refused.fields["message"]
    return c.hello(session="session-0000")  # resuming a known session costs nothing


def too_many_sessions(c: Conn) -> P.Message:
    socks = [c.socket() for _ in range(LIMITS.max_sessions)]
    try:
        for s in socks:
            assert c.hello(sock=s).type == P.WELCOME
        return c.hello()
    finally:
        for s in socks:
            s.close(0)


def views_past_scene_limit(c: Conn) -> P.Message:
    """Refused views leave the scene as it was: it still finishes with a smaller batch."""
    descs, blobs = c.views(4)
    opened = c.ask(P.OPEN_SCENE, blobs, views=descs, final=False)
    assert opened.type == P.VIEWS_ADDED, opened.fields
    scene = opened.fields["scene"]
    refused = c.ask(P.ADD_VIEWS, blobs, scene=scene, views=descs, final=True)  # 8 > 6 views
    assert refused.type == P.ERROR and refused.fields["code"] == P.E_LIMIT, refused.fields
    descs, blobs = c.views(2)
    return c.ask(P.ADD_VIEWS, blobs, scene=scene, views=descs, final=True)


def bytes_past_scene_limit(c: Conn) -> P.Message:
    descs, blobs = c.views(4)
    scene = c.ask(P.OPEN_SCENE, blobs, views=descs, final=False).fields["scene"]
    c.ask(P.ADD_VIEWS, blobs[:4], scene=scene, views=descs[:2], final=False)  # 6 views: 32,256 bytes
    descs, blobs = c.views(1, width=64, height=48)
    big = [np.zeros((48, 64, 3), np.uint8), np.ones((48, 64), np.float32)]  # 21,504 bytes more
    descs[0]["K"] = P.flat(np.array([[60.0, 0, 32], [0, 60, 24], [0, 0, 1]]))
    return c.ask(P.ADD_VIEWS, big, scene=scene, views=descs, final=False)


def too_many_scenes(c: Conn) -> P.Message:
    for _ in range(LIMITS.max_scenes_per_client):
        c.scene()
    descs, blobs = c.views()
    return c.ask(P.OPEN_SCENE, blobs, views=descs)


def another_sessions_scene(c: Conn) -> P.Message:
    other = c.socket()
    try:
        c.hello(sock=other)
        descs, blobs = c.views()
        scene = c.ask(P.OPEN_SCENE, blobs, sock=other, views=descs).fields["scene"]
        return c.ask(P.CLOSE_SCENE, scene=scene)
    finally:
        other.close(0)


def close_while_rendering(c: Conn) -> P.Message:
    """The render running when close_scene arrives is answered unknown_scene, after scene_closed."""
    c.hello()
    scene = c.scene()
    c.send({"v": 1, "type": "render", "id": 7, **render_fields(scene)})
    assert c.pipeline.started.acquire(timeout=5)  # the render is inside the pipeline
    closed = c.ask(P.CLOSE_SCENE, scene=scene)
    assert closed.type == P.SCENE_CLOSED
    c.pipeline.gate.set()
    return c.recv()


def ping_echo(c: Conn) -> P.Message:
    return c.ask(P.PING, t_client=1.5)


def path_scene(path: str) -> Callable[[Conn], P.Message]:
    return hello_then(lambda c: c.ask(P.OPEN_SCENE, path=path))


def error(code: str) -> str:
    return f"error:{code}"


RULES = [
    # ------------------------------------------------------------------ envelope
    Rule("is not exactly the integer 1 (absent, `2`, `true`, `\"1\"`)", ("code.version_mismatch",),
         lambda c: (c.send({"v": 2, "type": "ping", "id": "x"}), c.recv())[1], error(P.E_VERSION),
         lambda m: m.id is None and m.fields["supported"] == [1], name="v2-with-bad-id"),
    Rule("is not exactly the integer 1 (absent, `2`, `true`, `\"1\"`)", (),
         lambda c: (c.send({"v": True, "type": "ping", "id": 3}), c.recv())[1], error(P.E_VERSION),
         lambda m: m.id == 3, name="v-true"),
    Rule("is not exactly the integer 1 (absent, `2`, `true`, `\"1\"`)", (),
         lambda c: (c.send({"type": "ping", "id": 4}), c.recv())[1], error(P.E_VERSION), name="v-absent"),
    Rule("a header with a `bin` or number key is", ("code.malformed",),
         lambda c: (c.send(msgpack.packb({b"v": 1, b"type": b"ping", b"id": 5}, use_bin_type=True)), c.recv())[1],
         error(P.E_MALFORMED), name="bin-keys"),
    Rule("`id`: required in every request", (),
         lambda c: (c.send({"v": 1, "type": "ping"}), c.recv())[1], error(P.E_MALFORMED),
         lambda m: m.id is None, name="no-id"),
    Rule("an integer in [0, 2^63)", (),
         lambda c: (c.send({"v": 1, "type": "ping", "id": 1 << 63}), c.recv())[1], error(P.E_MALFORMED),
         lambda m: m.id is None, name="id-2^63"),
    Rule("an integer in [0, 2^63)", (),
         lambda c: (c.send({"v": 1, "type": "ping", "id": (1 << 63) - 1}), c.recv())[1], P.PONG,
         lambda m: m.id == (1 << 63) - 1, name="id-max"),
    Rule("a boolean is never a number", (),
         lambda c: (c.send({"v": 1, "type": "ping", "id": True}), c.recv())[1], error(P.E_MALFORMED), name="id-true"),
    Rule("bad msgpack", (), lambda c: (c.send(b"\xc1"), c.recv())[1], error(P.E_MALFORMED),
         lambda m: not m.fields["message"].rstrip().endswith(":"), name="not-msgpack"),
    Rule("header not a map", (), lambda c: (c.send(msgpack.packb([1, 2])), c.recv())[1], error(P.E_MALFORMED),
         name="not-a-map"),
    Rule("unknown type", (), lambda c: (c.send({"v": 1, "type": "teleport", "id": 6}), c.recv())[1],
         error(P.E_MALFORMED), lambda m: m.id == 6, name="unknown-type"),
    Rule("binary part count, descriptors or sizes not matching `blobs`", (),
         lambda c: (c.send({"v": 1, "type": "ping", "id": 7}, [b"extra"]), c.recv())[1], error(P.E_MALFORMED),
         name="stray-part"),
    Rule("each a non-negative integer no larger than", (),
         lambda c: (c.send({"v": 1, "type": "ping", "id": 8,
                            "blobs": [{"dtype": "uint8", "shape": [1 << 32, 1 << 32, 0]}]}, [b""]), c.recv())[1],
         error(P.E_LIMIT), name="empty-blob-huge-sides"),
    Rule("header and every binary part together", ("limits.max_message_bytes",),
         lambda c: (c.send({"v": 1, "type": "ping", "id": 9, "blobs": [{"dtype": "uint8", "shape": [400_000]}] * 3},
                           [bytes(400_000)] * 3), c.recv())[1], error(P.E_LIMIT), name="parts-sum-over-limit"),
    Rule("the header alone at most `max_header_bytes`", ("limits.max_header_bytes",),
         lambda c: (c.send({"v": 1, "type": "ping", "id": 10, "pad": "x" * (20 << 10)}), c.recv())[1],
         error(P.E_LIMIT), name="header-over-limit"),
    # ------------------------------------------------------------------ sessions
    Rule("a request other than `hello`/`ping` before `hello`", ("code.no_session", "close_scene.scene"),
         lambda c: c.ask(P.CLOSE_SCENE, scene="s-0000000000000000"), error(P.E_NO_SESSION), name="before-hello"),
    Rule("Allowed before `hello`. Answered at once", ("ping.t_client",), ping_echo, P.PONG,
         lambda m: m.fields["t_client"] == 1.5, name="ping-echo"),
    Rule("`t_client`: optional, any finite number, echoed (`bad_request` otherwise, as in `render`)", (),
         lambda c: c.ask(P.PING, t_client="abc"), error(P.E_BAD_REQUEST), name="ping-t_client-string"),
    Rule("Scene ids are capabilities and never appear here", ("stats",),
         with_scene(lambda c, s: c.ask(P.STATS)), P.STATS,
         lambda m: m.fields["scenes"] == 1 and m.fields["builds"][0]["views"] == 2
         and "s-" not in repr(m.fields), name="stats"),
    Rule("`client`: free text for logs (a string of at most `max_name_chars`)", ("hello.client", "code.limit_exceeded",
                                                                                 "limits.max_name_chars"),
         lambda c: c.hello(client="x" * 17), error(P.E_LIMIT), name="client-name-too-long"),
    Rule("`client`: free text for logs (a string of at most `max_name_chars`)", ("code.bad_request",),
         lambda c: c.hello(client=7), error(P.E_BAD_REQUEST), name="client-name-not-a-string"),
    Rule("8-64 characters of `[A-Za-z0-9_-]`", ("hello.session",),
         lambda c: c.hello(session="short"), error(P.E_BAD_REQUEST), name="session-id-invalid"),
    Rule("against `max_new_sessions_per_minute` of its connection", ("limits.max_new_sessions_per_minute",),
         new_sessions, P.WELCOME, name="new-sessions-per-connection"),
    Rule("at most `max_sessions` at once", ("limits.max_sessions",), too_many_sessions, error(P.E_LIMIT),
         name="max-sessions"),
    # ------------------------------------------------------------------ open_scene / add_views
    Rule("scene name for logs, at most `max_name_chars`", ("open_scene.name",),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views()[1], views=c.views()[0], name="y" * 17)),
         error(P.E_LIMIT), name="scene-name-too-long"),
    Rule("`name` (at most `max_name_chars`)", ("open_scene.views",),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views()[1], views=c.views(name="z" * 17)[0])),
         error(P.E_LIMIT), name="view-name-too-long"),
    Rule("`depth` (boolean, default false)", (),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views()[1], views=c.views(depth=1)[0])),
         error(P.E_BAD_REQUEST), name="depth-one"),
    Rule("boolean, default true: build now", ("open_scene.final",),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views()[1], views=c.views()[0], final=1)),
         error(P.E_BAD_REQUEST), name="final-one"),
    Rule("At most `max_views_per_message` views per message", ("limits.max_views_per_message",),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views(5)[1], views=c.views(5)[0])), error(P.E_LIMIT),
         name="views-per-message"),
    Rule("the scene with the\nviews it had", ("limits.max_views_per_scene", "add_views.scene"),
         hello_then(views_past_scene_limit), P.SCENE_READY, lambda m: m.fields["views"] == 6,
         name="views-per-scene"),
    Rule("`max_scene_bytes` are refused with `limit_exceeded`", ("limits.max_scene_bytes",),
         hello_then(bytes_past_scene_limit), error(P.E_LIMIT), name="scene-bytes"),
    Rule("image sides, views, names, sessions", ("limits.max_image_side",),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, [np.zeros((10, 65, 3), np.uint8)],
                                    views=[{"width": 65, "height": 10, "K": P.flat(np.eye(3) * [60, 60, 1] +
                                            [[0, 0, 32], [0, 0, 5], [0, 0, 0]]), "c2w": EYE}])),
         error(P.E_LIMIT), name="image-side"),
    Rule("K outside the image", (),
         hello_then(lambda c: c.ask(P.OPEN_SCENE, c.views(1)[1],
                                    views=c.views(1, K=P.flat(np.array([[30.0, 0, 90], [0, 30, 12], [0, 0, 1]])))[0])),
         error(P.E_BAD_REQUEST), name="K-outside"),
    Rule("`limit_exceeded`, except `max_points`", ("limits.max_scenes_per_client",),
         hello_then(too_many_scenes), error(P.E_LIMIT), name="scenes-per-client"),
    Rule("`not_allowed` otherwise", ("open_scene.path", "code.not_allowed"),
         path_scene("room"), error(P.E_NOT_ALLOWED), name="paths-disabled"),
    Rule("may not leave it", (), path_scene("../outside"), error(P.E_NOT_ALLOWED), paths=True, name="path-escapes"),
    Rule("a string of at\nmost `max_name_chars` characters without NUL", (), path_scene("ro\0om"),
         error(P.E_BAD_REQUEST), paths=True, name="path-nul"),
    Rule("a string of at\nmost `max_name_chars` characters without NUL", (), path_scene("r" * 17),
         error(P.E_LIMIT), paths=True, name="path-too-long"),
    Rule("never by the server's absolute path", (), path_scene("broken"), error(P.E_BAD_REQUEST),
         lambda m: "<data-root>" in m.fields["message"] and "/tmp" not in m.fields["message"]
         and "pytest" not in m.fields["message"], paths=True, name="path-unreadable"),
    Rule("The folder is a dataset scene in the `datagen`", (), path_scene("room"), P.SCENE_READY,
         lambda m: m.fields["views"] == 2, paths=True, name="path-ok"),
    # ------------------------------------------------------------------ render
    Rule("one of `welcome.model.steps`", ("render.steps",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, steps=0))), error(P.E_BAD_REQUEST), name="steps-0"),
    Rule("one of `welcome.model.steps`", (),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, steps=1))), P.FRAME, name="steps-1"),
    Rule("at most `max_render_side`", ("render.size", "limits.max_render_side"),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, size=[65, 8]))), error(P.E_LIMIT),
         name="render-side"),
    Rule("intrinsics for `size`; requires `size`", ("render.K",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, K=P.flat(np.eye(3))))), error(P.E_BAD_REQUEST),
         name="K-without-size"),
    Rule("`raw` (default) or `jpeg`", ("render.encoding",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, encoding="png"))), error(P.E_BAD_REQUEST),
         name="encoding-png"),
    Rule("`quality` integer 1..100", (),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, encoding="jpeg", quality=0))),
         error(P.E_BAD_REQUEST), name="quality-0"),
    Rule("noise seed (0..2^63-1)", ("render.seed",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, seed=-1))), error(P.E_BAD_REQUEST),
         name="seed-negative"),
    Rule("any finite number; echoed in the frame", ("render.t_client",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, t_client="abc"))), error(P.E_BAD_REQUEST),
         name="t_client-string"),
    Rule("boolean; true: the frame carries the anchor rendering", ("render.anchor",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, anchor=1))), error(P.E_BAD_REQUEST),
         name="anchor-one"),
    Rule("must be finite and rigid", ("render.c2w",),
         with_scene(lambda c, s: c.ask(P.RENDER, **render_fields(s, c2w=P.flat(np.eye(4) * 2))))
         , error(P.E_BAD_REQUEST), name="c2w-scaled"),
    Rule("no such scene (closed, expired, never opened", ("render.scene", "code.unknown_scene"),
         hello_then(lambda c: c.ask(P.RENDER, **render_fields("s-0123456789abcdef"))), error(P.E_UNKNOWN_SCENE),
         name="unknown-scene"),
    Rule("only the owner may add views or close it", (), hello_then(another_sessions_scene),
         error(P.E_UNKNOWN_SCENE), name="close-not-yours"),
    Rule("running when the close arrived, are answered `unknown_scene`", (), close_while_rendering,
         error(P.E_UNKNOWN_SCENE), lambda m: m.id == 7, pipeline=lambda: StubPipeline(gated=True),
         name="close-while-rendering"),
]

# Documented behaviour a stub server cannot show, and the test that checks it instead.
ELSEWHERE = {
    "limits.max_points": "tests/models/anchor/test_anchor_cloud.py (fusion coarsens the voxel grid to fit)",
    "code.shutting_down": "tests/python_bridge/test_server.py::test_shutdown_answers_queued_renders",
    "code.internal": "a server bug by definition; tests/python_bridge/test_fuzz.py checks no input provokes it",
}


@pytest.fixture
def data_root(tmp_path) -> Path:
    """A data root with a readable scene ``room`` and a ``broken`` one whose frames are a string."""
    write_scene(Scene(name="room", frames=make_views(2)), tmp_path / "room")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transforms.json").write_text('{"frames": "not a list"}')
    return tmp_path


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_the_server_does_what_the_doc_says(rule: Rule, make_server, data_root):
    assert rule.doc in DOC, f"docs/protocol.md no longer says {rule.doc!r}"
    pipeline = rule.pipeline()
    if rule.paths:
        from datagen.dataset import read_scene

        server = make_server(pipeline, lambda p: read_scene(p).frames, limits=LIMITS, data_root=data_root)
    else:
        server = make_server(pipeline, limits=LIMITS)
    conn = Conn(server.endpoint, data_root)
    conn.pipeline = pipeline
    try:
        reply = rule.run(conn)
    finally:
        conn.close()
    got = f"error:{reply.fields['code']}" if reply.type == P.ERROR else reply.type
    assert got == rule.expect, reply.fields
    if reply.type == P.ERROR:
        assert reply.fields["message"], "every error says what was wrong"
    if rule.check is not None:
        assert rule.check(reply), reply.fields


def _documented() -> set[str]:
    """What docs/protocol.md documents: request fields (``type.field`` from each request's
    field table or field paragraph), limits and error codes."""
    items: set[str] = set()
    section = None
    for line in DOC.splitlines():
        if m := re.match(r"^### (\w+)", line):
            section = m.group(1)
        elif section in P.REQUEST_TYPES and (m := re.match(r"^\| (?:\*\*(\w+)\*\*|`(\w+)`) \|", line)):
            items.add(f"{section}.{m.group(1) or m.group(2)}")
        elif m := re.match(r"^\| `(\w+)` \| ", line):
            if m.group(1) in {getattr(P, n) for n in dir(P) if n.startswith("E_")}:
                items.add(f"code.{m.group(1)}")
    items |= {f"limits.{name}" for name in P.Limits().as_dict()}
    # fields documented in prose rather than a table
    items |= {"hello.client", "hello.session", "ping.t_client", "add_views.scene", "close_scene.scene",
              "open_scene.path", "stats"}
    return items


def test_the_table_covers_the_doc():
    documented = _documented()
    assert {"render.steps", "open_scene.views", "code.malformed", "limits.max_name_chars"} <= documented  # parsed
    for name in P.Limits().as_dict():
        assert f"`{name}`" in DOC or f'"{name}"' in DOC, f"limit {name} is not in docs/protocol.md"
    covered = {c for rule in RULES for c in rule.covers} | set(ELSEWHERE)
    assert documented - covered == set(), "documented but never checked"
    assert covered - documented == set(), "checked but not documented"
