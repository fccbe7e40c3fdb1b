"""In-memory scene types that every package speaks: posed RGB-D frames in our convention.

``datagen`` writes and reads them, ``models`` trains on them and builds anchors from them,
``python_bridge`` receives them from clients. Cameras follow ``models.cameras``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.cameras import CameraError, validate_c2w, validate_K


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: ``K`` (3, 3) pixels, ``c2w`` (4, 4) metres, image ``width`` x ``height``."""

    K: np.ndarray
    c2w: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", validate_K(self.K, self.width, self.height))
        object.__setattr__(self, "c2w", validate_c2w(self.c2w))
        if self.c2w.ndim != 2:
            raise CameraError("a Camera holds one pose; got a batch of poses")


@dataclass
class Frame:
    """One posed view.

    ``rgb``: (H, W, 3) uint8. ``depth``: (H, W) float32 z-depth along the optical axis in
    metres, or ``None``; values <= 0 or non-finite mark pixels without depth (e.g. sky).
    """

    rgb: np.ndarray
    camera: Camera
    depth: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        h, w = self.camera.height, self.camera.width
        if self.rgb.dtype != np.uint8 or self.rgb.shape != (h, w, 3):
            raise ValueError(
                f"frame {self.name!r}: rgb must be uint8 of shape ({h}, {w}, 3) to match its camera; "
                f"got {self.rgb.dtype} {self.rgb.shape}"
            )
        if self.depth is not None:
            if self.depth.shape != (h, w):
                raise ValueError(
                    f"frame {self.name!r}: depth must have shape ({h}, {w}) to match its camera; "
                    f"got {self.depth.shape}"
                )
            if self.depth.dtype != np.float32:
                self.depth = self.depth.astype(np.float32)


@dataclass
class Scene:
    """A named set of posed frames plus free-form metadata (seed, generator, split ...)."""

    name: str
    frames: list[Frame]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)
