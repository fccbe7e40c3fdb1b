"""Decode and check the binary payloads UnrealCV sends, and turn its depth into ours.

What the plugin sends (read from the UnrealCV sources, see docs/datagen.md):

* ``vget /camera/N/lit png`` (also ``normal png``, ``object_mask png``): a PNG of the
  capture's ``FColor`` buffer written as 8-bit RGBA; the alpha channel carries no colour
  (scene captures write inverted opacity into it), so we keep RGB only.
* ``vget /camera/N/depth npy``: a NumPy ``.npy`` v1.0 file (written by the bundled ``cnpy``:
  ``'<f4'``, C order, shape ``(H, W)``) in Unreal units, centimetres. Plugin builds with
  ``FusionCamSensor`` (the 4.22 / 4.27 / 5.x branches) capture ``SCS_SceneDepth``, which is
  z-depth along the optical axis; the older ``GTCaptureComponent`` builds (0.3.x) answer
  ``depth`` with the distance to the camera centre and ``plane_depth`` with z-depth.
  The depth target is half-float, so empty space (sky) reads as inf or ~65504 cm.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from models.cameras import pixel_rays

# Half-float render targets saturate at 65504 (cm); treat anything that far as "no surface".
NO_SURFACE_CM = 65000.0
CM_PER_M = 100.0


class PayloadError(ValueError):
    """A reply that is not the image or array it should be; the capture is retried."""


def _as_bytes(reply: str | bytes, what: str) -> bytes:
    # The client decodes every body that happens to be valid UTF-8 into str; undo that.
    data = reply.encode("utf-8") if isinstance(reply, str) else bytes(reply)
    if not data:
        raise PayloadError(f"{what}: empty reply")
    return data


def decode_png_rgb(reply: str | bytes, what: str = "lit png") -> np.ndarray:
    """PNG bytes (RGB or RGBA, 8 bit) -> (H, W, 3) uint8 RGB."""
    data = _as_bytes(reply, what)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise PayloadError(f"{what}: expected a PNG, got {img.format}")
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"{what}: not a readable PNG ({len(data)} bytes; {exc})") from exc
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def decode_npy(reply: str | bytes, what: str = "depth npy") -> np.ndarray:
    """``.npy`` bytes -> array, never unpickling (``allow_pickle=False``)."""
    data = _as_bytes(reply, what)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PayloadError(f"{what}: not a readable .npy array ({len(data)} bytes; {exc})") from exc


def depth_from_npy(reply: str | bytes, *, distance_to_centre: bool, K: np.ndarray) -> np.ndarray:
    """UnrealCV depth ``npy`` (cm) -> (H, W) float32 z-depth in metres; no surface -> 0.

    ``distance_to_centre``: the payload holds the distance from each pixel's surface point
    to the camera centre (0.3.x ``depth``) instead of z-depth; it is divided by the length
    of the pixel's ray ``K^-1 (u, v, 1)``, with pixel centres at ``(j + 0.5, i + 0.5)``.
    """
    raw = decode_npy(reply)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2 or raw.dtype.kind != "f":
        raise PayloadError(f"depth npy: expected a (H, W) float array, got {raw.dtype} {raw.shape}")
    if np.isnan(raw).any():
        raise PayloadError("depth npy: contains NaN, which no depth target produces")
    depth = raw.astype(np.float32) / CM_PER_M
    depth[~np.isfinite(raw) | (raw >= NO_SURFACE_CM) | (raw <= 0)] = 0.0
    if distance_to_centre:
        depth = depth / ray_lengths(K, raw.shape[1], raw.shape[0])
    return depth.astype(np.float32)


def ray_lengths(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) float32 length of ``K^-1 (u, v, 1)`` at each pixel centre: distance / z-depth."""
    return np.linalg.norm(pixel_rays(K, width, height), axis=-1).astype(np.float32)


def check_view(rgb: np.ndarray, depth: np.ndarray, width: int, height: int) -> None:
    """Raise :class:`PayloadError` unless the capture looks like a real render of the camera.

    Checks both sizes against the camera's and that the RGB is not all black (a capture
    taken before the renderer produced a frame).
    """
    if rgb.shape != (height, width, 3):
        raise PayloadError(f"lit image is {rgb.shape[1]}x{rgb.shape[0]}, the camera is {width}x{height}")
    if depth.shape != (height, width):
        raise PayloadError(f"depth is {depth.shape[1]}x{depth.shape[0]}, the camera is {width}x{height}")
    if not rgb.any():
        raise PayloadError("lit image is all black (renderer not ready, or the camera is inside geometry)")
