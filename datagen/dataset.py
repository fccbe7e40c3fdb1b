"""The on-disk scene format: a folder nerfstudio opens as-is, written atomically and resumably.

Layout of one scene (every field is documented in ``docs/dataset.md``)::

    scene/
      transforms.json      nerfstudio's format (camera_model OPENCV, OpenGL c2w) + our "worldfm" block
      images/00000.png     RGB, 8-bit
      depth/00000.png      z-depth along the optical axis, 16-bit, millimetres, 0 = no depth

``SceneWriter`` writes views one at a time. Every file goes to a temporary name first and is
moved into place with ``os.replace``, and ``transforms.json`` -- the manifest -- is rewritten
after each view, listing only views whose files are complete, with their SHA-256. A run
killed at any point therefore leaves either a view fully listed or not listed at all;
reopening verifies the listed files, drops stray temporaries and continues with the missing
views. (This protects against a killed process; it does not fsync, so not against power loss.)

``read_scene`` returns a ``models.scene.Scene`` in OUR convention (OpenCV camera axes,
``models.cameras``) with depth in metres, and fails loudly on anything it cannot trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from models.cameras import CameraError, c2w_to_opengl, opengl_to_c2w
from models.scene import Camera, Frame, Scene

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TRANSFORMS = "transforms.json"
DEPTH_UNIT_SCALE = 1e-3  # metres per unit of the 16-bit depth PNGs (nerfstudio's default)
MAX_DEPTH_M = 65535 * DEPTH_UNIT_SCALE
SPLITS = ("train", "val", "test")
CONVENTION = (
    "transform_matrix is a nerfstudio/OpenGL camera-to-world matrix (camera x right, y up, "
    "z backward) in a right-handed, Z-up world in metres; datagen.dataset.read_scene converts "
    "it to OpenCV axes (models.cameras). Pixel centres at +0.5. Depth PNGs hold z-depth along "
    "the optical axis in millimetres (uint16), 0 where there is no depth."
)
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
# Keys of the "worldfm" block that the writer owns; everything else there is the caller's meta.
_RESERVED = ("version", "convention", "num_frames", "complete", "frames")
_PNG_LEVEL = 1  # zlib level: ~4x faster than the default 6 for ~35% larger files (256 px renders)


class DatasetError(ValueError):
    """A scene folder that cannot be read or continued; the message says which file and why."""


def default_split(index: int) -> str:
    """Split of view ``index``: every 8th view (from the 4th) is "val", every 8th (from the 8th) "test"."""
    return {3: "val", 7: "test"}.get(index % 8, "train")


def frame_stem(index: int) -> str:
    return f"{index:05d}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metres float (H, W) -> uint16 millimetres; no depth (<= 0, NaN, inf) and > 65.535 m -> 0."""
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    too_far = valid & (depth > MAX_DEPTH_M)
    if too_far.any():
        log.warning("%d depth values beyond %.3f m stored as 0 (no depth)", int(too_far.sum()), MAX_DEPTH_M)
    mm = np.where(valid & ~too_far, np.round(np.where(valid, depth, 0) / DEPTH_UNIT_SCALE), 0)
    return mm.astype(np.uint16)


def _intrinsics(camera: Camera) -> dict:
    k = camera.K
    if k[0, 1] != 0:
        raise DatasetError(f"nerfstudio's OPENCV model has no skew; got K[0, 1] = {k[0, 1]:g}")
    return {"fl_x": float(k[0, 0]), "fl_y": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2]),
            "w": camera.width, "h": camera.height}


