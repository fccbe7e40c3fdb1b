#include "SWorldFMPreview.h"

#include "Components/SceneCaptureComponent2D.h"
#include "Editor.h"
#include "Engine/Texture2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "LevelEditorViewport.h"
#include "Widgets/Images/SImage.h"
#include "Widgets/Input/SButton.h"
#include "Widgets/Input/SCheckBox.h"
#include "Widgets/Layout/SBox.h"
#include "Widgets/Layout/SScaleBox.h"
#include "Widgets/Text/STextBlock.h"
#include "WorldFMBridgeSettings.h"
#include "WorldFMBridgeSubsystem.h"

#define LOCTEXT_NAMESPACE "SWorldFMPreview"

namespace
{
FIntPoint PreviewSize()
{
	const FIntPoint Resolution = GetDefault<UWorldFMBridgeSettings>()->Resolution;
	return Resolution.X > 0 && Resolution.Y > 0 ? Resolution : FIntPoint(512, 512);
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
			SNew(STextBlock).Text(this, &SWorldFMPreview::GetStatusText)
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

SWorldFMPreview::~SWorldFMPreview() { ReleaseEngineCapture(); }

void SWorldFMPreview::Tick(const FGeometry& AllottedGeometry, const double InCurrentTime, const float InDeltaTime)
{
	SCompoundWidget::Tick(AllottedGeometry, InCurrentTime, InDeltaTime);
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!Bridge)
	{
		return;
	}
	if (UTexture2D* Frame = Bridge->GetFrameTexture(); Frame && GeneratedBrush.GetResourceObject() != Frame)
	{
		GeneratedBrush.SetResourceObject(Frame);
		GeneratedBrush.ImageSize = FVector2D(Frame->GetSizeX(), Frame->GetSizeY());
	}

	FVector Location;
	FRotator Rotation;
	float Fov;
	if (!bFollowViewport || !GetViewportCamera(Location, Rotation, Fov))
	{
		return;
	}
	if (Bridge->HasScene())
	{
		Bridge->SubmitCameraPose(Location, Rotation, Fov);
	}
	if (bShowEngineView)
	{
		CaptureEngineView(Location, Rotation, Fov);
	}
}

bool SWorldFMPreview::GetViewportCamera(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const
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
	return true;
}

void SWorldFMPreview::CaptureEngineView(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg)
{
	UWorld* World = GEditor->GetEditorWorldContext().World();
	if (!World)
	{
		return;
	}
	const FIntPoint Size = PreviewSize();
	if (!EngineTarget.IsValid() || EngineTarget->SizeX != Size.X || EngineTarget->SizeY != Size.Y)
	{
		UTextureRenderTarget2D* Target = NewObject<UTextureRenderTarget2D>(GetTransientPackage(), NAME_None, RF_Transient);
		Target->InitCustomFormat(Size.X, Size.Y, PF_B8G8R8A8, false);
		EngineTarget.Reset(Target);
		EngineBrush.SetResourceObject(Target);
		EngineBrush.ImageSize = FVector2D(Size.X, Size.Y);
		ReleaseEngineCapture();
	}
	if (!EngineCapture.IsValid() || CaptureWorld.Get() != World)
	{
		ReleaseEngineCapture();
		// An ownerless component registered with the editor world, like a preview scene's:
		// no actor is added to the level, so nothing is dirtied or saved.
		USceneCaptureComponent2D* Capture =
			NewObject<USceneCaptureComponent2D>(GetTransientPackage(), NAME_None, RF_Transient);
		Capture->bCaptureEveryFrame = false;
		Capture->bCaptureOnMovement = false;
		Capture->CaptureSource = ESceneCaptureSource::SCS_FinalColorLDR;
		Capture->TextureTarget = EngineTarget.Get();
		Capture->RegisterComponentWithWorld(World);
		EngineCapture.Reset(Capture);
		CaptureWorld = World;
	}
	EngineCapture->FOVAngle = HorizontalFovDeg;
	EngineCapture->SetWorldLocationAndRotation(Location, Rotation);
	EngineCapture->CaptureScene();
}

void SWorldFMPreview::ReleaseEngineCapture()
{
	if (EngineCapture.IsValid() && EngineCapture->IsRegistered())
	{
		EngineCapture->UnregisterComponent();
	}
	EngineCapture.Reset();
	CaptureWorld.Reset();
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
	if (Bridge && GEditor && GetViewportCamera(Location, Rotation, Fov))
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

#undef LOCTEXT_NAMESPACE
