"""Wire format v1: envelope encode/decode, blob checks, field validation of views and renders."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from bridge_views import make_views
from python_bridge import protocol as P


def roundtrip(msg: P.Message) -> P.Message:
    return P.decode([bytes(f) for f in P.encode(msg)])


def test_roundtrip_keeps_fields_and_blobs():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    depth = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    out = roundtrip(P.Message(P.OPEN_SCENE, 42, {"name": "x", "nested": {"a": [1, 2.5]}}, [rgb, depth]))
    assert (out.type, out.id, out.fields) == (P.OPEN_SCENE, 42, {"name": "x", "nested": {"a": [1, 2.5]}})
    np.testing.assert_array_equal(out.blobs[0], rgb)
    np.testing.assert_array_equal(out.blobs[1], depth)
    assert out.blobs[1].dtype == np.float32


def test_header_is_a_plain_msgpack_map_and_blobs_raw_bytes():
    rgb = np.full((1, 2, 3), 7, np.uint8)
    frames = P.encode(P.Message(P.PING, 1, {"t_client": 1.5}, [rgb]))
    header = msgpack.unpackb(frames[0], raw=False)
    assert header == {
        "v": 1,
        "type": "ping",
        "id": 1,
        "t_client": 1.5,
        "blobs": [{"dtype": "uint8", "shape": [1, 2, 3]}],
    }
    assert bytes(frames[1]) == bytes([7] * 6)


def test_decode_from_zmq_frames_is_zero_copy():
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://proto-zero-copy")
        b.connect("inproc://proto-zero-copy")
        big = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
        depth = np.ones((4, 4), np.float32)
        P.send_parts(a, P.encode(P.Message(P.FRAME, 3, {"k": 1}, [big, depth])))
        frames = P.recv_parts(b)
        assert len(frames) == 3 and isinstance(frames[0], bytes)  # the header copied, the blobs not
        assert all(isinstance(f, zmq.Frame) for f in frames[1:])
        msg = P.decode(frames)
        assert (msg.type, msg.id, msg.fields) == (P.FRAME, 3, {"k": 1})
        np.testing.assert_array_equal(msg.blobs[0], big)
        np.testing.assert_array_equal(msg.blobs[1], depth)
        assert np.shares_memory(msg.blobs[0], np.frombuffer(frames[1].buffer, np.uint8))
        P.send_parts(a, [b"only"])
        assert P.recv_parts(b, copied=0)[0].bytes == b"only"
    finally:
        a.close(0)
        b.close(0)


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], P.E_MALFORMED),
        ([b"\xc1"], P.E_MALFORMED),  # 0xc1 is never valid msgpack
        ([msgpack.packb([1, 2])], P.E_MALFORMED),
        ([msgpack.packb({"v": 2, "type": "ping", "id": 1})], P.E_VERSION),
        ([msgpack.packb({"type": "ping", "id": 1})], P.E_VERSION),
        ([msgpack.packb({"v": 1, "type": 3, "id": 1})], P.E_MALFORMED),
        ([msgpack.packb({"v": 1, "type": "ping", "id": -4})], P.E_MALFORMED),
        ([msgpack.packb({"v": 1, "type": "ping", "id": 1}), b"extra"], P.E_MALFORMED),
        (
            [msgpack.packb({"v": 1, "type": "ping", "id": 1, "blobs": [{"dtype": "uint8", "shape": [4]}]})],
            P.E_MALFORMED,
        ),
        (
            [msgpack.packb({"v": 1, "type": "ping", "id": 1, "blobs": [{"dtype": "uint8", "shape": [4]}]}), b"abc"],
            P.E_MALFORMED,
        ),
        (
            [msgpack.packb({"v": 1, "type": "ping", "id": 1, "blobs": [{"dtype": "float64", "shape": [1]}]}), b"x" * 8],
            P.E_MALFORMED,
        ),
        *(  # descriptors a careless or hostile client might send; a list as dtype once raised TypeError
            ([msgpack.packb({"v": 1, "type": "ping", "id": 1, "blobs": [desc]}), b"x"], P.E_MALFORMED)
            for desc in (
                {"dtype": ["uint8"], "shape": [1]},
                {"dtype": {"a": 1}, "shape": [1]},
                {"dtype": "uint8"},
                {"dtype": "uint8", "shape": [True]},
                {"dtype": "uint8", "shape": [-1]},
                {"dtype": "uint8", "shape": 1},
                "uint8",
            )
        ),
        (
            [
                msgpack.packb(
                    {"v": 1, "type": "ping", "id": 1, "blobs": [{"dtype": "uint8", "shape": [1 << 20, 1 << 20]}]}
                ),
                b"",
            ],
            P.E_LIMIT,
        ),
        ([msgpack.packb({"v": 1, "type": "ping", "id": 1, "pad": "x" * (70 << 10)})], P.E_LIMIT),
    ],
)
def test_bad_envelopes_raise_protocol_errors(frames, code):
    with pytest.raises(P.ProtocolError) as err:
        P.decode(frames)
    assert err.value.code == code
    assert err.value.message


def test_version_mismatch_keeps_the_request_id():
    with pytest.raises(P.ProtocolError) as err:
        P.decode([msgpack.packb({"v": 9, "type": "hello", "id": 77})])
    assert err.value.request_id == 77 and "v1" in err.value.message


def test_peek_id_recovers_ids_only_when_possible():
    assert P.peek_id(msgpack.packb({"id": 5})) == 5
    assert P.peek_id(b"\xc1") is None
    assert P.peek_id(msgpack.packb({"id": "five"})) is None


def views_message(frames, **overrides) -> P.Message:
    descs, blobs = P.view_fields(frames)
    for key, value in overrides.items():
        descs[0][key] = value
    return roundtrip(P.Message(P.OPEN_SCENE, 1, {"views": descs}, blobs))


def test_parse_views_rebuilds_frames():
    views = make_views(3)
    parsed = P.parse_views(views_message(views), P.Limits())
    assert len(parsed) == 3
    for a, b in zip(parsed, views, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_allclose(a.camera.c2w, b.camera.c2w)
        np.testing.assert_allclose(a.camera.K, b.camera.K)
        assert a.name == b.name


def test_parse_views_without_depth():
    parsed = P.parse_views(views_message(make_views(2, depth=False)), P.Limits())
    assert all(f.depth is None for f in parsed)


def reflected(c2w):
    m = np.array(c2w, dtype=float).reshape(4, 4)
    m[:3, 0] *= -1
    return P.flat(m)


@pytest.mark.parametrize(
    "override, code, text",
    [
        ({"c2w": [float("nan")] * 16}, P.E_BAD_REQUEST, "finite"),
        ({"c2w": P.flat(np.diag([2.0, 2.0, 2.0, 1.0]))}, P.E_BAD_REQUEST, "orthonormal"),
        ({"c2w": [1.0] * 15}, P.E_BAD_REQUEST, "16 numbers"),
        ({"K": P.flat(np.array([[10, 0, 500], [0, 10, 12], [0, 0, 1.0]]))}, P.E_BAD_REQUEST, "principal point"),
        ({"width": 33}, P.E_BAD_REQUEST, "rgb must be uint8 (24, 33, 3)"),
        ({"width": 5000}, P.E_LIMIT, "sides must be"),
        ({"width": "32"}, P.E_BAD_REQUEST, "'width' must be int"),
        ({"name": 5}, P.E_BAD_REQUEST, "name"),
    ],
)
def test_parse_views_rejects_bad_fields(override, code, text):
    with pytest.raises(P.ProtocolError) as err:
        P.parse_views(views_message(make_views(2), **override), P.Limits())
    assert err.value.code == code and text in err.value.message


def test_parse_views_rejects_reflections_and_wrong_dtypes():
    views = make_views(1)
    with pytest.raises(P.ProtocolError, match="det"):
        P.parse_views(views_message(views, c2w=reflected(P.flat(views[0].camera.c2w))), P.Limits())
    descs, blobs = P.view_fields(views)
    bad = roundtrip(P.Message(P.OPEN_SCENE, 1, {"views": descs}, [blobs[0].astype(np.float32), blobs[1]]))
    with pytest.raises(P.ProtocolError, match="rgb must be uint8"):
        P.parse_views(bad, P.Limits())
    bad = roundtrip(P.Message(P.OPEN_SCENE, 1, {"views": descs}, [blobs[0], blobs[1][:, :5].copy()]))
    with pytest.raises(P.ProtocolError, match="depth must be float32"):
        P.parse_views(bad, P.Limits())
    with pytest.raises(P.ProtocolError, match="binary frames"):
        P.parse_views(roundtrip(P.Message(P.OPEN_SCENE, 1, {"views": descs}, blobs[:1])), P.Limits())


def test_parse_views_enforces_views_per_message():
    with pytest.raises(P.ProtocolError) as err:
        P.parse_views(views_message(make_views(3)), P.Limits(max_views_per_message=2))
    assert err.value.code == P.E_LIMIT and "add_views" in err.value.message


def render_msg(**fields) -> P.Message:
    base = {"scene": "s-1", "c2w": P.flat(np.eye(4))}
    base.update(fields)
    return roundtrip(P.Message(P.RENDER, 9, {k: v for k, v in base.items() if v is not None}))


def test_parse_render_defaults_and_values():
    req = P.parse_render(render_msg(), P.Limits())
    assert (req.scene, req.K, req.size, req.encoding, req.steps, req.seed) == ("s-1", None, None, "raw", None, None)
    K = np.array([[50.0, 0, 32], [0, 50, 16], [0, 0, 1]])
    req = P.parse_render(
        render_msg(K=P.flat(K), size=[64, 32], encoding="jpeg", quality=70, steps=2, seed=3, t_client=12.5), P.Limits()
    )
    np.testing.assert_array_equal(req.K, K)
    assert (req.size, req.encoding, req.quality, req.steps, req.seed, req.t_client) == (
        (64, 32),
        "jpeg",
        70,
        2,
        3,
        12.5,
    )


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"scene": None}, P.E_BAD_REQUEST),
        ({"scene": 3}, P.E_BAD_REQUEST),
        ({"c2w": [float("inf")] + [0.0] * 15}, P.E_BAD_REQUEST),
        ({"c2w": P.flat(np.diag([1.0, 1.0, -1.0, 1.0]))}, P.E_BAD_REQUEST),
        ({"c2w": [[1, 0, 0, 0]] * 4}, P.E_BAD_REQUEST),
        ({"c2w": [True] * 16}, P.E_BAD_REQUEST),
        ({"K": P.flat(np.eye(3))}, P.E_BAD_REQUEST),  # K without size
        ({"size": [0, 10]}, P.E_BAD_REQUEST),
        ({"size": [4096, 10]}, P.E_LIMIT),
        ({"encoding": "png"}, P.E_BAD_REQUEST),
        ({"quality": 0}, P.E_BAD_REQUEST),
        ({"steps": "1"}, P.E_BAD_REQUEST),
        ({"seed": -1}, P.E_BAD_REQUEST),
        ({"t_client": float("nan")}, P.E_BAD_REQUEST),
    ],
)
def test_parse_render_rejects(fields, code):
    with pytest.raises(P.ProtocolError) as err:
        P.parse_render(
            render_msg(**fields)
            if fields.get("scene", 1) is not None
            else roundtrip(P.Message(P.RENDER, 9, {"c2w": P.flat(np.eye(4))})),
            P.Limits(),
        )
    assert err.value.code == code and err.value.request_id == 9


def test_encode_rejects_unsupported_blob_dtypes():
    with pytest.raises(ValueError, match="uint8 or float32"):
        P.encode(P.Message(P.FRAME, 1, {}, [np.zeros(3, np.float64)]))


def test_encode_sends_big_endian_and_strided_blobs_as_little_endian_contiguous():
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]
    frames = P.encode(P.Message(P.FRAME, 1, {}, [big, strided]))
    assert bytes(frames[1]) == np.arange(6, dtype="<f4").tobytes()
    assert bytes(frames[2]) == np.ascontiguousarray(strided).tobytes()
    back = P.decode(frames)
    assert back.blobs[0].dtype == np.dtype("<f4") and np.array_equal(back.blobs[0], big)
    assert np.array_equal(back.blobs[1], strided)
