// Unreal-side data -> the core's types. Every coordinate conversion goes through the core
// (WorldFMCore/UnrealCamera.h, a port of models/cameras.py checked against its vectors).
#pragma once

#include "CoreMinimal.h"
#include "WorldFMBridgeTypes.h"
#include "WorldFMCore/CameraPath.h"
#include "WorldFMCore/Protocol.h"

namespace WorldFMConversions
{
/**
 * The frame size for a view of AspectRatio (width / height): Resolution's width, and the
 * height that keeps the view's aspect (at least 16 pixels, at most 2048). Resolution as it is
 * when AspectRatio <= 0 or Resolution is 0 x 0 (the server's default size).
 */
FIntPoint ResolutionForAspect(const FIntPoint& Resolution, float AspectRatio);

/** Unreal camera -> render request at Resolution (0 x 0: the server's default size). */
bool MakeRenderRequest(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg,
                       const FIntPoint& Resolution, int32 Steps, bool bJpeg, WorldFM::FRenderRequest& Out, FString& OutError);

/** A camera path at Seconds -> render request with the path's K and frame size (no conversion: poses are ours). */
WorldFM::FRenderRequest MakePathRenderRequest(const WorldFM::FCameraPath& Path, double Seconds, int32 Steps, bool bJpeg);

/** A captured view -> an upload: BGRA -> RGB, depth cm -> m (beyond MaxDepthCm: none). */
bool MakeViewUpload(const FWorldFMCapturedView& View, float MaxDepthCm, WorldFM::FViewUpload& Out, FString& OutError);
}  // namespace WorldFMConversions
