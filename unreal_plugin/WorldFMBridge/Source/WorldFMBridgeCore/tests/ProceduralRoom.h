// A procedural scene the live tests upload: the inside of a 6 x 6 x 3 m room (our world,
// Z up, metres) whose walls, floor and ceiling each have their own colour and a 1 m
// checkerboard, ray-cast analytically so RGB and z-depth are exact for any pose.
#pragma once

#include "WorldFMCore/Protocol.h"
#include "WorldFMCore/UnrealCamera.h"

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace WorldFMTest
{
inline constexpr double RoomLo[3] = {-3.0, -3.0, 0.0};
inline constexpr double RoomHi[3] = {3.0, 3.0, 3.0};
inline constexpr double CheckerMetres = 1.0;  // coarse enough to survive the 64 x 48 test frames

/** Render the room at C2W with intrinsics K: RGB (H, W, 3) uint8 and z-depth (H, W) metres. */
inline void RenderRoom(const WorldFM::FMat4& C2W, const WorldFM::FMat3& K, int Width, int Height,
                       std::vector<uint8_t>& Rgb, std::vector<float>& Depth)
{
	static const uint8_t WallColours[6][3] = {{200, 60, 60}, {60, 200, 60}, {60, 60, 200},
	                                          {200, 200, 60}, {60, 200, 200}, {200, 60, 200}};
	Rgb.assign(size_t(Width) * Height * 3, 0);
	Depth.assign(size_t(Width) * Height, 0.0f);
	const double Origin[3] = {C2W[3], C2W[7], C2W[11]};
	for (int Row = 0; Row < Height; ++Row)
	{
		for (int Col = 0; Col < Width; ++Col)
		{
			// Pixel centres at +0.5 (docs/conventions.md); the camera ray with z = 1, so the
			// ray parameter of a hit is its z-depth.
			const double Cam[3] = {(Col + 0.5 - K[2]) / K[0], (Row + 0.5 - K[5]) / K[4], 1.0};
			double Dir[3];
			for (int A = 0; A < 3; ++A)
			{
				Dir[A] = C2W[A * 4 + 0] * Cam[0] + C2W[A * 4 + 1] * Cam[1] + C2W[A * 4 + 2] * Cam[2];
			}
			double Best = INFINITY;
			int Wall = 0;
			for (int A = 0; A < 3; ++A)
			{
				if (std::abs(Dir[A]) < 1e-12)
				{
					continue;
				}
				const double T = ((Dir[A] > 0 ? RoomHi[A] : RoomLo[A]) - Origin[A]) / Dir[A];
				if (T > 0 && T < Best)
				{
					Best = T;
					Wall = 2 * A + (Dir[A] > 0 ? 1 : 0);
				}
			}
			const int Axis = Wall / 2;
			double Hit[3];
			for (int A = 0; A < 3; ++A)
			{
				Hit[A] = Origin[A] + Best * Dir[A];
			}
			const int U = static_cast<int>(std::floor(Hit[(Axis + 1) % 3] / CheckerMetres));
			const int V = static_cast<int>(std::floor(Hit[(Axis + 2) % 3] / CheckerMetres));
			const double Shade = ((U + V) & 1) ? 1.0 : 0.55;
			uint8_t* Pixel = &Rgb[(size_t(Row) * Width + Col) * 3];
			for (int C = 0; C < 3; ++C)
			{
				Pixel[C] = static_cast<uint8_t>(WallColours[Wall][C] * Shade);
			}
			Depth[size_t(Row) * Width + Col] = static_cast<float>(Best);
		}
	}
}

/** An Unreal camera (cm, pitch/yaw/roll degrees, horizontal FOV) as the plugin would send it. */
struct FUnrealCamera
{
	std::array<double, 3> LocationCm;
	std::array<double, 3> PitchYawRollDeg;
	double FovDeg = 90.0;
};

inline WorldFM::FMat4 PoseOf(const FUnrealCamera& Camera)
{
	const auto C2W = WorldFM::UnrealToCameraToWorld(Camera.LocationCm, Camera.PitchYawRollDeg);
	REQUIRE(C2W.IsOk());
	return *C2W;
}

inline WorldFM::FMat3 IntrinsicsOf(const FUnrealCamera& Camera, int Width, int Height)
{
	const auto K = WorldFM::IntrinsicsFromHorizontalFov(Camera.FovDeg, Width, Height);
	REQUIRE(K.IsOk());
	return *K;
}

/** Posed RGB-D views of the room from its middle, looking all around and up and down. */
inline std::vector<WorldFM::FViewUpload> RoomViews(int Width, int Height)
{
	std::vector<WorldFM::FViewUpload> Views;
	for (double Pitch : {-35.0, 0.0, 35.0})
	{
		for (double Yaw : {0.0, 90.0, 180.0, 270.0})
		{
			const FUnrealCamera Camera{{0.0, 0.0, 150.0}, {Pitch, Yaw, 0.0}, 100.0};
			WorldFM::FViewUpload View;
			View.Name = "pitch" + std::to_string(int(Pitch)) + "_yaw" + std::to_string(int(Yaw));
			View.Width = Width;
			View.Height = Height;
			View.K = IntrinsicsOf(Camera, Width, Height);
			View.CameraToWorld = PoseOf(Camera);
			RenderRoom(View.CameraToWorld, View.K, Width, Height, View.Rgb, View.Depth);
			Views.push_back(std::move(View));
		}
	}
	return Views;
}
}  // namespace WorldFMTest
