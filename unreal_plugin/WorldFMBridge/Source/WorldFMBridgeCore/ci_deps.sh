#!/usr/bin/env bash
# Install what CI needs to build the plugin's third-party libraries and the WorldFM client
# core the way Unreal links them on Linux (Debian/Ubuntu): clang + libc++ (Unreal's Linux
# toolchain links libc++, not libstdc++) and cmake; doctest + nlohmann-json for the tests.
# libzmq, cppzmq and msgpack-cxx come from ../ThirdParty/WorldFMThirdParty/build_thirdparty.sh,
# which tests/unreal_plugin/test_cpp_core.py runs.
set -euo pipefail

PACKAGES=(cmake clang libc++-dev libc++abi-dev doctest-dev nlohmann-json3-dev)

if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    echo "ci_deps.sh: ${PACKAGES[*]} already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "ci_deps.sh: run as root or install sudo; needed: ${PACKAGES[*]}" >&2
        exit 1
    fi
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
