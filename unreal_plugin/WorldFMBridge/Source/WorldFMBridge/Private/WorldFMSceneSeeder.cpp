#include "WorldFMSceneSeeder.h"

#include "Components/SceneCaptureComponent2D.h"
#include "Engine/SceneCapture2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "Engine/World.h"
#include "TextureResource.h"
#include "WorldFMBridgeSettings.h"

namespace WorldFMSceneSeeder
{
namespace
{
UTextureRenderTarget2D* MakeTarget(const FIntPoint& Size, EPixelFormat Format, bool bLinear)
{
	UTextureRenderTarget2D* Target = NewObject<UTextureRenderTarget2D>(GetTransientPackage(), NAME_None, RF_Transient);
	Target->InitCustomFormat(Size.X, Size.Y, Format, bLinear);
	Target->UpdateResourceImmediate(true);
	return Target;
}
}  // namespace

bool CaptureViews(UWorld* World, const FVector& Location, const UWorldFMBridgeSettings& Settings,
                  TArray<FWorldFMCapturedView>& OutViews, FString& OutError)
{
	check(IsInGameThread());
	if (!World)
	{
		OutError = TEXT("scene seeding needs a world (open a level first)");
		return false;
	}
	const FIntPoint Size = Settings.SeedResolution;
	const TArray<float> Pitches = Settings.SeedPitchesDeg.Num() > 0 ? Settings.SeedPitchesDeg : TArray<float>{0.0f};
	const int32 YawCount = FMath::Max(1, Settings.SeedYawCount);

	// sRGB colour as a photo would store it; depth as float centimetres in R of a 32-bit float
	// RGBA target: the format FLinearColor read-back converts on every RHI. (PF_R32_FLOAT
	// through ReadLinearColorPixels hits check(0) in older D3D12 RHIs; PF_FloatRGBA, which
	// UnrealCV's depth sensor reads with ReadFloat16Pixels, is half precision: 1 cm steps
	// from 10 m, 4 cm from 41 m, nothing beyond 655 m.)
	UTextureRenderTarget2D* ColorTarget = MakeTarget(Size, PF_B8G8R8A8, false);
	UTextureRenderTarget2D* DepthTarget = MakeTarget(Size, PF_A32B32G32R32F, true);

	FActorSpawnParameters Params;
	Params.ObjectFlags = RF_Transient;
	Params.SpawnCollisionHandlingOverride = ESpawnActorCollisionHandlingMethod::AlwaysSpawn;
#if WITH_EDITOR
	Params.bHideFromSceneOutliner = true;
#endif
	ASceneCapture2D* CaptureActor = World->SpawnActor<ASceneCapture2D>(Location, FRotator::ZeroRotator, Params);
	if (!CaptureActor)
	{
		OutError = TEXT("could not spawn a SceneCapture2D for scene seeding");
		return false;
	}
	USceneCaptureComponent2D* Capture = CaptureActor->GetCaptureComponent2D();
	Capture->bCaptureEveryFrame = false;
	Capture->bCaptureOnMovement = false;
	Capture->bAlwaysPersistRenderingState = true;
	Capture->ProjectionType = ECameraProjectionMode::Perspective;
	Capture->FOVAngle = Settings.SeedFovDeg;

	OutViews.Reset();
	for (float Pitch : Pitches)
	{
		for (int32 YawIndex = 0; YawIndex < YawCount; ++YawIndex)
		{
			const FRotator Rotation(Pitch, 360.0f * YawIndex / YawCount, 0.0f);
			CaptureActor->SetActorLocationAndRotation(Location, Rotation);

			FWorldFMCapturedView& View = OutViews.AddDefaulted_GetRef();
			View.Name = FString::Printf(TEXT("seed_p%+.0f_y%03.0f"), Rotation.Pitch, Rotation.Yaw);
			View.Location = Location;
			View.Rotation = Rotation;
			View.HorizontalFovDeg = Settings.SeedFovDeg;
			View.Size = Size;

			Capture->CaptureSource = ESceneCaptureSource::SCS_FinalColorLDR;
			Capture->TextureTarget = ColorTarget;
			Capture->CaptureScene();
			Capture->CaptureSource = ESceneCaptureSource::SCS_SceneDepth;
			Capture->TextureTarget = DepthTarget;
			Capture->CaptureScene();

			FTextureRenderTargetResource* ColorResource = ColorTarget->GameThread_GetRenderTargetResource();
			FTextureRenderTargetResource* DepthResource = DepthTarget->GameThread_GetRenderTargetResource();
			TArray<FLinearColor> Depth;
			if (!ColorResource || !DepthResource || !ColorResource->ReadPixels(View.Color) ||
			    !DepthResource->ReadLinearColorPixels(Depth) || Depth.Num() != Size.X * Size.Y)
			{
				CaptureActor->Destroy();
				OutError = FString::Printf(TEXT("reading back seed view %s failed"), *View.Name);
				return false;
			}
			View.DepthCm.SetNumUninitialized(Depth.Num());
			for (int32 I = 0; I < Depth.Num(); ++I)
			{
				View.DepthCm[I] = Depth[I].R;
			}
		}
	}
	CaptureActor->Destroy();
	return OutViews.Num() > 0;
}
}  // namespace WorldFMSceneSeeder
