// Camera paths: the JSON that `worldfm view` records and `worldfm render-path` renders
// (python_bridge/camera_path.py is the Python half; docs/viewer.md), read by the plugin to
// play a recorded flight.
//
//   {
//     "width": 256, "height": 256,                  optional when K is given: then (2 cx, 2 cy)
//     "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],   or "hfov_deg": 60 (needs width and height)
//     "fps": 24,                                    optional (default 24), in (0, 240]
//     "c2w": [[[...4x4...]], ...]                   N camera-to-world matrices (or one 4x4)
//   }
//
// Poses are in the project convention (docs/conventions.md): 4x4 camera-to-world, metres,
// OpenCV camera axes; K 3x3 in pixels. The published WorldFM meta.json ("name", "image", "K",
// "c2w") is a path as it stands. Reading validates what python_bridge.camera_path.load_camera_path
// validates, naming each problem in the same words; tests/TestCameraPath.cpp reads files the
// Python side wrote. Stricter than Python in two places: sizes must be whole numbers (Python's
// int() truncates 256.5) and booleans are not numbers.
#pragma once

#include "WorldFMCore/Expected.h"
#include "WorldFMCore/Export.h"
#include "WorldFMCore/UnrealCamera.h"

#include <cstddef>
#include <string>
#include <vector>

namespace WorldFM
{
inline constexpr double DefaultCameraPathFps = 24.0;  // as python_bridge.camera_path
inline constexpr double MaxCameraPathFps = 240.0;
/** Larger files are refused unread: a 10-minute recording at 24 fps is about 5 MB. */
inline constexpr std::size_t MaxCameraPathBytes = std::size_t(64) << 20;

/** A validated camera path: Poses[i] is shown at time i / Fps seconds. */
struct FCameraPath
{
	std::vector<FMat4> Poses;  // at least one; each a rigid camera-to-world (metres, OpenCV axes)
	FMat3 K{};                 // shared intrinsics, pixels of a Width x Height frame
	int Width = 0;
	int Height = 0;
	double Fps = DefaultCameraPathFps;

	/** Time of the last pose, (N - 1) / Fps seconds; 0 for a single pose. */
	double DurationSeconds() const { return Poses.empty() ? 0.0 : double(Poses.size() - 1) / Fps; }
};

/**
 * Parse and validate the text of a path file. Source names the file in error messages
 * ("<Source>: c2w[3] rotation must be orthonormal ...").
 */
WORLDFM_CORE_API TExpected<FCameraPath> ParseCameraPath(const std::string& Json, const std::string& Source);

/** Read FilePath (UTF-8 JSON, at most MaxCameraPathBytes) and parse it with ParseCameraPath. */
WORLDFM_CORE_API TExpected<FCameraPath> LoadCameraPath(const std::string& FilePath);

/**
 * The camera at Seconds into the path, for playback at any frame rate: Poses[i] at i / Fps,
 * positions linear and rotations along the shortest arc (slerp) in between -- at
 * Seconds = t / Fps the pose python_bridge.camera_path.interpolate_poses gives at keyframe
 * index t. Before the start: the first pose; after DurationSeconds(): the last. An empty path
 * gives the identity.
 */
WORLDFM_CORE_API FMat4 SampleCameraPath(const FCameraPath& Path, double Seconds);
}  // namespace WorldFM
