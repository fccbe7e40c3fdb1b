// The "WorldFM Preview" tab: follows the active level viewport's camera, shows the engine's
// own view of it beside the generated frame (both at the viewport's aspect ratio), with the
// connection state, the last error, FPS and latency.
#pragma once

#include "CoreMinimal.h"
#include "Styling/SlateBrush.h"
#include "Templates/UniquePtr.h"
#include "UObject/StrongObjectPtr.h"
#include "Widgets/SCompoundWidget.h"

class FWorldFMEngineViewCapture;
class UTexture2D;

class SWorldFMPreview final : public SCompoundWidget
{
public:
	SLATE_BEGIN_ARGS(SWorldFMPreview) {}
	SLATE_END_ARGS()

	void Construct(const FArguments& InArgs);
	virtual ~SWorldFMPreview() override;

	/** Slate ticks the widget only while the tab is visible: that is when the camera is followed. */
	virtual void Tick(const FGeometry& AllottedGeometry, const double InCurrentTime, const float InDeltaTime) override;

private:
	/**
	 * The active perspective level viewport's camera and its aspect ratio (width / height);
	 * false when there is none (or PIE runs).
	 */
	bool GetViewportCamera(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg, float& AspectRatio) const;

	FReply OnConnectClicked();
	FReply OnSeedClicked();
	FReply OnCloseSceneClicked();
	FText GetStatusText() const;
	FSlateColor GetStatusColor() const;
	FText GetErrorText() const;
	EVisibility GetErrorVisibility() const;

	FSlateBrush GeneratedBrush;
	FSlateBrush EngineBrush;
	/** Keeps the texture the brush shows alive until the brush moves to a newer one. */
	TStrongObjectPtr<UTexture2D> ShownFrame;
	TUniquePtr<FWorldFMEngineViewCapture> EngineView;
	bool bFollowViewport = true;
	bool bShowEngineView = true;
};
