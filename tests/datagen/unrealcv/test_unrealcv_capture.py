"""Capture from stand-in games of each UnrealCV build, end to end.

The stand-in renders from its own Unreal camera model, so a view whose stored pose or
intrinsics disagree with what the game rendered fails `_check_scene`'s re-render.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODES
from fake_unrealcv_server import FakeUnrealCVServer, Raw, orbit_overrides

from datagen.dataset import read_scene
from datagen.unrealcv.config import load_config
from datagen.unrealcv.planning import plan_views
from datagen.unrealcv.sink import CAPTURE_LOG
from datagen.unrealcv.workers import capture_all
from models.cameras import K_from_hfov
from models.scene import Camera


def _config(server: FakeUnrealCVServer, views: int, capture: dict | None = None, connection: dict | None = None,
            **plan):
    overrides = orbit_overrides(server, views, **plan)
    overrides["capture"] = capture or {}
    overrides["connection"].update(connection or {})
    return load_config(None, overrides)


def _check_scene(result, server: FakeUnrealCVServer, config, views: int, as_planned: bool = True) -> None:
    """The scene is complete, none twice, each frame is what the game rendered (and, with
    ``as_planned``, at its planned pose)."""
    assert result.complete, result.error
    scene = read_scene(result.scene)
    assert len(scene) == views
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    index_of = {name: e["index"] for name, e in log.items() if "index" in e}
    assert sorted(index_of.values()) == list(range(views))  # every index once: no loss, no duplicate
    planned = {v.name: v for v in plan_views(config.plan)}
    K = K_from_hfov(90.0, server.width, server.height)
    for name, index in index_of.items():
        frame = scene.frames[index]
        if as_planned:
            np.testing.assert_allclose(frame.camera.c2w, planned[name].c2w, atol=1e-5)
        np.testing.assert_allclose(frame.camera.K, K)
        # Re-render at the stored camera through our own convention: the pixels must be the
        # stand-in's, which it cast from the Unreal pose with its own camera model.
        truth = server.renderer.render(Camera(K, frame.camera.c2w, server.width, server.height))
        assert np.mean(np.abs(frame.rgb.astype(int) - truth.rgb.astype(int)) > 2) < 0.02
        # The game's depth is half-float centimetres of z-depth, or of the distance (<= 2 z at
        # 90 degrees FOV) on 0.3.x: half a step of that, plus the dataset's millimetres.
        step_m = np.spacing(np.float16(truth.depth * 200)).astype(np.float64) / 100
        close = np.abs(frame.depth - truth.depth) <= step_m / 2 + 6e-4
        assert close.mean() > 0.98


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_capture_writes_a_readable_scene_whose_poses_round_trip(game, tmp_path):
    server = game()
    config = _config(server, views=6, neighbours=1, capture={"normals": True, "object_masks": True})
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 6)
    assert result.stats.views == 6 and result.stats.retries == 0 and result.stats.reconnects == 0
    assert sorted(p.name for p in (result.scene / "normals").iterdir()) == [f"{i:05d}.png" for i in range(6)]
    assert len(list((result.scene / "object_masks").iterdir())) == 6
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert [log[f"view_{i:05d}"]["group"] for i in range(6)] == [0, 0, 1, 1, 2, 2]  # view + neighbour


@pytest.mark.parametrize("mode", MODES)
def test_connection_dropped_mid_capture_reconnects_and_loses_nothing(game, tmp_path, mode):
    # 5.2 on Linux never serves TCP again after the first client: the reconnect goes to its socket.
    server = game(behaves_like=mode)
    config = _config(server, views=6)
    server.drop_after(30)  # a few views in, in the middle of one
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 6)
    assert server.transports == (["tcp", "unix"] if mode == "5.2-linux" else ["tcp", "tcp"])
    assert result.stats.reconnects == 1 and result.stats.transport.startswith(server.transports[-1])


@pytest.mark.parametrize("mode", MODES)
def test_game_crash_then_rerun_resumes_without_recapturing(game, tmp_path, mode):
    server = game(behaves_like=mode)
    config = _config(server, views=6)
    server.drop_after(30, crash=True)  # the game dies and stays down (5.2 leaves its socket file)
    [first] = capture_all(config, tmp_path)
    assert not first.complete and "no UnrealCV server" in first.error
    done_before = first.stats.views
    assert 0 < done_before < 6
    server.restart()  # a new game process: TCP first again
    server.commands.clear()
    [second] = capture_all(config, tmp_path)
    _check_scene(second, server, config, 6)
    assert second.stats.resumed == done_before and second.stats.views == 6 - done_before
    assert second.stats.transport.startswith("tcp:")
    captures = [c for c in server.commands if c.endswith("lit png")]
    assert len(captures) == 6 - done_before  # finished views were not captured again


def test_resumed_over_the_unix_socket_into_the_same_folder_byte_identical(game, tmp_path):
    """5.2 on Linux: the first run goes over TCP, the rerun can only use the socket."""
    server = game(behaves_like="5.2-linux")
    reference_game = game(behaves_like="4.27")  # another build, the same level: the same bytes
    config = _config(server, views=6)
    [reference] = capture_all(_config(reference_game, views=6), tmp_path / "reference")
    stop, done = threading.Event(), []

    def progress(n: int) -> None:  # stop after the second view, as Ctrl-C would
        done.append(n)
        if sum(done) == 2:
            stop.set()

    [first] = capture_all(config, tmp_path / "out", progress, stop)
    assert first.stats.views == 2 and first.error == "stopped; rerun the same command to resume"
    [second] = capture_all(config, tmp_path / "out")
    _check_scene(second, server, config, 6)
    assert first.stats.transport.startswith("tcp:") and second.stats.transport.startswith("unix:")
    assert second.scene == first.scene and second.stats.resumed == 2 and second.stats.views == 4
    assert _files(second.scene) == _files(reference.scene)


@pytest.mark.parametrize(
    "word, mode", [("lit", "truncate"), ("lit", "garbage"), ("lit", "black"), ("lit", "small"),
                   ("depth", "garbage"), ("depth", "nan"), ("depth", "truncate")]
)
def test_corrupt_payload_is_retried(game, tmp_path, word, mode):
    server = game()
    config = _config(server, views=3)
    server.corrupt(word, mode, times=2)
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3)
    assert result.stats.retries == 2 and result.stats.rejected == 0


def test_persistently_corrupt_view_is_rejected_and_replaced(game, tmp_path):
    server = game()
    config = _config(server, views=3, capture={"retries": 1})
    server.corrupt("lit", "garbage", times=2)  # the first view fails both tries
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3)
    assert result.stats.rejected == 1 and "invalid capture" in next(iter(result.stats.reasons))
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert "rejected" in log["view_00000"]


@pytest.mark.parametrize("mode", MODES)
def test_transient_plugin_errors_are_retried_with_backoff(game, tmp_path, mode):
    server = game(behaves_like=mode)
    config = _config(server, views=3)
    server.fail("lit", "Captured data is empty", times=2)  # the render target is not ready yet
    server.fail("location", "Argument Invalid", times=2)  # the pawn is briefly invalid
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3)
    assert result.stats.error_retries == 4 and result.stats.reconnects == 0 and result.stats.rejected == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_transient_error_that_does_not_pass_stops_with_a_clear_message(game, tmp_path, mode):
    server = game(behaves_like=mode)
    config = _config(server, views=2, connection={"error_retries": 3})
    server.fail("lit", "Captured data is empty", times=99)
    start = time.perf_counter()
    [result] = capture_all(config, tmp_path)
    assert not result.complete and result.stats.views == 0
    assert "kept answering 'error Captured data is empty' to 'vget /camera/0/lit png' (4 tries over" in result.error
    assert "render target is not ready" in result.error
    assert len([c for c in server.commands if c.endswith("lit png")]) == 4  # bounded: then it stops
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("mode", MODES)
def test_a_reply_to_an_earlier_connection_is_dropped_without_waiting_for_the_timeout(game, tmp_path, mode):
    server = game(behaves_like=mode)
    # A long timeout: were the capture to wait for it, it would count a timeout (and take 30 s).
    config = _config(server, views=4, connection={"request_timeout": 30.0})
    server.drop_after(20, late_reply=True)  # that request is answered to the next connection
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 4)
    assert result.stats.stale_replies == 1 and result.stats.timeouts == 0 and result.stats.reconnects == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_camera_the_game_lacks_is_reported(game, tmp_path, mode):
    server = game(behaves_like=mode)
    [result] = capture_all(_config(server, views=2, capture={"camera_id": 7}), tmp_path)
    assert not result.complete and "the game has no such camera: 'vget /camera/7/location'" in result.error
    assert "`vget /cameras` lists the cameras" in result.error


def test_missing_command_stops_with_a_clear_error(game, tmp_path):
    server = game(missing=("normal",))
    [result] = capture_all(_config(server, views=2, capture={"normals": True}), tmp_path)
    assert not result.complete
    assert "does not support 'vget /camera/0/normal png'" in result.error


@pytest.mark.parametrize("missing", [("size",), ("size", "status")])
def test_resolution_falls_back_to_the_status_then_to_the_first_image(game, tmp_path, missing):
    server = game(missing=missing)
    config = _config(server, views=2)
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 2)


def test_missing_fov_stops_with_a_clear_error(game, tmp_path):
    # Neither `fov` (4.22+) nor `horizontal_fieldofview` (0.3.x): no intrinsics, no capture.
    server = game(missing=("fov", "horizontal_fieldofview"))
    [result] = capture_all(_config(server, views=2), tmp_path)
    assert not result.complete and "does not support 'vget /camera/0/fov'" in result.error


@pytest.mark.parametrize(
    "mode, options, depth_mode, used",
    [("5.2-linux", {}, "auto", "depth"),  # z-depth
     ("master", {}, "auto", "depth"),  # distance to the centre: plane_depth answers an empty payload
     ("master", {"plane_depth": True}, "auto", "plane_depth"),  # a build with that mode enabled
     ("master", {}, "distance", "depth")],
)
def test_0_3_builds_are_detected_and_their_depth_becomes_z_depth(game, tmp_path, mode, options, depth_mode, used):
    server = game(behaves_like=mode, **options)
    config = _config(server, views=3, capture={"depth_mode": depth_mode})
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3)
    captures = {c.split()[1].rsplit("/", 1)[1] for c in server.commands[-12:] if c.endswith("npy")}
    assert captures == {used}
    legacy = mode == "master"
    assert result.stats.plugin == f"UnrealCV {server.behaviour.version}, " + (
        "0.3.x GTCaptureComponent commands" if legacy else "FusionCamSensor commands")
    asked = {c.split()[1].rsplit("/", 1)[1] for c in server.commands}
    assert ("horizontal_fieldofview" in asked and "status" in asked) == legacy


@pytest.mark.parametrize("mode", MODES)
def test_depth_holes_where_the_ground_is_are_flagged_with_what_to_do(game, tmp_path, mode):
    # Outdoors, 4.22+ builds render no depth for the Landscape (the ground) while the RGB shows it.
    server = game(behaves_like=mode, scene_kind="outdoor", scene_seed=2)
    config = _config(server, views=2, spare=1.0, radius_cm=150.0, capture={"min_valid_depth": 0.0})
    [result] = capture_all(config, tmp_path)
    if mode == "master":
        _check_scene(result, server, config, 2)
        return
    assert not result.complete and result.stats.reasons == {"depth holes": 2}
    assert "2 views were rejected for depth holes" in result.error
    assert "replace the Landscape with a Static Mesh actor" in result.error
    assert "`vset /object/<name>/color R G B`" in result.error and "max_depth_holes" in result.error


@pytest.mark.parametrize("mode", ["5.2-linux", "master"])
def test_pose_the_game_moves_is_recorded_as_rendered(game, tmp_path, mode):
    offset = np.array([3.0, -2.0, 1.0])  # cm, as a game pushing the pawn out of collision
    tilt = (4.0, -3.0, 12.0)  # pitch, yaw, roll: a camera mounted tilted on the pawn
    server = game(behaves_like=mode, pose_offset_cm=tuple(offset), rotation_offset_deg=tilt)
    config = _config(server, views=3, capture={"settle_polls": 2})
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3, as_planned=False)  # the pixels match the stored, rolled pose
    scene = read_scene(result.scene)
    assert result.stats.pose_adjusted == 3
    planned = plan_views(config.plan)
    shift = np.array([offset[0], -offset[1], offset[2]]) / 100.0  # Unreal cm -> our metres
    for frame, view in zip(scene.frames, planned):
        np.testing.assert_allclose(frame.camera.c2w[:3, 3], view.c2w[:3, 3] + shift, atol=1e-5)


def test_views_too_close_to_geometry_are_rejected_and_stay_rejected(game, tmp_path):
    server = game()
    ymid = (server.scene.walk_lo[1] + server.scene.walk_hi[1]) / 2
    # A walk 10 cm in front of the room's x = 0 wall, looking at it (Unreal cm: y mirrored).
    walk = {"kind": "waypoints", "views": 3, "spare": 1.0, "points": ((10.0, -ymid * 100 + 50, 150.0),
            (10.0, -ymid * 100 - 50, 150.0)), "target": (0.0, -ymid * 100, 150.0)}
    overrides = orbit_overrides(server, views=3)
    overrides["plan"] = walk
    config = load_config(None, overrides)
    [result] = capture_all(config, tmp_path)
    assert result.stats.rejected == 3 and result.stats.reasons == {"too close to geometry": 3}
    assert not result.complete and "ran out of candidates" in result.error
    server.commands.clear()
    [again] = capture_all(config, tmp_path)  # a rerun does not try them again
    assert not any(c.endswith("/depth npy") for c in server.commands) and again.stats.rejected == 0


def test_camera_moving_during_the_capture_is_not_accepted(game, tmp_path):
    server = game(fall_cm_per_request=2.0)  # a pawn falling under gravity
    config = _config(server, views=2, capture={"retries": 1, "settle_polls": 1}, spare=1.0)
    [result] = capture_all(config, tmp_path)
    assert not result.complete and result.stats.views == 0
    assert result.stats.rejected == 2 and result.stats.retries == 2
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert all("the camera moved during the capture" in entry["rejected"] for entry in log.values())


def test_several_games_of_different_builds_capture_in_parallel_into_separate_scenes(game, tmp_path):
    a, b = game(scene_seed=0, behaves_like="5.2-linux"), game(scene_seed=1, behaves_like="master")
    overrides = orbit_overrides(a, views=4)
    overrides["connection"]["ports"] = [a.port, b.port]
    config = load_config(None, overrides)
    results = capture_all(config, tmp_path)
    assert [r.scene.name for r in results] == [f"unrealcv_{a.port}", f"unrealcv_{b.port}"]
    assert all(r.complete for r in results), [r.error for r in results]
    scenes = [read_scene(r.scene) for r in results]
    assert not np.array_equal(scenes[0].frames[0].rgb, scenes[1].frames[0].rgb)  # different games


def test_request_that_never_gets_a_reply_times_out_and_the_view_is_redone(game, tmp_path):
    server = game()
    config = _config(server, views=3, connection={"request_timeout": 0.3})
    server.corrupt("lit", "hang")
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 3)
    assert result.stats.reconnects == 1 and result.stats.timeouts == 1 and result.stats.retries == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_game_held_by_another_client_is_waited_for_then_captured(game, tmp_path, mode):
    server = game(behaves_like=mode)
    other = Raw(("127.0.0.1", server.port))  # e.g. a notebook left open
    assert other.greeting(2.0) is not None
    threading.Timer(0.4, other.close).start()  # ... closed a moment later
    config = _config(server, views=2)
    [result] = capture_all(config, tmp_path)
    _check_scene(result, server, config, 2)


def test_a_game_held_by_another_client_is_reported(game, tmp_path):
    server = game(behaves_like="4.27")
    other = Raw(("127.0.0.1", server.port))
    other.greeting(2.0)
    [result] = capture_all(_config(server, views=2, connection={"connect_timeout": 0.3, "connect_attempts": 2}),
                           tmp_path)
    other.close()
    assert not result.complete and "one client at a time" in result.error and "never confirmed" in result.error


def test_game_not_running_is_reported(game, tmp_path):
    server = game()
    config = _config(server, views=2)
    server.crash()  # nothing listens there any more
    [result] = capture_all(config, tmp_path)
    assert not result.complete and "is the game running" in result.error


def test_killed_at_random_moments_then_resumed_the_scene_is_byte_identical(game, tmp_path):
    """kill -9 the capture process three times mid-capture (the first run over TCP, the others
    over the socket of a 5.2-linux game), then let it finish: the folder equals an
    uninterrupted capture, file for file, byte for byte."""
    server, reference_game = game(behaves_like="5.2-linux"), game(behaves_like="4.27")
    views = 10
    [reference] = capture_all(_config(reference_game, views), tmp_path / "reference")
    overrides = orbit_overrides(server, views)
    plan = tmp_path / "plan.toml"
    plan.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                            for section, values in overrides.items()))
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from python_bridge.cli import main; raise SystemExit(main())",
               "datagen", "unrealcv", "--plan", str(plan), "--out", str(out), "--no-progress"]
    capture_log = out / f"unrealcv_{server.port}" / CAPTURE_LOG

    def handled() -> int:
        return len(json.loads(capture_log.read_text())["candidates"]) if capture_log.exists() else 0

    rng = np.random.default_rng(0)
    for _ in range(3):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = handled() + int(rng.integers(1, 3))
        while handled() < target and process.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))  # somewhere inside the next view
        assert process.poll() is None, "the capture finished before it could be killed"
        process.kill()  # SIGKILL: no cleanup of any kind
        process.wait()
    assert 0 < handled() < views
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert server.transports[0] == "tcp" and set(server.transports[1:]) == {"unix"}
    assert _files(out / f"unrealcv_{server.port}") == _files(reference.scene)
