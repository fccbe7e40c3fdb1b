"""Wire format v1 of the WorldFM bridge: message types, encode/decode, validation, limits.

Every message is one ZeroMQ multipart message (a DEALER client talks to the ROUTER server;
the ROUTER adds and strips the peer identity frame itself)::

    frame 0      msgpack map  {"v": 1, "type": "render", "id": 7, ...fields}
    frame 1..n   raw little-endian array bytes, one per entry of header["blobs"]

``header["blobs"]`` lists ``{"dtype": "uint8" | "float32", "shape": [...]}`` for each
binary frame in order, so a receiver can check counts and sizes before it looks at the
contents and can wrap each frame as a numpy array without a copy. Images travel as
``uint8 (H, W, 3)`` RGB, depth as ``float32 (H, W)`` metres, a JPEG as ``uint8 (nbytes,)``.

Replies carry the ``id`` of the request they answer. Poses are 4x4 camera-to-world
matrices in metres and intrinsics 3x3 pixel matrices in the project convention
(``models.cameras``), both sent row-major as flat lists (16 and 9 floats).

The full contract, with an example of every message, is docs/protocol.md. Nothing here
uses pickle; msgpack is decoded with ``strict_map_key`` and size caps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np
import zmq

from models.cameras import CameraError, validate_c2w, validate_K

PROTOCOL_VERSION = 1

# Message types. Requests travel client -> server, replies server -> client.
HELLO, WELCOME = "hello", "welcome"
OPEN_SCENE, ADD_VIEWS, VIEWS_ADDED, SCENE_READY = "open_scene", "add_views", "views_added", "scene_ready"
RENDER, FRAME, SUPERSEDED = "render", "frame", "superseded"
CLOSE_SCENE, SCENE_CLOSED = "close_scene", "scene_closed"
PING, PONG = "ping", "pong"
STATS = "stats"  # the request and its reply share the name
ERROR = "error"

REQUEST_TYPES = (HELLO, OPEN_SCENE, ADD_VIEWS, RENDER, CLOSE_SCENE, PING, STATS)
REPLY_TYPES = (WELCOME, VIEWS_ADDED, SCENE_READY, FRAME, SUPERSEDED, SCENE_CLOSED, PONG, STATS, ERROR)

ENCODINGS = ("raw", "jpeg")

# Error codes of the ``error`` reply; the message text says what to do.
E_VERSION = "version_mismatch"
E_MALFORMED = "malformed"  # not a v1 message at all: bad msgpack, missing header keys, frame counts
E_BAD_REQUEST = "bad_request"  # a well-formed message with invalid fields (types, shapes, poses)
E_LIMIT = "limit_exceeded"
E_UNKNOWN_SCENE = "unknown_scene"
E_NO_SESSION = "no_session"
E_NOT_ALLOWED = "not_allowed"
E_SHUTTING_DOWN = "shutting_down"
E_INTERNAL = "internal"

_DTYPES = {"uint8": np.dtype("<u1"), "float32": np.dtype("<f4")}
_DTYPE_NAMES = {dt: name for name, dt in _DTYPES.items()}


class ProtocolError(Exception):
    """A request the server cannot honour; becomes an ``error`` reply with ``code``."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Limits:
    """Per-field caps, checked before any work is done; advertised in ``welcome``.

    ``max_points`` is the exception: a scene whose views fuse to more points is built
    with a coarser voxel grid until it fits (``models.anchor.build_scene``), not refused.

    ``max_message_bytes`` is also set as ZMQ_MAXMSGSIZE on the server socket: a peer that
    sends a bigger single frame is disconnected by libzmq (no reply is possible), so the
    other limits sit below it and are answered with ``limit_exceeded``.
    """

    max_message_bytes: int = 256 << 20
    max_header_bytes: int = 64 << 10
    max_image_side: int = 4096
    max_render_side: int = 2048
    max_views_per_message: int = 64
    max_views_per_scene: int = 512
    max_scene_bytes: int = 2 << 30  # RGB + depth of all views of one scene
    max_points: int = 2_000_000  # the fused cloud is capped to this (coarser voxels), not refused
    max_scenes_per_client: int = 4
    max_sessions: int = 256
    max_name_chars: int = 256  # client, scene and view names, server-side paths
    max_new_sessions_per_minute: int = 8  # per connection, so one socket cannot fill max_sessions

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Message:
    """One decoded message: its ``type``, request ``id``, header ``fields`` and binary ``blobs``.

    ``blobs`` are numpy arrays; on receive they are read-only views of the ZeroMQ frames.
    """

    type: str
    id: int | None
    fields: dict[str, Any] = field(default_factory=dict)
    blobs: list[np.ndarray] = field(default_factory=list)


