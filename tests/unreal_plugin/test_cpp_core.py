"""Build the Unreal plugin's third-party libraries and C++ core the way Unreal links them on
Linux, and run the core's tests.

The third-party script (``Source/ThirdParty/WorldFMThirdParty/build_thirdparty.sh
--system-clang``) builds libzmq from Debian's source package with clang + libc++ (Unreal's
Linux toolchain links libc++, not libstdc++): static, position-independent, hidden
visibility, in the layout ``WorldFMThirdParty.Build.cs`` reads. The core then builds with
clang + libc++ against that layout; its C++ tests check the Unreal camera conversion against
tests/data/camera_vectors.json, the lock-free latest-frame buffer under a real thread race,
the protocol codec, the camera-path reader against files ``camera_path_fixtures.py`` writes
with ``python_bridge.camera_path`` (``WORLDFM_CAMERA_PATH_FIXTURES``), and the ZeroMQ client
against live Python servers they start with this interpreter (``WORLDFM_PYTHON``).
``WorldFMBridgeCoreModule``, the core as a shared library compiled the way UnrealBuildTool
compiles a Linux module, must export the core's API and no libzmq, msgpack or nlohmann-json
symbol.

Skips only when clang, libc++ or cmake are missing (``Source/WorldFMBridgeCore/ci_deps.sh``
installs them). Reuse builds between runs with ``WORLDFM_THIRDPARTY_DIR`` (an existing
``build_thirdparty.sh --out`` folder) and ``WORLDFM_CORE_BUILD_DIR``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camera_path_fixtures import write_fixtures

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = REPO_ROOT / "unreal_plugin" / "WorldFMBridge" / "Source"
CORE_DIR = PLUGIN_SOURCE / "WorldFMBridgeCore"
THIRDPARTY_SCRIPT = PLUGIN_SOURCE / "ThirdParty" / "WorldFMThirdParty" / "build_thirdparty.sh"
LINUX_LIB = Path("lib") / "Linux" / "x86_64-unknown-linux-gnu" / "libzmq.a"
HEADERS = ("zmq.h", "zmq.hpp", "zmq_addon.hpp", "msgpack.hpp", "nlohmann/json.hpp")
CI_DEPS = CORE_DIR / "ci_deps.sh"


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _libcxx_available() -> bool:
    """clang++ can compile and link a program against libc++."""
    if shutil.which("clang++") is None:
        return False
    probe = subprocess.run(
        ["clang++", "-stdlib=libc++", "-x", "c++", "-", "-o", os.devnull],
        input="#include <string>\nint main() { return std::string(\"ok\").size() == 2 ? 0 : 1; }\n",
        capture_output=True, text=True, timeout=120,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def thirdparty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin's third-party layout, built by its own script (or reused from the environment)."""
    reuse = os.environ.get("WORLDFM_THIRDPARTY_DIR")
    if reuse and all((Path(reuse) / f).is_file() for f in (LINUX_LIB, *(Path("include") / h for h in HEADERS))):
        return Path(reuse)
    if sys.platform != "linux" or shutil.which("cmake") is None or not _libcxx_available():
        pytest.skip(f"needs Linux, cmake, clang and libc++; run {CI_DEPS}")
    out = Path(reuse) if reuse else tmp_path_factory.mktemp("worldfm_thirdparty")
    built = _run(["bash", str(THIRDPARTY_SCRIPT), "--system-clang", "--out", str(out), "-j", "2"], 1800)
    assert built.returncode == 0, f"build_thirdparty.sh failed:\n{(built.stdout + built.stderr)[-6000:]}"
    return out


