"""The frame pipeline on a real anchor: model path (tiny export) and the no-model fallback."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_views import make_views
from python_bridge.client import Client
from python_bridge.engine import Engine
from python_bridge.pipeline import FramePipeline


@pytest.fixture(scope="module")
def views():
    return make_views(3, width=32, height=24)


@pytest.fixture(scope="module", autouse=True)
def compiled_once(views) -> None:
    """The first scene a process builds starts the anchor kernels' background compile, whose
    imports create loggers while pytest's log capture walks the logger registry at each test's
    set-up and tear-down: run with this module first in a process, the two raced (RuntimeError:
    dictionary changed size during iteration). Build one scene and wait for the compile here."""
    from models.anchor import splat

    FramePipeline(None).build(views)
    assert splat.compiled_kernels_settled(timeout=600)


@pytest.fixture(scope="module")
def model_pipeline(tiny_model_dir) -> FramePipeline:
    return FramePipeline(Engine(tiny_model_dir), steps=1)


def test_fallback_reproduces_a_source_view_at_its_own_pose(views):
    pipe = FramePipeline(None)
    scene = pipe.build(views)
    assert scene.points > 0 and len(scene.candidates) == 3
    cam = views[1].camera
    out = pipe.render(scene, cam.c2w, cam.K, (cam.width, cam.height))
    assert out.mode == "anchor" and out.rgb.shape == (24, 32, 3)
    err = np.abs(out.rgb.astype(int) - views[1].rgb).mean()
    assert err < 25  # colours differ by 160 per channel; a one-pixel shift of the checkerboard gives ~50


def test_model_path_uses_cached_reference_latents(model_pipeline, views):
    scene = model_pipeline.build(views)
    cam = views[2].camera
    a = model_pipeline.render(scene, cam.c2w, cam.K, (cam.width, cam.height), seed=5)
    assert a.mode == "model" and a.rgb.shape == (24, 32, 3) and 0 <= a.reference < 3
    assert set(a.timings) >= {"anchor_ms", "reference_ms", "encode_ms", "generate_ms", "decode_ms"}
    assert len(scene._latents) == 1
    b = model_pipeline.render(scene, cam.c2w, cam.K, (cam.width, cam.height), seed=5)
    np.testing.assert_array_equal(a.rgb, b.rgb)  # same pose and seed: the same frame (render-path relies on it)
    assert len(scene._latents) == 1
    assert model_pipeline.render(scene, cam.c2w, steps=2, seed=5).rgb.shape == (32, 32, 3)  # model size default
    with pytest.raises(ValueError, match="3 steps"):
        model_pipeline.render(scene, cam.c2w, steps=3)
    with pytest.raises(ValueError, match="0 steps"):  # not "the default": 0 is not a step count
        model_pipeline.render(scene, cam.c2w, steps=0)


def test_the_seed_picks_the_noise(model_pipeline, views):
    """The same seed gives the same frame; another seed gives the generator other noise (the tiny
    2-step model mixes its second noise draw into the output, so the frame changes)."""
    scene = model_pipeline.build(views)
    cam = views[0].camera
    frames = [model_pipeline.render(scene, cam.c2w, steps=2, seed=s).rgb.astype(int) for s in (1, 1, 2)]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert np.abs(frames[0] - frames[2]).max() > 0
    unseeded = [model_pipeline.render(scene, cam.c2w, steps=2).rgb.astype(int) for _ in range(2)]
    assert np.abs(unseeded[0] - unseeded[1]).max() > 0  # no seed: fresh noise each time


def test_server_with_the_tiny_model_end_to_end(make_server, model_pipeline, views):
    server = make_server(model_pipeline)
    with Client(server.endpoint, timeout_s=10) as c:
        assert c.welcome["model"]["name"] == "tiny-untrained"
        assert c.welcome["frame_size"] == [32, 32]
        info = c.open_scene(views)
        assert info.points > 0 and info.candidates == 3
        frame = c.render(info.scene, views[0].camera.c2w, seed=1)
        assert frame.mode == "model" and frame.rgb.shape == (32, 32, 3)
        assert {"generate_ms", "queue_ms", "total_ms"} <= set(frame.timings)
        assert frame.anchor_rgb is None
        cam = views[1].camera
        served = c.render(info.scene, cam.c2w, cam.K, (cam.width, cam.height), seed=4, anchor=True)
    offline = model_pipeline.render(model_pipeline.build(views), cam.c2w, cam.K, (cam.width, cam.height), seed=4)
    np.testing.assert_array_equal(served.rgb, offline.rgb)  # the server sends what render-path writes
    np.testing.assert_array_equal(served.anchor_rgb, offline.anchor)
    assert served.reference == offline.reference



def test_the_fill_guard_chooses_the_frames(model_pipeline):
    """Measured, the guard picks the model or anchor + hole filling for the scene; the untrained
    tiny model loses to the fill, and from then on the frames are the fallback's bytes."""
    from dataclasses import replace

    from models.cameras import scale_K
    from models.fill_guard import FillGuard, guarded_frame

    views = make_views(8, width=32, height=24)  # two windows of 4 to leave out, 4 views to build from
    scene = model_pipeline.build(views)
    cam, size = views[3].camera, (32, 24)
    model = model_pipeline.render(scene, cam.c2w, cam.K, size, seed=3)
    assert model.mode == "model" and scene.fill_guard is None
    model_pipeline.measure_fill_guard(scene)
    assert scene.fill_guard.targets == 10  # 5 runs of 4 views left out in turn, 2 targets each
    assert not scene.fill_guard.use_model, scene.fill_guard.describe()
    guarded = model_pipeline.render(scene, cam.c2w, cam.K, size, seed=3)
    fallback = FramePipeline(None, anchor_style=model_pipeline.anchor_style).render(scene, cam.c2w, cam.K, size)
    assert guarded.mode == "anchor"
    np.testing.assert_array_equal(guarded.rgb, fallback.rgb)
    # had the model won, or an even mix, the frames would be the model's with the holes as the guard
    # serves them, made at the model's size (32x32)
    square = (32, 32), scale_K(cam.K, size, (32, 32))
    scene.fill_guard = None
    alone = model_pipeline.render(scene, cam.c2w, square[1], square[0], seed=3)
    filled = FramePipeline(None, anchor_style=model_pipeline.anchor_style).render(scene, cam.c2w, square[1], square[0])
    for guard in (FillGuard(30.0, 20.0, 4), FillGuard(30.0, 20.0, 4, (25.0, 31.0, 29.0))):
        scene.fill_guard = guard
        served = model_pipeline.render(scene, cam.c2w, square[1], square[0], seed=3)
        assert served.mode == "model" and "mix_ms" in served.timings
        np.testing.assert_array_equal(served.rgb, guarded_frame(alone.rgb, filled.rgb, filled.covered, guard.weight))
    assert not np.array_equal(served.rgb, alone.rgb)
    scene.fill_guard = FillGuard(30.0, 20.0, 4)
    FramePipeline(None).measure_fill_guard(scene)  # nothing to guard without a model
    assert scene.fill_guard == FillGuard(30.0, 20.0, 4)
    # a scene whose windows leave views that build no cloud: logged, and the model keeps serving
    blank = [replace(v, depth=np.zeros_like(v.depth)) if i < 4 else v for i, v in enumerate(views)]
    unmeasurable = model_pipeline.build(views)
    unmeasurable.anchor.frames[:] = blank
    model_pipeline.measure_fill_guard(unmeasurable)
    assert unmeasurable.fill_guard is None
    assert model_pipeline.render(unmeasurable, cam.c2w, cam.K, size, seed=3).mode == "model"


