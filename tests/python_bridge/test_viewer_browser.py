"""``worldfm view`` end to end in a real browser (headless Chromium driven by Playwright).

Starts the command as a user would (``--no-browser``, the shipped demo-256 model, a scene
under ``--data-root``), flies the camera with the keyboard and the mouse, switches views and
steps, reads the HUD, records a path and downloads it as camera-path JSON and as an MP4, and
checks that ``worldfm render-path`` accepts the JSON and renders the same frames.

Set ``WORLDFM_VIEWER_SCREENSHOT=docs/img/viewer.jpg`` to refresh the README's picture.
"""

from __future__ import annotations

import os
import time

import imageio.v2 as imageio
import numpy as np
import pytest

from datagen.dataset import write_scene
from models.scene import Scene
from python_bridge.camera_path import load_camera_path
from python_bridge.cli import main
from python_bridge.demo import make_scene
from python_bridge.viewer import headless


def _require_browser() -> None:
    """Skip where no browser can run; in CI (``CI`` set) that is a failure: .ci/run installs it."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "the playwright package (pip install -e '.[test]')"
    else:
        missing = None if headless.find_chromium() else "Chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test; missing {missing}")
        pytest.skip(f"needs {missing}")


def pose(snap: dict) -> np.ndarray:
    return np.asarray(snap["pose"]).reshape(4, 4)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_fly_through_a_scene_in_the_browser(tmp_path):
    _require_browser()
    root = tmp_path / "root"
    _, frames = make_scene(0, "indoor", 8, 256)
    scene_dir = write_scene(Scene("room", frames), root / "room")
    downloads = tmp_path / "downloads"
    with (
        headless.launch_viewer(["--data-root", str(root)], log=tmp_path / "view.log") as url,
        headless.browser_page(url, downloads=downloads) as page,
    ):

        def wait(expression: str, what: str, timeout_s: float = 300):
            return headless.wait_for(page, expression, timeout_s, what)

        wait("window.worldfm && window.worldfm.snapshot().frames > 0", "the first frame")
        first = headless.snapshot(page)
        assert first["scene"] == "data:room" and first["frame"]["mode"] == "model"
        start = pose(first)
        np.testing.assert_allclose(np.asarray(first["frame"]["c2w"]).reshape(4, 4), start, atol=1e-9)

        # Hold W for a second: the camera moves along its optical axis (+z of c2w) and new frames arrive.
        page.keyboard.down("w")
        time.sleep(1.0)
        page.keyboard.up("w")
        wait(
            "(() => { const s = window.worldfm.snapshot(); return s.frame && "
            "s.frame.c2w.every((v, i) => Math.abs(v - s.pose[i]) < 1e-9); })()",
            "a frame of the final pose",
            120,
        )
        moved = headless.snapshot(page)
        step = pose(moved)[:3, 3] - start[:3, 3]
        assert np.linalg.norm(step) > 0.05
        np.testing.assert_allclose(step / np.linalg.norm(step), start[:3, 2], atol=1e-6)
        np.testing.assert_allclose(pose(moved)[:3, :3], start[:3, :3], atol=1e-9)
        assert moved["frames"] >= first["frames"] + 2

        # Drag to the right: the camera yaws right about the scene's up and stays level.
        box = page.locator("#view").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 120, cy, steps=6)
        page.mouse.up()
        turned = pose(headless.snapshot(page))
        up = np.array([0.0, 0.0, 1.0])  # the procedural world's up (docs/conventions.md)
        right0 = start[:3, 0]
        assert abs(right0 @ up) < 1e-6  # its views are level
        assert turned[:3, 2] @ right0 > 0.2  # forward now leans to the old right
        assert abs(turned[:3, 0] @ up) < 1e-6  # x axis stays horizontal: no roll
        np.testing.assert_allclose(turned[:3, 3], pose(moved)[:3, 3])

        # The anchor view (the frame then carries the anchor image too) and 2 generator steps.
        page.check('input[name="view"][value="anchor"]')
        page.check('input[name="steps"][value="2"]')
        wait(
            "(() => { const f = window.worldfm.snapshot().frame; return f && f.steps === 2 && f.parts === 2; })()",
            "a 2-step frame with its anchor",
            120,
        )
        assert headless.snapshot(page)["view"] == "anchor"

        # The HUD shows numbers once a few frames have come. It refreshes every 250 ms (viewer.js
        # updateHud), so the 2-step frame can arrive before the HUD's next refresh shows it.
        wait("document.querySelector('[data-hud=\"steps\"]').textContent === '2'", "the HUD's steps at 2", 10)
        hud = {el.get_attribute("data-hud"): el.inner_text() for el in page.locator("[data-hud]").all()}
        for name in ("fps", "latency_p50", "latency_p95", "anchor_ms", "encode_ms", "generate_ms", "decode_ms"):
            assert float(hud[name]) >= 0, (name, hud)
        assert hud["model"] == "demo-256" and hud["steps"] == "2" and hud["connection"].startswith("connected")

        page.check('input[name="view"][value="side"]')
        wait("window.worldfm.snapshot().view === 'side'", "the side-by-side view", 10)
        time.sleep(0.5)
        page.screenshot(path=str(tmp_path / "viewer.jpg"), quality=85, type="jpeg")
        if os.environ.get("WORLDFM_VIEWER_SCREENSHOT"):
            page.screenshot(path=os.environ["WORLDFM_VIEWER_SCREENSHOT"], quality=85, type="jpeg")

        # Record a short flight (strafe right, then hold still), download the path and the MP4.
        page.click("#record-btn")
        wait("document.getElementById('record-btn').textContent === 'Stop'", "recording to start", 10)
        page.keyboard.down("d")
        time.sleep(0.6)
        page.keyboard.up("d")
        time.sleep(0.3)
        page.click("#record-btn")
        wait("!document.getElementById('downloads').hidden", "the recording's downloads", 30)
        with page.expect_download() as info:
            page.click("#download-json")
        path_file = tmp_path / "path.json"
        info.value.save_as(path_file)
        json_name = info.value.suggested_filename
        assert json_name.startswith("worldfm-data-room-") and json_name.endswith(".json")
        path = load_camera_path(path_file)
        assert 12 <= len(path) <= 60 and path.size == (256, 256) and path.fps == 24
        travelled = np.linalg.norm(path.poses[-1][:3, 3] - path.poses[0][:3, 3])
        assert travelled > 0.05
        with page.expect_download(timeout=300_000) as info:
            page.click("#render-video")
        video_file = tmp_path / "viewer.mp4"
        info.value.save_as(video_file)
        command = page.inner_text("#render-command")

    assert video_file.read_bytes()[4:8] == b"ftyp"  # an ISO base media (MP4) file
    video = imageio.mimread(video_file, memtest=False)
    assert len(video) == len(path) and video[0].shape == (256, 256, 3)

    # The JSON is a camera path `worldfm render-path` takes; at the page's quality (its
    # command says which steps) it renders the frames the MP4 holds.
    # The scene's fill guard, measured in this flight's pauses, may have chosen the fill: then the
    # MP4 holds fill frames and the command (updated when the MP4 is ready) says --fill-guard.
    prefix = f"worldfm render-path {scene_dir.resolve()} --path {json_name} --out render"
    assert command.startswith(prefix)
    options = command[len(prefix):].split()
    assert options in (["--steps", "2"], ["--fill-guard", "--steps", "2"]), command
    out = tmp_path / "render"
    args = ["render-path", str(scene_dir), "--path", str(path_file), "--out", str(out), *options]
    assert main(args) == 0
    offline = imageio.mimread(out / "path.mp4", memtest=False)
    assert len(offline) == len(video)
    assert min(psnr(a, b) for a, b in zip(offline, video)) > 40  # the same frames, up to video coding
