// The "WorldFM Preview" tab: follows the active level viewport's camera, shows the engine's
// own view of it beside the generated frame, with connection status, FPS and latency.
#pragma once

#include "CoreMinimal.h"
#include "Styling/SlateBrush.h"
#include "UObject/StrongObjectPtr.h"
#include "Widgets/SCompoundWidget.h"

class USceneCaptureComponent2D;
class UTextureRenderTarget2D;
class UWorld;

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
	/** The active perspective level viewport's camera; false when there is none (or PIE runs). */
	bool GetViewportCamera(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const;
	void CaptureEngineView(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg);
	void ReleaseEngineCapture();

	FReply OnConnectClicked();
	FReply OnSeedClicked();
	FReply OnCloseSceneClicked();
	FText GetStatusText() const;

	FSlateBrush GeneratedBrush;
	FSlateBrush EngineBrush;
	TStrongObjectPtr<UTextureRenderTarget2D> EngineTarget;
	TStrongObjectPtr<USceneCaptureComponent2D> EngineCapture;
	TWeakObjectPtr<UWorld> CaptureWorld;
	bool bFollowViewport = true;
	bool bShowEngineView = true;
};
