"""A stand-in UnrealCV server for tests: the real wire protocol over TCP, procedural renders.

It speaks what the UnrealCV 1.x plugin (``FusionCamSensor`` builds) speaks, so the real
``unrealcv.Client`` talks to it unchanged:

* every message is framed as uint32 magic ``0x9E2B83C1``, uint32 length, payload (little
  endian); on accept the server sends ``connected to <project>``; one client at a time,
  a second one is closed without a confirmation;
* requests are ``<id>:<command>``, replies ``<id>:<body>``; bodies are ``ok``, ``error <why>``
  (``error No handler found for URI '<command>'`` for unknown commands), numbers formatted as
  the plugin formats them (``%.3f`` vectors, ``%f`` FOV), or binary payloads;
* ``lit png`` / ``normal png`` / ``object_mask png``: 8-bit RGBA PNGs; ``depth npy``: a
  ``cnpy``-style ``.npy`` (v1.0 header padded to 16 bytes, ``'<f4'``, shape (H, W)) in cm,
  65504 where nothing was hit (the half-float maximum of the plugin's depth target).

Views come from ``datagen.procedural``: the Unreal pose is turned into our camera with
``models.cameras`` and rendered. ``depth_mode="distance"`` answers ``depth`` with the
distance to the camera centre, as 0.3.x plugin builds do (and then offers ``plane_depth``).
Faults for the robustness tests: :meth:`drop_after`, :meth:`set_offline`, :meth:`corrupt`,
``missing`` commands, ``pose_offset_cm`` and ``fall_cm_per_request``. Normals and object
masks are plausible images of the right size (camera-space normals from depth, colours per
surface orientation), not the plugin's world normals and per-actor colours.
"""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from datagen.procedural.renderer import Renderer
from datagen.procedural.scenes import generate_scene
from models.cameras import K_from_hfov, ue_to_c2w
from models.scene import Camera

MAGIC = 0x9E2B83C1
NO_HIT_CM = 65504.0
_REQUEST = re.compile(rb"^(\d+):(.*)$", re.S)


