"""Drive ``worldfm view`` from a script: start it, open its page in headless Chromium.

The test suite and ``bench/bench_viewer.py`` use this. The browser is the system's
Chromium (Debian's ``chromium`` package, or ``$WORLDFM_CHROMIUM``) driven by Playwright's
Python package (the ``test`` extra); nothing downloads a browser build.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Flags that keep Chromium quiet on a closed network and runnable as root in a container.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """The Chromium executable: ``$WORLDFM_CHROMIUM``, else ``chromium`` on the PATH."""
    return os.environ.get("WORLDFM_CHROMIUM") or shutil.which("chromium")


@contextmanager
def launch_viewer(args: list[str], timeout_s: float = 300.0, log: Path | None = None) -> Iterator[str]:
    """Run ``worldfm view --no-browser --port 0 ARGS`` and yield its page URL; stop it after.

    Its output goes to ``log`` (or is discarded); a start that prints no URL within
    ``timeout_s`` raises RuntimeError with the end of that output.
    """
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "python_bridge.cli", "view", "--no-browser", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"worldfm view printed no URL within {timeout_s:g} s") from None
            match = re.search(r"open (http://\S+)", line)
            if match:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worldfm view exited with {proc.returncode}")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def browser_page(url: str, width: int = 1280, height: int = 720, downloads: Path | None = None):
    """A Playwright page of headless Chromium (a fresh profile) opened at ``url``."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found: `apt-get install chromium` (or set WORLDFM_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="worldfm-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height},
            accept_downloads=True,
            downloads_path=str(downloads) if downloads else None,
        )
        try:
            page = context.new_page()
            page.goto(url)
            yield page
        finally:
            context.close()


def wait_for(page, expression: str, timeout_s: float, what: str):
    """Poll ``expression`` in the page until it is truthy; returns its value.

    Polls with ``page.evaluate``: the page's Content-Security-Policy forbids the string
    evaluation that Playwright's ``wait_for_function`` uses."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}; last snapshot {snapshot(page)}")
        time.sleep(0.05)


def snapshot(page) -> dict:
    """The page's state (``window.worldfm.snapshot()``: frames shown, camera pose, last frame...)."""
    return page.evaluate("window.worldfm ? window.worldfm.snapshot() : {}")
