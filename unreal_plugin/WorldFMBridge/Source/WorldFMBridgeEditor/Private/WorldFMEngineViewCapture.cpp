#include "WorldFMEngineViewCapture.h"

#include "Components/SceneCaptureComponent2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "Engine/World.h"
#include "UObject/Package.h"

FWorldFMEngineViewCapture::FWorldFMEngineViewCapture()
{
	CleanupHandle = FWorldDelegates::OnWorldCleanup.AddRaw(this, &FWorldFMEngineViewCapture::OnWorldCleanup);
}

FWorldFMEngineViewCapture::~FWorldFMEngineViewCapture()
{
	FWorldDelegates::OnWorldCleanup.Remove(CleanupHandle);
	Release();
}

UTextureRenderTarget2D* FWorldFMEngineViewCapture::Update(UWorld* World, const FVector& Location, const FRotator& Rotation,
                                                          float HorizontalFovDeg, const FIntPoint& Size, float MaxRate,
                                                          double Now)
{
	if (!World || Size.X <= 0 || Size.Y <= 0)
	{
		return Target.Get();
	}
	if (!Target.IsValid() || Target->SizeX != Size.X || Target->SizeY != Size.Y)
	{
		UTextureRenderTarget2D* NewTarget = NewObject<UTextureRenderTarget2D>(GetTransientPackage(), NAME_None, RF_Transient);
		NewTarget->InitCustomFormat(Size.X, Size.Y, PF_B8G8R8A8, false);
		Target.Reset(NewTarget);
		if (Component.IsValid())
		{
			Component->TextureTarget = NewTarget;
		}
		bDirty = true;
	}
	if (!Component.IsValid() || CaptureWorld.Get() != World)
	{
		Release();
		USceneCaptureComponent2D* Capture = NewObject<USceneCaptureComponent2D>(GetTransientPackage(), NAME_None, RF_Transient);
		Capture->bCaptureEveryFrame = false;
		Capture->bCaptureOnMovement = false;
		Capture->CaptureSource = ESceneCaptureSource::SCS_FinalColorLDR;
		Capture->TextureTarget = Target.Get();
		Capture->RegisterComponentWithWorld(World);
		Component.Reset(Capture);
		CaptureWorld = World;
		bDirty = true;
	}
	const FTransform Transform(Rotation, Location);
	if (!Transform.Equals(LastTransform, 1e-3) || HorizontalFovDeg != LastFov)
	{
		LastTransform = Transform;
		LastFov = HorizontalFovDeg;
		bDirty = true;
	}
	if (bDirty && Now - LastCaptureSeconds >= 1.0 / FMath::Max(MaxRate, 1.0f))
	{
		Component->FOVAngle = HorizontalFovDeg;
		Component->SetWorldLocationAndRotation(Location, Rotation);
		Component->CaptureScene();
		LastCaptureSeconds = Now;
		bDirty = false;
		++CaptureCount;
	}
	return Target.Get();
}

void FWorldFMEngineViewCapture::Release()
{
	if (Component.IsValid() && Component->IsRegistered())
	{
		Component->UnregisterComponent();
	}
	Component.Reset();
	CaptureWorld.Reset();
}

UWorld* FWorldFMEngineViewCapture::GetCaptureWorld() const { return CaptureWorld.Get(); }

void FWorldFMEngineViewCapture::OnWorldCleanup(UWorld* World, bool bSessionEnded, bool bCleanupResources)
{
	// Before the world's scene goes: a component still registered with it would be ticked,
	// captured or unregistered later against freed memory.
	if (World && World == CaptureWorld.Get())
	{
		Release();
	}
}
