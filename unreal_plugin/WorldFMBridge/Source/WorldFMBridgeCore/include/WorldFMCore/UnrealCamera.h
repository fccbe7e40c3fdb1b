// Unreal camera -> project camera convention, the plugin side of the boundary.
//
// The project convention (docs/conventions.md, models/cameras.py): OpenCV camera axes
// (x right, y down, z forward), 4x4 camera-to-world matrices in a right-handed Z-up world
// in metres, intrinsics K in pixels with pixel centres at +0.5. Unreal is left-handed
// (X forward, Y right, Z up), in centimetres, with FRotator pitch/yaw/roll in degrees and
// a horizontal FOV. Our world is Unreal's with Y mirrored and scaled to metres.
//
// This is a port of models.cameras.ue_to_c2w / K_from_hfov; tests/test_unreal_camera.cpp
// checks it against tests/data/camera_vectors.json, which the Python side writes.
#pragma once

#include "WorldFMCore/Expected.h"
#include "WorldFMCore/Export.h"

#include <array>

namespace WorldFM
{
/** 4x4 matrix, row-major (the order the wire uses). */
using FMat4 = std::array<double, 16>;
/** 3x3 matrix, row-major. */
using FMat3 = std::array<double, 9>;

inline constexpr double UnrealCentimetresPerMetre = 100.0;

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

/** Identity 4x4, handy for tests and defaults. */
WORLDFM_CORE_API FMat4 IdentityPose();
}  // namespace WorldFM