def encode(msg: Message) -> list[bytes | memoryview]:
    """Message -> multipart frames (header first). Arrays are sent without a copy."""
    header = {"v": PROTOCOL_VERSION, "type": msg.type, "id": msg.id, **msg.fields}
    if not msg.blobs:
        return [msgpack.packb(header, use_bin_type=True)]
    header["blobs"] = descs = []
    views = []
    for b in msg.blobs:
        b = np.ascontiguousarray(b)
        if b.dtype.byteorder == ">":  # the wire is little-endian
            b = b.astype(b.dtype.newbyteorder("<"))
        name = _DTYPE_NAMES.get(b.dtype)
        if name is None:
            raise ValueError(f"blobs must be uint8 or float32 arrays; got {b.dtype}")
        descs.append({"dtype": name, "shape": list(b.shape)})
        views.append(memoryview(b).cast("B"))
    return [msgpack.packb(header, use_bin_type=True), *views]


# Plain ints: pyzmq's flag enums cost a Python call for every `|` or `&` on them.
SNDMORE, POLLIN = int(zmq.SNDMORE), int(zmq.POLLIN)


def send_parts(sock: zmq.Socket, parts: Sequence[Any], flags: int = 0) -> None:
    """Send ``parts`` as one multipart message, big parts without a copy.

    ``Socket.send_multipart`` does the same plus a type check of every part and enum
    arithmetic on the flags: 11 us against 8 us for a 512x512 frame reply, timed alone."""
    more = int(flags) | SNDMORE
    for part in parts[:-1]:
        sock.send(part, more, copy=False)
    sock.send(parts[-1], flags, copy=False)


def recv_parts(sock: zmq.Socket, flags: int = 0, copied: int = 1) -> list:
    """One multipart message from ``sock``: its first ``copied`` parts as bytes (the ROUTER
    identity, the msgpack header: a copy of a few hundred bytes costs less than keeping a
    frame object), the rest (image blobs) as zero-copy ``zmq.Frame``.

    Parts are read as frames whose ``more`` ends the loop: asking ``ZMQ_RCVMORE`` goes
    through pyzmq's option enum on every part (10 us against 8 us for a frame request)."""
    frame = sock.recv(flags, copy=False)
    parts = [frame.bytes if copied else frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        parts.append(frame.bytes if len(parts) < copied else frame)
    return parts


def _frame_buffer(frame: Any) -> memoryview:
    """The bytes of a received part: a ``zmq.Frame`` (zero-copy ``.buffer``) or bytes-like."""
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf).cast("B")


def peek_id(header_bytes: Any) -> int | None:
    """Best-effort request id from a header that failed validation, for the error reply."""
    try:
        header = _unpack_header(_frame_buffer(header_bytes), 1 << 20)
    except Exception:
        return None
    rid = header.get("id") if isinstance(header, dict) else None
    return rid if _valid_id(rid) else None


MAX_ID = 1 << 63  # ids are unsigned integers below this (they fit a signed 64-bit integer)


def _valid_id(rid: Any) -> bool:
    return type(rid) is int and 0 <= rid < MAX_ID  # exact int: a bool is not an id


