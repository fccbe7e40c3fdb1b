#include "WorldFMBridgeSubsystem.h"

#include "Engine/Engine.h"
#include "Engine/Texture2D.h"
#include "Engine/World.h"
#include "IImageWrapper.h"
#include "IImageWrapperModule.h"
#include "Modules/ModuleManager.h"
#include "RHICommandList.h"
#include "RenderingThread.h"
#include "TextureResource.h"
#include "WorldFMBridgeConnection.h"
#include "WorldFMBridgeLog.h"
#include "WorldFMBridgeSettings.h"
#include "WorldFMConversions.h"
#include "WorldFMSceneSeeder.h"

namespace
{
FString ToFString(const std::string& Utf8) { return UTF8_TO_TCHAR(Utf8.c_str()); }
}  // namespace

UWorldFMBridgeSubsystem* UWorldFMBridgeSubsystem::Get()
{
	return GEngine ? GEngine->GetEngineSubsystem<UWorldFMBridgeSubsystem>() : nullptr;
}

void UWorldFMBridgeSubsystem::Initialize(FSubsystemCollectionBase& Collection)
{
	Super::Initialize(Collection);
	bInitialized = true;
}

void UWorldFMBridgeSubsystem::Deinitialize()
{
	StopWorker();
	bInitialized = false;
	Super::Deinitialize();
}

void UWorldFMBridgeSubsystem::Connect()
{
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	ConnectTo(Settings->ServerEndpoint, Settings->ServerPublicKey);
}

void UWorldFMBridgeSubsystem::ConnectTo(const FString& Endpoint, const FString& ServerPublicKey)
{
	StopWorker();
	StartWorker(Endpoint, ServerPublicKey);
	SetState(EWorldFMConnectionState::Connecting, FString::Printf(TEXT("connecting to %s"), *Endpoint));
	Connection->Worker.Connect();
}

void UWorldFMBridgeSubsystem::Disconnect()
{
	StopWorker();
	SetState(EWorldFMConnectionState::Disconnected, TEXT("disconnected"));
}

void UWorldFMBridgeSubsystem::StartWorker(const FString& Endpoint, const FString& ServerPublicKey)
{
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	WorldFM::FClientConfig Config;
	Config.Endpoint = TCHAR_TO_UTF8(*Endpoint);
	Config.ClientName = "unreal";
	Config.RequestTimeoutMs = Settings->RequestTimeoutMs;
	Config.BuildTimeoutMs = Settings->BuildTimeoutSeconds * 1000;
	Config.CurveServerKey = TCHAR_TO_UTF8(*ServerPublicKey.TrimStartAndEnd());
	Config.CurvePublicKey = TCHAR_TO_UTF8(*Settings->ClientPublicKey.TrimStartAndEnd());
	Config.CurveSecretKey = TCHAR_TO_UTF8(*Settings->ClientSecretKey.TrimStartAndEnd());

	Connection = MakeShared<FWorldFMBridgeConnection>(Config);
	Stats = FWorldFMStats();
	LastFrameSeconds = 0.0;
}

void UWorldFMBridgeSubsystem::StopWorker()
{
	Connection.Reset();  // stops and joins the worker thread
	bHasScene = false;
}

bool UWorldFMBridgeSubsystem::OpenSceneFromLevel(const UObject* WorldContextObject, FVector SeedLocation,
                                                 const FString& SceneName)
{
	UWorld* World = GEngine ? GEngine->GetWorldFromContextObject(WorldContextObject, EGetWorldErrorMode::LogAndReturnNull)
	                        : nullptr;
	TArray<FWorldFMCapturedView> Views;
	FString Error;
	if (!WorldFMSceneSeeder::CaptureViews(World, SeedLocation, *GetDefault<UWorldFMBridgeSettings>(), Views, Error))
	{
		ReportError(TEXT("seeding"), Error);
		return false;
	}
	return OpenSceneFromViews(SceneName, Views);
}

bool UWorldFMBridgeSubsystem::OpenSceneFromViews(const FString& SceneName, const TArray<FWorldFMCapturedView>& Views)
{
	if (!Connection)
	{
		ReportError(TEXT("not_connected"), TEXT("call Connect before opening a scene"));
		return false;
	}
	const float MaxDepthCm = GetDefault<UWorldFMBridgeSettings>()->SeedMaxDepthCm;
	auto Uploads = std::make_shared<std::vector<WorldFM::FViewUpload>>(Views.Num());
	for (int32 I = 0; I < Views.Num(); ++I)
	{
		FString Error;
		if (!WorldFMConversions::MakeViewUpload(Views[I], MaxDepthCm, (*Uploads)[I], Error))
		{
			ReportError(TEXT("bad_view"), Error);
			return false;
		}
	}
	if (Uploads->empty())
	{
		ReportError(TEXT("bad_view"), TEXT("a scene needs at least one view"));
		return false;
	}
	bHasScene = false;
	Connection->Worker.OpenScene(TCHAR_TO_UTF8(*SceneName), std::move(Uploads));
	return true;
}

