"""Build the Unreal plugin's engine-independent C++ core with CMake and run its tests.

The C++ tests check the Unreal camera conversion against tests/data/camera_vectors.json,
the lock-free latest-frame buffer under a real thread race, the protocol codec, and the
ZeroMQ client against a live Python server that they start with this interpreter
(``WORLDFM_PYTHON``). Skips only when cmake or the apt packages are missing
(``unreal_plugin/WorldFMBridge/Source/WorldFMBridgeCore/ci_deps.sh`` installs them).
Set ``WORLDFM_CORE_BUILD_DIR`` to reuse a build directory between runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_DIR = REPO_ROOT / "unreal_plugin" / "WorldFMBridge" / "Source" / "WorldFMBridgeCore"
MISSING_DEPS_MARK = "not found: install"  # CMakeLists.txt's message for a missing package


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configured and built core; skips when the toolchain or libraries are absent."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed; run " + str(CORE_DIR / "ci_deps.sh"))
    build = Path(os.environ.get("WORLDFM_CORE_BUILD_DIR") or tmp_path_factory.mktemp("worldfm_core_build"))
    # Unoptimised and without debug info: the templates (msgpack, doctest, JSON) compile in
    # less than half the time of a Release build, and nothing here is speed-sensitive.
    configure = _run(["cmake", "-S", str(CORE_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug",
                      "-DCMAKE_CXX_FLAGS_DEBUG=-O0"], 120)
    output = configure.stdout + configure.stderr
    if configure.returncode != 0 and (MISSING_DEPS_MARK in output or "need doctest" in output):
        pytest.skip("C++ core dependencies are missing; run " + str(CORE_DIR / "ci_deps.sh") + "\n" + output[-2000:])
    assert configure.returncode == 0, f"cmake configure failed:\n{output[-4000:]}"
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    built = _run(["cmake", "--build", str(build), "-j", jobs], 600)
    assert built.returncode == 0, f"C++ core build failed:\n{(built.stdout + built.stderr)[-6000:]}"
    return build


def test_cpp_core_tests_pass(build_dir: Path) -> None:
    """Every CTest test of the core passes (unit tests and live-server tests)."""
    env = dict(os.environ, WORLDFM_PYTHON=sys.executable, WORLDFM_REPO_ROOT=str(REPO_ROOT))
    listed = _run(["ctest", "--test-dir", str(build_dir), "-N"], 60)
    assert "Total Tests: 0" not in listed.stdout, "CMake registered no tests"
    result = _run(["ctest", "--test-dir", str(build_dir), "--output-on-failure", "--timeout", "240"], 600, env)
    assert result.returncode == 0, f"C++ core tests failed:\n{(result.stdout + result.stderr)[-8000:]}"