def _unpack_header(buf: memoryview, max_bytes: int) -> Any:
    if len(buf) > max_bytes:
        raise ProtocolError(E_LIMIT, f"header is {len(buf)} bytes; the limit is {max_bytes}")
    return msgpack.unpackb(
        buf,
        raw=False,
        strict_map_key=True,
        max_str_len=max_bytes,
        max_bin_len=max_bytes,
        max_array_len=1 << 16,
        max_map_len=1 << 12,
    )


def decode(frames: Sequence[Any], limits: Limits = Limits()) -> Message:
    """Multipart frames (identity already stripped) -> Message, checking the envelope.

    In the order docs/protocol.md gives: the whole message within ``max_message_bytes``;
    the header a msgpack map with string keys; ``v`` exactly the integer 1
    (``version_mismatch`` otherwise, before anything else is looked at); ``id`` an integer
    in [0, 2^63), absent only on an ``error`` reply; ``type`` a string; the binary frames matching ``blobs`` in count, dtype and
    byte size. Field contents are checked per message type (``parse_*``, the server).
    """
    if not frames:
        raise ProtocolError(E_MALFORMED, "empty message; a message starts with a msgpack header frame")
    total = sum(_frame_buffer(f).nbytes for f in frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(
            E_LIMIT, f"the message is {total} bytes over {len(frames)} parts; the limit is {limits.max_message_bytes}"
        )
    try:
        header = _unpack_header(_frame_buffer(frames[0]), limits.max_header_bytes)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(E_MALFORMED, f"header frame is not valid msgpack: {_reason(exc)}") from None
    if not isinstance(header, dict):
        raise ProtocolError(E_MALFORMED, f"header must be a msgpack map; got {type(header).__name__}")
    if not all(type(k) is str for k in header):
        raise ProtocolError(E_MALFORMED, "header map keys must be msgpack strings (str), not bin or numbers")
    rid = header.get("id")
    version = header.get("v")  # absent counts as "not 1": a client of another protocol learns which to speak
    if type(version) is not int or version != PROTOCOL_VERSION:  # exact int: true is not version 1
        raise ProtocolError(
            E_VERSION,
            f"this server speaks protocol v{PROTOCOL_VERSION}; the message says v{version!r}. "
            "Use a client built for protocol v1 (see docs/protocol.md).",
            rid if _valid_id(rid) else None,
        )
    if rid is not None and not _valid_id(rid):
        raise ProtocolError(E_MALFORMED, f"header 'id' must be an integer in [0, 2^63); got {rid!r}")
    mtype = header.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(E_MALFORMED, f"header 'type' must be a string; got {mtype!r}", rid)
    if rid is None and mtype != ERROR:  # only an error about an unreadable id has none
        raise ProtocolError(E_MALFORMED, "header has no 'id'; every request carries one (docs/protocol.md)")
    descs = header.pop("blobs", [])
    if not isinstance(descs, list):
        raise ProtocolError(E_MALFORMED, "header 'blobs' must be a list of {dtype, shape}", rid)
    if len(descs) != len(frames) - 1:
        raise ProtocolError(
            E_MALFORMED,
            f"header lists {len(descs)} binary frames but {len(frames) - 1} followed it",
            rid,
        )
    blobs = [_wrap_blob(d, _frame_buffer(frames[i + 1]), i, rid, limits) for i, d in enumerate(descs)]
    del header["v"], header["type"]  # what is left of the header are the fields
    header.pop("id", None)
    return Message(mtype, rid, header, blobs)


def _reason(exc: BaseException) -> str:
    """An exception as a non-empty reason (some msgpack errors carry no text)."""
    return str(exc) or type(exc).__name__


def _wrap_blob(desc: Any, buf: memoryview, index: int, rid: int | None, limits: Limits) -> np.ndarray:
    where = f"binary frame {index + 1}"
    name = desc.get("dtype") if isinstance(desc, dict) else None
    dtype = _DTYPES.get(name) if isinstance(name, str) else None  # a list or map as key would raise
    shape = desc.get("shape") if dtype is not None else None
    if type(shape) is not list:
        raise ProtocolError(
            E_MALFORMED, f"{where}: descriptor must be {{dtype: uint8|float32, shape: [..]}}; got {desc!r}", rid
        )
    if len(shape) > 4 or not all(type(n) is int and n >= 0 for n in shape):  # exact int: no bools
        raise ProtocolError(E_MALFORMED, f"{where}: shape must be up to 4 non-negative integers; got {shape}", rid)
    if max(shape, default=0) > limits.max_message_bytes:  # even an empty array may not claim such a side
        raise ProtocolError(
            E_LIMIT, f"{where}: shape {shape} has a side over the {limits.max_message_bytes} limit", rid
        )
    expected = math.prod(shape) * dtype.itemsize
    if expected > limits.max_message_bytes:
        raise ProtocolError(
            E_LIMIT, f"{where}: {expected} bytes exceeds the {limits.max_message_bytes} byte limit", rid
        )
    if len(buf) != expected:
        raise ProtocolError(
            E_MALFORMED, f"{where}: {name} {shape} needs {expected} bytes; the frame has {len(buf)}", rid
        )
    try:
        return np.frombuffer(buf, dtype=dtype).reshape(shape)
    except ValueError:  # an empty array whose sides multiply past what numpy can index
        raise ProtocolError(E_MALFORMED, f"{where}: shape {shape} cannot describe an array", rid) from None


# ----------------------------------------------------------------------------- field checks


def require(fields: dict, name: str, types: type | tuple, rid: int | None, optional: bool = False) -> Any:
    """Field ``name`` of the expected type(s); None when ``optional`` and absent."""
    value = fields.get(name)
    if value is None:
        if optional:
            return None
        raise ProtocolError(E_BAD_REQUEST, f"field '{name}' is required", rid)
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ProtocolError(E_BAD_REQUEST, f"field '{name}' must be {_type_names(types)}; got a boolean", rid)
    if not isinstance(value, types):
        raise ProtocolError(
            E_BAD_REQUEST, f"field '{name}' must be {_type_names(types)}; got {type(value).__name__}", rid
        )
    return value


def name_field(fields: dict, key: str, limits: Limits, rid: int | None, default: str, where: str = "") -> str:
    """An optional name (client, scene, view, server-side path): a string of at most
    ``max_name_chars`` characters (``limit_exceeded`` beyond), ``default`` when absent."""
    value = require(fields, key, str, rid, optional=True)
    if value is None:
        return default
    if len(value) > limits.max_name_chars:
        raise ProtocolError(
            E_LIMIT, f"'{where or key}' is {len(value)} characters; the limit is {limits.max_name_chars}", rid
        )
    return value


def finite_number(fields: dict, key: str, rid: int | None) -> float | int | None:
    """An optional finite number (``t_client``), None when absent."""
    value = require(fields, key, (int, float), rid, optional=True)
    if value is not None and not math.isfinite(value):
        raise ProtocolError(E_BAD_REQUEST, f"'{key}' must be finite", rid)
    return value


def _type_names(types: type | tuple) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in ts)


