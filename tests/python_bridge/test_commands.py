"""The bridge's commands end to end: ``worldfm demo`` and ``worldfm render-path``, plus camera paths."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from bridge_views import make_views
from datagen.dataset import read_scene, write_scene
from models.scene import Scene
from python_bridge.camera_path import CameraPath, CameraPathError, interpolate_poses, load_camera_path, save_camera_path
from python_bridge.cli import main
from server_stats import wait_for_guard

META_JSON = Path(__file__).parents[1] / "data" / "worldfm-demo" / "meta.json"


def test_demo_writes_video_and_strip_without_a_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--no-model", "--frames", "3", "--views", "2", "--size", "32", "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "frames/s sustained" in report and "anchor_ms" in report and "client latency" in report
    assert "mode anchor" in report  # the fallback, and it says so
    strip = imageio.imread(out / "strip.png")
    assert strip.shape[1] == 4 * 32 and strip.shape[0] % 32 == 0
    assert len(imageio.mimread(out / "flythrough.mp4")) == 3


def test_demo_uses_the_shipped_model_by_default(tmp_path, capsys):
    assert main(["demo", "--frames", "2", "--views", "2", "--out", str(tmp_path / "demo")]) == 0
    assert "mode model (model demo-256" in capsys.readouterr().out


def test_demo_with_the_tiny_model(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--model",
                str(tiny_model_dir),
                "--frames",
                "2",
                "--views",
                "2",
                "--size",
                "32",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "mode model" in report and "generate_ms" in report and "tiny-untrained" in report


@pytest.fixture
def dataset_scene(tmp_path) -> Path:
    return write_scene(Scene("wall", make_views(3, width=32, height=24)), tmp_path / "scene")


def test_render_path_is_frame_accurate(tmp_path, dataset_scene, tiny_model_dir):
    views = make_views(3, width=32, height=24)
    poses = interpolate_poses(np.stack([v.camera.c2w for v in views]), 4)
    path_file = tmp_path / "path.json"
    save_camera_path(path_file, CameraPath(poses, views[0].camera.K, (32, 24), fps=12))
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert (
            main(
                [
                    "render-path",
                    str(dataset_scene),
                    "--path",
                    str(path_file),
                    "--out",
                    str(out),
                    "--model",
                    str(tiny_model_dir),
                    "--steps",
                    "2",
                    "--seed",
                    "9",
                ]
            )
            == 0
        )
        frames = sorted(out.glob("frame_*.png"))
        assert [f.name for f in frames] == [f"frame_{i:05d}.png" for i in range(4)]
        assert (out / "path.mp4").is_file()
        runs.append([imageio.imread(f) for f in frames])
    for a, b in zip(*runs, strict=True):
        assert a.shape == (24, 32, 3)
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], runs[0][3])


@pytest.mark.parametrize("when", ["build", "idle"])
def test_render_path_with_the_fill_guard_writes_what_the_guarded_server_sends(tmp_path, tiny_model_dir, make_server,
                                                                              when):
    """``--fill-guard`` on both sides: render-path measures the guard before its first frame, the
    server in the scene's build ("build") or in the first pause after it ("idle", the default,
    serving the model until then); from then on both choose alike (the untrained tiny model
    loses to the fill: anchor frames)."""
    from python_bridge.client import Client
    from python_bridge.engine import Engine
    from python_bridge.pipeline import FramePipeline

    views = make_views(8, width=32, height=24)  # enough views to leave windows of 4 out
    scene_dir = write_scene(Scene("wall", views), tmp_path / "scene")
    poses = interpolate_poses(np.stack([v.camera.c2w for v in views[:3]]), 3)
    path_file = tmp_path / "path.json"
    save_camera_path(path_file, CameraPath(poses, views[0].camera.K, (32, 24), fps=12))
    out = tmp_path / "out"
    args = ["render-path", str(scene_dir), "--path", str(path_file), "--out", str(out), "--model", str(tiny_model_dir),
            "--seed", "9", "--fill-guard"]
    assert main(args) == 0
    offline = [imageio.imread(f) for f in sorted(out.glob("frame_*.png"))]
    path = load_camera_path(path_file)  # the poses and K as the file holds them (JSON decimals)
    server = make_server(FramePipeline(Engine(tiny_model_dir)), fill_guard=when, fill_guard_idle_s=0.2)
    with Client(server.endpoint, timeout_s=60) as c:
        scene = c.open_scene(read_scene(scene_dir).frames).scene  # as render-path reads them (depth as stored)
        if when == "idle":
            assert c.render(scene, path.poses[0], path.K, path.size, seed=9).mode == "model"  # not decided yet
        status = wait_for_guard(c, ("decided", "unmeasured"), timeout_s=60)
        assert status["state"] == "decided" and status["serves"] == "anchor", status
        assert status["fill_psnr"] > status["model_psnr"]
        served = [c.render(scene, pose, path.K, path.size, seed=9 + i) for i, pose in enumerate(path.poses)]
    assert [f.mode for f in served] == ["anchor"] * 3
    for a, b in zip(offline, served, strict=True):
        np.testing.assert_array_equal(a, b.rgb)


def test_render_path_renders_with_the_anchor_compile_held(tmp_path, dataset_scene, monkeypatch):
    """Offline and never idle, render-path holds the splat kernels' background compile for every
    frame (python_bridge.batch.JobRunner says why), as batch jobs do."""
    from models.anchor import splat
    from python_bridge.pipeline import FramePipeline

    views = make_views(3, width=32, height=24)
    path_file = tmp_path / "path.json"
    save_camera_path(path_file, CameraPath(np.stack([v.camera.c2w for v in views]), views[0].camera.K, (32, 24)))
    holds = []
    render = FramePipeline.render

    def spy(self, *args, **kwargs):
        holds.append(splat._holding[0])
        return render(self, *args, **kwargs)

    monkeypatch.setattr(FramePipeline, "render", spy)
    assert main(["render-path", str(dataset_scene), "--path", str(path_file), "--out", str(tmp_path / "out"),
                 "--no-model"]) == 0
    assert len(holds) == 3 and min(holds) >= 1, holds
    assert splat._holding[0] == 0


def test_render_path_reports_bad_inputs(tmp_path, dataset_scene, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"K": np.eye(3).tolist()}))
    assert main(["render-path", str(dataset_scene), "--path", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "'c2w'" in capsys.readouterr().err


def test_camera_path_formats(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"width": 64, "height": 32, "hfov_deg": 90.0, "c2w": [np.eye(4).tolist()] * 2}))
    cp = load_camera_path(path)
    assert cp.size == (64, 32) and len(cp) == 2 and cp.K[0, 0] == pytest.approx(32.0) and cp.fps == 24.0
    path.write_text(json.dumps({"K": np.eye(3).tolist(), "c2w": [[float("nan")] * 4] * 4}))
    with pytest.raises(CameraPathError, match="finite"):
        load_camera_path(path)
    path.write_text(json.dumps({"c2w": [np.eye(4).tolist()]}))
    with pytest.raises(CameraPathError, match="hfov_deg"):
        load_camera_path(path)


@pytest.mark.skipif(not META_JSON.is_file(), reason="WorldFM demo meta.json fixture not in this checkout")
def test_published_meta_json_is_a_camera_path():
    cp = load_camera_path(META_JSON)
    meta = json.loads(META_JSON.read_text())
    assert len(cp) == len(meta["c2w"]) and cp.size == (512, 512)
    np.testing.assert_allclose(cp.poses[3], meta["c2w"][3])


def test_interpolation_passes_through_keyframes():
    views = make_views(3)
    keys = np.stack([v.camera.c2w for v in views])
    poses = interpolate_poses(keys, 5)  # keyframes land on outputs 0, 2, 4
    for out_i, key_i in ((0, 0), (2, 1), (4, 2)):
        np.testing.assert_allclose(poses[out_i], keys[key_i], atol=1e-9)
    mid = poses[1]
    np.testing.assert_allclose(mid[:3, 3], (keys[0, :3, 3] + keys[1, :3, 3]) / 2)
    np.testing.assert_allclose(mid[:3, :3] @ mid[:3, :3].T, np.eye(3), atol=1e-9)
    # Halfway in rotation too: the same angle from both neighbours.
    angle = lambda a, b: np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))  # noqa: E731
    assert angle(keys[0, :3, :3], mid[:3, :3]) == pytest.approx(angle(mid[:3, :3], keys[1, :3, :3]), abs=1e-9)
    assert angle(keys[0, :3, :3], mid[:3, :3]) > 0


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys

    import zmq

    from python_bridge.client import Client

    probe = zmq.Context.instance().socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "python_bridge.cli", "serve", "--no-model", "--bind", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=30, retries=0) as c:
            assert c.welcome["model"]["name"] == "anchor-fallback"
            assert c.ping() > 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "listening on" in out and "server stopped" in err


def test_serve_refuses_an_open_bind_without_keys(capsys):
    assert main(["serve", "--bind", "tcp://0.0.0.0:5599"]) == 2
    assert "--insecure" in capsys.readouterr().err


def test_make_keys_writes_secrets_only_their_owner_can_read(tmp_path, capsys):
    import stat

    import zmq.auth

    folder = tmp_path / "keys"
    assert main(["serve", "--make-keys", str(folder)]) == 0
    for name in ("server", "client"):
        assert stat.S_IMODE((folder / f"{name}.key_secret").stat().st_mode) == 0o600
        public, secret = zmq.auth.load_certificate(folder / f"{name}.key_secret")  # the documented format
        assert len(public) == len(secret) == 40
        assert zmq.auth.load_certificate(folder / f"{name}.key")[1] is None  # the public file holds no secret


def test_serve_says_why_it_cannot_listen(capsys):
    import zmq

    taken = zmq.Context.instance().socket(zmq.ROUTER)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        assert main(["serve", "--no-model", "--bind", f"tcp://127.0.0.1:{port}"]) == 2
    finally:
        taken.close(0)
    assert f"cannot listen on tcp://127.0.0.1:{port}" in capsys.readouterr().err


def test_demo_succeeds_beside_four_busy_processes(tmp_path):
    """The README's main command on a busy machine: four processes spin beside it, and the demo's
    server expires idle sessions after 2 s, far less than a scene build takes under such load.
    The demo used to fail there with no_session (its session expired during its own build)."""
    import json
    import subprocess
    import sys

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        out = tmp_path / "demo"
        done = subprocess.run(
            [sys.executable, "-m", "python_bridge.cli", "demo", "--frames", "4", "--views", "6",
             "--client-timeout", "2", "--out", str(out)],
            capture_output=True, text=True, timeout=900,
        )
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 4 and report["mode"] == "model"
    startup = report["startup_s"]
    assert startup["imports"] < startup["engine_ready"] < startup["anchor_ready"] < startup["first_frame_received"]


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_compile_when_idle_refuses_what_is_not_a_duration(command, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--compile-when-idle", value])
    assert exit_.value.code == 2
    assert "--compile-when-idle" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_fill_guard_when_is_idle_unless_asked(command, capsys):
    """``--fill-guard`` takes idle (the default), build (also the bare flag, as before there was a
    choice) or off, and refuses anything else before any work."""
    from python_bridge.cli import build_parser
    from python_bridge.server import ServerConfig

    parse = build_parser().parse_args
    assert parse([command]).fill_guard == "idle" == ServerConfig().fill_guard
    assert parse([command, "--fill-guard"]).fill_guard == "build"
    assert parse([command, "--fill-guard", "off"]).fill_guard == "off"
    with pytest.raises(SystemExit) as exit_:
        main([command, "--fill-guard", "later"])
    assert exit_.value.code == 2 and "invalid choice: 'later'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fill_guard must be one of idle, build, off"):
        ServerConfig(fill_guard="later")
