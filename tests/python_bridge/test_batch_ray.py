"""``worldfm render-paths --ray`` on a local Ray cluster of 2 CPU worker slots: 6 jobs over 2
scenes, one actor killed (SIGKILL) mid-job; every job's frames must be complete, unique and
byte-identical to the in-process run. Skipped without the Ray extra (``pip install -e '.[ray]'``).

The jobs run the tiny test model, so frames are fast; that a frame's bytes do not depend on the
worker's thread count with the shipped model is test_batch.py's."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from batch_jobs import frame_bytes, make_batch  # noqa: E402
from python_bridge.batch import load_jobs  # noqa: E402
from python_bridge.cli import main  # noqa: E402

FRAMES = 16  # per job: enough that a kill seen after a job's first frames lands before its last


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module, 2 CPUs: 2 worker processes of 1 CPU each."""
    from datagen.ray_cluster import connect

    with connect("local", num_cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_batch(tmp_path_factory.mktemp("batch"), jobs=6, frames=FRAMES)


def _render(batch: Path, out: Path, model: Path, *extra: str) -> int:
    return main(["render-paths", str(batch), "--out", str(out), "--model", str(model), "--steps", "2",
                 "--no-progress", *extra])


def _kill_a_worker_mid_job(out: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the worker that wrote the first frame record seen in a job with frames to go."""
    while not stop.is_set():
        for record in out.glob("*/.partial/frame_*.json"):
            try:
                done = len(list(record.parent.glob("frame_*.json")))
                worker = json.loads(record.read_text())["worker"]
            except (OSError, ValueError):
                continue  # the job finished (and dropped .partial) under us
            if done <= FRAMES // 2:
                pid = int(worker.rsplit(":", 1)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.005)


def test_a_killed_worker_loses_nothing_and_the_frames_match_in_process(cluster, batch, tiny_model_dir,
                                                                        tmp_path, capsys):
    assert cluster.resources["CPU"] == 2
    local = tmp_path / "in-process"
    assert _render(batch, local, tiny_model_dir) == 0

    out = tmp_path / "ray"
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_a_worker_mid_job, args=(out, killed, stop), daemon=True)
    watcher.start()
    try:
        assert _render(batch, out, tiny_model_dir, "--ray", "auto", "--workers", "2") == 0
    finally:
        stop.set()
        watcher.join()
    report = capsys.readouterr()
    assert "6 rendered, 0 already done, 0 failed" in report.out
    assert "connected to Ray" in report.err and "2 worker(s), 1 CPU and 0 GPU each" in report.err
    assert len(killed) == 1, "the watcher saw no job in progress to kill a worker of"

    jobs = load_jobs(batch)
    assert len({job.scene.key for job in jobs}) == 2
    victims = []
    for job in jobs:
        folder = out / job.id
        # Complete and unique: each frame once, nothing half-written or left over from the dead worker.
        assert sorted(p.name for p in folder.iterdir()) == \
            [f"frame_{i:05d}.png" for i in range(FRAMES)] + ["manifest.json", "path.mp4"]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert [r["index"] for r in manifest["frames"]] == list(range(FRAMES))
        assert frame_bytes(out, job.id) == frame_bytes(local, job.id), f"job {job.id} differs from in-process"
        workers = {r["worker"] for r in manifest["frames"]}
        if any(w.endswith(f":{killed[0]}") for w in workers):
            victims.append((job.id, workers, manifest["attempts"]))
    # The killed worker's last job was finished by its restarted actor (another process).
    mid_job = [v for v in victims if len(v[1]) == 2]
    assert mid_job, f"no job shows the kill mid-job: {victims}"
    job_id, workers, attempts = mid_job[0]
    assert len(attempts) == 2 and attempts[1]["frames_done_before"] > 0

    # Rerun: everything is done; no worker is even started.
    assert _render(batch, out, tiny_model_dir, "--ray", "auto") == 0
    assert "0 rendered, 6 already done, 0 failed" in capsys.readouterr().out
