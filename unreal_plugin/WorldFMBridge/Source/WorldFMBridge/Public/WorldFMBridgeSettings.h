// Project Settings > Plugins > WorldFM Bridge: where the server is and what to ask it for.
// Shared with the team (DefaultGame.ini): nothing secret lives here; the client's CurveZMQ
// key pair is per user (WorldFMBridgeUserSettings.h).
#pragma once

#include "CoreMinimal.h"
#include "Engine/DeveloperSettings.h"
#include "WorldFMBridgeSettings.generated.h"

UCLASS(Config = Game, DefaultConfig, meta = (DisplayName = "WorldFM Bridge"))
class WORLDFMBRIDGE_API UWorldFMBridgeSettings : public UDeveloperSettings
{
	GENERATED_BODY()

public:
	UWorldFMBridgeSettings();

	virtual FName GetCategoryName() const override { return TEXT("Plugins"); }

	/** ZeroMQ endpoint of `worldfm serve`, e.g. tcp://127.0.0.1:5555 (the server's default). */
	UPROPERTY(Config, EditAnywhere, Category = "Server")
	FString ServerEndpoint;

	/**
	 * The server's CurveZMQ public key: the 40-character public-key value in server.key,
	 * written by `worldfm serve --make-keys DIR`.
	 * Required for a server bound beyond loopback; leave empty for a local server.
	 */
	UPROPERTY(Config, EditAnywhere, Category = "Server")
	FString ServerPublicKey;

	/** Handshake and small requests give up after this long (then the client retries). */
	UPROPERTY(Config, EditAnywhere, Category = "Server", AdvancedDisplay, meta = (ClampMin = "100", Units = "ms"))
	int32 RequestTimeoutMs = 3000;

	/** How long OpenScene waits for the server to build the scene's point cloud. */
	UPROPERTY(Config, EditAnywhere, Category = "Server", AdvancedDisplay, meta = (ClampMin = "1", Units = "s"))
	int32 BuildTimeoutSeconds = 300;

	/** Size of the generated frames (the model's native size is fastest; 0 x 0 = the server's default). */
	UPROPERTY(Config, EditAnywhere, Category = "Generation", meta = (ClampMin = "0", ClampMax = "2048"))
	FIntPoint Resolution = FIntPoint(512, 512);

	/** Generator steps per frame (1 or 2 for the distilled models); 0 = the server's default. */
	UPROPERTY(Config, EditAnywhere, Category = "Generation", meta = (ClampMin = "0", ClampMax = "50"))
	int32 Steps = 0;

	/** Ask for JPEG frames instead of raw RGB: less bandwidth to a remote server, a little CPU here. */
	UPROPERTY(Config, EditAnywhere, Category = "Generation")
	bool bRequestJpeg = false;

	/** Scene seeding: yaw directions captured around the seed point (evenly spaced). */
	UPROPERTY(Config, EditAnywhere, Category = "Scene Seeding", meta = (ClampMin = "1", ClampMax = "32"))
	int32 SeedYawCount = 8;

	/** Scene seeding: pitch of each ring of captures, degrees. */
	UPROPERTY(Config, EditAnywhere, Category = "Scene Seeding")
	TArray<float> SeedPitchesDeg;

	/** Scene seeding: capture resolution of each RGB + depth view. */
	UPROPERTY(Config, EditAnywhere, Category = "Scene Seeding", meta = (ClampMin = "16", ClampMax = "2048"))
	FIntPoint SeedResolution = FIntPoint(512, 512);

	/** Scene seeding: horizontal field of view of the captures, degrees. */
	UPROPERTY(Config, EditAnywhere, Category = "Scene Seeding", meta = (ClampMin = "10", ClampMax = "170"))
	float SeedFovDeg = 90.0f;

	/** Scene seeding: depth beyond this (sky, far background) is sent as "no depth". */
	UPROPERTY(Config, EditAnywhere, Category = "Scene Seeding", meta = (ClampMin = "100", Units = "cm"))
	float SeedMaxDepthCm = 100000.0f;

	/** Editor preview: send the active level viewport's camera while the preview tab is open. */
	UPROPERTY(Config, EditAnywhere, Category = "Editor Preview")
	bool bFollowEditorViewport = true;

	/**
	 * Editor preview: the engine's own view beside the generated frame is captured at most this
	 * often, and only when the camera moved (each capture renders the scene once more).
	 */
	UPROPERTY(Config, EditAnywhere, Category = "Editor Preview", meta = (ClampMin = "1", ClampMax = "60", Units = "Hz"))
	float EngineViewMaxRate = 10.0f;
};
