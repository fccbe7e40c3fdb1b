"""THE camera convention of WorldFM Bridge, and every conversion to and from it.

Our convention (the same as the published WorldFM ``meta.json``):

* camera axes are OpenCV's: x right, y down, z forward (the optical axis);
* a pose is a 4x4 camera-to-world matrix ``c2w`` in a right-handed world, in metres;
* intrinsics ``K`` are 3x3 in pixels; pixel ``(row i, col j)`` has its centre at
  ``(u, v) = (j + 0.5, i + 0.5)``, so a W x H image spans ``[0, W] x [0, H]`` and a
  centred camera has ``cx = W / 2, cy = H / 2``.

Other conventions are converted here and nowhere else:

* Unreal Engine: left-handed world, X forward, Y right, Z up, centimetres, camera
  rotation as pitch/yaw/roll in degrees (``FRotator``), horizontal FOV in degrees.
  Our world is Unreal's with Y mirrored and scaled to metres:
  ``p_ours = diag(1, -1, 1) @ p_ue / 100`` -- so our world is Z-up and right-handed.
* nerfstudio / OpenGL: camera x right, y up, z backward; same world.

This module imports nothing of ours, so every package (and the C++ plugin, through the
JSON vectors in ``tests/data/camera_vectors.json``) can rely on it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "CameraError",
    "validate_c2w",
    "validate_K",
    "c2w_to_w2c",
    "ue_to_c2w",
    "c2w_to_ue",
    "opengl_to_c2w",
    "c2w_to_opengl",
    "K_from_hfov",
    "hfov_from_K",
    "scale_K",
    "project",
    "pixel_rays",
    "mirror_camera",
    "crop_K",
    "look_at",
]

# Tolerances for "rigid": poses read from float32 files (e.g. the WorldFM meta.json)
# are orthonormal only to ~1e-7, so be lenient enough for float32 but catch real errors.
ORTHONORMAL_TOL = 1e-4
_FLIP_Y = np.diag([1.0, -1.0, 1.0])  # Unreal world <-> our world (mirror Y)
_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])  # mirror x of world and camera (flip augmentation)
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # camera-axes flip, its own inverse
UE_CM_PER_M = 100.0


class CameraError(ValueError):
    """A pose or intrinsics matrix that is not a valid camera; the message says why."""


def validate_c2w(c2w: np.ndarray, name: str = "c2w") -> np.ndarray:
    """Return ``c2w`` as float64 (4, 4) or (N, 4, 4) after checking it is a rigid transform.

    Rejects wrong shapes, non-finite values, a last row other than [0, 0, 0, 1],
    rotations that are not orthonormal, and reflections (det = -1).
    """
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape[-2:] != (4, 4) or m.ndim not in (2, 3):
        raise CameraError(f"{name} must be a 4x4 matrix (or N x 4 x 4); got shape {m.shape}")
    if m.ndim == 2:
        # One pose per server request: plain floats, because numpy's per-call cost is ten
        # times this arithmetic on a 4x4 (16 us against 1.6 us).
        rows = m.tolist()
        if not all(map(math.isfinite, rows[0] + rows[1] + rows[2] + rows[3])):
            raise CameraError(f"{name} must be finite; it contains NaN or inf")
        (a0, a1, a2, _), (b0, b1, b2, _), (c0, c1, c2, _), last = rows
        last_row_err = max(abs(last[0]), abs(last[1]), abs(last[2]), abs(last[3] - 1.0))
        ortho_err = max(  # |R R^T - I|: the rows' norms and pairwise dot products
            abs(a0 * a0 + a1 * a1 + a2 * a2 - 1.0), abs(b0 * b0 + b1 * b1 + b2 * b2 - 1.0),
            abs(c0 * c0 + c1 * c1 + c2 * c2 - 1.0), abs(a0 * b0 + a1 * b1 + a2 * b2),
            abs(a0 * c0 + a1 * c1 + a2 * c2), abs(b0 * c0 + b1 * c1 + b2 * c2),
        )
        det = a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0)
        _check_rigid(name, last, last_row_err, ortho_err, det)
        return m
    if not np.all(np.isfinite(m)):
        raise CameraError(f"{name} must be finite; it contains NaN or inf")
    rot = m[:, :3, :3]
    last_row_err = np.abs(m[:, 3] - _LAST_ROW).max(axis=1)
    ortho_err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rot)
    bad = np.flatnonzero((last_row_err > ORTHONORMAL_TOL) | (ortho_err > ORTHONORMAL_TOL) | (det < 0))
    if bad.size:
        i = int(bad[0])
        _check_rigid(f"{name}[{i}]", m[i, 3].tolist(), last_row_err[i], ortho_err[i], det[i])
    return m


def _check_rigid(where: str, last_row: list[float], last_row_err: float, ortho_err: float, det: float) -> None:
    """Raise the CameraError that names what makes a pose not rigid (nothing if it is)."""
    if last_row_err > ORTHONORMAL_TOL:
        raise CameraError(f"{where} last row must be [0, 0, 0, 1]; got {last_row}")
    if ortho_err > ORTHONORMAL_TOL:
        raise CameraError(
            f"{where} rotation must be orthonormal (a rigid transform, no scale or shear); "
            f"max |R R^T - I| = {ortho_err:.3g} > {ORTHONORMAL_TOL:g}"
        )
    if det < 0:
        raise CameraError(
            f"{where} must be a rigid transform; got det(R)={det:.3g} "
            "(a reflection: mixed-handed axes? convert with models.cameras first)"
        )


def validate_K(K: np.ndarray, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Return ``K`` as float64 (3, 3) after checking it is a pinhole intrinsics matrix.

    With ``width``/``height``, also checks the principal point lies inside the image,
    which catches a K written for another resolution (e.g. a 512 px K on a 256 px image).
    """
    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3):
        raise CameraError(f"K must be 3x3; got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise CameraError("K must be finite; it contains NaN or inf")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise CameraError(f"focal lengths must be positive; got fx={k[0, 0]:g}, fy={k[1, 1]:g}")
    # np.allclose's tolerances (atol 1e-8, rtol 1e-5), element by element: allclose itself costs
    # ~20 us, and every frame validates its K several times
    if not (abs(k[2, 0]) <= 1e-8 and abs(k[2, 1]) <= 1e-8 and abs(k[2, 2] - 1.0) <= 1e-8 + 1e-5) or k[1, 0] != 0:
        raise CameraError(f"K must be upper-triangular with last row [0, 0, 1]; got {k.tolist()}")
    if width is not None and height is not None:
        if width <= 0 or height <= 0:
            raise CameraError(f"image size must be positive; got {width}x{height}")
        if not (0 < k[0, 2] < width and 0 < k[1, 2] < height):
            raise CameraError(
                f"principal point ({k[0, 2]:g}, {k[1, 2]:g}) lies outside a {width}x{height} image; "
                "is K written for another resolution? rescale it with models.cameras.scale_K"
            )
    return k


def c2w_to_w2c(c2w: np.ndarray) -> np.ndarray:
    """Closed-form inverse of rigid transforms, (..., 4, 4) -> (..., 4, 4)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    rot_t = np.swapaxes(c2w[..., :3, :3], -1, -2)
    w2c = np.zeros_like(c2w)
    w2c[..., :3, :3] = rot_t
    w2c[..., :3, 3] = -(rot_t @ c2w[..., :3, 3:4])[..., 0]
    w2c[..., 3, 3] = 1.0
    return w2c


def _ue_axes(pitch: float, yaw: float, roll: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward, right and up unit vectors of an Unreal ``FRotator`` in Unreal's world.

    Same formula as Unreal's ``FRotationMatrix``: rows X (forward), Y (right), Z (up).
    """
    sp, cp = math.sin(math.radians(pitch)), math.cos(math.radians(pitch))
    sy, cy = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))
    sr, cr = math.sin(math.radians(roll)), math.cos(math.radians(roll))
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp])
    up = np.array([-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp])
    return forward, right, up


