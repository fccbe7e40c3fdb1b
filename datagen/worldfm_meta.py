"""Reader for the published WorldFM demo input, ``meta.json``: ``{name, image, K, c2w}``.

``K`` is 3x3 in pixels, ``c2w`` one 4x4 or N 4x4 OpenCV camera-to-world matrices (our
convention already, see ``models.cameras``), ``image`` a path relative to the file.

Intrinsics policy. The published example ships a 504x504 image with a K for 512x512
(cx = cy = 256). We never resize the photo; K is made to describe the image we return:

* if the principal point is the centre of the image (K's implied size, ``2cx x 2cy``,
  equals the image size), K is used as written;
* otherwise, if the caller says which size K was written for (``k_size``), or K's implied
  size has the image's aspect ratio, K is rescaled to the image with
  ``models.cameras.scale_K`` and a warning says so;
* otherwise the file is rejected: we cannot tell what K refers to.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.cameras import CameraError, scale_K, validate_c2w, validate_K
from models.scene import Camera, Frame

log = logging.getLogger(__name__)

_ASPECT_TOL = 0.01


class WorldFMMetaError(ValueError):
    """A meta.json that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class WorldFMInput:
    """A WorldFM demo input: the photo, intrinsics for its actual size, and the camera path.

    ``image``: (H, W, 3) uint8. ``K``: (3, 3) pixels for that image. ``c2w``: (N, 4, 4)
    camera path, metres, our convention. ``K_as_written``: K exactly as in meta.json.
    """

    name: str
    image: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    K_as_written: np.ndarray
    path: Path

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def height(self) -> int:
        return self.image.shape[0]

    def cameras(self) -> list[Camera]:
        """One Camera per pose of the path, at the photo's size."""
        return [Camera(K=self.K, c2w=pose, width=self.width, height=self.height) for pose in self.c2w]

    def reference_frame(self, c2w: np.ndarray | None = None) -> Frame:
        """The photo as a Frame without depth. meta.json does not give the photo's pose:
        pass it, or get the identity (the photo's camera defines the world frame)."""
        pose = np.eye(4) if c2w is None else c2w
        return Frame(rgb=self.image, camera=Camera(self.K, pose, self.width, self.height), name=self.name)


def _fit_K(K: np.ndarray, image_size: tuple[int, int], k_size: tuple[int, int] | None, where: str) -> np.ndarray:
    """K for an image of ``image_size=(W, H)`` following the module's policy."""
    implied = (int(round(2 * K[0, 2])), int(round(2 * K[1, 2])))
    src = k_size or implied
    if src == image_size:
        return K
    if k_size is None and abs(implied[0] / implied[1] - image_size[0] / image_size[1]) > _ASPECT_TOL * (
        image_size[0] / image_size[1]
    ):
        raise WorldFMMetaError(
            f"{where}: K's principal point ({K[0, 2]:g}, {K[1, 2]:g}) implies a {implied[0]}x{implied[1]} frame, "
            f"which does not have the aspect ratio of the {image_size[0]}x{image_size[1]} image; "
            "pass k_size=(W, H) to say which size K was written for"
        )
    log.warning(
        "%s: K is written for a %dx%d frame but the image is %dx%d; rescaling K to the image "
        "(fx %.4g -> %.4g). The image is not resized.",
        where, src[0], src[1], image_size[0], image_size[1], K[0, 0], K[0, 0] * image_size[0] / src[0],
    )
    return scale_K(K, src, image_size)


def read_worldfm_meta(path: str | os.PathLike, k_size: tuple[int, int] | None = None) -> WorldFMInput:
    """Read and validate a WorldFM ``meta.json`` and its image (see the module docstring).

    ``k_size=(W, H)``: the frame size K was written for, when it is not ``(2cx, 2cy)``.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorldFMMetaError(f"cannot read {path}: {exc}") from exc
    missing = [key for key in ("name", "image", "K", "c2w") if key not in meta]
    if missing:
        raise WorldFMMetaError(f"{path} lacks {missing}; a WorldFM meta.json has name, image, K and c2w")
    image_path = path.parent / meta["image"]
    try:
        with Image.open(image_path) as img:
            image = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise WorldFMMetaError(f"{path}: cannot read its image {image_path}: {exc}") from exc
    size = (image.shape[1], image.shape[0])
    try:
        K_written = validate_K(np.asarray(meta["K"], dtype=np.float64))
        K = validate_K(_fit_K(K_written, size, k_size, str(path)), *size)
        c2w = validate_c2w(meta["c2w"], "c2w")
    except WorldFMMetaError:
        raise
    except (CameraError, TypeError, ValueError) as exc:  # ValueError: ragged nested lists
        raise WorldFMMetaError(f"{path}: {exc}") from exc
    return WorldFMInput(
        name=str(meta["name"]), image=image, K=K, c2w=c2w.reshape(-1, 4, 4), K_as_written=K_written, path=path
    )
