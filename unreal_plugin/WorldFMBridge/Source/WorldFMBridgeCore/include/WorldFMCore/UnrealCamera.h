// Unreal camera <-> project camera convention, the plugin side of the boundary.
//
// The project convention (docs/conventions.md, models/cameras.py): OpenCV camera axes
// (x right, y down, z forward), 4x4 camera-to-world matrices in a right-handed Z-up world
// in metres, intrinsics K in pixels with pixel centres at +0.5. Unreal is left-handed
// (X forward, Y right, Z up), in centimetres, with FRotator pitch/yaw/roll in degrees and
// a horizontal FOV. Our world is Unreal's with Y mirrored and scaled to metres.
//
// This is a port of models.cameras (ue_to_c2w, c2w_to_ue, K_from_hfov, hfov_from_K,
// validate_c2w, validate_K); tests/TestUnrealCamera.cpp checks it against
// tests/data/camera_vectors.json, which the Python side writes, in both directions.
#pragma once

#include "WorldFMCore/Expected.h"
#include "WorldFMCore/Export.h"

#include <array>
#include <optional>
#include <string>
#include <utility>

namespace WorldFM
{
/** 4x4 matrix, row-major (the order the wire uses). */
using FMat4 = std::array<double, 16>;
/** 3x3 matrix, row-major. */
using FMat3 = std::array<double, 9>;

inline constexpr double UnrealCentimetresPerMetre = 100.0;

/**
 * How far a rotation may be from orthonormal (max |R R^T - I|) and still count as rigid:
 * lenient enough for poses stored as float32 (the WorldFM meta.json), as models.cameras.
 */
inline constexpr double OrthonormalTolerance = 1e-4;

/** An Unreal camera: location in cm (X, Y, Z) and FRotator angles in degrees. */
struct FUnrealCamera
{
	std::array<double, 3> LocationCm{};
	std::array<double, 3> PitchYawRollDeg{};
};

/**
 * Camera-to-world (row-major 4x4, metres, OpenCV axes) of an Unreal camera at
 * LocationCm (X, Y, Z in cm) with rotation PitchYawRollDeg (FRotator order, degrees).
 * Fails on non-finite input.
 */
WORLDFM_CORE_API TExpected<FMat4> UnrealToCameraToWorld(const std::array<double, 3>& LocationCm,
                                                        const std::array<double, 3>& PitchYawRollDeg);

/**
 * Pinhole intrinsics (row-major 3x3, pixels) of a centred camera with square pixels and a
 * horizontal field of view HorizontalFovDeg (Unreal's FOV is horizontal): fx = fy =
 * (Width / 2) / tan(hfov / 2), cx = Width / 2, cy = Height / 2.
 * Fails unless 0 < hfov < 180 and both sides are positive.
 */
WORLDFM_CORE_API TExpected<FMat3> IntrinsicsFromHorizontalFov(double HorizontalFovDeg, int Width, int Height);

/**
 * The Unreal camera of a camera-to-world pose: the inverse of UnrealToCameraToWorld, angles as
 * Unreal's FMatrix::Rotator() gives them (pitch in [-90, 90], yaw and roll in (-180, 180]).
 * Fails when the pose is not rigid (ValidateCameraToWorld).
 */
WORLDFM_CORE_API TExpected<FUnrealCamera> CameraToWorldToUnreal(const FMat4& CameraToWorld);

/** Horizontal FOV in degrees of intrinsics K for an image Width pixels wide; fails on an invalid K. */
WORLDFM_CORE_API TExpected<double> HorizontalFovFromIntrinsics(const FMat3& K, int Width);

/**
 * Ok when CameraToWorld is a rigid transform: finite, last row [0, 0, 0, 1], rotation
 * orthonormal within OrthonormalTolerance, no reflection. Otherwise the error names the
 * problem and starts with Name (e.g. "c2w[3]").
 */
WORLDFM_CORE_API FStatus ValidateCameraToWorld(const FMat4& CameraToWorld, const std::string& Name = "c2w");

/**
 * Ok when K is pinhole intrinsics: finite, positive focal lengths, upper-triangular with last
 * row [0, 0, 1]. Given Size (width, height), also a positive size and the principal point
 * inside the image (which catches a K written for another resolution).
 */
WORLDFM_CORE_API FStatus ValidateIntrinsics(const FMat3& K, std::optional<std::pair<int, int>> Size = std::nullopt);

/** Identity 4x4, handy for tests and defaults. */
WORLDFM_CORE_API FMat4 IdentityPose();
}  // namespace WorldFM
