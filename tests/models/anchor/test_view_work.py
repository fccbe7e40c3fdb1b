"""Per-view work kept across builds (models.anchor.view_work): each view's work runs once inside
the scope and every time outside it, and a build from kept work is the build from scratch, byte
for byte (the fill guard's rebuilds rely on it)."""

from __future__ import annotations

import numpy as np
import torch
from anchor_views import orbit_views

from models.anchor import build_scene
from models.anchor.mesh import prepare_mesh
from models.anchor.view_work import per_view, reuse_view_work


def test_work_runs_once_per_view_and_key_inside_and_every_time_outside():
    calls = []

    def work(name):
        return lambda: calls.append(name) or len(calls)

    a, b = object(), object()
    assert per_view(a, "k", work("a")) == 1 and per_view(a, "k", work("a")) == 2  # outside: nothing kept
    with reuse_view_work():
        first = per_view(a, "k", work("a"))
        assert per_view(a, "k", work("a")) == first  # kept
        assert per_view(a, ("k", 2), work("a2")) != first  # another key: its own work
        assert per_view(b, "k", work("b")) != first  # another view: its own work
        with reuse_view_work():  # nested: the outer scope's work
            assert per_view(a, "k", work("a")) == first
    assert calls == ["a", "a", "a", "a2", "b"]
    with reuse_view_work():  # a new scope starts empty
        assert per_view(a, "k", work("a")) == 6


def _scene_arrays(scene) -> dict[str, np.ndarray]:
    return {"xyz": scene.cloud.xyz, "rgb": scene.cloud.rgb, "sources": scene.sources,
            "voxel": np.array(scene.voxel_size), **{f"references.{k}": np.asarray(v) for k, v in
                                                    vars(scene.references).items()}}


def _views_arrays(views) -> dict[str, np.ndarray]:
    return {"texel": views.texel.numpy(), "offset": views.offset.numpy(), "point_view": views.point_view.numpy(),
            **{f"mip{i}": m.numpy() for i, m in enumerate(views.mip)}}


def test_builds_from_kept_work_equal_builds_from_scratch():
    frames = orbit_views(8, 48, 40)
    subsets = [frames, frames[2:], [f for i, f in enumerate(frames) if i not in (3, 4, 5)], frames[:3]]
    scratch = [build_scene(s) for s in subsets]
    with reuse_view_work():
        kept = [build_scene(s) for s in subsets]
        kept_views = [prepare_mesh(s) for s in kept]
    for a, b, views in zip(scratch, kept, kept_views, strict=True):
        left, right = _scene_arrays(a), _scene_arrays(b)
        assert left.keys() == right.keys()
        for name in left:
            np.testing.assert_array_equal(left[name], right[name], err_msg=name)
        want, got = _views_arrays(prepare_mesh(a)), _views_arrays(views)
        for name in want:
            np.testing.assert_array_equal(want[name], got[name], err_msg=name)
    assert torch.equal(kept_views[0].texel, prepare_mesh(scratch[0]).texel)