def frame(payload: bytes) -> bytes:
    """One wire message: magic, length, payload."""
    return struct.pack("<II", MAGIC, len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes | None:
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


@dataclass
class _Camera:
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov: float = 90.0


class FakeUnrealCVServer:
    """Serve one procedural scene on ``127.0.0.1:<port>`` (0 picks a free port).

    ``missing``: command words (``fov``, ``normal``, ``size`` ...) answered with the
    plugin's "No handler found" error. ``pose_offset_cm``: added to every location the
    client sets, as a game might move a colliding player pawn. ``fall_cm_per_request``: every
    camera sinks this much per request served, as a player pawn with gravity does per tick.
    """

    def __init__(
        self,
        scene_seed: int = 0,
        scene_kind: str = "indoor",
        width: int = 32,
        height: int = 24,
        fov: float = 90.0,
        depth_mode: str = "plane",
        missing: tuple[str, ...] = (),
        version: str = "1.0.1",
        port: int = 0,
        pose_offset_cm: tuple[float, float, float] = (0.0, 0.0, 0.0),
        unix_socket: str | None = None,
        fall_cm_per_request: float = 0.0,
    ):
        self.scene = generate_scene(scene_seed, scene_kind)
        self.renderer = Renderer(self.scene)
        self.width, self.height = width, height
        self.depth_mode = depth_mode
        self.missing = set(missing)
        self.version = version
        self.pose_offset_cm = np.asarray(pose_offset_cm, float)
        self.fall_cm_per_request = fall_cm_per_request
        self.cameras = {0: _Camera(fov=fov), 1: _Camera(fov=fov)}
        self.commands: list[str] = []  # every command received, in order
        self.render_seconds = 0.0  # time spent rendering, to tell the client's share of a capture
        self._last_render: tuple[tuple, object] | None = None
        self.connections = 0
        self._lock = threading.Lock()
        self._drop_after: int | None = None
        self._offline_after_drop = False
        self._offline = False
        self._corrupt: list[tuple[str, str]] = []  # (command word, mode), consumed in order
        self._client: socket.socket | None = None
        self.unix_socket = unix_socket
        if unix_socket:  # UnrealCV 1.x on Linux also serves /tmp/unrealcv_<port>.socket
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(unix_socket)
            self.port = port
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", port))
            self.port = self._listener.getsockname()[1]
        self._listener.listen(4)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "FakeUnrealCVServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        except OSError:
            pass
        self._listener.close()
        self._close_client()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeUnrealCVServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------
    def drop_after(self, requests: int, go_offline: bool = False) -> None:
        """Answer ``requests`` more requests, then close the connection without replying.

        ``go_offline``: also stop accepting clients (a crashed game) until ``set_offline(False)``.
        """
        with self._lock:
            self._drop_after = requests
            self._offline_after_drop = go_offline

    def set_offline(self, offline: bool) -> None:
        """While offline, connections are closed without the ``connected`` confirmation."""
        with self._lock:
            self._offline = offline
        if offline:
            self._close_client()

    def corrupt(self, word: str, mode: str, times: int = 1) -> None:
        """Spoil the next ``times`` replies to commands naming ``word`` (``lit``, ``depth`` ...).

        ``mode``: ``truncate`` (cut the payload in half), ``garbage`` (random bytes),
        ``black`` (an all-black image), ``nan`` (a NaN depth map), ``small`` (half size),
        ``hang`` (never answer).
        """
        with self._lock:
            self._corrupt.extend([(word, mode)] * times)

    # -- network -------------------------------------------------------------------------
    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped.is_set():
                conn.close()
                return
            with self._lock:
                busy = self._client is not None or self._offline
                if not busy:
                    self._client = conn
                    self.connections += 1
            if busy:  # the plugin rejects a second client; offline: the game is not up yet
                conn.close()
                continue
            if not self.unix_socket:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(frame(b"connected to FakeUnrealGame"))
            while True:
                raw = read_frame(conn)
                if raw is None:
                    break
                match = _REQUEST.match(raw)
                if match is None:
                    continue  # the plugin logs malformed messages and ignores them
                with self._lock:
                    if self._drop_after is not None:
                        if self._drop_after == 0:
                            self._drop_after = None
                            self._offline = self._offline_after_drop
                            break
                        self._drop_after -= 1
                command = match.group(2).decode("utf-8")
                self.commands.append(command)
                body = self.handle(command)
                if body is not None:  # None: a hung game, the request is never answered
                    conn.sendall(frame(match.group(1) + b":" + body))
        except OSError:
            pass
        finally:
            with self._lock:
                if self._client is conn:
                    self._client = None
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    # -- commands ------------------------------------------------------------------------
    def handle(self, command: str) -> bytes | None:
        """The reply body to one command (None: no reply)."""
        for cam in self.cameras.values():
            x, y, z = cam.location
            cam.location = (x, y, z - self.fall_cm_per_request)
        parts = command.split()
        words = set(re.split(r"[/\s]+", command))
        if words & self.missing:
            return f"error No handler found for URI '{command}'".encode()
        if command == "vget /unrealcv/version":
            return self.version.encode()
        if command == "vget /unrealcv/status":
            cam = self.cameras[0]
            return (
                f"Is Listening\nClient Connected\n{self.port}\nConfiguration\nConfig file: fake.ini\n"
                f"Port: {self.port}\nWidth: {self.width}\nHeight: {self.height}\nFOV: {cam.fov:.1f}\n"
                "EnableInput: true\nEnableRightEye: false"
            ).encode()
        m = re.match(r"^v(get|set) /camera/(\d+)/(\w+)$", parts[0] + " " + parts[1]) if len(parts) > 1 else None
        if m is None or int(m.group(2)) not in self.cameras:
            if m is not None:
                return b"error Invalid sensor id"
            return f"error No handler found for URI '{command}'".encode()
        verb, cam, what, args = m.group(1), self.cameras[int(m.group(2))], m.group(3), parts[2:]
        try:
            return self._camera_command(verb, cam, what, args, command)
        except ValueError:
            return b"error Argument Invalid"

    def _camera_command(self, verb: str, cam: _Camera, what: str, args: list[str], command: str) -> bytes | None:
        if verb == "set":
            values = [float(a) for a in args]
            if what == "location" and len(values) == 3:
                cam.location = tuple(np.asarray(values) + self.pose_offset_cm)
            elif what == "rotation" and len(values) == 3:
                cam.rotation = tuple(values)
            elif what == "fov" and len(values) == 1:
                cam.fov = values[0]
            else:
                return f"error No handler found for URI '{command}'".encode()
            return b"ok"
        if what in ("location", "rotation") and not args:
            return ("%.3f %.3f %.3f" % getattr(cam, what)).encode()
        if what == "fov" and not args:
            return ("%f" % cam.fov).encode()
        if what == "size" and not args:
            return f"{self.width} {self.height}".encode()
        depth_words = ("depth", "plane_depth") if self.depth_mode == "distance" else ("depth",)
        if what in ("lit", "normal", "object_mask") + depth_words and len(args) == 1:
            fmt = "npy" if what in depth_words else "png"
            if args[0] != fmt:
                return f"error Invalid filename type, filename {args[0]}".encode()
            return self._image(cam, what)
        return f"error No handler found for URI '{command}'".encode()

    def _render(self, camera: Camera):
        """Render ``camera``, reusing the previous render for the same camera (lit after depth)."""
        key = (camera.K.tobytes(), camera.c2w.tobytes(), camera.width, camera.height)
        if self._last_render is None or self._last_render[0] != key:
            start = time.perf_counter()
            self._last_render = (key, self.renderer.render(camera))
            self.render_seconds += time.perf_counter() - start
        return self._last_render[1]

    def _image(self, cam: _Camera, what: str) -> bytes | None:
        mode = None
        with self._lock:
            for i, (word, m) in enumerate(self._corrupt):
                if word == what:
                    mode = self._corrupt.pop(i)[1]
                    break
        if mode == "hang":
            return None
        w, h = (self.width // 2, self.height // 2) if mode == "small" else (self.width, self.height)
        camera = Camera(K_from_hfov(cam.fov, w, h), ue_to_c2w(np.array(cam.location), np.array(cam.rotation)), w, h)
        view = self._render(camera)
        depth_m = view.depth.astype(np.float64)
        if what in ("depth", "plane_depth"):
            cm = depth_m * 100.0
            if what == "depth" and self.depth_mode == "distance":
                cm = cm * _ray_lengths(camera)
            cm[depth_m <= 0] = NO_HIT_CM
            if mode == "nan":
                cm[:] = np.nan
            payload = cnpy_bytes(cm.astype(np.float32))
        else:
            if what == "lit":
                rgb = view.rgb
            elif what == "normal":
                rgb = _normals_from_depth(depth_m, camera)
            else:  # object mask: one colour per surface orientation, enough to exercise the path
                rgb = (np.round(_normals_from_depth(depth_m, camera) / 128.0) * 120).astype(np.uint8)
            if mode == "black":
                rgb = np.zeros_like(rgb)
            rgba = np.concatenate([rgb, np.zeros((h, w, 1), np.uint8)], axis=2)  # alpha carries nothing
            payload = png_bytes(rgba)
        if mode == "truncate":
            payload = payload[: len(payload) // 2]
        elif mode == "garbage":
            payload = b"\x89" + np.random.default_rng(len(payload)).bytes(len(payload))
        return payload


def _ray_lengths(camera: Camera) -> np.ndarray:
    """Distance / z-depth per pixel, computed independently of the code under test."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.K).T
    return np.linalg.norm(rays, axis=-1)


def _normals_from_depth(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """(H, W, 3) uint8 camera-space normals from depth gradients, encoded as (n + 1) / 2."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.K).T
    points = rays * depth[..., None]
    n = np.cross(np.gradient(points, axis=1), np.gradient(points, axis=0))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return np.clip((n + 1.0) * 127.5, 0, 255).astype(np.uint8)


def orbit_overrides(server: FakeUnrealCVServer, views: int, radius_cm: float = 80.0, **plan) -> dict:
    """Config overrides for a small orbit inside the server's scene (for ``load_config``).

    Short timeouts and backoffs keep fault tests fast.
    """
    centre = (np.asarray(server.scene.walk_lo) + np.asarray(server.scene.walk_hi)) / 2
    # Our world is Unreal's with Y mirrored, in metres (models.cameras).
    centre_ue = [float(centre[0] * 100), float(-centre[1] * 100), float(centre[2] * 100)]
    return {
        "connection": {"ports": [server.port], "connect_attempts": 3, "retry_backoff": 0.01,
                       "connect_timeout": 2.0, "request_timeout": 5.0},
        "plan": {"kind": "orbit", "views": views, "center": centre_ue, "radius": radius_cm, **plan},
    }


def main() -> None:
    """Serve a procedural scene until interrupted, to try `worldfm datagen unrealcv` without Unreal."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 192), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0, help="procedural scene seed")
    parser.add_argument("--kind", default="indoor", choices=("indoor", "outdoor"))
    args = parser.parse_args()
    server = FakeUnrealCVServer(args.seed, args.kind, *args.size, port=args.port).start()
    orbit = orbit_overrides(server, views=1, radius_cm=100.0)["plan"]
    print(f"serving {args.kind} scene {args.seed} on port {server.port}; try:\n"
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
