# Fetch and build the WorldFM plugin's third-party libraries for Win64, in the layout
# WorldFMThirdParty.Build.cs expects (this folder):
#   include\  zmq.h, zmq.hpp, zmq_addon.hpp, msgpack.hpp, msgpack\, nlohmann\      lib\Win64\libzmq.lib
#
#   powershell -ExecutionPolicy Bypass -File build_thirdparty.ps1
#
# Run from a "x64 Native Tools Command Prompt for VS 2022" shell (or any shell with the
# MSVC toolchain, git and cmake >= 3.16 on PATH). The versions are the ones
# build_thirdparty.sh builds on Linux and Mac (libzmq 4.3.4, cppzmq 4.9.0, msgpack-cxx 4.1.3, nlohmann-json 3.11.2;
# licences in LICENSES\, checked against the sources below). libzmq is static against the
# DLL C runtime (/MD) like Unreal, and with ZMQ_STATIC its API carries no dllexport, so no
# libzmq symbol leaves the module DLL that links it.
$ErrorActionPreference = "Stop"

$LibzmqTag = "v4.3.4"
$CppzmqTag = "v4.9.0"
$MsgpackTag = "cpp-4.1.3"
$JsonTag = "v3.11.2"

$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
$Work = Join-Path ([System.IO.Path]::GetTempPath()) ("worldfm-thirdparty-" + [guid]::NewGuid())
New-Item -ItemType Directory -Path $Work | Out-Null
try {
    git clone --quiet --depth 1 --branch $LibzmqTag https://github.com/zeromq/libzmq.git "$Work\libzmq"
    git clone --quiet --depth 1 --branch $CppzmqTag https://github.com/zeromq/cppzmq.git "$Work\cppzmq"
    git clone --quiet --depth 1 --branch $MsgpackTag https://github.com/msgpack/msgpack-c.git "$Work\msgpack"
    git clone --quiet --depth 1 --branch $JsonTag https://github.com/nlohmann/json.git "$Work\json"

    # Static, against the DLL C runtime (/MD) like Unreal; CURVE through the bundled tweetnacl.
    cmake -S "$Work\libzmq" -B "$Work\build" -G "Visual Studio 17 2022" -A x64 `
        -DBUILD_SHARED=OFF -DBUILD_STATIC=ON -DBUILD_TESTS=OFF -DWITH_DOCS=OFF -DWITH_PERF_TOOL=OFF `
        -DENABLE_CURVE=ON -DWITH_LIBSODIUM=OFF -DENABLE_DRAFTS=OFF -DENABLE_WS=OFF -DWITH_TLS=OFF -DENABLE_CPACK=OFF `
        -DCMAKE_MSVC_RUNTIME_LIBRARY=MultiThreadedDLL -DCMAKE_POLICY_DEFAULT_CMP0091=NEW
    if ($LASTEXITCODE -ne 0) { throw "cmake configure failed" }
    cmake --build "$Work\build" --config Release --target libzmq-static
    if ($LASTEXITCODE -ne 0) { throw "cmake build failed" }

    # The shipped licence texts must be the ones these sources carry (compared word by word).
    function Get-Words([string]$Path) { ((Get-Content -Raw $Path) -split '[\s.]+' | Where-Object { $_ }) -join ' ' }
    $Licenses = Join-Path $Here "LICENSES"
    foreach ($Pair in @(@("$Work\libzmq\COPYING.LESSER", "libzmq-COPYING.LESSER.txt"), @("$Work\libzmq\COPYING", "libzmq-COPYING.txt"),
                        @("$Work\cppzmq\LICENSE", "cppzmq-LICENSE.txt"), @("$Work\msgpack\LICENSE_1_0.txt", "msgpack-cxx-LICENSE_1_0.txt"),
                        @("$Work\json\LICENSE.MIT", "nlohmann-json-LICENSE.MIT.txt"))) {
        if ((Get-Words $Pair[0]) -ne (Get-Words (Join-Path $Licenses $Pair[1]))) {
            throw "$($Pair[0]) differs from LICENSES\$($Pair[1]): review the licence change"
        }
    }

    $Out = Join-Path $Here "lib\Win64"
    $Include = Join-Path $Here "include"
    New-Item -ItemType Directory -Force -Path $Out, $Include | Out-Null
    # libzmq names its static library after the toolset (libzmq-v143-mt-s-4_3_4.lib).
    $Built = Get-ChildItem -Recurse -Path "$Work\build" -Filter "libzmq*-s-*.lib" | Select-Object -First 1
    if (-not $Built) { throw "no static libzmq .lib found under $Work\build" }
    Copy-Item $Built.FullName (Join-Path $Out "libzmq.lib")
    Copy-Item "$Work\libzmq\include\zmq.h", "$Work\cppzmq\zmq.hpp", "$Work\cppzmq\zmq_addon.hpp" $Include
    Copy-Item -Recurse -Force "$Work\msgpack\include\*" $Include
    Copy-Item -Recurse -Force "$Work\json\include\nlohmann" $Include
    Write-Host "installed $Out\libzmq.lib and headers in $Include"
}
finally {
    Remove-Item -Recurse -Force $Work
}
