// Symbol visibility of the core's non-template API. Inside Unreal the core is the module
// WorldFMBridgeCore, and UnrealBuildTool defines WORLDFMBRIDGECORE_API as dllexport while
// building it and dllimport for its dependents (Win64 editor builds are one DLL per
// module). The CMake build links the core statically and needs nothing.
#pragma once

#if defined(WORLDFMBRIDGECORE_API)
#define WORLDFM_CORE_API WORLDFMBRIDGECORE_API
#else
#define WORLDFM_CORE_API
#endif