_NUMBER_TYPES = {int, float}  # what msgpack decodes numbers to


def matrix(value: Any, rows: int, name: str, rid: int | None) -> np.ndarray:
    """A flat row-major list of ``rows * rows`` numbers -> float64 (rows, rows)."""
    if not isinstance(value, list) or len(value) != rows * rows:
        raise ProtocolError(E_BAD_REQUEST, f"'{name}' must be a flat row-major list of {rows * rows} numbers", rid)
    if not set(map(type, value)) <= _NUMBER_TYPES:  # exact types: bool, a subclass of int, is refused
        raise ProtocolError(E_BAD_REQUEST, f"'{name}' must contain only numbers", rid)
    return np.asarray(value, dtype=np.float64).reshape(rows, rows)


def pose(value: Any, name: str, rid: int | None) -> np.ndarray:
    """A wire c2w -> (4, 4) float64, rejecting NaN, scale, shear and reflections."""
    try:
        return validate_c2w(matrix(value, 4, name, rid), name)
    except CameraError as exc:
        raise ProtocolError(E_BAD_REQUEST, str(exc), rid) from None


def intrinsics(value: Any, width: int, height: int, rid: int | None) -> np.ndarray:
    """A wire K -> (3, 3) float64 valid for a ``width`` x ``height`` image."""
    try:
        return validate_K(matrix(value, 3, "K", rid), width, height)
    except CameraError as exc:
        raise ProtocolError(E_BAD_REQUEST, str(exc), rid) from None


