#include "SWorldFMPreview.h"

#include "Editor.h"
#include "Engine/Texture2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "LevelEditorViewport.h"
#include "UnrealClient.h"
#include "Widgets/Images/SImage.h"
#include "Widgets/Input/SButton.h"
#include "Widgets/Input/SCheckBox.h"
#include "Widgets/Layout/SBox.h"
#include "Widgets/Layout/SScaleBox.h"
#include "Widgets/Text/STextBlock.h"
#include "WorldFMBridgeSettings.h"
#include "WorldFMBridgeSubsystem.h"
#include "WorldFMEngineViewCapture.h"

#define LOCTEXT_NAMESPACE "SWorldFMPreview"

namespace
{
/** The engine view's size: the frames' width, at the viewport's aspect. */
FIntPoint EngineViewSize(float AspectRatio)
{
	const FIntPoint Resolution = GetDefault<UWorldFMBridgeSettings>()->Resolution;
	const int32 Width = Resolution.X > 0 ? Resolution.X : 512;
	return FIntPoint(Width, AspectRatio > 0.0f ? FMath::Clamp(FMath::RoundToInt(Width / AspectRatio), 16, 2048) : Width);
}

TSharedRef<SWidget> ImagePane(const FSlateBrush* Brush, const FText& Caption)
{
	return SNew(SVerticalBox)
		+ SVerticalBox::Slot().AutoHeight().Padding(2.0f)[SNew(STextBlock).Text(Caption)]
		+ SVerticalBox::Slot().FillHeight(1.0f)
		[
			SNew(SScaleBox).Stretch(EStretch::ScaleToFit)[SNew(SImage).Image(Brush)]
		];
}

TSharedRef<SWidget> Toggle(bool& Value, const FText& Label)
{
	return SNew(SCheckBox)
		.IsChecked_Lambda([&Value] { return Value ? ECheckBoxState::Checked : ECheckBoxState::Unchecked; })
		.OnCheckStateChanged_Lambda([&Value](ECheckBoxState State) { Value = State == ECheckBoxState::Checked; })
		[SNew(STextBlock).Text(Label)];
}
}  // namespace

void SWorldFMPreview::Construct(const FArguments& InArgs)
{
	bFollowViewport = GetDefault<UWorldFMBridgeSettings>()->bFollowEditorViewport;
	EngineView = MakeUnique<FWorldFMEngineViewCapture>();
	GeneratedBrush.DrawAs = ESlateBrushDrawType::Image;
	EngineBrush.DrawAs = ESlateBrushDrawType::Image;

	ChildSlot
	[
		SNew(SVerticalBox)
		+ SVerticalBox::Slot().AutoHeight().Padding(4.0f)
		[
			SNew(SHorizontalBox)
			+ SHorizontalBox::Slot().AutoWidth().Padding(2.0f)
			[
				SNew(SButton).Text(LOCTEXT("Connect", "Connect")).OnClicked(this, &SWorldFMPreview::OnConnectClicked)
				.ToolTipText(LOCTEXT("ConnectTip", "Connect to the server in Project Settings > Plugins > WorldFM Bridge"))
			]
			+ SHorizontalBox::Slot().AutoWidth().Padding(2.0f)
			[
				SNew(SButton).Text(LOCTEXT("Seed", "Seed Scene Here")).OnClicked(this, &SWorldFMPreview::OnSeedClicked)
				.ToolTipText(LOCTEXT("SeedTip", "Capture RGB + depth around the viewport camera and open it as the scene"))
			]
			+ SHorizontalBox::Slot().AutoWidth().Padding(2.0f)
			[
				SNew(SButton).Text(LOCTEXT("Close", "Close Scene")).OnClicked(this, &SWorldFMPreview::OnCloseSceneClicked)
			]
			+ SHorizontalBox::Slot().AutoWidth().Padding(8.0f, 2.0f)[Toggle(bFollowViewport, LOCTEXT("Follow", "Follow viewport"))]
			+ SHorizontalBox::Slot().AutoWidth().Padding(8.0f, 2.0f)[Toggle(bShowEngineView, LOCTEXT("Engine", "Show engine view"))]
		]
		+ SVerticalBox::Slot().AutoHeight().Padding(6.0f, 2.0f)
		[
			SNew(STextBlock).Text(this, &SWorldFMPreview::GetStatusText).ColorAndOpacity(this, &SWorldFMPreview::GetStatusColor)
		]
		+ SVerticalBox::Slot().AutoHeight().Padding(6.0f, 0.0f, 6.0f, 2.0f)
		[
			SNew(STextBlock)
			.Text(this, &SWorldFMPreview::GetErrorText)
			.Visibility(this, &SWorldFMPreview::GetErrorVisibility)
			.ColorAndOpacity(FLinearColor(0.9f, 0.25f, 0.2f))
			.AutoWrapText(true)
		]
		+ SVerticalBox::Slot().FillHeight(1.0f).Padding(4.0f)
		[
			SNew(SHorizontalBox)
			+ SHorizontalBox::Slot().FillWidth(1.0f).Padding(2.0f)
			[
				SNew(SBox).Visibility_Lambda([this] { return bShowEngineView ? EVisibility::Visible : EVisibility::Collapsed; })
				[ImagePane(&EngineBrush, LOCTEXT("EngineCaption", "Engine"))]
			]
			+ SHorizontalBox::Slot().FillWidth(1.0f).Padding(2.0f)[ImagePane(&GeneratedBrush, LOCTEXT("GeneratedCaption", "WorldFM"))]
		]
	];
}