void UWorldFMBridgeSubsystem::CloseScene()
{
	if (Connection)
	{
		Connection->Worker.CloseScene();
	}
	bHasScene = false;
}

void UWorldFMBridgeSubsystem::SubmitCameraPose(FVector Location, FRotator Rotation, float HorizontalFovDeg)
{
	check(IsInGameThread());  // the pose slot has one producer: the game thread
	if (!Connection)
	{
		return;
	}
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	WorldFM::FRenderRequest Request;
	FString Error;
	if (!WorldFMConversions::MakeRenderRequest(Location, Rotation, HorizontalFovDeg, Settings->Resolution, Settings->Steps,
	                                           Settings->bRequestJpeg, Request, Error))
	{
		ReportError(TEXT("bad_pose"), Error);
		return;
	}
	Connection->Worker.SubmitPose(Request);
}

void UWorldFMBridgeSubsystem::Tick(float DeltaTime)
{
	if (!Connection)
	{
		return;
	}
	DrainEvents();
	ConsumeFrame(FPlatformTime::Seconds());

	const WorldFM::FClientStats Core = Connection->Worker.Stats();
	Stats.FramesReceived = int64(Core.FramesReceived);
	Stats.LateFramesDropped = int64(Core.LateFramesDropped);
	Stats.Reconnects = int64(Core.Reconnects);
	Stats.SceneReopens = int64(Core.SceneReopens);
	Stats.RoundTripMs = float(Core.LastRoundTripMs);

	// Connecting covers the handshake and reconnection after a lost server.
	switch (Connection->Worker.State())
	{
		case WorldFM::EConnectionState::Connected:
			SetState(EWorldFMConnectionState::Connected, TEXT("connected"));
			break;
		case WorldFM::EConnectionState::Refused:
			SetState(EWorldFMConnectionState::Refused, TEXT("refused by the server"));
			break;
		case WorldFM::EConnectionState::Disconnected:
			if (State == EWorldFMConnectionState::Connected)
			{
				SetState(EWorldFMConnectionState::Connecting, TEXT("reconnecting"));
			}
			break;
	}
}

void UWorldFMBridgeSubsystem::DrainEvents()
{
	for (const WorldFM::FClientEvent& Event : Connection->Worker.TakeEvents())
	{
		const FString Message = ToFString(Event.Message);
		switch (Event.Kind)
		{
			case WorldFM::FClientEvent::EKind::Connected:
				UE_LOG(LogWorldFMBridge, Log, TEXT("%s"), *Message);
				SetState(EWorldFMConnectionState::Connected, Message);
				break;
			case WorldFM::FClientEvent::EKind::Disconnected:
				UE_LOG(LogWorldFMBridge, Warning, TEXT("%s"), *Message);
				SetState(EWorldFMConnectionState::Connecting, Message);
				break;
			case WorldFM::FClientEvent::EKind::Refused:
				UE_LOG(LogWorldFMBridge, Error, TEXT("%s"), *Message);
				SetState(EWorldFMConnectionState::Refused, Message);
				ReportError(ToFString(Event.Code), Message);
				break;
			case WorldFM::FClientEvent::EKind::SceneReady:
				UE_LOG(LogWorldFMBridge, Log, TEXT("%s"), *Message);
				bHasScene = true;
				OnSceneReady.Broadcast(Message);
				break;
			case WorldFM::FClientEvent::EKind::Error:
				ReportError(ToFString(Event.Code), Message);
				break;
		}
	}
}

void UWorldFMBridgeSubsystem::ConsumeFrame(double Now)
{
	if (!Connection->Worker.AcquireFrame())
	{
		return;
	}
	const WorldFM::FFrame& Frame = Connection->Worker.Frame();
	if (!UploadFrame(Frame.Width, Frame.Height, Frame.Jpeg, Frame.Pixels.data(), int64(Frame.Pixels.size())))
	{
		return;
	}
	if (LastFrameSeconds > 0.0)
	{
		const float Instant = float(1.0 / FMath::Max(Now - LastFrameSeconds, 1e-3));
		Stats.FramesPerSecond = Stats.FramesPerSecond > 0.0f ? FMath::Lerp(Stats.FramesPerSecond, Instant, 0.1f) : Instant;
	}
	LastFrameSeconds = Now;
	Stats.LatencyMs = Stats.LatencyMs > 0.0f ? FMath::Lerp(Stats.LatencyMs, float(Frame.LatencyMs), 0.1f)
	                                         : float(Frame.LatencyMs);

	FWorldFMFrameInfo Info;
	Info.RequestId = int64(Frame.RequestId);
	Info.Size = FIntPoint(Frame.Width, Frame.Height);
	Info.LatencyMs = float(Frame.LatencyMs);
	Info.Mode = ToFString(Frame.Mode);
	Info.Reference = Frame.Reference;
	for (const auto& [Stage, Ms] : Frame.TimingsMs)
	{
		if (Stage == "total_ms")
		{
			Info.ServerTotalMs = float(Ms);
		}
	}
	OnFrame.Broadcast(FrameTexture, Info);
}

