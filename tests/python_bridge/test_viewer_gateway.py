"""The viewer gateway without a browser: its security checks, the page protocol, latest-wins.

A real bridge server (with the stub pipeline) and the real gateway run here; an aiohttp
client plays the page, speaking the messages of docs/viewer.md.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time

import aiohttp
import numpy as np
import pytest
from bridge_views import make_views
from stub_pipeline import StubPipeline

from datagen.dataset import write_scene
from models.cameras import look_at
from models.scene import Camera, Frame, Scene
from python_bridge.viewer.catalog import Catalog, SceneNameError, start_view
from python_bridge.viewer.gateway import Gateway, parse_pose


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "root"
    write_scene(Scene("wall", make_views(3)), root / "wall")
    (tmp_path / "outside").mkdir()
    write_scene(Scene("secret", make_views(2)), tmp_path / "outside" / "secret")
    return root


def unpack(data: bytes) -> tuple[dict, list[bytes]]:
    """A binary page message: uint32 LE header length, JSON header, parts (docs/viewer.md)."""
    (n,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + n])
    parts, at = [], 4 + n
    for length in header["parts"]:
        parts.append(data[at : at + length])
        at += length
    assert at == len(data)
    return header, parts


class Page:
    """An aiohttp WebSocket client speaking the page's side of the protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next(self, kind: str, timeout: float = 30.0) -> dict | tuple[dict, list[bytes]]:
        """The next message of type ``kind`` (JSON dict, or (header, parts) for binary ones)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data["type"] == kind:
                        return data
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    header, parts = unpack(msg.data)
                    if header["type"] == kind:
                        return header, parts
                else:
                    raise AssertionError(f"socket closed while waiting for {kind}: {msg}")

    async def send(self, message: dict) -> None:
        await self.ws.send_str(json.dumps(message))


def run_gateway(endpoint: str, catalog: Catalog, first: str, test) -> None:
    """Start a gateway on a free port, run ``await test(gateway, base_url, session)``, stop it."""

    async def main() -> None:
        gateway = Gateway(endpoint, catalog, first, port=0)
        await gateway.start()
        try:
            async with aiohttp.ClientSession() as session:
                await test(gateway, f"http://127.0.0.1:{gateway.port}", session)
        finally:
            await gateway.stop()

    asyncio.run(main())


def origin(base: str) -> dict:
    return {"Origin": base}


def test_page_and_socket_need_the_token_the_origin_and_the_host(make_server, data_root):
    server = make_server()

    async def test(gateway, base, session):
        token = gateway.token
        async with session.get(f"{base}/") as r:
            assert r.status == 403 and "token" in await r.text()
        async with session.get(f"{base}/?token=wrong") as r:
            assert r.status == 403
        async with session.get(f"{base}/?token={token}") as r:
            assert r.status == 200 and "viewer.js" in await r.text()
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"
        # A DNS-rebinding page reaches the gateway under another host name.
        async with session.get(f"{base}/?token={token}", headers={"Host": "evil.example:80"}) as r:
            assert r.status == 403
        # Static files: a fixed list, nothing else of the file system.
        async with session.get(f"{base}/static/viewer.js") as r:
            assert r.status == 200 and "FlyCamera" in await r.text()
        for name in ("gateway.py", "..%2Fgateway.py", "index.html"):
            async with session.get(f"{base}/static/{name}") as r:
                assert r.status == 404
        # The socket: right token and the page's own origin only.
        for url, headers in (
            (f"{base}/ws?token=wrong", origin(base)),
            (f"{base}/ws?token={token}", {"Origin": "http://evil.example"}),
            (f"{base}/ws?token={token}", {}),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(url, headers=headers)
            assert err.value.status == 403
        async with session.ws_connect(f"{base}/ws?token={token}", headers=origin(base)) as ws:
            welcome = await Page(ws).next("welcome")
            assert welcome["model"]["name"] == "stub"
        async with session.get(f"{base}/recordings/nope/path.json?token={token}") as r:
            assert r.status == 404

    run_gateway(server.endpoint, Catalog(data_root), "data:wall", test)


def test_oversized_and_malformed_messages_are_refused(make_server, data_root):
    server = make_server()

    async def test(gateway, base, session):
        async with session.ws_connect(f"{base}/ws?token={gateway.token}", headers=origin(base)) as ws:
            page = Page(ws)
            await page.next("welcome")
            for bad, says in (
                ("not json", "Expecting value"),
                ({"type": "pose", "n": 1, "c2w": [1] * 16}, "last row"),
                ({"type": "pose", "n": 1, "c2w": np.diag([1.0, 1.0, -1.0, 1.0]).ravel().tolist()}, "det(R)"),
                ({"type": "pose", "n": -1, "c2w": np.eye(4).ravel().tolist()}, "'n'"),
                ({"type": "pose", "n": 1, "c2w": np.eye(4).ravel().tolist(), "steps": 7}, "steps"),
                ({"type": "open", "scene": "../outside/secret"}, "no scene"),
                ({"type": "open", "scene": "data:../outside/secret"}, "no scene"),
                ({"type": "open", "scene": str(data_root / "wall")}, "no scene"),
                ({"type": "render_video", "rec": "nope"}, "no such recording"),
                ({"type": "launch"}, "unknown message type"),
            ):
                await ws.send_str(bad if isinstance(bad, str) else json.dumps(bad))
                error = await page.next("error")
                assert says in error["message"], (bad, error)
            # Over the server's header cap: the gateway closes the socket (1009, message too big).
            await ws.send_str(json.dumps({"type": "pose", "pad": "x" * gateway.limits.max_header_bytes}))
            msg = await ws.receive()
            while msg.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                msg = await ws.receive()
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG

    run_gateway(server.endpoint, Catalog(data_root), "data:wall", test)


def test_open_render_and_latest_wins_toward_a_page_that_does_not_ack(make_server, stub, data_root):
    server = make_server(stub)

    async def test(gateway, base, session):
        async with session.ws_connect(f"{base}/ws?token={gateway.token}", headers=origin(base)) as ws:
            page = Page(ws)
            welcome = await page.next("welcome")
            assert {"name": "data:wall", "kind": "dataset"} in welcome["scenes"]
            assert not any("secret" in s["name"] for s in welcome["scenes"])
            await page.send({"type": "open", "scene": "data:wall"})
            progress = await page.next("progress")
            assert progress["name"] == "data:wall" and progress["stage"] in ("read", "upload", "build")
            scene = await page.next("scene")
            assert scene["views"] == 3 and scene["size"] == [32, 24]
            _, parts = await page.next("thumbnail")
            assert parts[0][:2] == b"\xff\xd8"  # JPEG
            start = np.asarray(scene["start"]).reshape(4, 4)
            # 20 poses, each rendered by the server (we wait for its render to start before the
            # next), and no acks: the page gets FRAME_WINDOW frames, the gateway keeps the newest.
            # The first two wait for their frame too: a frame that arrives while the gateway
            # is still sending the one before it is replaced by a newer one (latest wins), so
            # only then is it certain which frames fill the window.
            loop = asyncio.get_running_loop()
            frames = []
            for n in range(1, 21):
                pose = start.copy()
                pose[0, 3] += 0.01 * n
                await page.send({"type": "pose", "n": n, "c2w": pose.ravel().tolist()})
                assert await loop.run_in_executor(None, stub.started.acquire, True, 10.0)
                if n <= 2:
                    frames.append((await page.next("frame"))[0]["n"])
            assert frames == [1, 2]
            with pytest.raises(TimeoutError):  # 18 more frames came to the gateway; none is sent
                await page.next("frame", timeout=1.0)
            await page.send({"type": "ack"})
            header, parts = await page.next("frame")
            assert header["n"] == 20  # the newest pose, not the next one in line
            np.testing.assert_allclose(np.asarray(header["c2w"]).reshape(4, 4)[0, 3], start[0, 3] + 0.2)
            assert parts[0][:2] == b"\xff\xd8" and len(parts) == 1  # JPEG, no anchor asked
            assert {"queue_ms", "total_ms", "anchor_ms"} <= set(header["timings"])
            with pytest.raises(TimeoutError):  # and nothing else is waiting
                await page.next("frame", timeout=0.5)

    run_gateway(server.endpoint, Catalog(data_root), "data:wall", test)


def test_a_recording_downloads_as_a_camera_path(make_server, data_root, tmp_path):
    from python_bridge.camera_path import load_camera_path

    server = make_server()

    async def test(gateway, base, session):
        async with session.ws_connect(f"{base}/ws?token={gateway.token}", headers=origin(base)) as ws:
            page = Page(ws)
            await page.next("welcome")
            await page.send({"type": "open", "scene": "data:wall"})
            scene = await page.next("scene")
            start = np.asarray(scene["start"]).reshape(4, 4)
            t0 = time.perf_counter()
            await page.send({"type": "record", "on": True})
            assert (await page.next("recording"))["on"] is True
            moved = start.copy()
            moved[2, 3] += 0.5
            await asyncio.sleep(0.3)
            await page.send({"type": "pose", "n": 1, "c2w": moved.ravel().tolist()})
            await asyncio.sleep(0.3)
            await page.send({"type": "record", "on": False})
            done = await page.next("recorded")
            elapsed = time.perf_counter() - t0
            async with session.get(base + done["json"]) as r:
                assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
                (tmp_path / "path.json").write_bytes(await r.read())
            path = load_camera_path(tmp_path / "path.json")
            assert len(path) == done["frames"] and 0.6 * 24 - 1 <= len(path) <= elapsed * 24 + 1  # 24 poses/s
            assert path.fps == 24 and path.size == (32, 24)
            np.testing.assert_allclose(path.poses[0], start)  # the still start is recorded too
            np.testing.assert_allclose(path.poses[-1], moved)
            # The MP4 exists only once rendered.
            async with session.get(base + done["json"].replace("path.json", "path.mp4")) as r:
                assert r.status == 404

    run_gateway(server.endpoint, Catalog(data_root), "data:wall", test)


@pytest.mark.parametrize("mode", ["model", "anchor"])
def test_the_mp4s_command_asks_for_the_fill_guard_when_its_frames_were_the_fill(make_server, data_root, mode):
    """A server whose fill guard chose the fill for the scene sends ``mode: anchor`` frames; the MP4
    holds them, so the render-path line sent with ``video_ready`` gains ``--fill-guard`` (with
    which render-path measures the guard and chooses alike). Frames of the model keep the line."""

    class Served(StubPipeline):
        def render(self, *args, **kwargs):
            frame = super().render(*args, **kwargs)
            frame.mode = mode
            return frame

    server = make_server(Served(), fill_guard="off")

    async def test(gateway, base, session):
        async with session.ws_connect(f"{base}/ws?token={gateway.token}", headers=origin(base)) as ws:
            page = Page(ws)
            await page.next("welcome")
            await page.send({"type": "open", "scene": "data:wall"})
            await page.next("scene")
            await page.send({"type": "record", "on": True})
            await page.next("recording")
            await asyncio.sleep(0.2)
            await page.send({"type": "record", "on": False})
            done = await page.next("recorded")
            assert done["command"].endswith("--out render --steps 1")
            await page.send({"type": "render_video", "rec": done["rec"]})
            ready = await page.next("video_ready", timeout=60)
            guarded = done["command"].replace("--out render", "--out render --fill-guard")
            assert ready["command"] == (guarded if mode == "anchor" else done["command"])
            await page.send({"type": "render_video", "rec": done["rec"]})  # asked again: the same line
            assert (await page.next("video_ready"))["command"] == ready["command"]

    run_gateway(server.endpoint, Catalog(data_root), "data:wall", test)


def test_catalog_lists_only_names_it_resolves(data_root):
    catalog = Catalog(data_root)
    names = [s["name"] for s in catalog.listing()]
    assert "procedural:0" in names and "data:wall" in names
    assert catalog.resolve("data:wall").folder == (data_root / "wall").resolve()
    assert catalog.resolve("procedural:7:outdoor").procedural_kind == "outdoor"
    for bad in ("data:secret", "data:../outside/secret", "/etc", "procedural:-1", "procedural:1:moon", "", None, 3):
        with pytest.raises(SceneNameError):
            catalog.resolve(bad)
    assert catalog.default() == "data:wall"
    assert Catalog().default() == "procedural:0"


def test_start_view_finds_up_in_a_turned_world():
    """Cameras looking around with some pitch in a world whose up is +x: up comes out +x."""
    rng = np.random.default_rng(0)
    frames = []
    for yaw in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        # Build the pose in a Z-up world, then turn the world so its up is +x.
        target = np.array([np.cos(yaw), np.sin(yaw), -0.4 + 0.1 * rng.standard_normal()])
        c2w = look_at(np.zeros(3), target, np.array([0.0, 0.0, 1.0]))
        turn = np.eye(4)
        turn[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # z -> x
        c2w = turn @ c2w
        cam = Camera(K=np.array([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]]), c2w=c2w, width=32, height=24)
        frames.append(Frame(np.zeros((24, 32, 3), np.uint8), cam, np.full((24, 32), 4.0, np.float32)))
    view = start_view(frames, (64, 48))
    np.testing.assert_allclose(view.up, [1, 0, 0], atol=1e-9)
    assert view.speed == pytest.approx(1.0)  # a quarter of the 4 m depth
    np.testing.assert_allclose(view.K, [[40, 0, 32], [0, 40, 24], [0, 0, 1]])


def test_start_view_keeps_z_up_for_pitched_views_facing_one_way():
    """A few views looking down at one spot from nearly one direction: the x axes alone
    cannot tell up, but they are all level in Z, so up is Z (not tilted by the pitch)."""
    frames = []
    for k in range(4):
        c2w = look_at(np.array([0.05 * k, -3.0, 2.0]), np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        cam = Camera(K=np.array([[20.0, 0, 16], [0, 20, 12], [0, 0, 1]]), c2w=c2w, width=32, height=24)
        frames.append(Frame(np.zeros((24, 32, 3), np.uint8), cam))
    view = start_view(frames, (32, 24))
    np.testing.assert_allclose(view.up, [0, 0, 1])
    assert view.speed == 1.0  # no depth: 1 m/s


def test_parse_pose_accepts_a_rigid_pose():
    pose = look_at([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    request = parse_pose({"type": "pose", "n": 5, "c2w": pose.ravel().tolist(), "steps": 2, "anchor": True}, [1, 2])
    np.testing.assert_allclose(request.c2w, pose)
    assert (request.n, request.steps, request.anchor) == (5, 2, True)
