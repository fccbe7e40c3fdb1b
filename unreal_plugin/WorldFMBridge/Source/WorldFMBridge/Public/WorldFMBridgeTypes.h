// Blueprint-facing types of the WorldFM bridge.
#pragma once

#include "CoreMinimal.h"
#include "WorldFMBridgeTypes.generated.h"

class UTexture2D;

UENUM(BlueprintType)
enum class EWorldFMConnectionState : uint8
{
	/** Not connected and not trying. */
	Disconnected,
	/** Connect() was called: handshaking, or reconnecting after the server went away. */
	Connecting,
	/** Handshake done; poses are rendered once a scene is open. */
	Connected,
	/** The server refused this plugin (protocol version mismatch); update one side and Connect again. */
	Refused,
};

/** What came with a generated frame. */
USTRUCT(BlueprintType)
struct WORLDFMBRIDGE_API FWorldFMFrameInfo
{
	GENERATED_BODY()

	/** The render request this frame answers (increasing). */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int64 RequestId = 0;

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	FIntPoint Size = FIntPoint::ZeroValue;

	/** Pose sent -> frame received, measured by the client. */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM", meta = (Units = "ms"))
	float LatencyMs = 0.0f;

	/** The server's own time for this frame (queue + render + encode). */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM", meta = (Units = "ms"))
	float ServerTotalMs = 0.0f;

	/** "model" when the generator made it, "anchor" for the no-model fallback. */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	FString Mode;

	/** Index of the reference view the server used, -1 if none. */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int32 Reference = -1;
};

/** Connection health for status displays. */
USTRUCT(BlueprintType)
struct WORLDFMBRIDGE_API FWorldFMStats
{
	GENERATED_BODY()

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	float FramesPerSecond = 0.0f;

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM", meta = (Units = "ms"))
	float LatencyMs = 0.0f;

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM", meta = (Units = "ms"))
	float RoundTripMs = 0.0f;

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int64 FramesReceived = 0;

	/** Frames that arrived after a newer request had been sent (dropped, latest wins). */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int64 LateFramesDropped = 0;

	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int64 Reconnects = 0;

	/** Times the scene was uploaded again because the server had restarted. */
	UPROPERTY(BlueprintReadOnly, Category = "WorldFM")
	int64 SceneReopens = 0;
};

/**
 * One posed RGB + depth view of the level, as captured for open_scene. Location and
 * rotation are Unreal's (cm, degrees); the bridge converts them to the server's convention.
 */
USTRUCT(BlueprintType)
struct WORLDFMBRIDGE_API FWorldFMCapturedView
{
	GENERATED_BODY()

	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	FString Name;

	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	FVector Location = FVector::ZeroVector;

	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	FRotator Rotation = FRotator::ZeroRotator;

	/** Horizontal field of view, degrees (Unreal's convention). */
	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	float HorizontalFovDeg = 90.0f;

	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	FIntPoint Size = FIntPoint::ZeroValue;

	/** Size.X * Size.Y pixels, rows top to bottom, sRGB. */
	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	TArray<FColor> Color;

	/** Scene depth (z along the view axis) in cm per pixel; <= 0 means none. Empty: no depth. */
	UPROPERTY(BlueprintReadWrite, Category = "WorldFM")
	TArray<float> DepthCm;
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FWorldFMFrameEvent, UTexture2D*, Frame, const FWorldFMFrameInfo&, Info);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FWorldFMErrorEvent, const FString&, Code, const FString&, Message);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_TwoParams(FWorldFMConnectionEvent, EWorldFMConnectionState, State, const FString&, Message);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FWorldFMSceneEvent, const FString&, Message);
