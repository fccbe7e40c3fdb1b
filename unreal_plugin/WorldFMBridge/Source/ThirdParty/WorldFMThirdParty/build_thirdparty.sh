#!/usr/bin/env bash
# Build the WorldFM plugin's third-party libraries for Linux or Mac, in the layout
# WorldFMThirdParty.Build.cs expects (this folder, or --out DIR):
#   include/   zmq.h, zmq.hpp, zmq_addon.hpp, msgpack.hpp, msgpack/, nlohmann/
#   lib/Linux/x86_64-unknown-linux-gnu/libzmq.a   lib/Mac/libzmq.a
#
#   Linux, for the plugin:  UE_ROOT=/path/to/UnrealEngine ./build_thirdparty.sh
#                           (the engine's clang, sysroot and libc++: Unreal links no libstdc++)
#   Linux, CI and checks:   ./build_thirdparty.sh --system-clang --out DIR
#                           (the host's clang + libc++, as tests/unreal_plugin/test_cpp_core.py does)
#   Mac:                    ./build_thirdparty.sh   (Xcode's clang; universal arm64 + x86_64)
#
# The same upstream versions on every platform (build_thirdparty.ps1 pins them too):
#   libzmq 4.3.4 (LGPL-3.0 with a static-linking exception), cppzmq 4.9.0 (MIT), msgpack-cxx 4.1.3 (BSL-1.0),
#   nlohmann-json 3.11.2 (MIT; header-only, reads camera-path files).
# Their licence texts ship in LICENSES/ beside this script; the build checks them against the sources.
#
# Sources (--sources apt|git; apt is the default on Linux, git on Mac):
#   apt  Debian's packages through apt: the source package zeromq3 4.3.4-6 (its pristine upstream
#        tarball, without Debian's patches, so that every platform compiles the same code) and the
#        header-only cppzmq-dev 4.9.0-1, libmsgpack-cxx-dev 4.1.3-1 and nlohmann-json3-dev 3.11.2-2.
#        apt checks every file against the archive's signed indexes. Needs a Debian 12 (bookworm)
#        apt; nothing on the host changes: the script keeps its own apt state in a temporary
#        folder, with deb-src lines made from the host's own deb lines.
#   git  the upstream tags v4.3.4, v4.9.0, cpp-4.1.3 and v3.11.2 (any other host).
#
# libzmq is built static, position-independent and with hidden visibility: zmq.h marks its API
# visibility("default"), so the build compiles against a copy whose ZMQ_EXPORT is empty, and no
# libzmq symbol leaves the module that links it (another plugin's libzmq cannot clash with ours).
# CURVE uses libzmq's bundled tweetnacl (no libsodium to ship); no drafts, TLS, libbsd, docs or tests.
set -euo pipefail

LIBZMQ_VERSION=4.3.4
CPPZMQ_VERSION=4.9.0
MSGPACK_VERSION=4.1.3
JSON_VERSION=3.11.2
ZEROMQ3_DEBIAN=4.3.4-6
CPPZMQ_DEBIAN=4.9.0-1
MSGPACK_DEBIAN=4.1.3-1
JSON_DEBIAN=3.11.2-2

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT_ROOT="$HERE"
SOURCES=""
SYSTEM_CLANG=0
JOBS="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --out DIR  --sources apt|git  --system-clang (Linux)  -j N"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out) OUT_ROOT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --sources) SOURCES="$2"; shift 2 ;;
    --system-clang) SYSTEM_CLANG=1; shift ;;
    -j) JOBS="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build_thirdparty.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

PLATFORM="$(uname -s)"
case "$PLATFORM" in
Linux) SOURCES="${SOURCES:-apt}" ;;
Darwin) SOURCES="${SOURCES:-git}" ;;
*) echo "build_thirdparty.sh builds for Linux and Mac; on Windows run build_thirdparty.ps1" >&2; exit 1 ;;
esac

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/libzmq" "$WORK/headers"

