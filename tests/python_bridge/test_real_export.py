"""The engine, pipeline and server on a folder written by the real exporter (models/export.py).

An untrained ``tiny`` DiT with a tiny 8x AutoencoderKL, exported once per session: the
contract as the exporter implements it (external weights file, dropped inputs, parity
block in the manifest), rather than as tests/python_bridge/tiny_model.py imitates it.
"""

from __future__ import annotations

import numpy as np
import pytest

from bridge_views import make_views

export = pytest.importorskip("models.export", reason="models/export.py not in this checkout yet")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from diffusers import AutoencoderKL

    from models.dit import build_model

    ae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    model = build_model("tiny")
    folder = tmp_path_factory.mktemp("export") / "tiny"
    export.export_model({1: model, 2: model}, ae, folder, "tiny-untrained")
    return folder


def test_served_frames_from_the_real_export(exported, make_server):
    from python_bridge.client import Client
    from python_bridge.engine import Engine
    from python_bridge.pipeline import FramePipeline

    engine = Engine(exported)
    h, w = engine.image_size
    views = make_views(3, width=w, height=h)
    server = make_server(FramePipeline(engine, steps=2))
    with Client(server.endpoint, timeout_s=30) as c:
        scene = c.open_scene(views).scene
        cam = views[1].camera
        a = c.render(scene, cam.c2w, cam.K, (w, h), seed=3)
        b = c.render(scene, cam.c2w, cam.K, (w, h), seed=3, steps=1)
    assert a.mode == "model" and a.rgb.shape == (h, w, 3) and a.rgb.std() > 0
    assert not np.array_equal(a.rgb, b.rgb)  # 1 and 2 steps are different graphs
