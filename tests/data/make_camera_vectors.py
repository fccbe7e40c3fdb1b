"""Regenerate ``camera_vectors.json``: conversion vectors shared with the C++ plugin core.

Run ``python tests/data/make_camera_vectors.py`` after an intentional change to
``models.cameras``; ``tests/models/test_cameras.py`` fails while the file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.cameras import K_from_hfov, c2w_to_opengl, ue_to_c2w

VECTORS_PATH = Path(__file__).with_name("camera_vectors.json")


def build_vectors(seed: int = 7, count: int = 16) -> dict:
    """Unreal poses (hand-picked edge cases + seeded random ones) with their conversions."""
    rng = np.random.default_rng(seed)
    ue_cases = [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
        ([100.0, 0.0, 0.0], [0.0, 90.0, 0.0]),
        ([0.0, 250.0, -30.0], [-45.0, 0.0, 0.0]),
        ([10.0, 20.0, 30.0], [0.0, 0.0, 30.0]),
        ([-500.0, 120.5, 80.0], [89.0, -135.0, 10.0]),
    ]
    for _ in range(count - len(ue_cases)):
        loc = rng.uniform(-2000.0, 2000.0, 3)
        rot = [rng.uniform(-89.0, 89.0), rng.uniform(-179.0, 179.0), rng.uniform(-179.0, 179.0)]
        ue_cases.append((loc.round(3).tolist(), np.round(rot, 3).tolist()))
    poses = []
    for loc, rot in ue_cases:
        c2w = ue_to_c2w(np.array(loc), np.array(rot))
        poses.append(
            {
                "ue_location_cm": loc,
                "ue_rotation_pitch_yaw_roll_deg": rot,
                "c2w": c2w.tolist(),
                "c2w_opengl": c2w_to_opengl(c2w).tolist(),
            }
        )
    fovs = []
    for hfov, width, height in [(90.0, 256, 256), (60.0, 512, 288), (75.5, 1920, 1080)]:
        fovs.append({"hfov_deg": hfov, "width": width, "height": height, "K": K_from_hfov(hfov, width, height).tolist()})
    return {
        "description": "models.cameras conversion vectors: Unreal (cm, left-handed, pitch/yaw/roll deg) -> "
        "our c2w (OpenCV axes, metres, right-handed Z-up world = Unreal world with Y mirrored); "
        "c2w_opengl = nerfstudio camera-to-world; K from horizontal FOV with cx=W/2, cy=H/2.",
        "tolerance": 1e-9,
        "poses": poses,
        "fov": fovs,
    }


if __name__ == "__main__":
    VECTORS_PATH.write_text(json.dumps(build_vectors(), indent=1) + "\n")
    print(f"wrote {VECTORS_PATH}")
