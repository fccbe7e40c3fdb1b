#include "WorldFMBridgeSubsystem.h"

#include "Async/Async.h"
#include "Engine/Engine.h"
#include "Engine/Texture2D.h"
#include "Engine/World.h"
#include "IImageWrapper.h"
#include "IImageWrapperModule.h"
#include "Modules/ModuleManager.h"
#include "RHICommandList.h"
#include "RenderingThread.h"
#include "Tasks/Task.h"
#include "TextureResource.h"
#include "UObject/Package.h"
#include "UObject/UObjectGlobals.h"
#include "WorldFMBridgeConnection.h"
#include "WorldFMBridgeLog.h"
#include "WorldFMBridgeSettings.h"
#include "WorldFMBridgeUserSettings.h"
#include "WorldFMCameraPath.h"
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
	ImageWrapper = &FModuleManager::LoadModuleChecked<IImageWrapperModule>(TEXT("ImageWrapper"));
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

void UWorldFMBridgeSubsystem::ConnectTo(const FString& Endpoint, const FString& ServerPublicKey,
                                        const FString& ClientPublicKey, const FString& ClientSecretKey)
{
	StopWorker();
	if (ClientPublicKey.IsEmpty() && ClientSecretKey.IsEmpty())
	{
		// Per user, never packaged: empty in a packaged game, where a fresh pair is made.
		const UWorldFMBridgeUserSettings* User = GetDefault<UWorldFMBridgeUserSettings>();
		StartWorker(Endpoint, ServerPublicKey, User->ClientPublicKey, User->ClientSecretKey);
	}
	else
	{
		StartWorker(Endpoint, ServerPublicKey, ClientPublicKey, ClientSecretKey);
	}
	SetState(EWorldFMConnectionState::Connecting, FString::Printf(TEXT("connecting to %s"), *Endpoint));
	Connection->Worker.Connect();
}

void UWorldFMBridgeSubsystem::Disconnect()
{
	StopWorker();
	SetState(EWorldFMConnectionState::Disconnected, TEXT("disconnected"));
}

void UWorldFMBridgeSubsystem::StartWorker(const FString& Endpoint, const FString& ServerPublicKey,
                                          const FString& ClientPublicKey, const FString& ClientSecretKey)
{
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	WorldFM::FClientConfig Config;
	Config.Endpoint = TCHAR_TO_UTF8(*Endpoint);
	Config.ClientName = "unreal";
	Config.RequestTimeoutMs = Settings->RequestTimeoutMs;
	Config.BuildTimeoutMs = Settings->BuildTimeoutSeconds * 1000;
	Config.CurveServerKey = TCHAR_TO_UTF8(*ServerPublicKey.TrimStartAndEnd());
	Config.CurvePublicKey = TCHAR_TO_UTF8(*ClientPublicKey.TrimStartAndEnd());
	Config.CurveSecretKey = TCHAR_TO_UTF8(*ClientSecretKey.TrimStartAndEnd());

	Connection = MakeShared<FWorldFMBridgeConnection>(Config);
	++ConnectionGeneration;
	Stats = FWorldFMStats();
	LastError.Reset();
	LastFrameSeconds = 0.0;
}

