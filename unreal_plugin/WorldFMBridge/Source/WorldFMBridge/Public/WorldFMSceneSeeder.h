// Scene seeding from the level itself: a ring of SceneCapture2D shots (final colour and
// scene depth) around a point, ready for open_scene.
#pragma once

#include "CoreMinimal.h"
#include "WorldFMBridgeTypes.h"

class UWorld;
class UWorldFMBridgeSettings;

namespace WorldFMSceneSeeder
{
/**
 * Capture Settings.SeedYawCount x Settings.SeedPitchesDeg views at Location in World.
 * Game thread; each view waits for the GPU (ReadPixels), so this takes a moment.
 * Returns false with OutError when nothing could be captured.
 */
WORLDFMBRIDGE_API bool CaptureViews(UWorld* World, const FVector& Location, const UWorldFMBridgeSettings& Settings,
                                    TArray<FWorldFMCapturedView>& OutViews, FString& OutError);
}  // namespace WorldFMSceneSeeder
