// The engine's own view of the preview tab's camera, for showing beside the generated frame.
//
// An ownerless SceneCaptureComponent2D registered with the editor world, like a preview
// scene's: nothing is added to the level, dirtied or saved. Its world may go away under it
// (a map change, the end of PIE, editor shutdown), so it listens to
// FWorldDelegates::OnWorldCleanup and unregisters the component while the world still
// exists; the component never outlives its world's scene. Each capture renders the scene
// once more on the game thread's behalf, so captures are throttled: only when the camera or
// the size changed, at most MaxRate times a second.
#pragma once

#include "CoreMinimal.h"
#include "UObject/StrongObjectPtr.h"

class USceneCaptureComponent2D;
class UTextureRenderTarget2D;
class UWorld;

class FWorldFMEngineViewCapture final
{
public:
	FWorldFMEngineViewCapture();
	~FWorldFMEngineViewCapture();
	FWorldFMEngineViewCapture(const FWorldFMEngineViewCapture&) = delete;
	FWorldFMEngineViewCapture& operator=(const FWorldFMEngineViewCapture&) = delete;

	/**
	 * Bring the capture up to date with this camera in World at Size (pixels), capturing only
	 * when something changed and 1 / MaxRate seconds have passed since the last capture (Now,
	 * seconds). Returns the target the view is drawn into, or nullptr without a world.
	 */
	UTextureRenderTarget2D* Update(UWorld* World, const FVector& Location, const FRotator& Rotation,
	                               float HorizontalFovDeg, const FIntPoint& Size, float MaxRate, double Now);

	/** Unregister and drop the capture component (the target stays for the brush). */
	void Release();

	/** The world the component is registered with, or nullptr. */
	UWorld* GetCaptureWorld() const;
	int32 GetCaptureCount() const { return CaptureCount; }

private:
	void OnWorldCleanup(UWorld* World, bool bSessionEnded, bool bCleanupResources);

	TStrongObjectPtr<UTextureRenderTarget2D> Target;
	TStrongObjectPtr<USceneCaptureComponent2D> Component;
	TWeakObjectPtr<UWorld> CaptureWorld;
	FDelegateHandle CleanupHandle;
	FTransform LastTransform = FTransform::Identity;
	float LastFov = 0.0f;
	bool bDirty = true;
	double LastCaptureSeconds = -1.0e9;
	int32 CaptureCount = 0;
};
