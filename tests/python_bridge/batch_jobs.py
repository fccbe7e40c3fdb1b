"""A small batch for the ``worldfm render-paths`` tests: two scenes (a dataset folder of exact
wall views and a procedural seed), a camera path for each, and a job file of ``jobs`` jobs
alternating between them, each with its own seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bridge_views import make_views
from datagen.dataset import write_scene
from models.scene import Scene
from python_bridge.camera_path import CameraPath, interpolate_poses, save_camera_path

PROCEDURAL = {"seed": 3, "kind": "indoor", "views": 3, "size": 32}


def make_batch(folder: Path, jobs: int = 6, frames: int = 4) -> Path:
    """Write scenes, paths and ``jobs.jsonl`` under ``folder``; returns the job file.

    Job ``i`` renders ``frames`` poses: even ``i`` over the wall folder, odd over the procedural
    scene (a path around its view 0, where its cameras are)."""
    folder.mkdir(parents=True, exist_ok=True)
    views = make_views(3, width=32, height=24)
    write_scene(Scene("wall", views), folder / "wall")
    save_camera_path(folder / "wall.json", CameraPath(
        interpolate_poses(np.stack([v.camera.c2w for v in views]), frames), views[0].camera.K, (32, 24), fps=12))
    from python_bridge.demo import make_scene

    source = make_scene(PROCEDURAL["seed"], PROCEDURAL["kind"], PROCEDURAL["views"], PROCEDURAL["size"])[1]
    save_camera_path(folder / "room.json", CameraPath(
        interpolate_poses(np.stack([f.camera.c2w for f in source]), frames), source[0].camera.K, (32, 32), fps=12))
    lines = []
    for i in range(jobs):
        scene = {"scene": "wall", "path": "wall.json"} if i % 2 == 0 else \
            {"procedural": PROCEDURAL, "path": "room.json"}
        lines.append(json.dumps({"id": f"job{i}", **scene, "seed": 100 * i}))
    (folder / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "jobs.jsonl"


def frame_bytes(out: Path, job_id: str) -> list[bytes]:
    """The PNG bytes of a job's frames, in order."""
    return [p.read_bytes() for p in sorted((out / job_id).glob("frame_*.png"))]