def flat(m: np.ndarray) -> list[float]:
    """A matrix as the flat row-major float list the wire uses."""
    return np.asarray(m, dtype=np.float64).reshape(-1).tolist()


def size(value: Any, name: str, max_side: int, rid: int | None) -> tuple[int, int]:
    """A wire ``[width, height]`` checked against ``max_side``."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    ):
        raise ProtocolError(E_BAD_REQUEST, f"'{name}' must be [width, height] integers; got {value!r}", rid)
    w, h = value
    if not (0 < w and 0 < h):
        raise ProtocolError(E_BAD_REQUEST, f"'{name}' must be positive; got {w}x{h}", rid)
    if w > max_side or h > max_side:
        raise ProtocolError(E_LIMIT, f"'{name}' {w}x{h} exceeds the {max_side} px per side limit", rid)
    return int(w), int(h)


# ----------------------------------------------------------------------------- message builders


def error(code: str, message: str, request_id: int | None) -> Message:
    """The ``error`` reply."""
    return Message(ERROR, request_id, {"code": code, "message": message})


def error_from(exc: ProtocolError, request_id: int | None = None) -> Message:
    return error(exc.code, exc.message, exc.request_id if exc.request_id is not None else request_id)


def view_fields(views: Sequence[Any]) -> tuple[list[dict], list[np.ndarray]]:
    """``models.scene.Frame`` list -> (``views`` descriptors, blobs) for open_scene/add_views."""
    descs, blobs = [], []
    for f in views:
        cam = f.camera
        descs.append(
            {
                "name": f.name,
                "width": cam.width,
                "height": cam.height,
                "K": flat(cam.K),
                "c2w": flat(cam.c2w),
                "depth": f.depth is not None,
            }
        )
        blobs.append(f.rgb)
        if f.depth is not None:
            blobs.append(np.asarray(f.depth, dtype=np.float32))
    return descs, blobs


def parse_views(msg: Message, limits: Limits) -> list:
    """open_scene / add_views ``views`` + blobs -> ``models.scene.Frame`` list, all checked.

    Each view takes one RGB blob (uint8 H x W x 3) and, when ``depth`` is true, one depth
    blob (float32 H x W, metres) right after it.
    """
    from models.scene import Camera, Frame

    rid = msg.id
    views = require(msg.fields, "views", list, rid)
    if len(views) > limits.max_views_per_message:
        raise ProtocolError(
            E_LIMIT,
            f"{len(views)} views in one message; the limit is {limits.max_views_per_message} "
            "(send the rest with add_views)",
            rid,
        )
    for i, v in enumerate(views):  # the blob count depends on each view's depth flag: check them first
        if not isinstance(v, dict) or not all(type(k) is str for k in v):
            raise ProtocolError(E_BAD_REQUEST, f"views[{i}] must be a map with string keys", rid)
        require(v, "depth", bool, rid, optional=True)
    expected = sum(1 + bool(v.get("depth")) for v in views)
    if expected != len(msg.blobs):
        raise ProtocolError(
            E_MALFORMED, f"{len(views)} views need {expected} binary frames (rgb [+ depth]); got {len(msg.blobs)}", rid
        )
    frames, blob_iter = [], iter(msg.blobs)
    for i, v in enumerate(views):
        w = require(v, "width", int, rid)
        h = require(v, "height", int, rid)
        if not (0 < w <= limits.max_image_side and 0 < h <= limits.max_image_side):
            raise ProtocolError(
                E_LIMIT if max(w, h) > limits.max_image_side else E_BAD_REQUEST,
                f"views[{i}] is {w}x{h}; sides must be in 1..{limits.max_image_side}",
                rid,
            )
        name = name_field(v, "name", limits, rid, f"view{i}", where=f"views[{i}].name")
        K = intrinsics(v.get("K"), w, h, rid)
        c2w = pose(v.get("c2w"), f"views[{i}].c2w", rid)
        rgb = next(blob_iter)
        if rgb.dtype != np.uint8 or rgb.shape != (h, w, 3):
            raise ProtocolError(
                E_BAD_REQUEST, f"views[{i}] rgb must be uint8 ({h}, {w}, 3); got {rgb.dtype} {list(rgb.shape)}", rid
            )
        depth = None
        if v.get("depth"):
            depth = next(blob_iter)
            if depth.dtype != np.float32 or depth.shape != (h, w):
                raise ProtocolError(
                    E_BAD_REQUEST,
                    f"views[{i}] depth must be float32 ({h}, {w}) metres; got {depth.dtype} {list(depth.shape)}",
                    rid,
                )
        frames.append(Frame(rgb=rgb, camera=Camera(K=K, c2w=c2w, width=w, height=h), depth=depth, name=name))
    return frames


@dataclass(slots=True)
class RenderRequest:
    """A checked ``render``: pose (4, 4) c2w metres, optional K (3, 3) pixels and [W, H] size,
    image ``encoding``/``quality``, generator ``steps`` and noise ``seed``.

    Not frozen, though nothing changes it: one is made per request, and a frozen
    dataclass's ``__init__`` costs 1.2 us against 0.2 us."""

    id: int | None
    scene: str
    c2w: np.ndarray
    K: np.ndarray | None
    size: tuple[int, int] | None
    t_client: float | None
    encoding: str
    quality: int
    steps: int | None
    seed: int | None
    anchor: bool = False  # also send the anchor rendering (a second image blob), for debugging views


