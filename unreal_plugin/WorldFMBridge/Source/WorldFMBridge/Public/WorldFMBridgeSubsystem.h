// The engine-wide connection to a WorldFM server (`worldfm serve`).
//
// One connection per engine, shared by the editor preview tab and by UWorldFMViewComponent
// in a running game. Network I/O runs on a worker thread (FRunnable around the core's
// FClientWorker); the game thread only hands over the newest pose and picks up the newest
// frame, both lock-free, and the frame is copied into a texture on the render thread.
// Events (connection, scene, errors) are broadcast on the game thread.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/EngineSubsystem.h"
#include "Tickable.h"
#include "WorldFMBridgeTypes.h"
#include "WorldFMBridgeSubsystem.generated.h"

class FWorldFMBridgeConnection;
class UTexture2D;

UCLASS()
class WORLDFMBRIDGE_API UWorldFMBridgeSubsystem : public UEngineSubsystem, public FTickableGameObject
{
	GENERATED_BODY()

public:
	/** The subsystem, or nullptr before the engine is up or after it shut down. */
	static UWorldFMBridgeSubsystem* Get();

	virtual void Initialize(FSubsystemCollectionBase& Collection) override;
	virtual void Deinitialize() override;

	/** Connect to the server named in Project Settings > Plugins > WorldFM Bridge. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void Connect();

	/** Connect to Endpoint (tcp://host:port); ServerPublicKey is the CurveZMQ key or empty. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void ConnectTo(const FString& Endpoint, const FString& ServerPublicKey);

	/** Close the connection and stop the worker thread. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void Disconnect();

	/**
	 * Seed a scene from the level: capture RGB + scene depth around SeedLocation (yaw ring
	 * x pitches from the settings) with a SceneCapture2D and upload it as the scene to render.
	 * Blocks the game thread while capturing (each view waits for the GPU); returns false
	 * with an OnError broadcast when it cannot start.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM", meta = (WorldContext = "WorldContextObject"))
	bool OpenSceneFromLevel(const UObject* WorldContextObject, FVector SeedLocation, const FString& SceneName);

	/** Upload views captured any other way as the scene to render. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	bool OpenSceneFromViews(const FString& SceneName, const TArray<FWorldFMCapturedView>& Views);

	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void CloseScene();

	/**
	 * The camera to render next (latest wins: poses sent faster than the server renders are
	 * skipped, never queued). Game thread only. FOV is horizontal, degrees.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void SubmitCameraPose(FVector Location, FRotator Rotation, float HorizontalFovDeg);

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	EWorldFMConnectionState GetConnectionState() const { return State; }

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	bool HasScene() const { return bHasScene; }

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	FWorldFMStats GetStats() const { return Stats; }

	/** The newest generated frame (recreated when the frame size changes), or nullptr. */
	UFUNCTION(BlueprintPure, Category = "WorldFM")
	UTexture2D* GetFrameTexture() const { return FrameTexture; }

	UPROPERTY(BlueprintAssignable, Category = "WorldFM")
	FWorldFMFrameEvent OnFrame;

	UPROPERTY(BlueprintAssignable, Category = "WorldFM")
	FWorldFMErrorEvent OnError;

	UPROPERTY(BlueprintAssignable, Category = "WorldFM")
	FWorldFMConnectionEvent OnConnectionStateChanged;

	UPROPERTY(BlueprintAssignable, Category = "WorldFM")
	FWorldFMSceneEvent OnSceneReady;

	// FTickableGameObject: events and frames are picked up here, in the editor too.
	virtual void Tick(float DeltaTime) override;
	virtual TStatId GetStatId() const override;
	virtual ETickableTickType GetTickableTickType() const override;
	virtual bool IsTickable() const override;
	virtual bool IsTickableInEditor() const override { return true; }
	virtual bool IsTickableWhenPaused() const override { return true; }

private:
	void StartWorker(const FString& Endpoint, const FString& ServerPublicKey);
	void StopWorker();
	void SetState(EWorldFMConnectionState NewState, const FString& Message);
	void ReportError(const FString& Code, const FString& Message);
	void DrainEvents();
	void ConsumeFrame(double Now);
	bool UploadFrame(int32 Width, int32 Height, bool bJpeg, const uint8* Data, int64 Size);

	/** The worker thread and its client; null while disconnected. A shared pointer because
	 *  UHT's generated constructors then need no complete type for it. */
	TSharedPtr<FWorldFMBridgeConnection> Connection;

	UPROPERTY(Transient)
	TObjectPtr<UTexture2D> FrameTexture;

	EWorldFMConnectionState State = EWorldFMConnectionState::Disconnected;
	FWorldFMStats Stats;
	bool bHasScene = false;
	bool bInitialized = false;
	double LastFrameSeconds = 0.0;
};