SWorldFMPreview::~SWorldFMPreview() = default;

void SWorldFMPreview::Tick(const FGeometry& AllottedGeometry, const double InCurrentTime, const float InDeltaTime)
{
	SCompoundWidget::Tick(AllottedGeometry, InCurrentTime, InDeltaTime);
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!Bridge)
	{
		return;
	}
	if (UTexture2D* Frame = Bridge->GetFrameTexture(); Frame && ShownFrame.Get() != Frame)
	{
		ShownFrame.Reset(Frame);
		GeneratedBrush.SetResourceObject(Frame);
		GeneratedBrush.ImageSize = FVector2D(Frame->GetSizeX(), Frame->GetSizeY());
	}

	FVector Location;
	FRotator Rotation;
	float Fov;
	float Aspect;
	if (!bFollowViewport || !GetViewportCamera(Location, Rotation, Fov, Aspect))
	{
		return;
	}
	if (Bridge->HasScene())
	{
		// Every tick: the core skips a pose that did not move.
		Bridge->SubmitCameraPose(Location, Rotation, Fov, Aspect);
	}
	if (bShowEngineView && GEditor)
	{
		UTextureRenderTarget2D* Target =
			EngineView->Update(GEditor->GetEditorWorldContext().World(), Location, Rotation, Fov, EngineViewSize(Aspect),
			                   GetDefault<UWorldFMBridgeSettings>()->EngineViewMaxRate, InCurrentTime);
		if (Target && EngineBrush.GetResourceObject() != Target)
		{
			EngineBrush.SetResourceObject(Target);
			EngineBrush.ImageSize = FVector2D(Target->SizeX, Target->SizeY);
		}
	}
	else
	{
		EngineView->Release();  // hidden: no scene renders on the editor's behalf
	}
}

bool SWorldFMPreview::GetViewportCamera(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg,
                                        float& AspectRatio) const
{
	if (!GEditor || GEditor->PlayWorld)  // while playing, UWorldFMViewComponent drives the camera
	{
		return false;
	}
	const FLevelEditorViewportClient* Client = GCurrentLevelEditingViewportClient;
	if (!Client || !Client->IsPerspective())
	{
		Client = nullptr;
		for (const FLevelEditorViewportClient* Candidate : GEditor->GetLevelViewportClients())
		{
			if (Candidate && Candidate->IsPerspective())
			{
				Client = Candidate;
				break;
			}
		}
	}
	if (!Client)
	{
		return false;
	}
	Location = Client->GetViewLocation();
	Rotation = Client->GetViewRotation();
	HorizontalFovDeg = Client->ViewFOV;
	const FIntPoint Size = Client->Viewport ? Client->Viewport->GetSizeXY() : FIntPoint::ZeroValue;
	AspectRatio = Size.X > 0 && Size.Y > 0 ? float(Size.X) / float(Size.Y) : 0.0f;
	return true;
}

FReply SWorldFMPreview::OnConnectClicked()
{
	if (UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get())
	{
		Bridge->Connect();
	}
	return FReply::Handled();
}

FReply SWorldFMPreview::OnSeedClicked()
{
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	FVector Location;
	FRotator Rotation;
	float Fov;
	float Aspect;
	if (Bridge && GEditor && GetViewportCamera(Location, Rotation, Fov, Aspect))
	{
		UWorld* World = GEditor->GetEditorWorldContext().World();
		Bridge->OpenSceneFromLevel(World, Location, World ? World->GetMapName() : TEXT("level"));
	}
	return FReply::Handled();
}

FReply SWorldFMPreview::OnCloseSceneClicked()
{
	if (UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get())
	{
		Bridge->CloseScene();
	}
	return FReply::Handled();
}

FText SWorldFMPreview::GetStatusText() const
{
	const UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!Bridge)
	{
		return LOCTEXT("NoSubsystem", "WorldFM bridge not loaded");
	}
	const FWorldFMStats Stats = Bridge->GetStats();
	const FString State = UEnum::GetDisplayValueAsText(Bridge->GetConnectionState()).ToString();
	return FText::FromString(FString::Printf(
		TEXT("%s%s   |   %.1f fps   |   latency %.0f ms   |   ping %.1f ms   |   frames %lld (late %lld)   |   reconnects %lld"),
		*State, Bridge->HasScene() ? TEXT(", scene open") : TEXT(", no scene"), Stats.FramesPerSecond, Stats.LatencyMs,
		Stats.RoundTripMs, Stats.FramesReceived, Stats.LateFramesDropped, Stats.Reconnects));
}

FSlateColor SWorldFMPreview::GetStatusColor() const
{
	const UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	switch (Bridge ? Bridge->GetConnectionState() : EWorldFMConnectionState::Disconnected)
	{
		case EWorldFMConnectionState::Connected: return FSlateColor(FLinearColor(0.3f, 0.85f, 0.3f));
		case EWorldFMConnectionState::Connecting: return FSlateColor(FLinearColor(0.95f, 0.75f, 0.2f));
		case EWorldFMConnectionState::Refused: return FSlateColor(FLinearColor(0.9f, 0.25f, 0.2f));
		default: return FSlateColor::UseForeground();
	}
}

FText SWorldFMPreview::GetErrorText() const
{
	const UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	return Bridge ? FText::FromString(Bridge->GetLastError()) : FText::GetEmpty();
}

EVisibility SWorldFMPreview::GetErrorVisibility() const
{
	const UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	return Bridge && !Bridge->GetLastError().IsEmpty() ? EVisibility::Visible : EVisibility::Collapsed;
}

#undef LOCTEXT_NAMESPACE
