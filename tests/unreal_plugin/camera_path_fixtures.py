"""Camera-path files written by the Python side, for the C++ core's reader (TestCameraPath).

``python tests/unreal_plugin/camera_path_fixtures.py DIR`` writes, into DIR:

* path files the way the Python side writes them: a ``worldfm view`` recording (the
  gateway's ``save_camera_path`` at ``RECORD_FPS``), an ``hfov_deg`` path, a single-pose path
  whose frame size K implies; plus the published WorldFM ``tests/data/worldfm-demo/meta.json``
  as it stands;
* files ``load_camera_path`` refuses, one problem each;
* ``manifest.json``: for each good file what ``load_camera_path`` read (poses, K, size, fps)
  with ``models.cameras.c2w_to_ue`` / ``hfov_from_K`` of it, for each bad file the phrase the
  C++ error must contain and the message Python gave, and poses from ``interpolate_poses``
  with the times they fall at.

Every expected value comes from the Python modules; this script checks that Python reads the
good files and refuses the bad ones with the phrase given, so both sides are held to one list.
tests/unreal_plugin/test_cpp_core.py runs it (``write_fixtures``) and hands DIR to the C++
tests; run by hand, the C++ test runs it itself with ``$WORLDFM_PYTHON``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from models.cameras import K_from_hfov, c2w_to_ue, hfov_from_K, look_at
from python_bridge.camera_path import (
    CameraPath,
    CameraPathError,
    interpolate_poses,
    load_camera_path,
    save_camera_path,
)
from python_bridge.viewer.gateway import RECORD_FPS

REPO_ROOT = Path(__file__).resolve().parents[2]
WORLDFM_META = REPO_ROOT / "tests" / "data" / "worldfm-demo" / "meta.json"


def _walk(n: int, seed: int) -> np.ndarray:
    """A flight as the viewer page makes one: level turns and pitch (no roll), moving forward."""
    rng = np.random.default_rng(seed)
    poses, position = [], np.array([0.2, -0.4, 1.6])
    yaw, pitch = 0.3, -0.1
    for _ in range(n):
        yaw += rng.uniform(-0.08, 0.08)
        pitch = float(np.clip(pitch + rng.uniform(-0.05, 0.05), -1.2, 1.2))
        forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
        position = position + 0.05 * forward
        poses.append(look_at(position, position + forward))
    return np.stack(poses)


def _rigid(axis: np.ndarray, angle_deg: float, t: list[float]) -> np.ndarray:
    """A pose rotated by angle_deg about axis (Rodrigues' formula), at position t."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    th = math.radians(angle_deg)
    skew = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    m = np.eye(4)
    m[:3, :3] = np.eye(3) + math.sin(th) * skew + (1.0 - math.cos(th)) * skew @ skew
    m[:3, 3] = t
    return m


def _bad_files() -> list[tuple[str, str, str, str]]:
    """(name, file text, phrase the C++ error contains, phrase Python's error contains).

    The phrases are one and the same except where the two parsers differ: NaN and 1e999 are not
    JSON to the C++ parser (Python reads them and refuses them as non-finite), an empty pose list
    is "no poses" rather than a shape, and sizes must be whole numbers in C++.
    """
    pose = _rigid([0.0, 0.0, 1.0], 20.0, [1.0, 2.0, 0.5])
    K = [[200.0, 0.0, 128.0], [0.0, 200.0, 96.0], [0.0, 0.0, 1.0]]

    def path(**fields) -> str:
        data = {"width": 256, "height": 192, "K": K, "c2w": [pose.tolist(), pose.tolist()]}
        data.update(fields)
        return json.dumps({k: v for k, v in data.items() if v is not None})

    def poses(*matrices: np.ndarray) -> str:
        return path(c2w=[m.tolist() for m in matrices])

    def intrinsics(fx: float, cx: float, cy: float, k21: float = 0.0) -> str:
        return path(K=[[fx, 0.0, cx], [0.0, abs(fx), cy], [0.0, k21, 1.0]])

    scaled, reflected, last_row, sheared = pose.copy(), pose.copy(), pose.copy(), pose.copy()
    scaled[:3, :3] *= 1.01
    reflected[:3, 0] *= -1.0
    last_row[3, 0] = 0.5
    sheared[0, 1] += 0.01
    nan_pose, huge_pose = pose.copy(), pose.copy()
    nan_pose[1, 3] = float("nan")  # json.dumps writes NaN
    huge_pose[1, 3] = 12345.5  # replaced by a number beyond double's range below
    shape = "must be a 4x4 matrix"
    no_intrinsics = "give 'K' (3x3 pixels) or 'hfov_deg'"
    whole = "'width' must be a positive whole number"
    cases = [
        ("not_json", '{"c2w": [[1, 0', "cannot read camera path"),
        ("nan_pose", poses(pose, nan_pose), "invalid literal", "must be finite"),
        ("overflow", poses(huge_pose).replace("12345.5", "1e999"), "number overflow", "must be finite"),
        ("a_list", json.dumps([pose.tolist()]), "a JSON object with a 'c2w' list"),
        ("no_c2w", json.dumps({"K": K, "width": 256, "height": 192}), "a JSON object with a 'c2w' list"),
        ("no_poses", path(c2w=[]), "the path has no poses", shape),
        ("pose_3x4", path(c2w=[pose[:3].tolist()]), shape),
        ("pose_strings", path(c2w=[[["x"] * 4] * 4]), shape, "malformed field"),
        ("scaled", poses(pose, scaled), "c2w[1] rotation must be orthonormal"),
        ("sheared", poses(sheared), "c2w[0] rotation must be orthonormal"),
        ("reflected", poses(reflected, pose), "c2w[0] must be a rigid transform; got det(R)=-1"),
        ("last_row", poses(pose, last_row), "c2w[1] last row must be [0, 0, 0, 1]"),
        ("no_intrinsics", path(K=None), no_intrinsics),
        ("hfov_no_size", path(K=None, width=None, hfov_deg=60), no_intrinsics),
        ("K_2x2", path(K=[[200.0, 0.0], [0.0, 200.0]]), "K must be 3x3"),
        ("K_negative_focal", intrinsics(-200.0, 128.0, 96.0), "focal lengths must be positive"),
        ("K_last_row", intrinsics(200.0, 128.0, 96.0, k21=0.1), "last row [0, 0, 1]"),
        ("K_other_resolution", intrinsics(400.0, 256.0, 192.0), "principal point (256, 192) lies outside"),
        ("zero_width", path(width=0), whole, "image size must be positive"),
        ("width_text", path(width="wide"), whole, "malformed field"),
        ("fps_zero", path(fps=0), "fps must be in (0, 240]"),
        ("fps_high", path(fps=1000), "fps must be in (0, 240]"),
        ("hfov_180", path(K=None, hfov_deg=180), "horizontal FOV must be in (0, 180)"),
    ]
    return [(name, text, cpp, python[0] if python else cpp) for name, text, cpp, *python in cases]


def _expected(path: Path) -> dict:
    """What load_camera_path reads from ``path``, with its Unreal cameras and FOV."""
    cp = load_camera_path(path)
    return {
        "file": str(path),
        "width": cp.size[0],
        "height": cp.size[1],
        "fps": cp.fps,
        "K": cp.K.tolist(),
        "c2w": cp.poses.tolist(),
        "hfov_deg": hfov_from_K(cp.K, cp.size[0]),
        "ue": [[*loc, *rot] for loc, rot in map(c2w_to_ue, cp.poses)],
    }


def write_fixtures(folder: Path) -> Path:
    """Write the files and ``manifest.json`` into ``folder``; returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    good = []

    # What `worldfm view` writes for a recording (gateway.add_recording): its fps and function.
    recorded = folder / "recorded.json"
    K = np.array([[221.5, 0.0, 131.25], [0.0, 219.0, 118.5], [0.0, 0.0, 1.0]])  # not centred
    save_camera_path(recorded, CameraPath(_walk(40, seed=3), K, (256, 240), RECORD_FPS))
    good.append(_expected(recorded))

    hfov = folder / "hfov.json"
    hfov.write_text(json.dumps({"width": 320, "height": 180, "hfov_deg": 75.5, "fps": 30,
                                "c2w": _walk(5, seed=4).tolist()}))
    good.append(_expected(hfov))

    single = folder / "single_pose.json"  # one 4x4 and no size: K implies 2 cx x 2 cy
    single.write_text(json.dumps({"K": [[300.0, 0.0, 160.0], [0.0, 300.0, 90.0], [0.0, 0.0, 1.0]],
                                  "c2w": _rigid([1.0, 2.0, 3.0], 40.0, [0.0, 1.0, 2.0]).tolist()}))
    good.append(_expected(single))

    good.append(_expected(WORLDFM_META))  # the published release's own file, as it stands

    bad = []
    for name, text, expect_cpp, expect_python in _bad_files():
        file = folder / f"bad_{name}.json"
        file.write_text(text)
        bad.append(_refused(file, expect_cpp, expect_python))
    bad.append(_refused(folder / "missing.json", "cannot read camera path", "cannot read camera path"))

    # Keyframes with large, small and near-half-turn rotations; interpolate_poses spaces its n
    # poses evenly in keyframe index, so pose j falls at index j (K - 1) / (n - 1), time index / fps.
    keys = np.stack([
        _rigid([0.0, 0.0, 1.0], 0.0, [0.0, 0.0, 0.0]),
        _rigid([0.0, 0.0, 1.0], 100.0, [1.0, 0.0, 0.5]),
        _rigid([0.3, -1.0, 0.2], 60.0, [1.0, 2.0, 0.5]),
        _rigid([0.3, -1.0, 0.2], 60.01, [1.5, 2.0, 0.0]),
        _rigid([0.3, -1.0, 0.2], 60.01, [0.0, 0.0, 0.0]),
    ])
    keys[4, :3, :3] = keys[3, :3, :3] @ _rigid([0.0, 1.0, 0.0], 175.0, [0.0, 0.0, 0.0])[:3, :3]  # a 175-degree turn
    key_file = folder / "keyframes.json"
    fps = 12.0
    save_camera_path(key_file, CameraPath(keys, K_from_hfov(70.0, 128, 96), (128, 96), fps))
    n = 23
    poses = interpolate_poses(keys, n)
    times = (np.linspace(0.0, len(keys) - 1, n) / fps).tolist()

    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({
        "good": good,
        "bad": bad,
        "interpolation": {"file": str(key_file), "seconds": times, "c2w": poses.tolist()},
    }, indent=1))
    return manifest


def _refused(file: Path, expect_cpp: str, expect_python: str) -> dict:
    try:
        load_camera_path(file)
    except CameraPathError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"load_camera_path accepted {file}")
    assert expect_python in message, f"{file}: Python said {message!r}, expected {expect_python!r} in it"
    return {"file": str(file), "expect": expect_cpp, "python_message": message}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: camera_path_fixtures.py DIR")
    print(write_fixtures(Path(sys.argv[1])))