def ue_to_c2w(location_cm: np.ndarray, rotation_pyr_deg: np.ndarray) -> np.ndarray:
    """Unreal camera (location in cm, ``(pitch, yaw, roll)`` in degrees) -> our c2w (4, 4).

    The OpenCV camera axes are Unreal's right (x), -up (y) and forward (z), mirrored into
    our world.
    """
    loc = np.asarray(location_cm, dtype=np.float64)
    rot = np.asarray(rotation_pyr_deg, dtype=np.float64)
    if loc.shape != (3,) or rot.shape != (3,):
        raise CameraError(f"Unreal location and rotation must have 3 values each; got {loc.shape}, {rot.shape}")
    if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(rot))):
        raise CameraError("Unreal location/rotation must be finite; got NaN or inf")
    forward, right, up = _ue_axes(*rot)
    c2w = np.eye(4)
    c2w[:3, 0] = _FLIP_Y @ right
    c2w[:3, 1] = _FLIP_Y @ -up
    c2w[:3, 2] = _FLIP_Y @ forward
    c2w[:3, 3] = _FLIP_Y @ loc / UE_CM_PER_M
    return c2w


def c2w_to_ue(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our c2w (4, 4) -> Unreal ``(location_cm (3,), (pitch, yaw, roll) degrees (3,))``.

    Angles follow Unreal's ``FMatrix::Rotator``: pitch in [-90, 90], yaw and roll in (-180, 180].
    """
    m = validate_c2w(c2w)
    if m.ndim != 2:
        raise CameraError("c2w_to_ue converts one pose at a time")
    right = _FLIP_Y @ m[:3, 0]
    up = -(_FLIP_Y @ m[:3, 1])
    forward = _FLIP_Y @ m[:3, 2]
    pitch = math.degrees(math.atan2(forward[2], math.hypot(forward[0], forward[1])))
    yaw = math.degrees(math.atan2(forward[1], forward[0]))
    # Roll is measured against the right axis the same pitch/yaw would have at zero roll.
    right0 = np.array([-math.sin(math.radians(yaw)), math.cos(math.radians(yaw)), 0.0])
    roll = math.degrees(math.atan2(float(up @ right0), float(right @ right0)))
    loc = _FLIP_Y @ m[:3, 3] * UE_CM_PER_M
    return loc, np.array([pitch, yaw, roll])


def opengl_to_c2w(c2w_gl: np.ndarray) -> np.ndarray:
    """nerfstudio/OpenGL camera-to-world (camera y up, z backward) -> ours; (..., 4, 4)."""
    return validate_c2w(c2w_gl, "OpenGL c2w") @ _CV_TO_GL


def c2w_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Our camera-to-world -> nerfstudio/OpenGL (camera y up, z backward); (..., 4, 4)."""
    return validate_c2w(c2w) @ _CV_TO_GL


def K_from_hfov(hfov_deg: float, width: int, height: int) -> np.ndarray:
    """Intrinsics for a centred pinhole camera with square pixels and horizontal FOV in degrees."""
    if not (math.isfinite(hfov_deg) and 0 < hfov_deg < 180):
        raise CameraError(f"horizontal FOV must be in (0, 180) degrees; got {hfov_deg}")
    if width <= 0 or height <= 0:
        raise CameraError(f"image size must be positive; got {width}x{height}")
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def hfov_from_K(K: np.ndarray, width: int) -> float:
    """Horizontal FOV in degrees of intrinsics ``K`` for an image ``width`` pixels wide."""
    k = validate_K(K)
    return math.degrees(2.0 * math.atan((width / 2.0) / k[0, 0]))


def scale_K(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Rescale intrinsics from an image of ``src_size=(W, H)`` to one of ``dst_size=(W, H)``.

    Exact under our pixel-centre convention (the image spans [0, W] x [0, H]).
    """
    k = validate_K(K).copy()
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    k[0] *= sx
    k[1] *= sy
    return k


def project(points_world: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points [N, 3] (metres) to pixel coordinates [N, 2] and z-depth [N] (metres).

    Points behind the camera get depth <= 0; their pixel coordinates are meaningless.
    """
    w2c = c2w_to_w2c(validate_c2w(c2w))
    k = validate_K(K)
    pts = np.asarray(points_world, dtype=np.float64)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) @ k[:2, :2].T + k[:2, 2]
    return uv, z


def pixel_rays(K: np.ndarray, width: int, height: int, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rays ``K^-1 (u, v, 1)`` through every pixel centre, (H, W, 3) float64 camera axes, z == 1.

    Multiply by z-depth for camera-space points; their norm is distance / z-depth.
    Pixel ``(i, j)`` looks through ``(u, v) = (j + 0.5, i + 0.5)``, or with ``offset = (du, dv)``
    (pixels) through ``(j + 0.5 + du, i + 0.5 + dv)``: a sub-pixel sample, for supersampling.
    The zero offset adds exactly 0, so its rays are the centre rays bit for bit.
    """
    k = validate_K(K, width, height)
    v, u = np.mgrid[0:height, 0:width] + 0.5
    u += offset[0]
    v += offset[1]
    y = (v - k[1, 2]) / k[1, 1]
    x = (u - k[0, 2] - k[0, 1] * y) / k[0, 0]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def mirror_camera(K: np.ndarray, c2w: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The camera that sees the horizontally flipped image of a world mirrored in x.

    ``K`` (3, 3) pixels, ``c2w`` (4, 4) metres -> (K', c2w') with ``cx' = W - cx`` and
    ``c2w' = M c2w M``, M = diag(-1, 1, 1, 1): a proper rigid pose again (two mirrors).
    Every view of a sample is mirrored together, so relative poses stay consistent.
    """
    k = np.array(K, dtype=np.float64)
    k[0, 2] = width - k[0, 2]
    return k, validate_c2w(_MIRROR_X @ np.asarray(c2w, dtype=np.float64) @ _MIRROR_X)


def crop_K(K: np.ndarray, box: tuple[int, int, int, int], out_size: int) -> np.ndarray:
    """Intrinsics of the crop ``box = (x0, y0, width, height)`` pixels resized to ``out_size`` square."""
    k = np.array(K, dtype=np.float64)
    k[0, 2] -= box[0]
    k[1, 2] -= box[1]
    return scale_K(k, (box[2], box[3]), (out_size, out_size))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """c2w (4, 4) of a camera at ``eye`` looking at ``target``; ``up`` is world up (Z by default).

    The image's "up" (-y) points as close to ``up`` as the view direction allows.
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise CameraError("look_at needs target != eye")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise CameraError("look_at: view direction is parallel to the up vector; pick another up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w