fail() { echo "build_thirdparty.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------ sources

fetch_apt() {
    command -v apt-get >/dev/null || fail "--sources apt needs a Debian host with apt; use --sources git"
    local state="$WORK/apt"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/sources.list.d" "$WORK/debs"
    : >"$state/sources.list"
    # deb + deb-src lines for the host's own Debian archive (its mirror, suites and keyring).
    local found=0 file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        sed -E 's/^Types:.*/Types: deb deb-src/' "$file" >"$state/sources.list.d/$(basename "$file")"
        found=1
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        sed -nE 's/^deb(-src)? +(.*)$/deb \2\ndeb-src \2/p' "$file" >>"$state/sources.list"
        grep -q . "$state/sources.list" && found=1
    done
    [ "$found" = 1 ] || fail "no apt sources on this host; use --sources git"
    local apt=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=$state/sources.list.d"
               -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "APT::Sandbox::User=root"
               -o "Acquire::Retries=3" -q)
    apt-get "${apt[@]}" update >"$WORK/apt-update.log" 2>&1 || { cat "$WORK/apt-update.log" >&2; fail "apt-get update failed"; }
    (cd "$WORK/debs" &&
        apt-get "${apt[@]}" source --download-only "zeromq3=$ZEROMQ3_DEBIAN" &&
        apt-get "${apt[@]}" download "cppzmq-dev=$CPPZMQ_DEBIAN" "libmsgpack-cxx-dev=$MSGPACK_DEBIAN" \
            "nlohmann-json3-dev=$JSON_DEBIAN") \
        >"$WORK/apt-fetch.log" 2>&1 ||
        { cat "$WORK/apt-fetch.log" >&2; fail "apt could not fetch zeromq3 $ZEROMQ3_DEBIAN, cppzmq-dev $CPPZMQ_DEBIAN, libmsgpack-cxx-dev $MSGPACK_DEBIAN and nlohmann-json3-dev $JSON_DEBIAN (a Debian 12 archive has them); use --sources git elsewhere"; }
    tar -xzf "$WORK/debs/zeromq3_$LIBZMQ_VERSION.orig.tar.gz" -C "$WORK/libzmq" --strip-components=1
    local deb
    for deb in "$WORK"/debs/*.deb; do
        dpkg-deb -x "$deb" "$WORK/debs/root"
    done
    cp "$WORK/debs/root/usr/include/zmq.hpp" "$WORK/debs/root/usr/include/zmq_addon.hpp" "$WORK/headers/"
    cp -R "$WORK/debs/root/usr/include/msgpack.hpp" "$WORK/debs/root/usr/include/msgpack" "$WORK/headers/"
    cp -R "$WORK/debs/root/usr/include/nlohmann" "$WORK/headers/"
    # The binary packages carry Debian's copyright files, not upstream's licence files.
    LICENSE_CPPZMQ="$WORK/debs/root/usr/share/doc/cppzmq-dev/copyright"
    LICENSE_MSGPACK="$WORK/debs/root/usr/share/doc/libmsgpack-cxx-dev/copyright"
    LICENSE_JSON="$WORK/debs/root/usr/share/doc/nlohmann-json3-dev/copyright"
}

fetch_git() {
    command -v git >/dev/null || fail "--sources git needs git"
    rmdir "$WORK/libzmq"
    git clone --quiet --depth 1 --branch "v$LIBZMQ_VERSION" https://github.com/zeromq/libzmq.git "$WORK/libzmq"
    git clone --quiet --depth 1 --branch "v$CPPZMQ_VERSION" https://github.com/zeromq/cppzmq.git "$WORK/cppzmq"
    git clone --quiet --depth 1 --branch "cpp-$MSGPACK_VERSION" https://github.com/msgpack/msgpack-c.git "$WORK/msgpack"
    git clone --quiet --depth 1 --branch "v$JSON_VERSION" https://github.com/nlohmann/json.git "$WORK/json"
    cp "$WORK/cppzmq/zmq.hpp" "$WORK/cppzmq/zmq_addon.hpp" "$WORK/headers/"
    cp -R "$WORK/msgpack/include/." "$WORK/headers/"
    cp -R "$WORK/json/include/nlohmann" "$WORK/headers/"  # the multi-header layout Debian ships too
    LICENSE_CPPZMQ="$WORK/cppzmq/LICENSE"
    LICENSE_MSGPACK="$WORK/msgpack/LICENSE_1_0.txt"
    LICENSE_JSON="$WORK/json/LICENSE.MIT"
}

case "$SOURCES" in
apt) fetch_apt ;;
git) fetch_git ;;
*) fail "--sources must be apt or git; got '$SOURCES'" ;;
esac

# The shipped licence texts must be the ones these sources carry (a version bump that changes a
# licence stops here). Debian's copyright files hold the text indented, so compare words only.
same_words() { diff -q <(tr -s '[:space:].' '\n\n' <"$1" | grep -v '^$') <(tr -s '[:space:].' '\n\n' <"$2" | grep -v '^$') >/dev/null; }
LICENSES="$HERE/LICENSES"
same_words "$LICENSES/libzmq-COPYING.LESSER.txt" "$WORK/libzmq/COPYING.LESSER" ||
    fail "libzmq's COPYING.LESSER differs from LICENSES/libzmq-COPYING.LESSER.txt: review the licence change"
same_words "$LICENSES/libzmq-COPYING.txt" "$WORK/libzmq/COPYING" ||
    fail "libzmq's COPYING differs from LICENSES/libzmq-COPYING.txt: review the licence change"
if [ "$SOURCES" = git ]; then
    same_words "$LICENSES/cppzmq-LICENSE.txt" "$LICENSE_CPPZMQ" || fail "cppzmq's LICENSE differs from LICENSES/cppzmq-LICENSE.txt"
    same_words "$LICENSES/msgpack-cxx-LICENSE_1_0.txt" "$LICENSE_MSGPACK" ||
        fail "msgpack-c's LICENSE_1_0.txt differs from LICENSES/msgpack-cxx-LICENSE_1_0.txt"
    same_words "$LICENSES/nlohmann-json-LICENSE.MIT.txt" "$LICENSE_JSON" ||
        fail "nlohmann-json's LICENSE.MIT differs from LICENSES/nlohmann-json-LICENSE.MIT.txt"
else
    grep -q '^License: MIT' "$LICENSE_CPPZMQ" || fail "cppzmq-dev is no longer MIT-licensed: review $LICENSE_CPPZMQ"
    grep -q '^License: Boost-1' "$LICENSE_MSGPACK" || fail "libmsgpack-cxx-dev is no longer BSL-1.0: review $LICENSE_MSGPACK"
    # Debian names the MIT licence "Expat"; its headers, all under it, are the only files we take.
    [ "$(sed -n 's/^License: //p' "$LICENSE_JSON" | sed -n 1p)" = Expat ] ||
        fail "nlohmann-json3-dev's headers are no longer MIT (Expat): review $LICENSE_JSON"
fi

# Hidden API: build against a zmq.h whose ZMQ_EXPORT adds no visibility("default").
EXPORT_LINE='#define ZMQ_EXPORT __attribute__ ((visibility ("default")))'
[ "$(grep -cF "$EXPORT_LINE" "$WORK/libzmq/include/zmq.h")" = 1 ] ||
    fail "zmq.h no longer defines ZMQ_EXPORT as expected; update the visibility step"
cp "$WORK/libzmq/include/zmq.h" "$WORK/headers/zmq.h"  # consumers get the pristine header
sed -i.orig "s|$EXPORT_LINE|#define ZMQ_EXPORT|" "$WORK/libzmq/include/zmq.h"

# ------------------------------------------------------------------ build

ZMQ_OPTIONS=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON
             -DBUILD_SHARED=OFF -DBUILD_STATIC=ON -DBUILD_TESTS=OFF -DWITH_PERF_TOOL=OFF
             -DWITH_DOC=OFF -DWITH_DOCS=OFF -DENABLE_CPACK=OFF -DENABLE_PRECOMPILED=OFF
             -DENABLE_CURVE=ON -DWITH_LIBSODIUM=OFF -DENABLE_DRAFTS=OFF -DENABLE_WS=OFF -DWITH_TLS=OFF
             -DWITH_NSS=OFF -DWITH_LIBBSD=OFF -DWITH_OPENPGM=OFF -DWITH_NORM=OFF -DWITH_VMCI=OFF
             -DCMAKE_C_VISIBILITY_PRESET=hidden -DCMAKE_CXX_VISIBILITY_PRESET=hidden
             -DCMAKE_VISIBILITY_INLINES_HIDDEN=ON)
if command -v ninja >/dev/null; then
    ZMQ_OPTIONS+=(-G Ninja)
fi

case "$PLATFORM" in
Linux)
    VISIBILITY="-fvisibility=hidden"
    if [ "$SYSTEM_CLANG" = 1 ]; then
        command -v clang++ >/dev/null || fail "--system-clang needs clang and libc++ (apt-get install clang libc++-dev libc++abi-dev)"
        CC=clang
        CXX=clang++
        CFLAGS="$VISIBILITY"
        CXXFLAGS="$VISIBILITY -stdlib=libc++"
        LDFLAGS="-stdlib=libc++"
    else
        : "${UE_ROOT:?set UE_ROOT to the engine folder (the one holding Engine/): Unreal links libc++, so libzmq must too (or pass --system-clang for a check build)}"
        # LINUX_MULTIARCH_ROOT is where the engine's own scripts look for the toolchain.
        SDK="${LINUX_MULTIARCH_ROOT:-$(ls -d "$UE_ROOT"/Engine/Extras/ThirdPartyNotUE/SDKs/HostLinux/Linux_x64/*/ 2>/dev/null | tail -n 1)}"
        TOOLCHAIN="${SDK%/}/x86_64-unknown-linux-gnu"
        LIBCXX="$UE_ROOT/Engine/Source/ThirdParty/Unix/LibCxx"
        [ -x "$TOOLCHAIN/bin/clang++" ] || fail "no engine clang under $TOOLCHAIN (run the engine's Setup.sh first)"
        [ -d "$LIBCXX/include" ] || fail "no engine libc++ under $LIBCXX"
        LIBCXX_LIB="$LIBCXX/lib/Unix/x86_64-unknown-linux-gnu"
        CC="$TOOLCHAIN/bin/clang"
        CXX="$TOOLCHAIN/bin/clang++"
        TARGET="--target=x86_64-unknown-linux-gnu --sysroot=$TOOLCHAIN"
        CFLAGS="$TARGET $VISIBILITY"
        CXXFLAGS="$TARGET $VISIBILITY -nostdinc++ -isystem $LIBCXX/include -isystem $LIBCXX/include/c++/v1"
        # CMake's feature checks link small programs: against the engine's libc++, like the editor.
        LDFLAGS="$TARGET -nostdlib++ -L$LIBCXX_LIB -lc++ -lc++abi -lpthread"
    fi
    cmake -S "$WORK/libzmq" -B "$WORK/build" "${ZMQ_OPTIONS[@]}" \
        -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_C_FLAGS="$CFLAGS" \
        -DCMAKE_CXX_FLAGS="$CXXFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$LDFLAGS" >"$WORK/configure.log" 2>&1 ||
        { cat "$WORK/configure.log" >&2; fail "configuring libzmq failed"; }
    OUT="$OUT_ROOT/lib/Linux/x86_64-unknown-linux-gnu"
    ;;
