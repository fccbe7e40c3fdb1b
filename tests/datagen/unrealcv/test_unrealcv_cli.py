"""The TOML configuration and `worldfm datagen unrealcv` end to end against stand-in games."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_unrealcv_server import FakeUnrealCVServer, orbit_overrides

from datagen.dataset import find_scenes, read_scene
from datagen.unrealcv.config import ConfigError, load_config
from python_bridge.cli import main

PLAN = """
[connection]
host = "127.0.0.1"
ports = [{port}]
socket_dir = "{socket_dir}"
connect_attempts = 2
retry_backoff = 0.01

[capture]
camera_id = 0
normals = true
min_clearance = 5

[plan]
kind = "orbit"
views = 4
seed = 7
center = [{x}, {y}, {z}]
radius = 60
heights = [0, 20]
"""


def _plan_file(tmp_path, server: FakeUnrealCVServer, views: int = 4):
    plan = orbit_overrides(server, views=4)["plan"]
    x, y, z = plan["center"]
    path = tmp_path / "orbit.toml"
    text = PLAN.format(port=server.port, socket_dir=Path(server.socket_path).parent, x=x, y=y, z=z)
    path.write_text(text.replace("views = 4", f"views = {views}"))
    return path


def test_toml_sections_become_settings_and_flags_override_them(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(port=9005, socket_dir="/tmp", x=1, y=2, z=3))
    config = load_config(path, {"plan": {"views": 9, "seed": None}, "capture": {"depth_mode": "plane"}})
    assert config.targets.ports == (9005,)
    assert config.connection.connect_attempts == 2
    assert config.capture.normals and config.capture.min_clearance == 5 and config.capture.depth_mode == "plane"
    assert config.plan.views == 9 and config.plan.seed == 7  # None leaves the file's value
    assert config.plan.center == (1, 2, 3) and config.plan.heights == (0, 20)


@pytest.mark.parametrize(
    "text, message",
    [("[plan]\nkinds = 'orbit'", r"\[plan\] has unknown keys \['kinds'\]"),
     ("[camera]\nid = 1", "unknown sections"),
     ("[connection]\nport = 9000", r"\[connection\] has unknown keys \['port'\]"),
     ("[capture]\ndepth_mode = 'radial'", "depth_mode must be one of"),
     ("[plan]\nviews = [", "not valid TOML")],
)
def test_bad_configuration_names_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_cli_captures_a_scene_and_prints_only_its_summary(game, tmp_path, capfd):
    server = game()
    plan = _plan_file(tmp_path, server)
    code = main(["datagen", "unrealcv", "--plan", str(plan), "--out", str(tmp_path / "out"), "--no-progress"])
    out = capfd.readouterr().out
    assert code == 0, out
    [scene_dir] = find_scenes(tmp_path / "out")
    assert scene_dir.name == f"unrealcv_{server.port}"
    scene = read_scene(scene_dir)
    assert len(scene) == 4 and scene.meta["plan"]["seed"] == 7
    assert len(list((scene_dir / "normals").glob("*.png"))) == 4
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{scene_dir} [tcp:127.0.0.1:{server.port}, UnrealCV 1.0.1")
    assert "total: 4 views from 1 game(s)" in lines[1] and "views/s" in out and "0 retries" in out


def test_cli_reports_an_incomplete_capture_with_exit_code_1(game, tmp_path, capsys):
    server = game(missing=("normal",))
    plan = _plan_file(tmp_path, server)
    code = main(["datagen", "unrealcv", "--plan", str(plan), "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "INCOMPLETE" in captured.out and "does not support" in captured.err


def test_cli_refuses_a_bad_flag_value_with_exit_code_2(tmp_path, capsys):
    code = main(["datagen", "unrealcv", "--out", str(tmp_path), "--views", "0", "--no-progress"])
    assert code == 2 and "views must be >= 1" in capsys.readouterr().err


def test_tcp_and_unix_socket_runs_share_the_scene_folder(game, tmp_path, capsys):
    server = game(behaves_like="5.2-linux")
    plan, out = _plan_file(tmp_path, server), str(tmp_path / "out")
    assert main(["datagen", "unrealcv", "--plan", str(plan), "--out", out, "--no-progress"]) == 0
    code = main(["datagen", "unrealcv", "--plan", str(plan), "--unix-socket", server.socket_path, "--out", out,
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and server.transports == ["tcp", "unix"]
    [scene_dir] = find_scenes(tmp_path / "out")
    assert scene_dir.name == f"unrealcv_{server.port}"
    assert f"[unix:{server.socket_path}, UnrealCV 1.0.1" in printed and "0 views in" in printed  # all resumed


def test_the_documented_configuration_is_valid(tmp_path):
    docs = (Path(__file__).parents[3] / "docs" / "datagen.md").read_text()
    block = re.search(r"```toml\n(.*?)```", docs, re.S).group(1)
    path = tmp_path / "documented.toml"
    path.write_text(block)
    config = load_config(path)
    assert config.targets.ports == (9000, 9001) and config.plan.heights == (0, 120)