def parse_render(msg: Message, limits: Limits) -> RenderRequest:
    """Check a ``render`` message's fields; K is checked against ``size`` when both are given."""
    rid, f = msg.id, msg.fields
    if msg.blobs:
        raise ProtocolError(E_MALFORMED, f"render carries no binary frames; got {len(msg.blobs)}", rid)
    scene = require(f, "scene", str, rid)
    c2w = pose(f.get("c2w"), "c2w", rid)
    wh = size(f["size"], "size", limits.max_render_side, rid) if f.get("size") is not None else None
    K = None
    if f.get("K") is not None:
        if wh is None:
            raise ProtocolError(E_BAD_REQUEST, "a render with 'K' must also give 'size' [width, height]", rid)
        K = intrinsics(f["K"], wh[0], wh[1], rid)
    t_client = finite_number(f, "t_client", rid)
    encoding = require(f, "encoding", str, rid, optional=True) or "raw"
    if encoding not in ENCODINGS:
        raise ProtocolError(E_BAD_REQUEST, f"'encoding' must be one of {list(ENCODINGS)}; got {encoding!r}", rid)
    quality = require(f, "quality", int, rid, optional=True)
    if quality is not None and not 1 <= quality <= 100:
        raise ProtocolError(E_BAD_REQUEST, f"'quality' must be in 1..100; got {quality}", rid)
    steps = require(f, "steps", int, rid, optional=True)
    seed = require(f, "seed", int, rid, optional=True)
    if seed is not None and not 0 <= seed < 1 << 63:
        raise ProtocolError(E_BAD_REQUEST, f"'seed' must be a non-negative 63-bit integer; got {seed}", rid)
    anchor = require(f, "anchor", bool, rid, optional=True) or False
    return RenderRequest(rid, scene, c2w, K, wh, t_client, encoding, quality or 90, steps, seed, anchor)
