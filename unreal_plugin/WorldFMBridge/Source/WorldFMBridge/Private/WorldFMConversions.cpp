#include "WorldFMConversions.h"

#include "WorldFMCore/UnrealCamera.h"

namespace WorldFMConversions
{
FIntPoint ResolutionForAspect(const FIntPoint& Resolution, float AspectRatio)
{
	if (AspectRatio <= 0.0f || !FMath::IsFinite(AspectRatio) || Resolution.X <= 0 || Resolution.Y <= 0)
	{
		return Resolution;
	}
	// The horizontal FOV spans the width; the height follows the view, so the frame shows
	// exactly what the view shows (a square frame would show more above and below).
	return FIntPoint(Resolution.X, FMath::Clamp(FMath::RoundToInt(Resolution.X / AspectRatio), 16, 2048));
}

bool MakeRenderRequest(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg,
                       const FIntPoint& Resolution, int32 Steps, bool bJpeg, WorldFM::FRenderRequest& Out, FString& OutError)
{
	const auto Pose = WorldFM::UnrealToCameraToWorld({Location.X, Location.Y, Location.Z},
	                                                 {Rotation.Pitch, Rotation.Yaw, Rotation.Roll});
	if (!Pose)
	{
		OutError = UTF8_TO_TCHAR(Pose.ErrorMessage().c_str());
		return false;
	}
	Out = WorldFM::FRenderRequest();
	Out.CameraToWorld = *Pose;
	if (Resolution.X > 0 && Resolution.Y > 0)
	{
		const auto K = WorldFM::IntrinsicsFromHorizontalFov(HorizontalFovDeg, Resolution.X, Resolution.Y);
		if (!K)
		{
			OutError = UTF8_TO_TCHAR(K.ErrorMessage().c_str());
			return false;
		}
		Out.K = *K;
		Out.Size = std::make_pair(int(Resolution.X), int(Resolution.Y));
	}
	if (Steps > 0)
	{
		Out.Steps = Steps;
	}
	Out.Jpeg = bJpeg;
	return true;
}

WorldFM::FRenderRequest MakePathRenderRequest(const WorldFM::FCameraPath& Path, double Seconds, int32 Steps, bool bJpeg)
{
	WorldFM::FRenderRequest Out;
	Out.CameraToWorld = WorldFM::SampleCameraPath(Path, Seconds);
	Out.K = Path.K;
	Out.Size = std::make_pair(int(Path.Width), int(Path.Height));
	if (Steps > 0)
	{
		Out.Steps = Steps;
	}
	Out.Jpeg = bJpeg;
	return Out;
}

bool MakeViewUpload(const FWorldFMCapturedView& View, float MaxDepthCm, WorldFM::FViewUpload& Out, FString& OutError)
{
	const int32 PixelCount = View.Size.X * View.Size.Y;
	if (View.Size.X <= 0 || View.Size.Y <= 0 || View.Color.Num() != PixelCount)
	{
		OutError = FString::Printf(TEXT("view '%s': %d colour pixels for a %dx%d image"), *View.Name, View.Color.Num(),
		                           View.Size.X, View.Size.Y);
		return false;
	}
	if (View.DepthCm.Num() != 0 && View.DepthCm.Num() != PixelCount)
	{
		OutError = FString::Printf(TEXT("view '%s': %d depth values for a %dx%d image (give one per pixel or none)"),
		                           *View.Name, View.DepthCm.Num(), View.Size.X, View.Size.Y);
		return false;
	}
	const auto Pose = WorldFM::UnrealToCameraToWorld({View.Location.X, View.Location.Y, View.Location.Z},
	                                                 {View.Rotation.Pitch, View.Rotation.Yaw, View.Rotation.Roll});
	const auto K = WorldFM::IntrinsicsFromHorizontalFov(View.HorizontalFovDeg, View.Size.X, View.Size.Y);
	if (!Pose || !K)
	{
		OutError = FString::Printf(TEXT("view '%s': %s"), *View.Name,
		                           UTF8_TO_TCHAR((!Pose ? Pose.ErrorMessage() : K.ErrorMessage()).c_str()));
		return false;
	}
	Out.Name = TCHAR_TO_UTF8(*View.Name);
	Out.Width = View.Size.X;
	Out.Height = View.Size.Y;
	Out.K = *K;
	Out.CameraToWorld = *Pose;
	Out.Rgb.resize(size_t(PixelCount) * 3);
	for (int32 I = 0; I < PixelCount; ++I)
	{
		const FColor& C = View.Color[I];
		Out.Rgb[size_t(I) * 3 + 0] = C.R;
		Out.Rgb[size_t(I) * 3 + 1] = C.G;
		Out.Rgb[size_t(I) * 3 + 2] = C.B;
	}
	Out.Depth.clear();
	if (View.DepthCm.Num() == PixelCount)
	{
		Out.Depth.resize(PixelCount);
		for (int32 I = 0; I < PixelCount; ++I)
		{
			const float Cm = View.DepthCm[I];
			// Scene depth is z along the view axis, as the server expects; only the unit changes.
			Out.Depth[I] = (FMath::IsFinite(Cm) && Cm > 0.0f && Cm <= MaxDepthCm) ? Cm / float(WorldFM::UnrealCentimetresPerMetre) : 0.0f;
		}
	}
	return true;
}
}  // namespace WorldFMConversions
