"""Hypothesis fuzzing of request headers and frames against a live server.

Whatever arrives, the server answers each message exactly once with a well-formed v1
reply (usually ``error``) and keeps serving.
"""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from python_bridge import protocol as P
from python_bridge.server import Server, ServerConfig
from stub_pipeline import StubPipeline

import zmq

KNOWN_CODES = {
    P.E_VERSION,
    P.E_MALFORMED,
    P.E_BAD_REQUEST,
    P.E_LIMIT,
    P.E_UNKNOWN_SCENE,
    P.E_NO_SESSION,
    P.E_NOT_ALLOWED,
}  # not E_INTERNAL: the doc's word for a server bug, which no input may provoke
KEYS = [
    "v",
    "type",
    "id",
    "scene",
    "c2w",
    "K",
    "size",
    "views",
    "blobs",
    "encoding",
    "steps",
    "seed",
    "session",
    "client",
    "path",
    "final",
    "name",
    "t_client",
    "quality",
    "width",
    "height",
    "depth",
    "dtype",
    "shape",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=17), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)),
    max_leaves=40,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), values),
        "type": st.one_of(st.sampled_from(P.REQUEST_TYPES), values),
        "id": st.one_of(st.integers(0, 2**40), values),
    },
).flatmap(lambda base: st.dictionaries(st.sampled_from(KEYS), values, max_size=6).map(lambda extra: {**extra, **base}))
messages = st.tuples(
    st.one_of(headers.map(lambda h: msgpack.packb(h, use_bin_type=True)), st.binary(max_size=64)),
    st.lists(st.binary(max_size=256), max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(messages, min_size=1, max_size=4))
def test_fuzzed_requests_get_exactly_one_valid_reply(batch):
    server = _server()
    sock = _socket(server.endpoint)
    sock.send_multipart(P.encode(P.Message(P.HELLO, 0, {"session": "fuzz-session"})))
    assert P.decode(sock.recv_multipart()).type == P.WELCOME
    for header, extra in batch:
        sock.send_multipart([header, *extra])
        assert sock.poll(3000), f"no reply to {header!r} + {len(extra)} frames"
        reply = P.decode(sock.recv_multipart())
        assert reply.type in P.REPLY_TYPES
        if reply.type == P.ERROR:
            assert reply.fields["code"] in KNOWN_CODES and reply.fields["message"]
        assert not sock.poll(0), "more than one reply"
    sock.send_multipart(P.encode(P.Message(P.PING, 1, {})))
    assert sock.poll(3000) and P.decode(sock.recv_multipart()).type == P.PONG


_state: dict = {}


def _server() -> Server:
    """One server for every example (hypothesis does not mix with function-scoped fixtures)."""
    if "server" not in _state:
        _state["server"] = Server(StubPipeline(), ServerConfig(bind="tcp://127.0.0.1:*", poll_ms=5)).start()
    return _state["server"]


def _socket(endpoint: str) -> zmq.Socket:
    old = _state.pop("sock", None)
    if old is not None:
        old.close(0)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    _state["sock"] = sock
    return sock


def teardown_module() -> None:
    if "sock" in _state:
        _state.pop("sock").close(0)
    if "server" in _state:
        _state.pop("server").stop()


def test_a_valid_render_after_fuzz_still_works():
    server = _server()
    from bridge_views import make_views
    from python_bridge.client import Client

    with Client(server.endpoint, timeout_s=2) as c:
        scene = c.open_scene(make_views(1)).scene
        assert c.render(scene, np.eye(4)).rgb.shape == (24, 32, 3)
