// Put this on an actor with a camera: every tick it sends the camera's pose to the WorldFM
// server (through UWorldFMBridgeSubsystem) and shows the generated frames -- as a texture
// parameter of a material and/or drawn into a render target.
#pragma once

#include "Components/ActorComponent.h"
#include "CoreMinimal.h"
#include "WorldFMBridgeTypes.h"
#include "WorldFMViewComponent.generated.h"

class UMaterialInstanceDynamic;
class UTextureRenderTarget2D;

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

	bool bSeedRequested = false;  // seed once per play session, whatever reconnects happen
};
