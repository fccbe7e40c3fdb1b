"""The scene folder format: round trips, nerfstudio's conventions, resuming after SIGKILL,
and clear errors for damaged folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.dataset import (
    DEPTH_UNIT_SCALE,
    TRANSFORMS,
    DatasetError,
    SceneWriter,
    encode_depth,
    find_scenes,
    read_scene,
    write_scene,
)
from models.cameras import K_from_hfov, c2w_to_opengl, look_at
from models.scene import Camera, Frame, Scene

REPO = Path(__file__).resolve().parents[2]


def _frames(n: int, width: int = 24, height: int = 16, seed: int = 0, depth: bool = True) -> list[Frame]:
    rng = np.random.default_rng(seed)
    K = K_from_hfov(70.0, width, height)
    frames = []
    for i in range(n):
        eye = rng.uniform(-2, 2, 3)
        c2w = look_at(eye, eye + rng.normal(size=3) * [1, 1, 0.3])
        d = rng.uniform(0.2, 30.0, (height, width)).astype(np.float32) if depth else None
        if d is not None:
            d[0, :3] = 0.0  # pixels without depth
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        frames.append(Frame(rgb=rgb, camera=Camera(K, c2w, width, height), depth=d, name=f"{i:05d}"))
    return frames


def _scene(n: int = 5, **kw) -> Scene:
    return Scene(name="s", frames=_frames(n, **kw), meta={"seed": 42, "generator": {"name": "test", "version": 3}})


def test_round_trip_poses_depth_rgb_and_meta(tmp_path):
    scene = _scene(9)
    read = read_scene(write_scene(scene, tmp_path / "s"))
    assert len(read) == 9 and [f.name for f in read.frames] == [f"{i:05d}" for i in range(9)]
    for a, b in zip(scene.frames, read.frames):
        assert np.abs(a.camera.c2w - b.camera.c2w).max() < 1e-6
        assert np.allclose(a.camera.K, b.camera.K) and (a.camera.width, a.camera.height) == (b.camera.width, b.camera.height)
        assert np.array_equal(a.rgb, b.rgb)
        assert b.depth.dtype == np.float32
        assert np.abs(a.depth - b.depth).max() <= 0.5e-3 + 1e-6  # within a millimetre's rounding
        assert np.array_equal(a.depth == 0, b.depth == 0)
    assert read.meta["seed"] == 42 and read.meta["generator"] == {"name": "test", "version": 3}
    assert read.meta["splits"] == ["train", "train", "train", "val", "train", "train", "train", "test", "train"]


def test_transforms_json_follows_nerfstudio(tmp_path):
    scene = _scene(8)
    root = write_scene(scene, tmp_path / "s")
    data = json.loads((root / TRANSFORMS).read_text())
    k = scene.frames[0].camera.K
    assert data["camera_model"] == "OPENCV"
    assert (data["fl_x"], data["fl_y"], data["cx"], data["cy"], data["w"], data["h"]) == (k[0, 0], k[1, 1], k[0, 2], k[1, 2], 24, 16)
    assert all(data[key] == 0.0 for key in ("k1", "k2", "p1", "p2"))
    assert data["depth_unit_scale_factor"] == DEPTH_UNIT_SCALE == 0.001
    frame = data["frames"][2]
    assert frame["file_path"] == "images/00002.png" and frame["depth_file_path"] == "depth/00002.png"
    assert np.allclose(frame["transform_matrix"], c2w_to_opengl(scene.frames[2].camera.c2w))
    raw = np.asarray(Image.open(root / frame["depth_file_path"]))
    assert raw.dtype == np.uint16
    assert np.array_equal(raw, np.round(scene.frames[2].depth * 1000).astype(np.uint16))
    assert data["val_filenames"] == ["images/00003.png"] and data["test_filenames"] == ["images/00007.png"]
    assert len(data["train_filenames"]) == 6
    assert data["worldfm"]["complete"] is True and data["worldfm"]["seed"] == 42


def test_differing_intrinsics_go_per_frame(tmp_path):
    frames = _frames(3)
    wide = frames[1].camera
    frames[1] = Frame(frames[1].rgb, Camera(K_from_hfov(100.0, 24, 16), wide.c2w, 24, 16), frames[1].depth)
    root = write_scene(Scene("s", frames), tmp_path / "s")
    data = json.loads((root / TRANSFORMS).read_text())
    assert "fl_x" not in data and all("fl_x" in f for f in data["frames"])
    read = read_scene(root)
    assert [np.allclose(f.camera.K, g.camera.K) for f, g in zip(frames, read.frames)] == [True] * 3
    assert not np.allclose(read.frames[0].camera.K, read.frames[1].camera.K)


def test_depth_encoding_marks_unusable_values_as_no_depth():
    depth = np.array([[0.0, -1.0, np.nan, np.inf], [1e-3, 1.2344, 65.535, 70.0]])
    assert encode_depth(depth).tolist() == [[0, 0, 0, 0], [1, 1234, 65535, 0]]


def test_frames_with_and_without_depth_cannot_mix(tmp_path):
    writer = SceneWriter(tmp_path / "s", 2)
    writer.write(0, _frames(1)[0])
    with pytest.raises(DatasetError, match="every view"):
        writer.write(1, _frames(1, depth=False)[0])


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from datagen.dataset import SceneWriter
    from models.cameras import K_from_hfov, look_at
    from models.scene import Camera, Frame

    def frame(i):
        rng = np.random.default_rng(i)  # view i is the same in every run
        K = K_from_hfov(60.0, 128, 96)
        c2w = look_at([0.1 * i, 0.0, 1.0], [0.1 * i, 1.0, 1.0])
        return Frame(rgb=rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), camera=Camera(K, c2w, 128, 96),
                     depth=rng.uniform(0.5, 9.0, (96, 128)).astype(np.float32))

    writer = SceneWriter(sys.argv[1], int(sys.argv[2]), {"seed": 1})
    for i in writer.missing():
        writer.write(i, frame(i))
    """
)


