"""Where captured views go: a ``datagen.dataset`` scene folder plus a capture log.

The dataset numbers views 0..N-1, while a plan has more candidates than N (some are
rejected), so the folder also holds ``unrealcv_capture.json``: for each candidate handled,
either the dataset index it was written to (and its plan group: a view and its
small-baseline neighbours share one) or why it was rejected. The log entry for a
view is saved *before* its files (a write-ahead record), and an entry whose index the
dataset does not list is dropped when the folder is reopened, so after a crash at any point
every candidate is either done exactly once or captured again -- never written twice.

Optional extra channels (``normal``, ``object_mask``) go beside the dataset's images as
``normals/00000.png`` and ``object_masks/00000.png``, written before the view is listed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from datagen.dataset import DatasetError, SceneWriter, atomic_write, png_bytes, frame_stem
from models.scene import Frame

CAPTURE_LOG = "unrealcv_capture.json"
EXTRA_FOLDERS = {"normal": "normals", "object_mask": "object_masks"}


class CaptureSink:
    """One scene folder being captured into; reopening it resumes.

    ``num_views``: views the finished scene holds; ``meta``: facts for the dataset's
    ``worldfm`` block (the plan and capture settings: a resumed run must match them).
    """

    def __init__(self, path: str | os.PathLike, num_views: int, meta: dict):
        self.path = Path(path)
        self.writer = SceneWriter(self.path, num_frames=num_views, meta=meta)
        self._log_path = self.path / CAPTURE_LOG
        self._log: dict[str, dict] = {}
        if self._log_path.exists():
            try:
                self._log = json.loads(self._log_path.read_text())["candidates"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{self._log_path} is unreadable ({exc}); capture into a new folder") from exc
        written = set(self.writer.done)
        # Drop write-ahead entries whose view never made it into the dataset.
        self._log = {n: e for n, e in self._log.items() if "rejected" in e or e.get("index") in written}
        orphans = written - {e["index"] for e in self._log.values() if "index" in e}
        if orphans:
            raise DatasetError(
                f"{self.path} lists views {sorted(orphans)} that {CAPTURE_LOG} does not account for; "
                "it was not written by this capture -- use a new folder"
            )

    def done(self) -> dict[str, bool]:
        """Candidate name -> True (written) or False (rejected), for every candidate handled."""
        return {name: "index" in entry for name, entry in self._log.items()}

    @property
    def complete(self) -> bool:
        return self.writer.complete

    def _save_log(self) -> None:
        atomic_write(self._log_path, json.dumps({"candidates": self._log}, indent=1).encode())

    def write(self, name: str, frame: Frame, extras: dict[str, np.ndarray], group: int) -> int:
        """Write candidate ``name``'s view at the next free dataset index; returns that index.

        ``group``: the plan's base view this one belongs to (neighbours share it), logged so
        that training can pick small-baseline pairs.
        """
        taken = {e["index"] for e in self._log.values() if "index" in e}
        index = next(i for i in self.writer.missing() if i not in taken)
        self._log[name] = {"index": index, "group": group}
        self._save_log()
        for kind, image in extras.items():
            folder = self.path / EXTRA_FOLDERS[kind]
            folder.mkdir(exist_ok=True)
            atomic_write(folder / f"{frame_stem(index)}.png", png_bytes(np.ascontiguousarray(image)))
        self.writer.write(index, frame)
        return index

    def reject(self, name: str, reason: str) -> None:
        self._log[name] = {"rejected": reason}
        self._save_log()