@pytest.fixture(scope="module")
def build_dir(thirdparty_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core and its tests, built with clang + libc++ against the third-party layout."""
    build = Path(os.environ.get("WORLDFM_CORE_BUILD_DIR") or tmp_path_factory.mktemp("worldfm_core_build"))
    env = dict(os.environ, CC="clang", CXX="clang++")
    # Unoptimised and without debug info: the templates (msgpack, doctest, JSON) compile in
    # less than half the time of a Release build, and nothing here is speed-sensitive.
    configure = _run(["cmake", "-S", str(CORE_DIR), "-B", str(build), "-DCMAKE_BUILD_TYPE=Debug",
                      "-DCMAKE_CXX_FLAGS=-stdlib=libc++", "-DCMAKE_CXX_FLAGS_DEBUG=-O0",
                      f"-DWORLDFM_THIRDPARTY_DIR={thirdparty_dir}"], 300, env)
    output = configure.stdout + configure.stderr
    if configure.returncode != 0 and "need doctest" in output:
        pytest.skip(f"the core's test dependencies are missing; run {CI_DEPS}\n{output[-2000:]}")
    assert configure.returncode == 0, f"cmake configure failed:\n{output[-4000:]}"
    jobs = str(max(1, min(2, os.cpu_count() or 1)))
    built = _run(["cmake", "--build", str(build), "-j", jobs], 1800, env)
    assert built.returncode == 0, f"C++ core build failed:\n{(built.stdout + built.stderr)[-6000:]}"
    return build


def test_thirdparty_layout_is_static_pic_and_hidden(thirdparty_dir: Path) -> None:
    """build_thirdparty.sh leaves what WorldFMThirdParty.Build.cs reads, and libzmq.a defines
    no symbol of default visibility but the C++ library's own template instances."""
    for name in HEADERS:
        assert (thirdparty_dir / "include" / name).is_file(), f"include/{name} missing"
    archive = thirdparty_dir / LINUX_LIB
    symbols = _run(["readelf", "--wide", "--syms", str(archive)], 120)
    assert symbols.returncode == 0, symbols.stderr
    exported, hidden = [], 0
    for line in symbols.stdout.splitlines():
        fields = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(fields) < 8 or fields[4] not in ("GLOBAL", "WEAK") or fields[6] == "UND":
            continue
        if fields[5] == "HIDDEN":
            hidden += 1
        elif not fields[7].startswith(("_ZNSt3__1", "_ZTINSt3__1", "_ZTSNSt3__1", "_ZTVNSt3__1",
                                       "_ZTTNSt3__1", "_ZTCNSt3__1")):
            exported.append(fields[7])
    assert hidden > 1000, f"expected libzmq's symbols hidden; found {hidden}"
    assert not exported, f"libzmq.a defines symbols of default visibility: {exported[:20]}"
    relocations = _run(["readelf", "--wide", "--relocs", str(archive)], 120)
    assert "R_X86_64_32S" not in relocations.stdout and "R_X86_64_32 " not in relocations.stdout, \
        "libzmq.a has absolute 32-bit relocations: not built position-independent"


def test_core_module_exports_its_api_and_no_third_party_symbol(build_dir: Path) -> None:
    """The core linked as Unreal links a module: libzmq, msgpack and nlohmann-json stay inside it."""
    module = build_dir / "libWorldFMBridgeCoreModule.so"
    assert module.is_file(), "CMake built no WorldFMBridgeCoreModule"
    dynamic = _run(["nm", "--dynamic", "--defined-only", "--demangle", str(module)], 120)
    assert dynamic.returncode == 0, dynamic.stderr
    names = [line.split(" ", 2)[-1] for line in dynamic.stdout.splitlines() if line.strip()]
    assert any(name.startswith("WorldFM::FClient::Connect") for name in names), "the core's API is not exported"
    assert any(name.startswith("WorldFM::ParseCameraPath") for name in names), "the camera-path API is not exported"
    leaked = [name for name in names if name.startswith(("zmq", "msgpack", "nlohmann"))
              or any(ns in name for ns in ("zmq::", "msgpack::", "nlohmann::"))]
    assert not leaked, f"third-party symbols exported from the module: {leaked[:20]}"


def test_cpp_core_tests_pass(build_dir: Path, tmp_path: Path) -> None:
    """Every CTest test of the core passes (unit tests, camera paths Python wrote, live-server tests)."""
    env = dict(os.environ, WORLDFM_PYTHON=sys.executable, WORLDFM_REPO_ROOT=str(REPO_ROOT),
               WORLDFM_CAMERA_PATH_FIXTURES=str(write_fixtures(tmp_path / "camera_paths")))
    listed = _run(["ctest", "--test-dir", str(build_dir), "-N"], 60)
    assert "Total Tests: 0" not in listed.stdout, "CMake registered no tests"
    # The live tests wait for servers and frames by readiness (ServerProcess.h); this limit
    # only ends a hung binary.
    result = _run(["ctest", "--test-dir", str(build_dir), "--output-on-failure", "--timeout", "1500"], 3000, env)
    assert result.returncode == 0, f"C++ core tests failed:\n{(result.stdout + result.stderr)[-8000:]}"
