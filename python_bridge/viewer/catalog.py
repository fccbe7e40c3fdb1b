"""The scenes a browser may open, by name, and what the page needs to fly through one.

The page never sends a path: it sends a name from :meth:`Catalog.listing`.
``procedural:SEED`` (optionally ``:indoor`` / ``:outdoor``) is generated in memory; a
dataset scene is ``data:FOLDER`` for a folder that ``datagen.dataset.find_scenes`` lists
directly under ``--data-root`` (looked up in that listing, never joined onto the root), or
``dir:FOLDER`` for the scene folder given on the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from models.cameras import scale_K
from models.scene import Frame

PROCEDURAL_PRESETS = ("procedural:0", "procedural:1", "procedural:2", "procedural:0:outdoor")
_PROCEDURAL = re.compile(r"procedural:(\d{1,9})(?::(indoor|outdoor))?")
THUMBNAIL_WIDTH = 160
MAX_NAME_CHARS = 256
LEVEL_TOL = 0.05  # |x . up| below this: a camera without roll (about 3 degrees)
YAW_SPREAD = 0.02  # second eigenvalue of mean(x x^T) above this: the x axes fix up (views ~8+ degrees apart)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class SceneNameError(ValueError):
    """A scene name the catalog does not list; the message says which names it accepts."""


@dataclass(frozen=True)
class SceneSource:
    """One openable scene: its catalog ``name`` and how to make its posed views."""

    name: str
    kind: str  # "procedural" or "dataset"
    seed: int = 0
    procedural_kind: str = "indoor"
    folder: Path | None = None

    def load(self, views: int, size: int, progress: Progress) -> list[Frame]:
        """The scene's posed RGB-D views (``views`` x ``size`` px for procedural scenes)."""
        if self.kind == "procedural":
            from python_bridge.demo import make_scene

            _, frames = make_scene(
                self.seed, self.procedural_kind, views, size, progress=lambda i, n: progress("views", i, n)
            )
            return frames
        from datagen.dataset import read_scene

        progress("read", 0, 1)
        return read_scene(self.folder).frames


class Catalog:
    """Scene names for the page: procedural presets (any seed is accepted), the dataset
    scenes under ``data_root`` and ``scene_dirs`` given on the command line."""

    def __init__(self, data_root: Path | None = None, scene_dirs: Sequence[Path] = ()) -> None:
        self.data_root = data_root
        self._dirs = {f"dir:{Path(d).resolve().name}": Path(d).resolve() for d in scene_dirs}

    def _datasets(self) -> dict[str, Path]:
        """Dataset scenes by name: read afresh each time, so scenes written later show up."""
        from datagen.dataset import find_scenes

        found = {f"data:{p.name}": p for p in find_scenes(self.data_root)} if self.data_root else {}
        return {**found, **self._dirs}

    def listing(self) -> list[dict]:
        """``[{"name", "kind"}]`` for the page's picker: presets first, then datasets by name."""
        return [{"name": n, "kind": "procedural"} for n in PROCEDURAL_PRESETS] + [
            {"name": n, "kind": "dataset"} for n in sorted(self._datasets())
        ]

    def resolve(self, name: object) -> SceneSource:
        """The source named ``name``; :class:`SceneNameError` for anything not listed."""
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise SceneNameError(f"a scene name is a string of 1-{MAX_NAME_CHARS} characters")
        match = _PROCEDURAL.fullmatch(name)
        if match:
            return SceneSource(name, "procedural", seed=int(match[1]), procedural_kind=match[2] or "indoor")
        folder = self._datasets().get(name)
        if folder is None:
            where = f" or a dataset under {self.data_root}" if self.data_root else ""
            raise SceneNameError(f"no scene {name!r}: use procedural:SEED[:indoor|:outdoor]{where} from the list")
        return SceneSource(name, "dataset", folder=folder)

    def default(self) -> str:
        """The scene to open first: a command-line folder, else the first data-root scene, else procedural:0."""
        datasets = sorted(self._dirs) or sorted(self._datasets())
        return datasets[0] if datasets else PROCEDURAL_PRESETS[0]


@dataclass
class StartView:
    """How the page starts flying through a scene: the first view's pose ``start`` (4, 4),
    the scene's ``up`` direction (world, unit), a walking ``speed`` (m/s), and the
    intrinsics ``K`` (3, 3) of frames of ``size`` (W, H) -- those of every live render and
    of a recorded camera path."""

    start: np.ndarray
    up: np.ndarray
    speed: float
    K: np.ndarray
    size: tuple[int, int]


def start_view(frames: Sequence[Frame], size: tuple[int, int]) -> StartView:
    """The :class:`StartView` of a scene's views for frames of ``size`` (W, H).

    "Up" is what the views agree is vertical, so mouse-look yaws about the scene's vertical:
    cameras without roll have horizontal x axes. When every x axis is perpendicular to the
    world's Z, up is Z (our convention's up, docs/conventions.md: procedural and Unreal
    scenes). Otherwise (a dataset in another world) it is the direction most perpendicular to
    all x axes when they spread enough in yaw to fix it, else the views' mean up axis (-y)
    made perpendicular to their mean x axis; its sign follows the mean up axis. The speed
    covers a quarter of the median scene depth per second (1 m/s without depth).
    """
    first = frames[0].camera
    rights = np.stack([f.camera.c2w[:3, 0] for f in frames])  # (N, 3)
    mean_up = -np.stack([f.camera.c2w[:3, 1] for f in frames]).mean(axis=0)
    z = np.array([0.0, 0.0, 1.0])
    values, vectors = np.linalg.eigh(rights.T @ rights / len(frames))  # ascending
    if np.abs(rights @ z).max() < LEVEL_TOL:
        up = z
    elif values[1] > YAW_SPREAD:
        up = vectors[:, 0]
    else:
        mean_right = rights.mean(axis=0) / np.linalg.norm(rights.mean(axis=0))
        up = mean_up - (mean_up @ mean_right) * mean_right
    up = up / np.linalg.norm(up)
    if up @ mean_up < 0:
        up = -up
    depths = [np.median(f.depth[np.isfinite(f.depth) & (f.depth > 0)]) for f in frames if f.depth is not None]
    depths = [d for d in depths if np.isfinite(d)]
    speed = 0.25 * float(np.median(depths)) if depths else 1.0
    K = scale_K(first.K, (first.width, first.height), size)
    return StartView(first.c2w, up, speed, K, size)


def thumbnails(frames: Sequence[Frame], width: int = THUMBNAIL_WIDTH) -> list[bytes]:
    """Small JPEGs of the views (reference candidates), for the page's reference inset."""
    out = []
    for f in frames:
        h, w = f.rgb.shape[:2]
        small = cv2.resize(f.rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        out.append(data.tobytes() if ok else b"")
    return out
