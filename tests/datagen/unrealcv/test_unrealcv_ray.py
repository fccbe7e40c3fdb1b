"""`worldfm datagen unrealcv --ray`: one capture actor per game, placed on the game's node, writing
the same scene folders as the capture threads. The Ray test needs the extra (pip install -e '.[ray]')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_unrealcv_server import orbit_overrides

from datagen.unrealcv.config import ConfigError, load_config
from datagen.unrealcv.connection import Endpoint
from datagen.unrealcv.ray_capture import placement
from datagen.unrealcv.workers import capture_all, endpoints_of, scene_name
from python_bridge.cli import main


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_games_on_several_machines_get_their_own_folders(tmp_path):
    config = load_config(None, {"connection": {"games": ["10.0.0.5:9000", "10.0.0.6:9000", "localhost:9001"]}})
    endpoints = endpoints_of(config)
    assert [scene_name(e) for e in endpoints] == ["unrealcv_10.0.0.5_9000", "unrealcv_10.0.0.6_9000", "unrealcv_9001"]
    assert endpoints[2].unix_socket == "/tmp/unrealcv_9001.socket" and endpoints[0].unix_socket is None
    with pytest.raises(ConfigError, match="'10.0.0.5' is not HOST:PORT"):
        load_config(None, {"connection": {"games": ["10.0.0.5"]}})


def test_each_capture_actor_goes_to_the_node_of_its_game():
    nodes = {"10.0.0.5": "node-a", "10.0.0.6": "node-b"}
    assert placement(Endpoint.for_port("127.0.0.1", 9000), nodes, "driver")[0] == "driver"
    assert placement(Endpoint.for_socket("/tmp/x/unrealcv_9000.socket"), nodes, "driver")[0] == "driver"
    assert placement(Endpoint.for_port("10.0.0.6", 9000), nodes, "driver")[0] == "node-b"
    node, why = placement(Endpoint.for_port("10.0.0.9", 9000), nodes, "driver")
    assert node is None and "no Ray node runs on 10.0.0.9" in why


def test_ray_capture_writes_the_scenes_the_threads_write(game, tmp_path, capsys):
    pytest.importorskip("ray")
    from datagen.ray_cluster import connect

    views = 4
    reference_games = [game(behaves_like="4.27", width=64, height=48) for _ in range(2)]
    overrides = orbit_overrides(reference_games[0], views)
    overrides["connection"]["ports"] = [g.port for g in reference_games]
    reference = capture_all(load_config(None, overrides), tmp_path / "threads")
    assert all(r.complete for r in reference)

    games = [game(behaves_like=b, width=64, height=48) for b in ("4.27", "5.2-linux")]
    overrides["connection"]["ports"] = [g.port for g in games]
    plan = tmp_path / "plan.toml"
    plan.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
                            for section, values in overrides.items()))
    with connect("local", num_cpus=1):
        code = main(["datagen", "unrealcv", "--plan", str(plan), "--out", str(tmp_path / "ray"), "--ray", "auto",
                     "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "connected to Ray" in captured.err and "2 game(s)" in captured.out
    for ref, g in zip(reference, games, strict=True):
        assert _files(tmp_path / "ray" / f"unrealcv_{g.port}") == _files(ref.scene)
        assert g.commands, "the stand-in game served no capture"
