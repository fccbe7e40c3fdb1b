"""Writes tests/data/protocol_vectors.json: one encoded example of every wire message (protocol v1).

Both ends test against these bytes: tests/python_bridge/test_vectors.py checks the Python
encoder and decoder reproduce them, and the C++ plugin core can decode the same files.
Run ``python tests/data/make_protocol_vectors.py`` after an intentional wire change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from python_bridge import protocol as P

OUT = Path(__file__).with_name("protocol_vectors.json")
EYE = P.flat(np.eye(4))
POSE = P.flat(np.array([[1.0, 0, 0, 0.5], [0, 1, 0, -0.25], [0, 0, 1, 2.0], [0, 0, 0, 1]]))
K_2x2 = P.flat(np.array([[2.0, 0, 1], [0, 2, 1], [0, 0, 1]]))
RGB_2x2 = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
DEPTH_2x2 = np.array([[1.0, 1.5], [2.0, 0.0]], np.float32)
VIEW = {"name": "v0", "width": 2, "height": 2, "K": K_2x2, "c2w": EYE, "depth": True}


def examples() -> list[tuple[str, P.Message]]:
    """(name, message) for every message type, in the order docs/protocol.md shows them."""
    limits = P.Limits().as_dict()
    return [
        ("hello", P.Message(P.HELLO, 1, {"client": "unreal", "session": "0123456789abcdef"})),
        (
            "welcome",
            P.Message(
                P.WELCOME,
                1,
                {
                    "server": "worldfm-bridge",
                    "protocol": 1,
                    "session": "0123456789abcdef",
                    "model": {
                        "name": "demo-256",
                        "frame_size": [256, 256],
                        "steps": [1, 2],
                        "latent_shape": [4, 32, 32],
                        "dtype": "fp32",
                        "provider": "CPUExecutionProvider",
                        "default_steps": 1,
                    },
                    "frame_size": [256, 256],
                    "encodings": ["raw", "jpeg"],
                    "heartbeat_ms": 1000,
                    "client_timeout_ms": 30000,
                    "server_paths": False,
                    "limits": limits,
                },
            ),
        ),
        (
            "open_scene",
            P.Message(P.OPEN_SCENE, 2, {"name": "room", "views": [VIEW], "final": False}, [RGB_2x2, DEPTH_2x2]),
        ),
        ("views_added", P.Message(P.VIEWS_ADDED, 2, {"scene": "s-00112233aabbccdd", "views": 1})),
        (
            "add_views",
            P.Message(
                P.ADD_VIEWS, 3, {"scene": "s-00112233aabbccdd", "views": [VIEW], "final": True}, [RGB_2x2, DEPTH_2x2]
            ),
        ),
        ("open_scene_path", P.Message(P.OPEN_SCENE, 4, {"name": "room", "path": "procedural/scene_00000"})),
        (
            "scene_ready",
            P.Message(
                P.SCENE_READY,
                3,
                {
                    "scene": "s-00112233aabbccdd",
                    "name": "room",
                    "views": 2,
                    "points": 7,
                    "candidates": 2,
                    "build_ms": 12.5,
                },
            ),
        ),
        (
            "render",
            P.Message(
                P.RENDER,
                5,
                {
                    "scene": "s-00112233aabbccdd",
                    "c2w": POSE,
                    "K": K_2x2,
                    "size": [2, 2],
                    "t_client": 1700000000.25,
                    "encoding": "raw",
                    "steps": 1,
                    "seed": 42,
                },
            ),
        ),
        (
            "frame",
            P.Message(
                P.FRAME,
                5,
                {
                    "scene": "s-00112233aabbccdd",
                    "c2w": POSE,
                    "K": K_2x2,
                    "size": [2, 2],
                    "encoding": "raw",
                    "t_client": 1700000000.25,
                    "t_server": 1700000000.5,
                    "reference": 1,
                    "mode": "model",
                    "timings": {
                        "queue_ms": 0.5,
                        "anchor_ms": 4.0,
                        "reference_ms": 0.25,
                        "encode_ms": 10.0,
                        "generate_ms": 50.0,
                        "decode_ms": 12.0,
                        "image_encode_ms": 0.0,
                        "total_ms": 77.0,
                    },
                },
                [RGB_2x2],
            ),
        ),
        ("superseded", P.Message(P.SUPERSEDED, 6, {"by": 7, "scene": "s-00112233aabbccdd"})),
        ("close_scene", P.Message(P.CLOSE_SCENE, 8, {"scene": "s-00112233aabbccdd"})),
        ("scene_closed", P.Message(P.SCENE_CLOSED, 8, {"scene": "s-00112233aabbccdd"})),
        ("ping", P.Message(P.PING, 9, {"t_client": 1.5})),
        ("pong", P.Message(P.PONG, 9, {"t_client": 1.5, "t_server": 1700000001.0, "queued": 0})),
        ("error", P.error(P.E_UNKNOWN_SCENE, "no scene 's-x' on this server (closed, expired, or never opened)", 10)),
        ("stats", P.Message(P.STATS, 11, {})),
        (
            "stats_reply",
            P.Message(
                P.STATS,
                11,
                {
                    "uptime_s": 42.5,
                    "sessions": 1,
                    "scenes": 1,
                    "queued": 0,
                    "rendering": 0,
                    "counters": {"requests": 130, "frames": 120, "superseded": 4, "errors": 1},
                    "startup_s": {"imports": 1.7, "engine_ready": 2.9, "listening": 3.0, "scene_uploaded": 4.1,
                                  "anchor_ready": 5.2, "first_frame": 5.6},
                    "builds": [{"name": "room", "views": 12, "points": 580308, "build_ms": 1104.2,
                                "stages": {"fuse_ms": 950.1, "prepare_ms": 154.1},
                                "fill_guard": {"state": "decided", "serves": "anchor", "model_weight": 0.0,
                                               "model_psnr": 27.41,
                                               "fill_psnr": 27.62, "targets": 12, "decided_s": 14.2,
                                               "windows": 6}}],
                    "first_frame": {"timings": {"queue_ms": 0.1, "anchor_ms": 60.2, "encode_ms": 20.5,
                                                "generate_ms": 21.0, "decode_ms": 30.1, "total_ms": 140.0}},
                },
            ),
        ),
    ]


def main() -> None:
    vectors = [
        {
            "name": name,
            "type": msg.type,
            "id": msg.id,
            "fields": msg.fields,
            "blobs": [
                {"dtype": str(b.dtype), "shape": list(b.shape), "values": b.reshape(-1).tolist()} for b in msg.blobs
            ],
            "frames_hex": [bytes(f).hex() for f in P.encode(msg)],
        }
        for name, msg in examples()
    ]
    OUT.write_text(json.dumps({"protocol": P.PROTOCOL_VERSION, "messages": vectors}, indent=1) + "\n")
    print(f"wrote {len(vectors)} messages to {OUT}")


if __name__ == "__main__":
    main()