class SceneWriter:
    """Writes the views of one scene folder; reopening the same folder resumes it.

    ``num_frames``: how many views the scene will have. ``meta``: JSON-serialisable facts
    stored in the "worldfm" block (e.g. ``seed``, ``generator``); reopening with different
    ``num_frames`` or ``meta`` is refused, so a resumed scene never mixes two settings.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int, meta: dict | None = None):
        if num_frames < 1:
            raise DatasetError(f"a scene needs at least one view; got num_frames={num_frames}")
        self.path = Path(path)
        self.num_frames = num_frames
        self.meta = json.loads(json.dumps(meta or {}, allow_nan=False))  # as it will read back
        clash = sorted(set(self.meta) & set(_RESERVED))
        if clash:
            raise DatasetError(f"meta keys {clash} are reserved for the writer; rename them")
        self._frames: dict[int, dict] = {}  # index -> transforms.json frame entry (+ our fields)
        (self.path / "images").mkdir(parents=True, exist_ok=True)
        (self.path / "depth").mkdir(exist_ok=True)
        for stray in [*self.path.glob(".*.tmp"), *self.path.glob("*/.*.tmp")]:
            stray.unlink()  # left by a killed run; never referenced by the manifest
        if (self.path / TRANSFORMS).exists():
            self._resume()

    def _resume(self) -> None:
        manifest = self.path / TRANSFORMS
        try:
            data = json.loads(manifest.read_text())
            block = data["worldfm"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(
                f"{manifest} exists but is not a scene this writer made ({exc}); use another output folder"
            ) from exc
        stored = {k: v for k, v in block.items() if k not in _RESERVED} | {"num_frames": block.get("num_frames")}
        wanted = self.meta | {"num_frames": self.num_frames}
        if stored != wanted:
            raise DatasetError(
                f"{self.path} was started with other settings ({stored}) than this run ({wanted}); "
                "continue it with the same settings, or write to another folder"
            )
        records = block.get("frames", {})
        for entry in data.get("frames", []):
            stem = Path(entry["file_path"]).stem
            record = records.get(stem)
            if record is None or not self._files_intact(entry, record):
                log.warning("%s: view %s is damaged or unlisted; it will be written again", self.path, stem)
                continue
            full = {**{k: data[k] for k in _INTRINSIC_KEYS if k in data}, **entry}
            self._frames[int(stem)] = {**full, "worldfm": record}
        log.info("%s: resuming with %d of %d views done", self.path, len(self._frames), self.num_frames)

    def _files_intact(self, entry: dict, record: dict) -> bool:
        """Whether every file of a listed view exists with the SHA-256 recorded for it."""
        digests = record.get("sha256", {})
        paths = {"rgb": entry.get("file_path"), "depth": entry.get("depth_file_path")}
        try:
            for kind, path in paths.items():
                if path is not None:
                    if kind not in digests:
                        return False
                    _read_file(self.path / path, digests[kind])
        except DatasetError:
            return False
        return True

    @property
    def done(self) -> list[int]:
        """Indices of the views already written, ascending."""
        return sorted(self._frames)

    def missing(self) -> list[int]:
        """Indices still to write, ascending: a resumed run continues at the first of them."""
        return [i for i in range(self.num_frames) if i not in self._frames]

    @property
    def complete(self) -> bool:
        return len(self._frames) == self.num_frames

    def write(self, index: int, frame: Frame, split: str | None = None) -> None:
        """Write view ``index`` (files, then the manifest); rewriting an index replaces it."""
        if not 0 <= index < self.num_frames:
            raise DatasetError(f"view index {index} is outside 0..{self.num_frames - 1}")
        split = split or default_split(index)
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}; got {split!r}")
        others = [f for i, f in self._frames.items() if i != index]
        if others and ("depth_file_path" in others[0]) != (frame.depth is not None):
            raise DatasetError("either every view of a scene has depth or none has (nerfstudio needs all or none)")
        stem = frame_stem(index)
        entry: dict = {"file_path": f"images/{stem}.png"}
        rgb = png_bytes(np.ascontiguousarray(frame.rgb))
        digests = {"rgb": _sha256(rgb)}
        atomic_write(self.path / entry["file_path"], rgb)
        if frame.depth is not None:
            entry["depth_file_path"] = f"depth/{stem}.png"
            depth = png_bytes(encode_depth(frame.depth))
            digests["depth"] = _sha256(depth)
            atomic_write(self.path / entry["depth_file_path"], depth)
        entry["transform_matrix"] = c2w_to_opengl(frame.camera.c2w).tolist()
        self._frames[index] = {**entry, **_intrinsics(frame.camera), "worldfm": {"split": split, "sha256": digests}}
        self._save()

    def _save(self) -> None:
        """Rewrite transforms.json from the views written so far (atomically)."""
        frames = [self._frames[i] for i in sorted(self._frames)]
        cams = [{k: f[k] for k in _INTRINSIC_KEYS} for f in frames]
        shared = cams[0] if all(c == cams[0] for c in cams) else None
        data: dict = {"camera_model": "OPENCV"}
        if shared:
            data.update(shared)  # nerfstudio ignores per-frame intrinsics once top-level ones exist
        data.update({k: 0.0 for k in ("k1", "k2", "p1", "p2")})
        data["depth_unit_scale_factor"] = DEPTH_UNIT_SCALE
        data["frames"] = [
            {k: v for k, v in f.items() if k != "worldfm" and (shared is None or k not in _INTRINSIC_KEYS)}
            for f in frames
        ]
        by_split = {s: [f["file_path"] for f in frames if f["worldfm"]["split"] == s] for s in SPLITS}
        if all(by_split.values()):  # nerfstudio wants all three lists or none
            data.update({f"{s}_filenames": names for s, names in by_split.items()})
        data["worldfm"] = {
            "version": FORMAT_VERSION,
            "convention": CONVENTION,
            **self.meta,
            "num_frames": self.num_frames,
            "complete": self.complete,
            "frames": {Path(f["file_path"]).stem: f["worldfm"] for f in frames},
        }
        atomic_write(self.path / TRANSFORMS, json.dumps(data, indent=1, allow_nan=False).encode())


def write_scene(scene: Scene, path: str | os.PathLike) -> Path:
    """Write a whole ``Scene`` to folder ``path`` (resuming it if it was started); returns the path.

    ``scene.meta`` goes into the "worldfm" block; its optional ``splits`` (one per frame)
    sets the frame splits, otherwise ``default_split`` does.
    """
    meta = {k: v for k, v in scene.meta.items() if k not in (*_RESERVED, "splits")}
    splits = scene.meta.get("splits") or [default_split(i) for i in range(len(scene))]
    writer = SceneWriter(path, num_frames=len(scene), meta=meta)
    for i in writer.missing():
        writer.write(i, scene.frames[i], splits[i])
    return writer.path


def _read_file(path: Path, digest: str | None) -> bytes:
    """The bytes of a scene file, checked against the SHA-256 the writer recorded (if any)."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing; the scene is incomplete -- regenerate or resume it")
    data = path.read_bytes()
    if digest is not None and _sha256(data) != digest:
        raise DatasetError(f"{path} changed since it was written (SHA-256 mismatch); delete it and resume the scene")
    return data


