"""Capture from the stand-in UnrealCV server through the real unrealcv.Client, end to end."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
from fake_unrealcv_server import FakeUnrealCVServer, orbit_overrides

from datagen.dataset import read_scene
from datagen.unrealcv.config import load_config
from datagen.unrealcv.planning import plan_views
from datagen.unrealcv.sink import CAPTURE_LOG
from datagen.unrealcv.workers import capture_all
from models.cameras import K_from_hfov
from models.scene import Camera

pytestmark = [
    # The unmodified unrealcv.Client reports a lost connection by raising in its receive thread
    # (and to the waiting request); and it warns once that a 1.0 server cannot list commands.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore:The connected UnrealCV server is too old:UserWarning"),
]


def _config(server: FakeUnrealCVServer, views: int, capture: dict | None = None, **plan):
    overrides = orbit_overrides(server, views, **plan)
    overrides["capture"] = capture or {}
    return load_config(None, overrides)


def _check_scene(result, server: FakeUnrealCVServer, config, views: int, tol_m: float = 1e-5) -> None:
    """The scene is complete, each frame is the render at its planned pose, none twice."""
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
        np.testing.assert_allclose(frame.camera.c2w, planned[name].c2w, atol=tol_m)
        np.testing.assert_allclose(frame.camera.K, K)
        # Re-render independently at the stored pose: pixels must match the stored view.
        truth = server.renderer.render(Camera(K, frame.camera.c2w, server.width, server.height))
        assert np.mean(np.abs(frame.rgb.astype(int) - truth.rgb.astype(int)) > 2) < 0.02
        close = np.abs(frame.depth - truth.depth) <= 2e-3
        assert close.mean() > 0.98


def test_full_capture_writes_a_readable_scene_whose_poses_round_trip(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=6, neighbours=1, capture={"normals": True, "object_masks": True})
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 6)
    assert result.stats.views == 6 and result.stats.retries == 0 and result.stats.reconnects == 0
    assert sorted(p.name for p in (result.scene / "normals").iterdir()) == [f"{i:05d}.png" for i in range(6)]
    assert len(list((result.scene / "object_masks").iterdir())) == 6
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert [log[f"view_{i:05d}"]["group"] for i in range(6)] == [0, 0, 1, 1, 2, 2]  # view + neighbour


def test_connection_dropped_mid_capture_reconnects_and_loses_nothing(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=6)
        server.drop_after(30)  # a few views in, in the middle of one
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 6)
        assert server.connections == 2
    assert result.stats.reconnects == 1


def test_game_crash_then_rerun_resumes_without_recapturing(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=6)
        server.drop_after(30, go_offline=True)  # the game dies and stays down
        [first] = capture_all(config, tmp_path)
        assert not first.complete and "no UnrealCV server" in first.error
        done_before = first.stats.views
        assert 0 < done_before < 6
        server.set_offline(False)  # the game is back
        server.commands.clear()
        [second] = capture_all(config, tmp_path)
        _check_scene(second, server, config, 6)
    assert second.stats.resumed == done_before and second.stats.views == 6 - done_before
    captures = [c for c in server.commands if c.endswith("lit png")]
    assert len(captures) == 6 - done_before  # finished views were not captured again


def test_stopped_capture_resumes_where_it_stopped(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=6)
        stop, done = threading.Event(), []

        def progress(n: int) -> None:  # stop after the second view, as Ctrl-C would
            done.append(n)
            if sum(done) == 2:
                stop.set()

        [first] = capture_all(config, tmp_path, progress, stop)
        assert first.stats.views == 2 and first.error == "stopped; rerun the same command to resume"
        [second] = capture_all(config, tmp_path)
        _check_scene(second, server, config, 6)
    assert second.stats.resumed == 2 and second.stats.views == 4


@pytest.mark.parametrize(
    "word, mode", [("lit", "truncate"), ("lit", "garbage"), ("lit", "black"), ("lit", "small"),
                   ("depth", "garbage"), ("depth", "nan"), ("depth", "truncate")]
)
def test_corrupt_payload_is_retried(tmp_path, word, mode):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=3)
        server.corrupt(word, mode, times=2)
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 3)
    assert result.stats.retries == 2 and result.stats.rejected == 0


def test_persistently_corrupt_view_is_rejected_and_replaced(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=3, capture={"retries": 1})
        server.corrupt("lit", "garbage", times=2)  # the first view fails both tries
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 3)
    assert result.stats.rejected == 1 and "invalid capture" in next(iter(result.stats.reasons))
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert "rejected" in log["view_00000"]


def test_missing_command_stops_with_a_clear_error(tmp_path):
    with FakeUnrealCVServer(missing=("normal",)) as server:
        [result] = capture_all(_config(server, views=2, capture={"normals": True}), tmp_path)
    assert not result.complete
    assert "does not support 'vget /camera/0/normal png'" in result.error


@pytest.mark.parametrize("missing", [("size",), ("size", "status")])
def test_resolution_falls_back_to_the_status_then_to_the_first_image(tmp_path, missing):
    with FakeUnrealCVServer(missing=missing) as server:
        config = _config(server, views=2)
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 2)


def test_missing_fov_stops_with_a_clear_error(tmp_path):
    # Neither `fov` (1.x) nor `horizontal_fieldofview` (0.3.x): no intrinsics, no capture.
    with FakeUnrealCVServer(missing=("fov", "horizontal_fieldofview")) as server:
        [result] = capture_all(_config(server, views=2), tmp_path)
    assert not result.complete and "does not support 'vget /camera/0/fov'" in result.error


@pytest.mark.parametrize("depth_mode", ["auto", "distance"])
def test_distance_depth_of_old_plugins_becomes_z_depth(tmp_path, depth_mode):
    # auto: uses the 0.3.x `plane_depth`; distance: converts `depth` (distance to the centre).
    with FakeUnrealCVServer(depth_mode="distance") as server:
        config = _config(server, views=3, capture={"depth_mode": depth_mode})
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 3)
        used = {c.split()[1].rsplit("/", 1)[1] for c in server.commands if c.endswith("npy")}
    assert used == ({"plane_depth"} if depth_mode == "auto" else {"depth"})


def test_pose_the_game_moves_is_recorded_as_rendered(tmp_path):
    offset = np.array([3.0, -2.0, 1.0])  # cm, as a game pushing the pawn out of collision
    with FakeUnrealCVServer(pose_offset_cm=tuple(offset)) as server:
        config = _config(server, views=2, capture={"settle_polls": 2})
        [result] = capture_all(config, tmp_path)
        scene = read_scene(result.scene)
    assert result.stats.pose_adjusted == 2
    planned = plan_views(config.plan)
    shift = np.array([offset[0], -offset[1], offset[2]]) / 100.0  # Unreal cm -> our metres
    for frame, view in zip(scene.frames, planned):
        np.testing.assert_allclose(frame.camera.c2w[:3, 3], view.c2w[:3, 3] + shift, atol=1e-5)


def test_views_too_close_to_geometry_are_rejected_and_stay_rejected(tmp_path):
    with FakeUnrealCVServer() as server:
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


def test_camera_moving_during_the_capture_is_not_accepted(tmp_path):
    with FakeUnrealCVServer(fall_cm_per_request=2.0) as server:  # a pawn falling under gravity
        config = _config(server, views=2, capture={"retries": 1, "settle_polls": 1}, spare=1.0)
        [result] = capture_all(config, tmp_path)
    assert not result.complete and result.stats.views == 0
    assert result.stats.rejected == 2 and result.stats.retries == 2
    log = json.loads((result.scene / CAPTURE_LOG).read_text())["candidates"]
    assert all("the camera moved during the capture" in entry["rejected"] for entry in log.values())


def test_several_games_capture_in_parallel_into_separate_scenes(tmp_path):
    with FakeUnrealCVServer(scene_seed=0) as a, FakeUnrealCVServer(scene_seed=1) as b:
        overrides = orbit_overrides(a, views=4)
        overrides["connection"]["ports"] = [a.port, b.port]
        config = load_config(None, overrides)
        results = capture_all(config, tmp_path)
        assert [r.scene.name for r in results] == [f"unrealcv_{a.port}", f"unrealcv_{b.port}"]
        assert all(r.complete for r in results)
        scenes = [read_scene(r.scene) for r in results]
    assert not np.array_equal(scenes[0].frames[0].rgb, scenes[1].frames[0].rgb)  # different games


def test_request_that_never_gets_a_reply_times_out_and_the_view_is_redone(tmp_path):
    with FakeUnrealCVServer() as server:
        overrides = orbit_overrides(server, views=3)
        overrides["connection"]["request_timeout"] = 0.3
        config = load_config(None, overrides)
        server.corrupt("lit", "hang")
        [result] = capture_all(config, tmp_path)
        _check_scene(result, server, config, 3)
    assert result.stats.reconnects == 1 and result.stats.retries == 0


def test_game_held_by_another_client_is_reported(tmp_path):
    with FakeUnrealCVServer() as server:
        other = socket.create_connection(("127.0.0.1", server.port))  # e.g. a notebook left open
        other.recv(64)  # its "connected" confirmation
        [result] = capture_all(_config(server, views=2), tmp_path)
        other.close()
    assert not result.complete and "one client at a time" in result.error


def test_game_not_running_is_reported(tmp_path):
    with FakeUnrealCVServer() as server:
        config = _config(server, views=2)
    [result] = capture_all(config, tmp_path)  # the server is gone: nothing listens there
    assert not result.complete and "is the game running" in result.error
