// Put this on an actor with a camera: every tick it sends the camera's pose to the WorldFM
// server (through UWorldFMBridgeSubsystem) and shows the generated frames -- as a texture
// parameter of a material and/or drawn into a render target. It also plays recorded camera
// paths (`worldfm view` recordings, UWorldFMCameraPath): then it sends the path's camera instead.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"
#include "WorldFMBridgeTypes.h"
#include "WorldFMCameraPath.h"
#include "WorldFMViewComponent.generated.h"

class UMaterialInstanceDynamic;
class UTextureRenderTarget2D;
class UWorldFMBridgeSubsystem;

UCLASS(ClassGroup = (WorldFM), meta = (BlueprintSpawnableComponent, DisplayName = "WorldFM View"))
class WORLDFMBRIDGE_API UWorldFMViewComponent : public UActorComponent
{
	GENERATED_BODY()

public:
	UWorldFMViewComponent();

	/** Send the owner's camera pose every tick. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	bool bSendPose = true;

	/** Connect with the project settings at BeginPlay (if not connected yet). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	bool bConnectOnBeginPlay = true;

	/** Seed a scene from the level around the owner at BeginPlay (if none is open). */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	bool bSeedSceneOnBeginPlay = false;

	/** Each frame is drawn into this render target (stretched), if set. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	TObjectPtr<UTextureRenderTarget2D> TargetRenderTarget;

	/** Each frame is set as TextureParameterName on this material, if set. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	TObjectPtr<UMaterialInstanceDynamic> TargetMaterial;

	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM")
	FName TextureParameterName = TEXT("WorldFMFrame");

	/** The newest generated frame, with what came with it. */
	UPROPERTY(BlueprintAssignable, Category = "WorldFM")
	FWorldFMFrameEvent OnFrame;

	/** Camera-path playback speed: 1 plays the path as recorded, 0.5 at half speed. */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM|Camera Path", meta = (ClampMin = "0"))
	float CameraPathPlayRate = 1.0f;

	/**
	 * While a path plays, move the owner's camera along it too (its CameraComponent, else the
	 * actor; it must be Movable), so the engine's own view shows the same camera. It lags the
	 * generated frame's pose by one game frame: this component ticks after the camera update.
	 */
	UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "WorldFM|Camera Path")
	bool bCameraPathMovesOwner = true;

	/** A path played to its end (not sent when StopCameraPath stops it, or for a looping path). */
	UPROPERTY(BlueprintAssignable, Category = "WorldFM|Camera Path")
	FWorldFMCameraPathEvent OnCameraPathFinished;

	/**
	 * Play Path: every tick, instead of the owner's camera, the server renders the path's camera
	 * at the playback time (SubmitCameraPathPose: the path's poses, intrinsics and frame size),
	 * interpolated between the recorded poses at the game's frame rate. Time advances with the
	 * game's (dilated) time while a scene is open, so a path started before the scene is ready
	 * waits for it. Replaces a path already playing. False if Path is empty.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path")
	bool PlayCameraPath(UWorldFMCameraPath* Path, bool bLoop = false);

	/** Load a camera-path file (UWorldFMCameraPath::LoadCameraPath) and play it; false with Error set if it cannot be used. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path")
	bool PlayCameraPathFile(const FString& FilePath, FString& Error, bool bLoop = false);

	/** Stop the path; the component sends the owner's camera again (if bSendPose). */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path")
	void StopCameraPath();

	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	bool IsPlayingCameraPath() const { return PlayingPath != nullptr; }

	/** The path playing, or nullptr. */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	UWorldFMCameraPath* GetCameraPath() const { return PlayingPath; }

	/** Seconds into the path playing (0 when none). */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path", meta = (Units = "s"))
	float GetCameraPathSeconds() const { return PathSeconds; }

	/** The camera this component reports: a CameraComponent on the owner, else the owner's view point. */
	UFUNCTION(BlueprintPure, Category = "WorldFM")
	void GetCameraView(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const;

	/**
	 * Width / height of the view the frames should match: the camera's constrained aspect
	 * ratio, else the game viewport's; 0 when neither is known (the configured Resolution is
	 * used as it is).
	 */
	UFUNCTION(BlueprintPure, Category = "WorldFM")
	float GetViewAspectRatio() const;

	virtual void BeginPlay() override;
	virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;
	virtual void TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction) override;

private:
	UFUNCTION()
	void HandleFrame(UTexture2D* Frame, const FWorldFMFrameInfo& Info);

	UFUNCTION()
	void HandleConnectionStateChanged(EWorldFMConnectionState State, const FString& Message);

	void SeedScene();

	/** One tick of path playback: render (and show) the path's camera now, then advance the clock. */
	void TickCameraPath(float DeltaTime, UWorldFMBridgeSubsystem& Bridge);

	/** Move the owner's camera (its CameraComponent, else the actor) to a path camera. */
	void MoveOwnerCamera(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg);

	bool bSeedRequested = false;  // seed once per play session, whatever reconnects happen

	UPROPERTY(Transient)
	TObjectPtr<UWorldFMCameraPath> PlayingPath;

	float PathSeconds = 0.0f;
	bool bLoopPath = false;
};