def _decode_png(data: bytes, path: Path, size: tuple[int, int], depth: bool) -> np.ndarray:
    """Decode a whole PNG of ``size=(W, H)``: RGB uint8 (H, W, 3), or depth uint16 (H, W)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            array = np.asarray(img if depth else img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({exc}); delete it and resume the scene") from exc
    if depth and mode not in ("I;16", "I;16B", "I"):
        raise DatasetError(f"{path}: depth must be a 16-bit grayscale PNG; got mode {mode}")
    if (array.shape[1], array.shape[0]) != size:
        raise DatasetError(f"{path} is {array.shape[1]}x{array.shape[0]} but transforms.json says {size[0]}x{size[1]}")
    return array.astype(np.uint16) if depth else array


def _camera(data: dict, entry: dict, where: str) -> Camera:
    """The Camera of one transforms.json frame: per-frame intrinsics override top-level ones."""
    fields = {}
    for key in _INTRINSIC_KEYS:
        value = entry.get(key, data.get(key))
        if value is None:
            raise DatasetError(f"{where}: no {key!r} (top-level or per frame); need fl_x, fl_y, cx, cy, w, h")
        fields[key] = value
    distortion = {k: entry.get(k, data.get(k, 0.0)) for k in _DISTORTION_KEYS}
    if any(float(v) != 0.0 for v in distortion.values()):
        raise DatasetError(f"{where}: lens distortion {distortion} is not supported; undistort the images first")
    K = np.array([[fields["fl_x"], 0.0, fields["cx"]], [0.0, fields["fl_y"], fields["cy"]], [0.0, 0.0, 1.0]], float)
    try:
        pose = np.asarray(entry["transform_matrix"], dtype=np.float64)
        if pose.shape == (3, 4):
            pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
        return Camera(K=K, c2w=opengl_to_c2w(pose), width=int(fields["w"]), height=int(fields["h"]))
    except (KeyError, TypeError, CameraError) as exc:
        raise DatasetError(f"{where}: invalid camera: {exc}") from exc


def read_scene(path: str | os.PathLike, allow_incomplete: bool = False) -> Scene:
    """Read a scene folder into a ``Scene`` in our convention, depth in metres (0 = none).

    Frames come in file-name order, named by file stem. ``scene.meta`` is the "worldfm"
    block (empty for foreign nerfstudio folders) with ``splits``: one split per frame.
    Raises ``DatasetError`` for missing, truncated or mis-sized files, files that changed
    since they were written (SHA-256), invalid cameras, and -- unless ``allow_incomplete`` --
    scenes whose writer has not finished.
    """
    root = Path(path)
    manifest = root / TRANSFORMS
    if not manifest.is_file():
        raise DatasetError(f"{root} has no {TRANSFORMS}; is it a scene folder?")
    try:
        data = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{manifest} is not valid JSON ({exc})") from exc
    _check_layout(data, manifest)
    block = dict(data.get("worldfm", {}))
    if block and not block.get("complete", False) and not allow_incomplete:
        raise DatasetError(
            f"{root} is incomplete ({len(data.get('frames', []))} of {block.get('num_frames')} views); "
            "finish it by rerunning its generator, or pass allow_incomplete=True"
        )
    records = block.pop("frames", {})
    scale = float(data.get("depth_unit_scale_factor", DEPTH_UNIT_SCALE))
    frames, splits = [], []
    for entry in sorted(data.get("frames", []), key=lambda e: e.get("file_path", "")):
        if "file_path" not in entry:
            raise DatasetError(f"{manifest}: a frame has no file_path")
        stem = Path(entry["file_path"]).stem
        where = f"{manifest} frame {stem}"
        camera = _camera(data, entry, where)
        size = (camera.width, camera.height)
        digests = records.get(stem, {}).get("sha256", {})
        rgb_path = root / entry["file_path"]
        rgb = _decode_png(_read_file(rgb_path, digests.get("rgb")), rgb_path, size, depth=False)
        depth = None
        if "depth_file_path" in entry:
            depth_path = root / entry["depth_file_path"]
            raw = _decode_png(_read_file(depth_path, digests.get("depth")), depth_path, size, depth=True)
            depth = (raw * scale).astype(np.float32)
        frames.append(Frame(rgb=rgb, camera=camera, depth=depth, name=stem))
        splits.append(records.get(stem, {}).get("split", "train"))
    if not frames:
        raise DatasetError(f"{manifest} lists no frames")
    return Scene(name=root.name, frames=frames, meta={**block, "splits": splits})


def _check_layout(data: object, manifest: Path) -> None:
    """Refuse a transforms.json whose structure is not the documented one (docs/dataset.md),
    so a hand-edited or foreign file fails with a message instead of deep in the reader."""

    def bad(what: str) -> DatasetError:
        return DatasetError(f"{manifest}: {what} (see docs/dataset.md for the format)")

    if not isinstance(data, dict):
        raise bad(f"the top level must be an object; got {type(data).__name__}")
    frames = data.get("frames", [])
    if not isinstance(frames, list) or not all(isinstance(e, dict) for e in frames):
        raise bad("'frames' must be a list of objects")
    for e in frames:
        for key in ("file_path", "depth_file_path"):
            if key in e and not isinstance(e[key], str):
                raise bad(f"a frame's {key!r} must be a string; got {e[key]!r}")
    for where in (data, *frames):
        for key in (*_INTRINSIC_KEYS, *_DISTORTION_KEYS):
            value = where.get(key)
            if value is not None and (type(value) not in (int, float)):
                raise bad(f"{key!r} must be a number; got {value!r}")
    block = data.get("worldfm", {})
    records = block.get("frames", {}) if isinstance(block, dict) else None
    if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
        raise bad("'worldfm' must be an object whose 'frames' maps frame names to objects")


def find_scenes(root: str | os.PathLike) -> list[Path]:
    """Scene folders (those holding a transforms.json) directly under ``root``, sorted by name."""
    return sorted(p.parent for p in Path(root).glob(f"*/{TRANSFORMS}"))
