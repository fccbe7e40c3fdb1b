// The engine-wide connection to a WorldFM server (`worldfm serve`).
//
// One connection per engine, shared by the editor preview tab and by UWorldFMViewComponent
// in a running game. Network I/O runs on a worker thread (FRunnable around the core's
// FClientWorker); the game thread only hands over the newest pose and picks up the newest
// frame, both lock-free. Decoding a frame (JPEG, or RGB to BGRA) runs on a background task,
// one at a time (latest wins: newer frames wait in the worker's slot), and the texture is
// updated on the render thread. Events (connection, scene, errors) are broadcast on the game
// thread.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/EngineSubsystem.h"
#include "Tickable.h"
#include "WorldFMBridgeTypes.h"
#include "WorldFMBridgeSubsystem.generated.h"

class FWorldFMBridgeConnection;
class IImageWrapperModule;
class UTexture2D;
class UWorldFMCameraPath;

UCLASS()
class WORLDFMBRIDGE_API UWorldFMBridgeSubsystem : public UEngineSubsystem, public FTickableGameObject
{
	GENERATED_BODY()

public:
	/** The subsystem, or nullptr before the engine is up or after it shut down. */
	static UWorldFMBridgeSubsystem* Get();

	virtual void Initialize(FSubsystemCollectionBase& Collection) override;
	virtual void Deinitialize() override;

	/**
	 * Connect to the server named in Project Settings > Plugins > WorldFM Bridge, with the
	 * client key pair of Editor Preferences > Plugins > WorldFM Bridge (if any).
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM")
	void Connect();

	/**
	 * Connect to Endpoint (tcp://host:port); ServerPublicKey is the CurveZMQ key or empty. A
	 * client key pair (Z85) is needed only by a server started with --authorized-keys; empty:
	 * the per-user settings' pair, else a fresh one.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM", meta = (AdvancedDisplay = "ClientPublicKey,ClientSecretKey"))
	void ConnectTo(const FString& Endpoint, const FString& ServerPublicKey, const FString& ClientPublicKey = TEXT(""),
	               const FString& ClientSecretKey = TEXT(""));

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
	 * skipped, never queued; a pose that did not move is not rendered again). Game thread
	 * only. FOV is horizontal, degrees. AspectRatio (width / height of the view being
	 * matched, e.g. the viewport's) sets the frame's height from the configured width, so the
	 * frame shows what that view shows; 0 keeps the configured Resolution as it is.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM", meta = (AdvancedDisplay = "AspectRatio"))
	void SubmitCameraPose(FVector Location, FRotator Rotation, float HorizontalFovDeg, float AspectRatio = 0.0f);

	/**
	 * The camera of a recorded path at Seconds into it, to render next (latest wins, as
	 * SubmitCameraPose): its pose exactly as the file has it (no trip through Unreal's
	 * convention), with the path's own intrinsics and frame size, as `worldfm render-path`
	 * renders it; the Resolution setting does not apply, Steps and Request JPEG do. Game thread only.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path")
	void SubmitCameraPathPose(const UWorldFMCameraPath* Path, float Seconds);

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	EWorldFMConnectionState GetConnectionState() const { return State; }

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	bool HasScene() const { return bHasScene; }

	UFUNCTION(BlueprintPure, Category = "WorldFM")
	FWorldFMStats GetStats() const { return Stats; }

	/** The newest generated frame (a new texture when the frame size changes), or nullptr. */
	UFUNCTION(BlueprintPure, Category = "WorldFM")
	UTexture2D* GetFrameTexture() const { return FrameTexture; }

	/** The last error reported (OnError), cleared when a connection succeeds; empty if none. */
	UFUNCTION(BlueprintPure, Category = "WorldFM")
	FString GetLastError() const { return LastError; }

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
	/** A frame on its way from the worker's slot to the texture (see ConsumeFrame). */
	struct FDecodedFrame
	{
		uint64 Generation = 0;  // the connection it came from; frames of an older one are dropped
		FWorldFMFrameInfo Info;
		bool bJpeg = false;
		TArray<uint8> Bytes;  // as received; BGRA8 (Width x Height) once decoded
		FString Error;        // set when decoding failed
	};

	void StartWorker(const FString& Endpoint, const FString& ServerPublicKey, const FString& ClientPublicKey,
	                 const FString& ClientSecretKey);
	void StopWorker();
	void SetState(EWorldFMConnectionState NewState, const FString& Message);
	void ReportError(const FString& Code, const FString& Message);
	void DrainEvents();
	/** Takes the newest frame (unless one is still decoding) and decodes it on a background task. */
	void ConsumeFrame();
	/** Background task: JPEG or RGB8 -> BGRA8. */
	static void Decode(IImageWrapperModule& Wrapper, FDecodedFrame& Frame);
	/** Game thread, after Decode: the texture, the stats, OnFrame. */
	void ApplyFrame(FDecodedFrame&& Frame);

	/** The worker thread and its client; null while disconnected. A shared pointer because
	 *  UHT's generated constructors then need no complete type for it. */
	TSharedPtr<FWorldFMBridgeConnection> Connection;

	UPROPERTY(Transient)
	TObjectPtr<UTexture2D> FrameTexture;

	/** Loaded on the game thread in Initialize: decoding tasks may not load modules. */
	IImageWrapperModule* ImageWrapper = nullptr;

	EWorldFMConnectionState State = EWorldFMConnectionState::Disconnected;
	FWorldFMStats Stats;
	FString LastError;
	bool bHasScene = false;
	bool bInitialized = false;
	bool bDecoding = false;         // a frame is on a background task
	uint64 ConnectionGeneration = 0;  // bumped by every StartWorker/StopWorker
	double LastFrameSeconds = 0.0;
};