def test_model_frames_carry_anchor_plus_hole_filling_at_their_size(tiny_model_dir, tmp_path, views):
    """A model that reads the filled anchor hands it back with the frame when the frame is at the
    model's size: the fallback's bytes, so the fill guard scores it without rendering the anchor
    again; at another size the fill is not a resize of it, and the frame carries none."""
    import json
    import shutil

    from models.cameras import scale_K

    folder = shutil.copytree(tiny_model_dir, tmp_path / "filled")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["anchor_filled"] = True
    (folder / "manifest.json").write_text(json.dumps(manifest))
    pipe = FramePipeline(Engine(folder), steps=1)
    scene = pipe.build(views)
    fallback = FramePipeline(None, anchor_style=pipe.anchor_style)
    cam = views[1].camera
    K = scale_K(cam.K, (32, 24), (32, 32))
    frame = pipe.render(scene, cam.c2w, K, (32, 32), seed=1)
    assert frame.mode == "model"
    np.testing.assert_array_equal(frame.filled, fallback.render(scene, cam.c2w, K, (32, 32)).rgb)
    assert pipe.render(scene, cam.c2w, cam.K, (32, 24), seed=1).filled is None


@pytest.mark.parametrize("style", ["mesh", "points"])
def test_compiled_kernels_render_the_eager_kernels_bytes(style):
    """A pipeline switches to compiled anchor kernels once they are ready, mid-run; a pose and
    seed must still give the same frame (docs/protocol.md, ``seed``; render-path and
    render-paths rely on it): the mesh style's fused shading loop too. A textured procedural
    scene, whose views blend two source views and resample colour pyramids."""
    from dataclasses import replace

    from models.anchor import splat
    from models.anchor.styles import prepare_anchor
    from python_bridge.demo import make_scene

    _, views = make_scene(0, "indoor", 6, 128)

    pipe = FramePipeline(None, anchor_style=style)
    scene = pipe.build(views)  # the compiles the first scene of the process started (compiled_once)
    assert splat.compiled_kernels_settled(timeout=600)
    assert splat._compiled_project._fn is not None, "the compiled splatting kernel is not serving"
    if style == "mesh":
        from models.anchor import mesh

        assert mesh._fused_shade._fn is not None, "the fused shading loop is not serving"
    eager = replace(scene, cloud=prepare_anchor(scene.anchor, style, "cpu", compiled=False))
    for view in views:
        cam = view.camera
        live = pipe.render(scene, cam.c2w, cam.K, (cam.width, cam.height))
        np.testing.assert_array_equal(live.rgb, pipe.render(eager, cam.c2w, cam.K, (cam.width, cam.height)).rgb)


