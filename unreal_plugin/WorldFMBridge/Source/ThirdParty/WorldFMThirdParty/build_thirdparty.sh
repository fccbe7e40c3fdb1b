#!/usr/bin/env bash
# Fetch and build the WorldFM plugin's third-party libraries for Linux or Mac into this folder:
#   include/  libzmq + cppzmq + msgpack-cxx headers      lib/<platform>/libzmq.a
#
#   Linux: UE_ROOT=/path/to/UnrealEngine ./build_thirdparty.sh   (uses the engine's clang + libc++)
#   Mac:   ./build_thirdparty.sh                                 (Xcode's clang; universal arm64 + x86_64)
#
# Needs git, cmake >= 3.16 and network access. Versions are pinned below.
set -euo pipefail

LIBZMQ_TAG=v4.3.5
CPPZMQ_TAG=v4.10.0
MSGPACK_TAG=cpp-6.1.1

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

git clone --quiet --depth 1 --branch "$LIBZMQ_TAG" https://github.com/zeromq/libzmq.git "$WORK/libzmq"
git clone --quiet --depth 1 --branch "$CPPZMQ_TAG" https://github.com/zeromq/cppzmq.git "$WORK/cppzmq"
git clone --quiet --depth 1 --branch "$MSGPACK_TAG" https://github.com/msgpack/msgpack-c.git "$WORK/msgpack"

# CURVE through libzmq's bundled tweetnacl (no libsodium to ship); no drafts, docs or tests.
ZMQ_OPTIONS=(-DBUILD_SHARED=OFF -DBUILD_STATIC=ON -DBUILD_TESTS=OFF -DWITH_DOCS=OFF -DWITH_PERF_TOOL=OFF
             -DENABLE_CURVE=ON -DWITH_LIBSODIUM=OFF -DENABLE_DRAFTS=OFF -DCMAKE_BUILD_TYPE=Release
             -DCMAKE_POSITION_INDEPENDENT_CODE=ON)

case "$(uname -s)" in
Linux)
    : "${UE_ROOT:?set UE_ROOT to the engine folder (the one holding Engine/): Unreal links libc++, so libzmq must too}"
    TOOLCHAIN="$(ls -d "$UE_ROOT"/Engine/Extras/ThirdPartyNotUE/SDKs/HostLinux/Linux_x64/*/x86_64-unknown-linux-gnu | tail -n 1)"
    LIBCXX="$UE_ROOT/Engine/Source/ThirdParty/Unix/LibCxx"
    [ -d "$TOOLCHAIN" ] || { echo "no engine clang toolchain under $UE_ROOT (run Setup.sh first)" >&2; exit 1; }
    FLAGS="--sysroot=$TOOLCHAIN -nostdinc++ -isystem $LIBCXX/include -isystem $LIBCXX/include/c++/v1"
    cmake -S "$WORK/libzmq" -B "$WORK/build" "${ZMQ_OPTIONS[@]}" \
        -DCMAKE_C_COMPILER="$TOOLCHAIN/bin/clang" -DCMAKE_CXX_COMPILER="$TOOLCHAIN/bin/clang++" \
        -DCMAKE_C_FLAGS="--sysroot=$TOOLCHAIN" -DCMAKE_CXX_FLAGS="$FLAGS"
    OUT="$HERE/lib/Linux/x86_64-unknown-linux-gnu"
    ;;
Darwin)
    cmake -S "$WORK/libzmq" -B "$WORK/build" "${ZMQ_OPTIONS[@]}" -DCMAKE_OSX_ARCHITECTURES="arm64;x86_64" \
        -DCMAKE_OSX_DEPLOYMENT_TARGET=12.0
    OUT="$HERE/lib/Mac"
    ;;
*)
    echo "build_thirdparty.sh builds for Linux and Mac; on Windows run build_thirdparty.ps1" >&2
    exit 1
    ;;
esac

cmake --build "$WORK/build" --config Release --target libzmq-static -j "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
mkdir -p "$OUT" "$HERE/include"
find "$WORK/build" -name 'libzmq.a' -exec cp {} "$OUT/libzmq.a" \;
cp "$WORK/libzmq/include/zmq.h" "$WORK/cppzmq/zmq.hpp" "$WORK/cppzmq/zmq_addon.hpp" "$HERE/include/"
cp -R "$WORK/msgpack/include/." "$HERE/include/"
echo "installed $OUT/libzmq.a and headers in $HERE/include"
