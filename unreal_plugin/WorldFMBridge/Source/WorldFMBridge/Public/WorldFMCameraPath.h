// A camera path loaded for playback: a `worldfm view` recording, any file `worldfm render-path`
// reads, or a published WorldFM meta.json (docs/viewer.md, python_bridge/camera_path.py).
// UWorldFMViewComponent::PlayCameraPath renders it; SampleUnrealCamera drives any camera along
// it. Reading, validation, interpolation and the conversion to Unreal's convention are the
// core's (WorldFMCore/CameraPath.h, WorldFMCore/UnrealCamera.h), tested against files the
// Python side wrote.
#pragma once

#include "CoreMinimal.h"
#include "UObject/Object.h"

#include <string>

#include "WorldFMCameraPath.generated.h"

namespace WorldFM
{
struct FCameraPath;
}

UCLASS(BlueprintType)
class WORLDFMBRIDGE_API UWorldFMCameraPath : public UObject
{
	GENERATED_BODY()

public:
	/**
	 * Read a camera-path JSON file; a relative FilePath is taken from the project folder.
	 * Returns nullptr and sets Error (naming the file and the problem) when it cannot be used.
	 */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path", meta = (DisplayName = "Load WorldFM Camera Path"))
	static UWorldFMCameraPath* LoadCameraPath(const FString& FilePath, FString& Error);

	/** The same from JSON text; Source names it in error messages. */
	UFUNCTION(BlueprintCallable, Category = "WorldFM|Camera Path", meta = (DisplayName = "Parse WorldFM Camera Path"))
	static UWorldFMCameraPath* ParseCameraPath(const FString& Json, const FString& Source, FString& Error);

	/**
	 * The camera at Seconds into the path, in Unreal's convention (cm, FRotator, horizontal FOV
	 * in degrees): the recorded poses at i / fps, interpolated in between (positions linear,
	 * rotations along the shortest arc), held before the start and after the end. False if the
	 * path is empty (not loaded through LoadCameraPath or ParseCameraPath).
	 */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	bool SampleUnrealCamera(float Seconds, FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const;

	/** Time of the last pose, (poses - 1) / fps. */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path", meta = (Units = "s"))
	float GetDuration() const;

	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	int32 GetNumPoses() const;

	/** The rate the poses were recorded at (24 for `worldfm view` recordings). */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	float GetFramesPerSecond() const;

	/** The frame size the path's intrinsics are for; playback renders frames of this size. */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	FIntPoint GetFrameSize() const;

	/** Where the path came from (the file, or the Source given to ParseCameraPath). */
	UFUNCTION(BlueprintPure, Category = "WorldFM|Camera Path")
	FString GetSource() const { return SourceName; }

	/** The core's path (poses in the project convention), or nullptr if empty. C++ only. */
	const WorldFM::FCameraPath* GetCorePath() const { return Path.Get(); }

private:
	/** Parses UTF-8 path text (the core's ParseCameraPath) into a new path, or sets Error. */
	static UWorldFMCameraPath* FromText(const std::string& Utf8, const FString& Source, FString& Error);

	/** A pointer, so this header names no core type (the core is a private dependency). */
	TSharedPtr<const WorldFM::FCameraPath> Path;
	FString SourceName;
};

DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FWorldFMCameraPathEvent, UWorldFMCameraPath*, Path);
