"""`worldfm anchor build` / `worldfm anchor render` end to end on a small written dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from anchor_views import orbit_views
from PIL import Image

from python_bridge.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from datagen.dataset import write_scene
    from models.scene import Scene

    frames = orbit_views(4, width=64, height=48)
    return write_scene(Scene(name="room", frames=frames), tmp_path_factory.mktemp("data") / "room"), frames


def test_build_then_render_reproduces_a_source_view(dataset, tmp_path, capsys):
    path, frames = dataset
    ply = tmp_path / "scene.ply"
    assert main(["anchor", "build", str(path), "--out", str(ply)]) == 0
    assert "points from 4 views" in capsys.readouterr().out
    cam = frames[1].camera
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"K": cam.K.tolist(), "c2w": cam.c2w.tolist(), "width": 64, "height": 48}))
    png, depth = tmp_path / "view.png", tmp_path / "depth.npy"
    args = ["anchor", "render", str(ply), "--pose", str(pose), "--out", str(png), "--depth-out", str(depth)]
    assert main(args + ["--splat-radius", "0", "--fill-holes", "push_pull"]) == 0
    image = np.asarray(Image.open(png))
    assert image.shape == (48, 64, 3)
    z = np.load(depth)
    covered = z > 0
    assert covered.mean() > 0.9
    # Depth PNGs store millimetres, so the surfaces agree to a few millimetres.
    assert np.median(np.abs(z - frames[1].depth)[covered]) < 0.01
    assert np.mean(np.abs(image.astype(int) - frames[1].rgb)[covered]) < 8


def test_errors_are_reported_not_raised(dataset, tmp_path, capsys):
    path, _ = dataset
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"K": np.eye(3).tolist(), "c2w": np.eye(4).tolist()}))
    assert (
        main(["anchor", "render", str(tmp_path / "none.ply"), "--pose", str(pose), "--out", str(tmp_path / "x.png")])
        == 1
    )
    assert "lacks ['width', 'height']" in capsys.readouterr().err
    assert main(["anchor", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "x.ply")]) == 1
    assert "worldfm anchor:" in capsys.readouterr().err


def test_a_single_photo_needs_a_depth_model(tmp_path, capsys):
    frame = orbit_views(1, width=32, height=24)[0]
    Image.fromarray(frame.rgb).save(tmp_path / "photo.png")
    meta = {"name": "photo", "image": "photo.png", "K": frame.camera.K.tolist(), "c2w": [np.eye(4).tolist()]}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert main(["anchor", "build", str(tmp_path / "meta.json"), "--out", str(tmp_path / "x.ply")]) == 1
    assert "no depth model given" in capsys.readouterr().err


def test_render_a_dataset_in_each_style(dataset, tmp_path, capsys):
    """A dataset folder renders in any style (mesh by default); a PLY only as points, with a
    message that says what to pass instead."""
    path, frames = dataset
    cam = frames[2].camera
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"K": cam.K.tolist(), "c2w": cam.c2w.tolist(), "width": 64, "height": 48}))
    images = {}
    for style in (None, "points"):
        png = tmp_path / f"{style}.png"
        assert main(["anchor", "render", str(path), "--pose", str(pose), "--out", str(png)]
                    + (["--anchor", style] if style else [])) == 0
        assert f"{style or 'mesh'} anchor" in capsys.readouterr().out
        images[style] = np.asarray(Image.open(png)).astype(int)
    covered = images[None].any(-1)
    assert covered.mean() > 0.9
    # At a source pose the view comes back to a few levels (depth PNGs are in mm), closer with the mesh.
    errors = {style: np.abs(image - frames[2].rgb)[image.any(-1)].mean() for style, image in images.items()}
    assert errors[None] < min(3.0, errors["points"])
    ply = tmp_path / "scene.ply"
    assert main(["anchor", "build", str(path), "--out", str(ply), "--anchor", "points"]) == 0
    capsys.readouterr()
    assert main(["anchor", "render", str(ply), "--pose", str(pose), "--out", str(tmp_path / "x.png"),
                 "--anchor", "mesh"]) == 1
    assert "pass the dataset folder" in capsys.readouterr().err
    assert main(["anchor", "render", str(path), "--pose", str(pose), "--out", str(tmp_path / "x.png"),
                 "--anchor", "nope"]) == 1
    assert "unknown anchor style 'nope'" in capsys.readouterr().err


def test_eval_scores_anchor_styles_without_a_model(dataset, tmp_path, capsys):
    path, _ = dataset
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(path), "--ood-data", str(path), "--out", str(out), "--window", "2"]) == 0
    table = capsys.readouterr().out
    assert "in family: covered PSNR" in table and "out of family: covered PSNR" in table
    rows = json.loads((out / "anchors.json").read_text())["rows"]
    for name in ("in family", "out of family"):
        assert set(rows[name]) >= {"points", "mesh"}
        assert rows[name]["mesh"]["covered_psnr"] > rows[name]["points"]["covered_psnr"]
        assert rows[name]["mesh"]["targets"] == 4
