#!/usr/bin/env bash
# Install what the WorldFM client core needs to build and test with CMake (Debian/Ubuntu).
# libzmq + cppzmq + msgpack-cxx for the core; doctest + nlohmann-json for its tests.
set -euo pipefail

PACKAGES=(cmake g++ libzmq3-dev cppzmq-dev libmsgpack-cxx-dev doctest-dev nlohmann-json3-dev)

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