bool UWorldFMBridgeSubsystem::UploadFrame(int32 Width, int32 Height, bool bJpeg, const uint8* Data, int64 Size)
{
	// The frame slot is reused by the worker once we acquire again, so the render command
	// gets its own copy: BGRA for the texture, expanded from RGB on the render thread.
	TArray<uint8> Pixels;
	bool bAlreadyBgra = false;
	if (bJpeg)
	{
		IImageWrapperModule& ImageWrapper = FModuleManager::LoadModuleChecked<IImageWrapperModule>(TEXT("ImageWrapper"));
		TSharedPtr<IImageWrapper> Jpeg = ImageWrapper.CreateImageWrapper(EImageFormat::JPEG);
		if (!Jpeg || !Jpeg->SetCompressed(Data, Size) ||
		    !Jpeg->GetRaw(ERGBFormat::BGRA, 8, Pixels) || Jpeg->GetWidth() != Width || Jpeg->GetHeight() != Height)
		{
			ReportError(TEXT("malformed"), TEXT("a JPEG frame from the server could not be decoded"));
			return false;
		}
		bAlreadyBgra = true;
	}
	else
	{
		Pixels.SetNumUninitialized(int32(Size));
		FMemory::Memcpy(Pixels.GetData(), Data, Size);
	}

	if (!FrameTexture || FrameTexture->GetSizeX() != Width || FrameTexture->GetSizeY() != Height)
	{
		FrameTexture = UTexture2D::CreateTransient(Width, Height, PF_B8G8R8A8, TEXT("WorldFMFrame"));
		FrameTexture->SRGB = true;
		FrameTexture->Filter = TF_Bilinear;
		FrameTexture->UpdateResource();
	}

	ENQUEUE_RENDER_COMMAND(WorldFMUpdateFrame)(
		[Resource = FrameTexture->GetResource(), Width, Height, bAlreadyBgra, Pixels = MoveTemp(Pixels)](
			FRHICommandListImmediate& RHICmdList) mutable
		{
			if (!Resource || !Resource->GetTexture2DRHI())
			{
				return;
			}
			if (!bAlreadyBgra)
			{
				TArray<uint8> Bgra;
				Bgra.SetNumUninitialized(Width * Height * 4);
				const uint8* Rgb = Pixels.GetData();
				uint8* Out = Bgra.GetData();
				for (int64 I = 0, N = int64(Width) * Height; I < N; ++I, Rgb += 3, Out += 4)
				{
					Out[0] = Rgb[2];
					Out[1] = Rgb[1];
					Out[2] = Rgb[0];
					Out[3] = 255;
				}
				Pixels = MoveTemp(Bgra);
			}
			const FUpdateTextureRegion2D Region(0, 0, 0, 0, uint32(Width), uint32(Height));
			RHICmdList.UpdateTexture2D(Resource->GetTexture2DRHI(), 0, Region, uint32(Width) * 4, Pixels.GetData());
		});
	return true;
}

void UWorldFMBridgeSubsystem::SetState(EWorldFMConnectionState NewState, const FString& Message)
{
	if (State == NewState)
	{
		return;
	}
	State = NewState;
	OnConnectionStateChanged.Broadcast(NewState, Message);
}

void UWorldFMBridgeSubsystem::ReportError(const FString& Code, const FString& Message)
{
	UE_LOG(LogWorldFMBridge, Warning, TEXT("[%s] %s"), *Code, *Message);
	OnError.Broadcast(Code, Message);
}

TStatId UWorldFMBridgeSubsystem::GetStatId() const
{
	RETURN_QUICK_DECLARE_CYCLE_STAT(UWorldFMBridgeSubsystem, STATGROUP_Tickables);
}

ETickableTickType UWorldFMBridgeSubsystem::GetTickableTickType() const
{
	return IsTemplate() ? ETickableTickType::Never : ETickableTickType::Conditional;
}

bool UWorldFMBridgeSubsystem::IsTickable() const { return bInitialized; }