def _listed(root: Path) -> list[str]:
    try:
        return [f["file_path"] for f in json.loads((root / TRANSFORMS).read_text())["frames"]]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def test_sigkilled_writer_resumes_without_losing_or_corrupting_views(tmp_path):
    root, total = tmp_path / "scene", 150
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(total)], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while len(_listed(root)) < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        time.sleep(0.013)  # land somewhere inside a view's writes
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the writer finished before it was killed; test premise broken"
    done_before = _listed(root)
    assert 5 <= len(done_before) < total
    # Reopen: continues at the first missing view, keeps every listed one.
    writer = SceneWriter(root, total, {"seed": 1})
    assert writer.missing()[0] == len(writer.done) and len(writer.done) >= len(done_before)
    subprocess.run([sys.executable, "-c", _CHILD, str(root), str(total)], env=env, cwd=REPO, check=True)
    listed = _listed(root)
    assert listed == [f"images/{i:05d}.png" for i in range(total)]  # all views, once, in order
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{i:05d}.png" for i in range(total)]
    assert not list(root.rglob("*.tmp"))
    scene = read_scene(root)  # decodes and checks the SHA-256 of every file
    assert len(scene) == total


def test_reopen_rewrites_damaged_views_and_refuses_other_settings(tmp_path):
    root = write_scene(_scene(4), tmp_path / "s")
    png = root / "images" / "00002.png"
    png.write_bytes(png.read_bytes()[:100])
    writer = SceneWriter(root, 4, {"seed": 42, "generator": {"name": "test", "version": 3}})
    assert writer.missing() == [2]
    writer.write(2, _frames(4)[2])
    assert len(read_scene(root)) == 4
    with pytest.raises(DatasetError, match="other settings"):
        SceneWriter(root, 4, {"seed": 43, "generator": {"name": "test", "version": 3}})
    with pytest.raises(DatasetError, match="other settings"):
        SceneWriter(root, 5, {"seed": 42, "generator": {"name": "test", "version": 3}})


def _forget_checksums(root: Path) -> None:
    """Make the folder look foreign (no SHA-256 records), so the decoder's checks are reached."""
    data = json.loads((root / TRANSFORMS).read_text())
    for record in data["worldfm"]["frames"].values():
        record.pop("sha256")
    (root / TRANSFORMS).write_text(json.dumps(data))


def _edit_frame(root: Path, index: int, **fields) -> None:
    data = json.loads((root / TRANSFORMS).read_text())
    data["frames"][index].update(fields)
    (root / TRANSFORMS).write_text(json.dumps(data))


def test_truncated_png_is_reported(tmp_path):
    root = write_scene(_scene(3), tmp_path / "s")
    png = root / "depth" / "00001.png"
    png.write_bytes(png.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"00001\.png changed since it was written"):
        read_scene(root)
    _forget_checksums(root)
    with pytest.raises(DatasetError, match=r"00001\.png is truncated or corrupt"):
        read_scene(root)


def test_missing_and_wrong_size_files_are_reported(tmp_path):
    root = write_scene(_scene(3), tmp_path / "s")
    _forget_checksums(root)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "00000.png")
    with pytest.raises(DatasetError, match=r"00000\.png is 8x8 but transforms.json says 24x16"):
        read_scene(root)
    (root / "images" / "00000.png").unlink()
    with pytest.raises(DatasetError, match=r"00000\.png is missing"):
        read_scene(root)


def test_nan_pose_and_wrong_intrinsics_are_reported(tmp_path):
    root = write_scene(_scene(3), tmp_path / "s")
    pose = json.loads((root / TRANSFORMS).read_text())["frames"][1]["transform_matrix"]
    pose[0][3] = float("nan")
    _edit_frame(root, 1, transform_matrix=pose)
    with pytest.raises(DatasetError, match="frame 00001.*NaN"):
        read_scene(root)
    root = write_scene(_scene(3), tmp_path / "t")
    _edit_frame(root, 0, cx=200.0)  # a principal point outside the 24 x 16 image
    with pytest.raises(DatasetError, match="frame 00000.*principal point"):
        read_scene(root)
    _edit_frame(root, 0, cx=12.0, k1=0.1)
    with pytest.raises(DatasetError, match="distortion"):
        read_scene(root)


def test_incomplete_scene_needs_allow_incomplete(tmp_path):
    writer = SceneWriter(tmp_path / "s", 4, {"seed": 1})
    frames = _frames(4)
    writer.write(0, frames[0])
    writer.write(1, frames[1])
    with pytest.raises(DatasetError, match="incomplete"):
        read_scene(tmp_path / "s")
    assert len(read_scene(tmp_path / "s", allow_incomplete=True)) == 2
    assert find_scenes(tmp_path) == [tmp_path / "s"]


def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="reserved"):
        SceneWriter(tmp_path / "a", 2, {"frames": []})
    writer = SceneWriter(tmp_path / "b", 2)
    with pytest.raises(DatasetError, match="outside"):
        writer.write(2, _frames(1)[0])
    with pytest.raises(DatasetError, match="split"):
        writer.write(0, _frames(1)[0], split="holdout")
    with pytest.raises(DatasetError, match="no transforms.json"):
        read_scene(tmp_path / "nowhere")
