"""``worldfm render-paths`` in-process: the job file, the idempotent job writer, resuming.

The Ray pool is tested in test_batch_ray.py against the frames these runs write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from batch_jobs import frame_bytes, make_batch
from python_bridge.batch import JobError, JobRunner, RenderOptions, load_jobs
from python_bridge.cli import main


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_batch(tmp_path_factory.mktemp("batch"), jobs=3, frames=4)


@pytest.fixture(scope="module")
def options(tiny_model_dir) -> RenderOptions:
    return RenderOptions(model=str(tiny_model_dir), steps=2)


@pytest.fixture(scope="module")
def runner(options) -> JobRunner:
    return JobRunner(options)


@pytest.fixture(scope="module")
def reference(batch, tiny_model_dir, tmp_path_factory) -> Path:
    """The batch rendered once by the command, uninterrupted."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["render-paths", str(batch), "--out", str(out), "--model", str(tiny_model_dir), "--steps", "2",
                 "--no-progress"]) == 0
    return out


def test_every_job_writes_its_frames_video_and_manifest(batch, reference, capsys):
    for job in load_jobs(batch):
        folder = reference / job.id
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"frame_{i:05d}.png" for i in range(4)] + ["manifest.json", "path.mp4"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert [r["index"] for r in manifest["frames"]] == [0, 1, 2, 3]
        assert [r["seed"] for r in manifest["frames"]] == [job.seed + i for i in range(4)]
        assert manifest["job"]["model"]["name"] == "tiny-untrained" and manifest["job"]["steps"] == 2
        assert {"anchor_ms", "generate_ms", "render_ms", "write_ms"} <= set(manifest["frames"][0]["timings_ms"])
        assert len(manifest["attempts"]) == 1 and manifest["finished_by"]["model"] == "tiny-untrained"
        assert len(imageio.mimread(folder / "path.mp4")) == 4
    frames = frame_bytes(reference, "job0")
    assert len(set(frames)) == 4  # four poses, four different frames
    assert frame_bytes(reference, "job0")[0] != frame_bytes(reference, "job2")[0]  # same pose, seed 0 vs 200


def test_a_rerun_skips_finished_jobs_even_with_the_inputs_moved(batch, reference, tiny_model_dir, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*")}
    moved = tmp_path / "moved"
    shutil.copytree(batch.parent, moved)  # jobs are identified by content, not by where their files are
    for jobs in (batch, moved / batch.name):
        assert main(["render-paths", str(jobs), "--out", str(reference), "--model", str(tiny_model_dir),
                     "--steps", "2", "--no-progress"]) == 0
        assert "0 rendered, 3 already done, 0 failed; 0 frames" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("*")} == before


def test_an_interrupted_job_resumes_with_only_its_missing_frames(batch, reference, runner, options, tmp_path):
    job = load_jobs(batch, default_steps=2)[1]  # the procedural scene
    model = options.identity()

    def interrupt(job_id: str, done: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # as a kill between frames 1 and 2 would leave it

    with pytest.raises(KeyboardInterrupt):
        runner.run(job, tmp_path, model, interrupt)
    folder = tmp_path / job.id
    assert sorted(p.name for p in folder.glob("frame_*.png")) == ["frame_00000.png", "frame_00001.png"]
    assert not (folder / "manifest.json").exists()
    (folder / ".frame_00002.png.999.tmp").write_bytes(b"half a frame")  # a writer killed mid-file
    (folder / "frame_00003.png").write_bytes(b"not yet recorded")  # killed between PNG and record
    result = runner.run(job, tmp_path, model)
    assert (result.status, result.rendered) == ("done", 2)
    assert frame_bytes(tmp_path, job.id) == frame_bytes(reference, job.id)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (reference / job.id).iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [a["frames_done_before"] for a in manifest["attempts"]] == [0, 2]


def test_a_damaged_frame_is_rendered_again(batch, reference, runner, options, tmp_path):
    job = load_jobs(batch, default_steps=2)[0]
    model = options.identity()
    assert runner.run(job, tmp_path, model).status == "done"
    (tmp_path / job.id / "frame_00002.png").write_bytes(b"damaged")
    result = runner.run(job, tmp_path, model)
    assert (result.status, result.rendered) == ("done", 1)
    assert frame_bytes(tmp_path, job.id) == frame_bytes(reference, job.id)
    assert runner.run(job, tmp_path, model).status == "skipped"


def test_a_folder_of_another_job_is_refused_not_mixed(batch, reference, tiny_model_dir, tmp_path, capsys):
    text = batch.read_text().replace('"seed": 200', '"seed": 201')
    changed = batch.parent / "changed.jsonl"
    changed.write_text(text)
    code = main(["render-paths", str(changed), "--out", str(reference), "--model", str(tiny_model_dir),
                 "--steps", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "1 failed" in captured.out
    assert "job job2 FAILED" in captured.err and "other seed (200)" in captured.err
    manifest = json.loads((reference / "job2" / "manifest.json").read_text())
    assert manifest["job"]["seed"] == 200


def test_the_scene_is_built_once_per_runner(batch, runner, options, tmp_path):
    jobs = [j for j in load_jobs(batch, default_steps=2) if j.scene.folder is not None]  # two jobs, one scene
    for job in jobs:
        runner.run(job, tmp_path, options.identity())
    attempts = [json.loads((tmp_path / j.id / "manifest.json").read_text())["attempts"][0] for j in jobs]
    assert [a["scene_cached"] for a in attempts] == [attempts[0]["scene_cached"], True]


def test_batch_frames_render_with_the_anchor_compile_held(batch, runner, options, tmp_path, monkeypatch):
    """A runner is never idle, so the splat kernels' background compile is held for every frame
    (python_bridge.batch.JobRunner): started, it would take seconds of CPU beside the frames and
    keep the process from exiting until it finished."""
    from models.anchor import splat

    holds = []
    render = runner.pipeline.render

    def spy(*args, **kwargs):
        holds.append(splat._holding[0])
        return render(*args, **kwargs)

    monkeypatch.setattr(runner.pipeline, "render", spy)
    job = next(j for j in load_jobs(batch, default_steps=2) if j.scene.folder is not None)
    assert runner.run(job, tmp_path, options.identity()).status == "done"
    assert holds and min(holds) >= 1, holds
    assert splat._holding[0] == 0  # released after the job


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"scene": "wall"}', "'path'"),
        ('{"scene": "nowhere", "path": "wall.json"}', "not a scene folder"),
        ('{"scene": "wall", "procedural": {"seed": 1}, "path": "wall.json"}', "exactly one of"),
        ('{"scene": "wall", "path": "wall.json", "colour": 1}', "unknown keys \\['colour'\\]"),
        ('{"id": "../up", "scene": "wall", "path": "wall.json"}', "must be a folder name"),
        ('{"procedural": {"seed": 1, "kind": "cave"}, "path": "wall.json"}', "indoor or outdoor"),
        ('{"procedural": {"seed": 1, "views": "many"}, "path": "wall.json"}', "with integers"),
        ('{"scene": "wall", "path": "missing.json"}', "cannot read camera path"),
        ('{"scene": "wall", "path": "wall.json", "size": [8, 8]}', "at least 16"),
        ("[1, 2]", "a job is a JSON object"),
    ],
)
def test_bad_jobs_name_their_line(batch, line, message):
    path = batch.parent / "bad.jsonl"
    path.write_text(f'# a comment\n{{"scene": "wall", "path": "wall.json"}}\n\n{line}\n')
    with pytest.raises(JobError, match=message) as info:
        load_jobs(path)
    assert str(info.value).startswith(f"{path}:4")


def test_duplicate_ids_and_empty_files_are_refused(batch, capsys):
    path = batch.parent / "dup.jsonl"
    path.write_text('{"id": "a", "scene": "wall", "path": "wall.json"}\n' * 2)
    with pytest.raises(JobError, match="'a' is already used on line 1"):
        load_jobs(path)
    path.write_text("\n# nothing\n")
    assert main(["render-paths", str(path), "--out", str(batch.parent / "o"), "--no-progress"]) == 2
    assert "holds no jobs" in capsys.readouterr().err


def test_ray_flag_without_ray_says_how_to_install(batch, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["render-paths", str(batch), "--out", str(tmp_path), "--no-model", "--ray", "auto",
                 "--no-progress"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_frames_match_single_path_rendering(batch, reference, tiny_model_dir, tmp_path):
    """A job's frames are the frames `worldfm render-path` renders for the same scene, path and seed."""
    job = load_jobs(batch)[2]
    out = tmp_path / "single"
    assert main(["render-path", job.scene.folder, "--path", job.path_file, "--out", str(out),
                 "--model", str(tiny_model_dir), "--steps", "2", "--seed", str(job.seed)]) == 0
    for ours, theirs in zip(sorted((reference / job.id).glob("frame_*.png")), sorted(out.glob("frame_*.png")),
                            strict=True):
        np.testing.assert_array_equal(imageio.imread(ours), imageio.imread(theirs))


def test_a_job_is_the_same_bytes_whatever_torch_thread_count_the_worker_has(tmp_path):
    """The shipped model's decoder takes the hole-filled anchor, and push-pull filling rounds a
    pixel differently now and then under another torch thread count; this pose of this scene
    (found by bench/bench_render_paths.py) is such a case. The runner renders the same bytes
    whether its process had 2 torch threads (in-process) or 1 (a Ray actor of 1 CPU)."""
    import torch

    from python_bridge.camera_path import CameraPath, interpolate_poses, save_camera_path
    from python_bridge.demo import make_scene

    source = make_scene(1, "indoor", 8, 128)[1]
    pose = interpolate_poses(np.stack([f.camera.c2w for f in source]), 4)[3:]
    save_camera_path(tmp_path / "pose.json", CameraPath(pose, source[0].camera.K, (128, 128)))
    (tmp_path / "jobs.jsonl").write_text(json.dumps(
        {"id": "j", "procedural": {"seed": 1, "views": 8, "size": 128}, "path": "pose.json", "seed": 6}) + "\n")
    options = RenderOptions()  # the shipped demo-256
    [job] = load_jobs(tmp_path / "jobs.jsonl", options.default_steps())
    runner, before = JobRunner(options), torch.get_num_threads()
    frames = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            assert runner.run(job, tmp_path / f"t{threads}", options.identity()).status == "done"
            frames.append(frame_bytes(tmp_path / f"t{threads}", "j"))
    finally:
        torch.set_num_threads(before)
    assert frames[0] == frames[1]