Darwin)
    cmake -S "$WORK/libzmq" -B "$WORK/build" "${ZMQ_OPTIONS[@]}" -DCMAKE_OSX_ARCHITECTURES="arm64;x86_64" \
        -DCMAKE_OSX_DEPLOYMENT_TARGET=12.0 >"$WORK/configure.log" 2>&1 ||
        { cat "$WORK/configure.log" >&2; fail "configuring libzmq failed"; }
    OUT="$OUT_ROOT/lib/Mac"
    ;;
esac
grep -q "Using tweetnacl for CURVE security" "$WORK/configure.log" ||
    fail "libzmq was configured without its bundled tweetnacl (CURVE would need libsodium): see the cmake output"

cmake --build "$WORK/build" --config Release --target libzmq-static -j "$JOBS" >"$WORK/build.log" 2>&1 ||
    { tail -n 60 "$WORK/build.log" >&2; fail "building libzmq failed"; }

BUILT="$(find "$WORK/build" -name 'libzmq.a' | head -n 1)"
[ -n "$BUILT" ] || fail "the build produced no libzmq.a"
mkdir -p "$OUT" "$OUT_ROOT/include"
cp "$BUILT" "$OUT/libzmq.a"
cp -R "$WORK/headers/." "$OUT_ROOT/include/"
echo "installed $OUT/libzmq.a (libzmq $LIBZMQ_VERSION, $SOURCES sources) and headers in $OUT_ROOT/include"