void UWorldFMBridgeSubsystem::StopWorker()
{
	Connection.Reset();  // stops and joins the worker thread
	++ConnectionGeneration;  // a frame still decoding belongs to the old connection
	bDecoding = false;
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

void UWorldFMBridgeSubsystem::SubmitCameraPose(FVector Location, FRotator Rotation, float HorizontalFovDeg, float AspectRatio)
{
	check(IsInGameThread());  // the pose slot has one producer: the game thread
	if (!Connection)
	{
		return;
	}
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	WorldFM::FRenderRequest Request;
	FString Error;
	const FIntPoint Resolution = WorldFMConversions::ResolutionForAspect(Settings->Resolution, AspectRatio);
	if (!WorldFMConversions::MakeRenderRequest(Location, Rotation, HorizontalFovDeg, Resolution, Settings->Steps,
	                                           Settings->bRequestJpeg, Request, Error))
	{
		ReportError(TEXT("bad_pose"), Error);
		return;
	}
	Connection->Worker.SubmitPose(Request);
}

void UWorldFMBridgeSubsystem::SubmitCameraPathPose(const UWorldFMCameraPath* Path, float Seconds)
{
	check(IsInGameThread());  // the pose slot has one producer: the game thread
	if (!Connection)
	{
		return;
	}
	const WorldFM::FCameraPath* Core = Path ? Path->GetCorePath() : nullptr;
	if (!Core)
	{
		ReportError(TEXT("bad_path"), TEXT("SubmitCameraPathPose needs a loaded camera path (Load WorldFM Camera Path)"));
		return;
	}
	const UWorldFMBridgeSettings* Settings = GetDefault<UWorldFMBridgeSettings>();
	Connection->Worker.SubmitPose(
	    WorldFMConversions::MakePathRenderRequest(*Core, Seconds, Settings->Steps, Settings->bRequestJpeg));
}

void UWorldFMBridgeSubsystem::Tick(float DeltaTime)
{
	if (!Connection)
	{
		return;
	}
	DrainEvents();
	ConsumeFrame();

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
				LastError.Reset();
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

void UWorldFMBridgeSubsystem::ConsumeFrame()
{
	// One frame decodes at a time; newer ones wait in the worker's slot and the newest wins.
	if (bDecoding || !Connection->Worker.AcquireFrame())
	{
		return;
	}
	const WorldFM::FFrame& Frame = Connection->Worker.Frame();
	FDecodedFrame Pending;
	Pending.Generation = ConnectionGeneration;
	Pending.bJpeg = Frame.Jpeg;
	Pending.Info.RequestId = int64(Frame.RequestId);
	Pending.Info.Size = FIntPoint(Frame.Width, Frame.Height);  // checked by the core against the request
	Pending.Info.LatencyMs = float(Frame.LatencyMs);
	Pending.Info.Mode = ToFString(Frame.Mode);
	Pending.Info.Reference = Frame.Reference;
	for (const auto& [Stage, Ms] : Frame.TimingsMs)
	{
		if (Stage == "total_ms")
		{
			Pending.Info.ServerTotalMs = float(Ms);
		}
	}
	// A copy: the worker reuses this slot once the next frame is acquired.
	Pending.Bytes.Append(Frame.Pixels.data(), int32(Frame.Pixels.size()));
	bDecoding = true;

	IImageWrapperModule* Wrapper = ImageWrapper;
	UE::Tasks::Launch(UE_SOURCE_LOCATION,
		[WeakThis = TWeakObjectPtr<UWorldFMBridgeSubsystem>(this), Wrapper, Pending = MoveTemp(Pending)]() mutable
		{
			Decode(*Wrapper, Pending);
			AsyncTask(ENamedThreads::GameThread, [WeakThis, Pending = MoveTemp(Pending)]() mutable
			{
				if (UWorldFMBridgeSubsystem* This = WeakThis.Get())
				{
					This->ApplyFrame(MoveTemp(Pending));
				}
			});
		});
}

void UWorldFMBridgeSubsystem::Decode(IImageWrapperModule& Wrapper, FDecodedFrame& Frame)
{
	const int32 Width = Frame.Info.Size.X;
	const int32 Height = Frame.Info.Size.Y;
	TArray<uint8> Bgra;
	if (Frame.bJpeg)
	{
		TSharedPtr<IImageWrapper> Jpeg = Wrapper.CreateImageWrapper(EImageFormat::JPEG);
		if (!Jpeg || !Jpeg->SetCompressed(Frame.Bytes.GetData(), Frame.Bytes.Num()) ||
		    !Jpeg->GetRaw(ERGBFormat::BGRA, 8, Bgra) || Jpeg->GetWidth() != Width || Jpeg->GetHeight() != Height)
		{
			Frame.Error = FString::Printf(TEXT("a JPEG frame from the server could not be decoded as %dx%d"), Width, Height);
			return;
		}
	}
	else
	{
		const int64 Pixels = int64(Width) * Height;
		if (Frame.Bytes.Num() != Pixels * 3)
		{
			Frame.Error = FString::Printf(TEXT("a raw frame of %d bytes is not %dx%d RGB"), Frame.Bytes.Num(), Width, Height);
			return;
		}
		Bgra.SetNumUninitialized(int32(Pixels * 4));
		const uint8* Rgb = Frame.Bytes.GetData();
		uint8* Out = Bgra.GetData();
		for (int64 I = 0; I < Pixels; ++I, Rgb += 3, Out += 4)
		{
			Out[0] = Rgb[2];
			Out[1] = Rgb[1];
			Out[2] = Rgb[0];
			Out[3] = 255;
		}
	}
	Frame.Bytes = MoveTemp(Bgra);
}

void UWorldFMBridgeSubsystem::ApplyFrame(FDecodedFrame&& Frame)
{
	if (Frame.Generation != ConnectionGeneration)
	{
		return;  // decoded for a connection that has since been replaced or closed
	}
	bDecoding = false;
	if (!Frame.Error.IsEmpty())
	{
		ReportError(TEXT("malformed"), Frame.Error);
		return;
	}
	const int32 Width = Frame.Info.Size.X;
	const int32 Height = Frame.Info.Size.Y;
	if (!FrameTexture || FrameTexture->GetSizeX() != Width || FrameTexture->GetSizeY() != Height)
	{
		// A new object under a new name: whoever still shows the old texture keeps a valid one
		// until it picks up this one (a fixed name would replace the live object in place).
		const FName Name = MakeUniqueObjectName(GetTransientPackage(), UTexture2D::StaticClass(), TEXT("WorldFMFrame"));
		UTexture2D* Texture = UTexture2D::CreateTransient(Width, Height, PF_B8G8R8A8, Name);
		if (!Texture)
		{
			ReportError(TEXT("texture"), FString::Printf(TEXT("could not create a %dx%d frame texture"), Width, Height));
			return;
		}
		Texture->SRGB = true;
		Texture->Filter = TF_Bilinear;
		Texture->UpdateResource();
		FrameTexture = Texture;
	}

	ENQUEUE_RENDER_COMMAND(WorldFMUpdateFrame)(
		[Resource = FrameTexture->GetResource(), Width, Height, Pixels = MoveTemp(Frame.Bytes)](
			FRHICommandListImmediate& RHICmdList)
		{
			if (!Resource || !Resource->GetTexture2DRHI())
			{
				return;  // -nullrhi, or a texture released meanwhile
			}
			const FUpdateTextureRegion2D Region(0, 0, 0, 0, uint32(Width), uint32(Height));
			RHICmdList.UpdateTexture2D(Resource->GetTexture2DRHI(), 0, Region, uint32(Width) * 4, Pixels.GetData());
		});

	const double Now = FPlatformTime::Seconds();
	if (LastFrameSeconds > 0.0)
	{
		const float Instant = float(1.0 / FMath::Max(Now - LastFrameSeconds, 1e-3));
		Stats.FramesPerSecond = Stats.FramesPerSecond > 0.0f ? FMath::Lerp(Stats.FramesPerSecond, Instant, 0.1f) : Instant;
	}
	LastFrameSeconds = Now;
	Stats.LatencyMs = Stats.LatencyMs > 0.0f ? FMath::Lerp(Stats.LatencyMs, Frame.Info.LatencyMs, 0.1f) : Frame.Info.LatencyMs;
	OnFrame.Broadcast(FrameTexture, Frame.Info);
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
	LastError = FString::Printf(TEXT("[%s] %s"), *Code, *Message);
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