def test_small_anchors_render_on_the_rendering_thread_alone(views):
    """At <= 256x256 the anchor's many small torch operations run on the render thread alone
    (waking a second OpenMP thread per operation cost more than it saved); the thread count is
    restored afterwards and larger anchors keep it (python_bridge.pipeline._anchor_threads)."""
    import torch

    from models.anchor.mesh import shading_threads
    from python_bridge.pipeline import SINGLE_THREAD_ANCHOR_PIXELS

    pipeline = FramePipeline(None)
    scene = pipeline.build(views)
    seen = []

    class Spy:  # the scene's prepared anchor, recording torch's thread count while it renders
        def render(self, K, c2w, width, height):
            seen.append((width * height, torch.get_num_threads(), shading_threads()))
            return scene_cloud.render(K, c2w, width, height)

    scene_cloud, scene.cloud = scene.cloud, Spy()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for size in ((32, 24), (256, 256), (320, 256)):
            pipeline.render(scene, views[0].camera.c2w, size=size)
            assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    # torch on one thread for small anchors; the fused shading loop keeps both (mesh.keep_shading_threads)
    assert seen == [(32 * 24, 1, 2), (256 * 256, 1, 2), (320 * 256, 2, 2)]
    assert 320 * 256 > SINGLE_THREAD_ANCHOR_PIXELS >= 256 * 256


@pytest.mark.parametrize("filled", [False, True])
def test_the_encoder_reads_the_anchor_the_model_was_trained_on(tiny_model_dir, tmp_path, views, filled):
    """A model whose config says ``anchor_filled`` gets the anchor with its holes filled (no black
    pixels left, covered pixels untouched); any other model gets the raw rendering, black holes."""
    import json
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["anchor_filled"] = filled
    (folder / "manifest.json").write_text(json.dumps(manifest))
    engine = Engine(folder)
    seen = []
    encode = engine.encode
    engine.encode = lambda rgb: seen.append(rgb.copy()) or encode(rgb)
    pipe = FramePipeline(engine, steps=1)
    scene = pipe.build(views[:1])
    c2w = views[2].camera.c2w.copy()
    c2w[:3, 3] += c2w[:3, 0] * 1.0  # a metre to the side: part of the view lies beyond the one source view
    out = pipe.render(scene, c2w, seed=0)
    raw = out.anchor
    holes = (raw == 0).all(-1)
    assert 0 < holes.mean() < 0.9
    encoded = seen[-1]  # the reference is encoded first; the anchor last
    covered = ~holes
    np.testing.assert_array_equal(encoded[covered], raw[covered])
    if filled:
        assert (encoded[holes].max(-1) > 0).all()
    else:
        assert (encoded[holes] == 0).all()
