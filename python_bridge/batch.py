"""Batch rendering (``worldfm render-paths``): many camera paths over many scenes, resumable,
in this process or on a pool of Ray actors (:mod:`python_bridge.batch_ray`).

A job file is JSON Lines, one job per line (blank lines and ``#`` comments skipped)::

    {"id": "kitchen-orbit", "scene": "scenes/kitchen", "path": "paths/orbit.json", "seed": 0}
    {"id": "room7-walk", "procedural": {"seed": 7, "kind": "indoor", "views": 12, "size": 256},
     "path": "paths/walk.json", "steps": 2, "size": [128, 128]}

``scene`` is a dataset scene folder (``datagen.dataset``) or ``procedural`` a seeded
procedural scene made where the job runs (as ``worldfm demo`` makes it); ``path`` a camera
path JSON (``python_bridge.camera_path``); relative paths are relative to the job file.
Optional: ``id`` (the output folder's name; default ``job_<line>``), ``seed`` (noise seed of
frame 0; frame i uses seed + i, as ``worldfm render-path`` does, so every frame is the same
whichever worker renders it), ``steps`` (default: the command's ``--steps``, else the
model's fewest) and ``size`` ([W, H]; default: the path's).

Each job writes ``OUT/<id>/``: ``frame_00000.png`` ..., ``path.mp4`` and, last,
``manifest.json`` (the job, the model, and per frame its seed, SHA-256, reference view,
per-stage timings and the worker that rendered it). The writer is idempotent, so a job may
be killed at any moment and run again, anywhere:

* every file is written to a temporary name and renamed into place (``datagen.dataset.atomic_write``);
* a frame counts as done once its record ``.partial/frame_00000.json`` (written after its PNG,
  holding the PNG's SHA-256) matches the PNG; a rerun renders only frames without one, and
  overwrites -- never duplicates -- a PNG whose record is missing;
* the MP4 is encoded from the finished PNGs, then the manifest is written and ``.partial/``
  removed; a job whose manifest matches the job and whose frames are intact is skipped.

A folder started by a different job (other scene, path, seed, steps, size or model) is
refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import resource
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datagen.dataset import atomic_write, png_bytes
from python_bridge.camera_path import CameraPath, CameraPathError, load_camera_path

log = logging.getLogger(__name__)

FORMAT = "worldfm-render-job"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VIDEO = "path.mp4"
PARTIAL = ".partial"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_JOB_KEYS = {"id", "scene", "procedural", "path", "seed", "steps", "size"}
_PROCEDURAL_DEFAULTS = {"kind": "indoor", "views": 12, "size": 256}  # `worldfm demo`'s scene


class JobError(ValueError):
    """A job file, job or job folder that cannot be used; the message says which and why."""


def frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing specs."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class SceneSource:
    """Where a job's source views come from: a scene ``folder`` (absolute; ``digest`` the SHA-256
    of its ``transforms.json``, which lists every view file's SHA-256) or a ``procedural`` scene
    (seed, kind, views, size), generated where the job runs."""

    folder: str | None = None
    procedural: dict | None = None
    digest: str | None = None

    @property
    def key(self) -> str:
        """Identifies the scene: jobs with the same key share a built scene on a worker."""
        return self.folder if self.folder is not None else json.dumps(self.procedural, sort_keys=True)

    def describe(self) -> dict:
        """The scene by content (a moved folder is the same scene; a recaptured one is not)."""
        if self.folder is None:
            return {"procedural": self.procedural}
        return {"name": Path(self.folder).name, "transforms_sha256": self.digest}

    def frames(self) -> list:
        """The source views (``models.scene.Frame``), read or generated."""
        if self.folder is not None:
            from datagen.dataset import read_scene

            return read_scene(self.folder).frames
        from python_bridge.demo import make_scene

        p = self.procedural
        return make_scene(p["seed"], p["kind"], p["views"], p["size"])[1]


@dataclass
class RenderJob:
    """One camera path over one scene, as read from a job file (line ``line``)."""

    id: str
    scene: SceneSource
    path: CameraPath
    path_file: str
    path_sha256: str
    seed: int = 0
    steps: int | None = None
    size: tuple[int, int] | None = None
    line: int = 0

    @property
    def frames(self) -> int:
        return len(self.path)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.size or self.path.size

    def spec(self, model: dict) -> dict:
        """What the job's frames depend on, by content: stored in its folder, compared on every
        rerun. (Where its files were is in the manifest's ``sources``.)"""
        return _as_json({"id": self.id, "scene": self.scene.describe(),
                         "path": {"sha256": self.path_sha256, "poses": self.frames},
                         "seed": self.seed, "steps": self.steps, "size": list(self.frame_size), "model": model})

    def sources(self) -> dict:
        """Where the job's scene and camera path were read from."""
        return {"scene": self.scene.folder or "procedural", "path": self.path_file}


def load_jobs(path: str | Path, default_steps: int | None = None) -> list[RenderJob]:
    """Read and check a job file (module docstring): every camera path is loaded and every scene
    folder checked here, so a typo fails before any worker starts. Raises :class:`JobError`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise JobError(f"cannot read job file {path}: {exc}") from None
    base = path.resolve().parent
    jobs: list[RenderJob] = []
    for number, text in enumerate(lines, 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JobError(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(entry, dict):
            raise JobError(f"{where}: a job is a JSON object with 'scene' or 'procedural', and 'path'")
        jobs.append(_parse_job(entry, where, number, base, default_steps))
    if not jobs:
        raise JobError(f"{path} holds no jobs")
    seen: dict[str, int] = {}
    for job in jobs:
        if job.id in seen:
            raise JobError(f"{path}:{job.line}: job id {job.id!r} is already used on line {seen[job.id]}")
        seen[job.id] = job.line
    return jobs


def _parse_job(entry: dict, where: str, number: int, base: Path, default_steps: int | None) -> RenderJob:
    unknown = sorted(set(entry) - _JOB_KEYS)
    if unknown:
        raise JobError(f"{where}: unknown keys {unknown}; a job has {sorted(_JOB_KEYS)}")
    job_id = str(entry.get("id", f"job_{number:05d}"))
    if not _ID.match(job_id):
        raise JobError(f"{where}: id {job_id!r} must be a folder name: letters, digits, '.', '_', '-' "
                       "(not starting with '.' or '-', at most 128)")
    if ("scene" in entry) == ("procedural" in entry):
        raise JobError(f"{where}: give exactly one of 'scene' (a dataset folder) or 'procedural' ({{'seed': N}})")
    if "scene" in entry:
        folder = (base / str(entry["scene"])).resolve()
        if not (folder / "transforms.json").is_file():
            raise JobError(f"{where}: {folder} is not a scene folder (no transforms.json); "
                           "make one with `worldfm datagen ...`")
        scene = SceneSource(folder=str(folder), digest=_sha256((folder / "transforms.json").read_bytes()))
    else:
        given = entry["procedural"]
        shape = "{'seed': N, 'kind': 'indoor'|'outdoor', 'views': N, 'size': N}"
        if not isinstance(given, dict) or "seed" not in given or set(given) - {"seed", *_PROCEDURAL_DEFAULTS}:
            raise JobError(f"{where}: 'procedural' is {shape}")
        spec = {**_PROCEDURAL_DEFAULTS, **given}
        if not all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("seed", "views", "size")):
            raise JobError(f"{where}: 'procedural' is {shape}, with integers; got {given}")
        if spec["kind"] not in ("indoor", "outdoor") or spec["views"] < 1 or spec["size"] < 16:
            raise JobError(f"{where}: procedural kind must be indoor or outdoor, views >= 1, size >= 16")
        scene = SceneSource(procedural={"seed": spec["seed"], "kind": spec["kind"], "views": spec["views"],
                                        "size": spec["size"]})
    if "path" not in entry:
        raise JobError(f"{where}: 'path' (a camera path JSON) is missing")
    path_file = (base / str(entry["path"])).resolve()
    try:
        camera_path = load_camera_path(path_file)
    except CameraPathError as exc:
        raise JobError(f"{where}: {exc}") from None
    try:
        seed = int(entry.get("seed", 0))
        steps = entry.get("steps", default_steps)
        steps = None if steps is None else int(steps)
        size = entry.get("size")
        size = None if size is None else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise JobError(f"{where}: 'seed' and 'steps' are integers, 'size' is [W, H] ({exc})") from None
    if size is not None and (len(entry["size"]) != 2 or min(size) < 16):
        raise JobError(f"{where}: 'size' is [W, H], each at least 16; got {entry['size']}")
    return RenderJob(job_id, scene, camera_path, str(path_file), _sha256(path_file.read_bytes()), seed, steps,
                     size, number)


@dataclass(frozen=True)
class RenderOptions:
    """The model settings every worker loads (the ``--model`` ... flags of the bridge's commands)."""

    model: str | None = None
    fallback: bool = False
    steps: int | None = None
    provider: str = "auto"
    precision: str = "auto"
    anchor_style: str | None = None

    def identity(self) -> dict:
        """The model as a job's frames depend on it: its name and the SHA-256 of its manifest
        (which lists every graph's SHA-256), or the fallback; plus precision and anchor style.
        Cheap: reads the manifest only, so the driver can compute it without loading a model."""
        folder = self.model_folder()
        if folder is None:
            model = {"name": "anchor-fallback"}
        else:
            manifest = folder / "manifest.json"
            if not manifest.is_file():
                raise JobError(f"{folder} has no manifest.json; export a model with `worldfm export` first")
            data = manifest.read_bytes()
            model = {"name": json.loads(data).get("name", folder.name), "manifest_sha256": _sha256(data)}
        return {**model, "precision": self.precision, "anchor": self.anchor_style}

    def model_folder(self) -> Path | None:
        """The model folder these options load (None: the fallback), as ``worldfm`` resolves it."""
        from python_bridge.demo import model_folder

        return model_folder(None if self.model is None else Path(self.model), self.fallback)

    def default_steps(self) -> int | None:
        """The steps a job without ``steps`` uses: ``--steps``, else the model's fewest (None: fallback)."""
        from python_bridge.engine import Manifest

        folder = self.model_folder()
        if folder is None:
            return None
        return self.steps or min(Manifest.load(folder, verify=False).steps)


@dataclass
class JobResult:
    """What became of one job: ``status`` "done", "skipped" (finished by an earlier run) or
    "failed" (with ``error``); frames in the job and ``rendered`` by this call."""

    id: str
    status: str
    frames: int = 0
    rendered: int = 0
    worker: str = ""
    seconds: float = 0.0
    error: str | None = None


class JobFolder:
    """``OUT/<id>``: one job's frames, MP4 and manifest, written so that a kill at any moment
    leaves it resumable and a rerun never writes a frame twice (module docstring)."""

    def __init__(self, folder: Path, spec: dict) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.partial = self.folder / PARTIAL

    def finished(self) -> dict | None:
        """The manifest when the job is complete and intact, else None. A manifest of another
        job raises :class:`JobError`."""
        manifest = self._manifest()
        if manifest is None:
            return None
        for record in manifest["frames"]:
            if not self._intact(record):
                return None
        return manifest

    def _manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
            job = manifest["job"]
            manifest["frames"]  # noqa: B018 -- must be there
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise JobError(f"{path} is not a render-job manifest ({exc}); use another --out") from None
        if job != self.spec:
            raise JobError(f"{self.folder} holds job {_differences(job, self.spec)}; this run's job differs. "
                           "Render it into another --out (or give the job another id), or delete the folder")
        return manifest

    def _intact(self, record: dict) -> bool:
        try:
            return _sha256((self.folder / record["file"]).read_bytes()) == record["sha256"]
        except (OSError, KeyError, TypeError):
            return False

    def open(self) -> dict[int, dict]:
        """Prepare to render (or continue): drop temporaries of killed writers, record the job,
        and return the frames already done (index -> record), each checked against its PNG."""
        self.partial.mkdir(parents=True, exist_ok=True)
        for stray in [*self.folder.glob(".*.tmp*"), *self.partial.glob(".*.tmp")]:
            stray.unlink(missing_ok=True)
        done: dict[int, dict] = {}
        job_file = self.partial / "job.json"
        manifest = self._manifest()
        if job_file.is_file():
            try:
                stored = json.loads(job_file.read_text())
            except json.JSONDecodeError:
                stored = None  # never half-written (atomic); unreadable means tampered with: start over
            if stored != self.spec:
                raise JobError(f"{self.folder} was started by job {_differences(stored, self.spec)}; this run's "
                               "job differs. Render it into another --out, or delete the folder")
        else:
            atomic_write(job_file, json.dumps(self.spec, indent=1).encode())
        if manifest is not None:  # finished once, then a frame was damaged or deleted: keep the intact ones
            for record in manifest["frames"]:
                if self._intact(record):
                    self._save_record(record)
            for attempt in manifest["attempts"]:
                self.note_attempt(attempt)
            (self.folder / MANIFEST).unlink()
        for path in self.partial.glob("frame_*.json"):
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            if self._intact(record):
                done[record["index"]] = record
        return done

    def write_frame(self, index: int, rgb: np.ndarray, record: dict) -> dict:
        """Write frame ``index`` (PNG, then its record); returns the record with file and SHA-256."""
        t0 = time.perf_counter()
        data = png_bytes(np.ascontiguousarray(rgb))
        name = frame_name(index)
        atomic_write(self.folder / name, data)
        record = {"index": index, "file": name, "sha256": _sha256(data), **record}
        record["timings_ms"]["write_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        self._save_record(record)
        return record

    def _save_record(self, record: dict) -> None:
        atomic_write(self.partial / f"frame_{record['index']:05d}.json", json.dumps(record).encode())

    def note_attempt(self, attempt: dict) -> None:
        """Record one run of the job on a worker (who, when, the scene build); kept in the manifest."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"attempt_{attempt['started']:.6f}_{attempt['worker']}.json")
        atomic_write(self.partial / name, json.dumps(attempt).encode())

    def finish(self, fps: float, worker: dict, sources: dict) -> dict:
        """Encode the MP4 from the frames, write the manifest, drop ``.partial``; returns the manifest."""
        import imageio.v2 as imageio

        frames = sorted((json.loads(p.read_text()) for p in self.partial.glob("frame_*.json")),
                        key=lambda r: r["index"])
        if [r["index"] for r in frames] != list(range(self.spec["path"]["poses"])):
            raise JobError(f"{self.folder}: frames missing before the video; rerun to render them")
        attempts = sorted((json.loads(p.read_text()) for p in self.partial.glob("attempt_*.json")),
                          key=lambda a: a["started"])
        video_tmp = self.folder / f".{VIDEO}.{os.getpid()}.tmp.mp4"  # ffmpeg picks the container by extension
        t0 = time.perf_counter()
        with imageio.get_writer(video_tmp, fps=fps, quality=8, macro_block_size=1) as writer:
            for record in frames:
                writer.append_data(imageio.imread(self.folder / record["file"]))
        os.replace(video_tmp, self.folder / VIDEO)
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "job": self.spec, "sources": sources, "video": VIDEO,
            "video_ms": round((time.perf_counter() - t0) * 1e3, 3), "attempts": attempts,
            "finished_by": worker, "frames": frames,
        }
        atomic_write(self.folder / MANIFEST, json.dumps(manifest, indent=1).encode())
        shutil.rmtree(self.partial, ignore_errors=True)
        return manifest


def _differences(stored: Any, wanted: dict) -> str:
    """The fields in which a stored job spec differs from this run's, for error messages."""
    if not isinstance(stored, dict):
        return "(unreadable)"
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    return "with other " + ", ".join(f"{k} ({stored.get(k)!r})" for k in keys)


def worker_name() -> str:
    """``host:pid`` of this process, as frame records and manifests name the worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


ProgressFn = Callable[[str, int], None]  # (job id, frames of that job done so far)


class JobRunner:
    """One engine and the scenes it built: runs jobs one at a time, in this process or as a Ray
    actor (each actor one runner). The model loads once per runner; a scene is built once and
    kept for the next job over it (the ``scene_cache`` most recently used ones).

    ``threads`` caps ONNX Runtime's CPU threads (a Ray actor's CPU share; default every core).
    torch -- the anchor rendering and hole filling -- runs on one thread in every runner: push-pull
    hole filling (the anchor decoder's input) rounds a pixel differently now and then with another
    thread count, and a job must be the same bytes whichever worker renders it (ONNX Runtime's
    results do not depend on its thread count; the tests check both).

    The anchor's splat kernels stay eager (``models.anchor.splat.compiles_held`` around every
    job): a runner is never idle, so their ``torch.compile`` (seconds of CPU) would run beside the
    frames, and a process that ends waits for it to finish (1.7 s after the last job of
    ``bench/bench_render_paths.py``'s in-process arm). Compiled, they save ~2 ms of a ~50-80 ms
    batch frame. Measured with that arm's 8 jobs x 12 frames (all cores, warm compile cache,
    two alternating rounds, 2-core VM at 193-207 GFLOP/s, 2026-12-03): the jobs took 6.3 s held
    against 9.6-10.0 s compiling, the process 8.9-9.3 against 13.0-13.6 s. The mesh style's fused
    shading loop is not held (it loads from numba's disk cache in a fraction of a second).
    """

    def __init__(self, options: RenderOptions, threads: int | None = None, scene_cache: int = 2) -> None:
        from python_bridge.commands.serve import prepare_runtime

        prepare_runtime()  # before torch loads (a fresh Ray worker has not imported it yet)
        from python_bridge.demo import load_pipeline

        t0 = time.perf_counter()
        self.options = options
        self.identity = options.identity()
        self.pipeline = load_pipeline(None if options.model is None else Path(options.model), options.provider,
                                      options.steps, options.fallback, options.precision, options.anchor_style,
                                      threads=threads)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        from python_bridge import timeline

        self.ready_s = timeline.elapsed_s()  # since the process started: interpreter, imports, model
        self.worker = worker_name()
        self._scenes: OrderedDict[str, Any] = OrderedDict()
        self._cache = scene_cache

    def info(self) -> dict:
        """Who this runner is (``worker``, ``node``), its model, provider, model load time and
        ``ready_s``, seconds from its process's start to a loaded model."""
        describe = self.pipeline.describe()
        return {"worker": self.worker, "node": socket.gethostname(), "model": describe.get("name"),
                "provider": describe.get("provider"), "load_ms": round(self.load_ms, 1),
                "ready_s": round(self.ready_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}

    def scenes(self) -> list[str]:
        """Keys of the scenes this runner holds built, most recently used last."""
        return list(self._scenes)

    def _scene(self, source: SceneSource) -> tuple[Any, float]:
        """The built scene for ``source`` and its build time in ms (0 when it was cached)."""
        if source.key in self._scenes:
            self._scenes.move_to_end(source.key)
            return self._scenes[source.key], 0.0
        t0 = time.perf_counter()
        built = self.pipeline.build(source.frames())
        self._scenes[source.key] = built
        while len(self._scenes) > self._cache:
            self._scenes.popitem(last=False)
        return built, (time.perf_counter() - t0) * 1e3

    def run(self, job: RenderJob, out_dir: str | Path, model: dict, progress: ProgressFn | None = None) -> JobResult:
        """Render ``job`` into ``out_dir/<id>`` (resuming it; skipping it when finished).

        ``model`` is the identity the driver expects (:meth:`RenderOptions.identity`): a worker
        whose model files differ refuses the job rather than mixing models. Errors in the job
        (a damaged scene, a folder of another job) come back as a failed result, not raised.
        """
        import torch

        from datagen.dataset import DatasetError
        from models.anchor.splat import compiles_held
        from models.cameras import scale_K

        t0 = time.perf_counter()
        result = JobResult(job.id, "failed", job.frames, worker=self.worker)
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same bytes on every worker (class docstring)
        try:
            with compiles_held():  # eager splat kernels (class docstring)
                if model != self.identity:
                    raise JobError(f"worker {self.worker} has model {self.identity}, the driver {model}: "
                                   "install the same model files on every node")
                folder = JobFolder(Path(out_dir) / job.id, job.spec(model))
                if folder.finished() is not None:
                    result.status = "skipped"
                    return result
                done = folder.open()
                missing = [i for i in range(job.frames) if i not in done]
                if progress is not None:
                    progress(job.id, len(done))
                if missing:
                    scene, build_ms = self._scene(job.scene)
                    folder.note_attempt({"worker": self.worker, "started": time.time(), "frames_done_before": len(done),
                                         "scene_build_ms": round(build_ms, 1), "scene_cached": build_ms == 0.0})
                    size = job.frame_size
                    K = scale_K(job.path.K, job.path.size, size)
                    for i in missing:
                        r0 = time.perf_counter()
                        frame = self.pipeline.render(scene, job.path.poses[i], K, size, steps=job.steps,
                                                     seed=job.seed + i)
                        timings = {k: round(v, 3) for k, v in frame.timings.items()}
                        timings["render_ms"] = round((time.perf_counter() - r0) * 1e3, 3)
                        done[i] = folder.write_frame(i, frame.rgb, {"seed": job.seed + i, "reference": frame.reference,
                                                                    "mode": frame.mode, "timings_ms": timings,
                                                                    "worker": self.worker})
                        result.rendered += 1
                        if progress is not None:
                            progress(job.id, len(done))
                worker = {**self.info(), "seconds": round(time.perf_counter() - t0, 3)}
                folder.finish(job.path.fps, worker, job.sources())
                result.status = "done"
        except (JobError, DatasetError, OSError, ValueError) as exc:
            result.error = str(exc)
            log.error("job %s: %s", job.id, exc)
        finally:
            torch.set_num_threads(torch_threads)
            result.seconds = time.perf_counter() - t0
        return result


def job_finished(job: RenderJob, out_dir: str | Path, model: dict) -> bool:
    """Whether ``job`` is complete in ``out_dir`` (the driver's cheap check before dispatching);
    a folder of another job counts as unfinished, so its worker reports the clash."""
    try:
        return JobFolder(Path(out_dir) / job.id, job.spec(model)).finished() is not None
    except JobError:
        return False


def run_in_process(
    jobs: list[RenderJob],
    out_dir: str | Path,
    options: RenderOptions,
    model: dict,
    progress: ProgressFn | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    threads: int | None = None,
) -> list[JobResult]:
    """Run ``jobs`` one after another on one :class:`JobRunner` here (``threads``: its CPU threads,
    default every core); the same frames, byte for byte, as :func:`python_bridge.batch_ray.run_on_ray`.
    Jobs over one scene run back to back."""
    order = sorted(jobs, key=lambda j: (j.scene.key, j.line))
    runner = JobRunner(options, threads=threads)
    results = []
    for job in order:
        result = runner.run(job, out_dir, model, progress)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def summary(results: list[JobResult], frames_total: int, seconds: float) -> dict:
    """Counts and rates of a run, as the command prints them and scripts read them."""
    done = [r for r in results if r.status == "done"]
    rendered = sum(r.rendered for r in results)
    return {"jobs": len(results), "done": len(done), "skipped": sum(r.status == "skipped" for r in results),
            "failed": sum(r.status == "failed" for r in results), "frames": frames_total,
            "frames_rendered": rendered, "seconds": round(seconds, 3),
            "jobs_per_s": round(len(done) / seconds, 4) if seconds > 0 else 0.0,
            "frames_per_s": round(rendered / seconds, 3) if seconds > 0 else 0.0,
            "results": [asdict(r) for r in results]}

