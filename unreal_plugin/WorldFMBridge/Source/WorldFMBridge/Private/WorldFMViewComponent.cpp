#include "WorldFMViewComponent.h"

#include "Camera/CameraComponent.h"
#include "Camera/PlayerCameraManager.h"
#include "Engine/Canvas.h"
#include "Engine/GameViewportClient.h"
#include "Engine/Texture2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "Engine/World.h"
#include "GameFramework/Actor.h"
#include "GameFramework/Pawn.h"
#include "GameFramework/PlayerController.h"
#include "Kismet/KismetRenderingLibrary.h"
#include "Materials/MaterialInstanceDynamic.h"
#include "WorldFMBridgeSubsystem.h"

UWorldFMViewComponent::UWorldFMViewComponent()
{
	PrimaryComponentTick.bCanEverTick = true;
	// After the camera has moved this frame, so the pose sent is the one being rendered.
	PrimaryComponentTick.TickGroup = TG_PostUpdateWork;
}

void UWorldFMViewComponent::BeginPlay()
{
	Super::BeginPlay();
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!Bridge)
	{
		return;
	}
	Bridge->OnFrame.AddDynamic(this, &UWorldFMViewComponent::HandleFrame);
	Bridge->OnConnectionStateChanged.AddDynamic(this, &UWorldFMViewComponent::HandleConnectionStateChanged);
	if (bConnectOnBeginPlay && Bridge->GetConnectionState() == EWorldFMConnectionState::Disconnected)
	{
		Bridge->Connect();
	}
	else if (Bridge->GetConnectionState() == EWorldFMConnectionState::Connected)
	{
		SeedScene();
	}
}

void UWorldFMViewComponent::EndPlay(const EEndPlayReason::Type EndPlayReason)
{
	StopCameraPath();
	if (UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get())
	{
		Bridge->OnFrame.RemoveDynamic(this, &UWorldFMViewComponent::HandleFrame);
		Bridge->OnConnectionStateChanged.RemoveDynamic(this, &UWorldFMViewComponent::HandleConnectionStateChanged);
	}
	Super::EndPlay(EndPlayReason);
}

void UWorldFMViewComponent::TickComponent(float DeltaTime, ELevelTick TickType, FActorComponentTickFunction* ThisTickFunction)
{
	Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!Bridge || !Bridge->HasScene())
	{
		return;
	}
	if (PlayingPath)
	{
		TickCameraPath(DeltaTime, *Bridge);
		return;
	}
	if (!bSendPose)
	{
		return;
	}
	FVector Location;
	FRotator Rotation;
	float Fov;
	GetCameraView(Location, Rotation, Fov);
	// Every tick: the core skips a pose that did not move, so a resting camera costs nothing.
	Bridge->SubmitCameraPose(Location, Rotation, Fov, GetViewAspectRatio());
}

float UWorldFMViewComponent::GetViewAspectRatio() const
{
	const AActor* Owner = GetOwner();
	const UCameraComponent* Camera = Owner ? Owner->FindComponentByClass<UCameraComponent>() : nullptr;
	if (Camera && Camera->bConstrainAspectRatio && Camera->AspectRatio > 0.0f)
	{
		return Camera->AspectRatio;
	}
	const UWorld* World = GetWorld();
	const UGameViewportClient* Viewport = World ? World->GetGameViewport() : nullptr;
	FVector2D Size = FVector2D::ZeroVector;
	if (Viewport)
	{
		Viewport->GetViewportSize(Size);
	}
	return Size.X > 0.0 && Size.Y > 0.0 ? float(Size.X / Size.Y) : 0.0f;
}

void UWorldFMViewComponent::GetCameraView(FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const
{
	const AActor* Owner = GetOwner();
	if (const UCameraComponent* Camera = Owner ? Owner->FindComponentByClass<UCameraComponent>() : nullptr)
	{
		Location = Camera->GetComponentLocation();
		Rotation = Camera->GetComponentRotation();
		HorizontalFovDeg = Camera->FieldOfView;
		return;
	}
	const APawn* Pawn = Cast<APawn>(Owner);
	const APlayerController* Controller = Pawn ? Cast<APlayerController>(Pawn->GetController()) : nullptr;
	if (Controller && Controller->PlayerCameraManager)
	{
		Location = Controller->PlayerCameraManager->GetCameraLocation();
		Rotation = Controller->PlayerCameraManager->GetCameraRotation();
		HorizontalFovDeg = Controller->PlayerCameraManager->GetFOVAngle();
		return;
	}
	HorizontalFovDeg = 90.0f;
	if (Owner)
	{
		Owner->GetActorEyesViewPoint(Location, Rotation);
	}
}

void UWorldFMViewComponent::HandleFrame(UTexture2D* Frame, const FWorldFMFrameInfo& Info)
{
	if (!Frame)
	{
		return;
	}
	if (TargetMaterial)
	{
		TargetMaterial->SetTextureParameterValue(TextureParameterName, Frame);
	}
	if (TargetRenderTarget)
	{
		// The canvas draw is queued for the render thread behind the frame's texture update.
		UCanvas* Canvas = nullptr;
		FVector2D Size;
		FDrawToRenderTargetContext Context;
		UKismetRenderingLibrary::BeginDrawCanvasToRenderTarget(this, TargetRenderTarget, Canvas, Size, Context);
		if (Canvas)
		{
			Canvas->K2_DrawTexture(Frame, FVector2D::ZeroVector, Size, FVector2D::ZeroVector, FVector2D::UnitVector,
			                       FLinearColor::White, BLEND_Opaque);
		}
		UKismetRenderingLibrary::EndDrawCanvasToRenderTarget(this, Context);
	}
	OnFrame.Broadcast(Frame, Info);
}

void UWorldFMViewComponent::HandleConnectionStateChanged(EWorldFMConnectionState State, const FString& Message)
{
	if (State == EWorldFMConnectionState::Connected)
	{
		SeedScene();
	}
}

void UWorldFMViewComponent::SeedScene()
{
	UWorldFMBridgeSubsystem* Bridge = UWorldFMBridgeSubsystem::Get();
	if (!bSeedSceneOnBeginPlay || bSeedRequested || !Bridge || Bridge->HasScene() || !GetOwner())
	{
		return;
	}
	bSeedRequested = true;
	FVector Location;
	FRotator Rotation;
	float Fov;
	GetCameraView(Location, Rotation, Fov);
	Bridge->OpenSceneFromLevel(this, Location, GetOwner()->GetName());
}

bool UWorldFMViewComponent::PlayCameraPath(UWorldFMCameraPath* Path, bool bLoop)
{
	if (!Path || Path->GetNumPoses() == 0)
	{
		return false;
	}
	PlayingPath = Path;
	PathSeconds = 0.0f;
	bLoopPath = bLoop;
	return true;
}

bool UWorldFMViewComponent::PlayCameraPathFile(const FString& FilePath, FString& Error, bool bLoop)
{
	UWorldFMCameraPath* Path = UWorldFMCameraPath::LoadCameraPath(FilePath, Error);
	return Path && PlayCameraPath(Path, bLoop);
}

void UWorldFMViewComponent::StopCameraPath()
{
	PlayingPath = nullptr;
	PathSeconds = 0.0f;
}

void UWorldFMViewComponent::TickCameraPath(float DeltaTime, UWorldFMBridgeSubsystem& Bridge)
{
	UWorldFMCameraPath* Path = PlayingPath;
	const float Duration = Path->GetDuration();
	bool bFinished = false;
	if (PathSeconds > Duration)
	{
		if (bLoopPath)
		{
			PathSeconds = Duration > 0.0f ? FMath::Fmod(PathSeconds, Duration) : 0.0f;
		}
		else
		{
			PathSeconds = Duration;  // the last pose is always rendered
			bFinished = true;
		}
	}
	FVector Location;
	FRotator Rotation;
	float Fov;
	if (bCameraPathMovesOwner && Path->SampleUnrealCamera(PathSeconds, Location, Rotation, Fov))
	{
		MoveOwnerCamera(Location, Rotation, Fov);
	}
	Bridge.SubmitCameraPathPose(Path, PathSeconds);
	if (bFinished)
	{
		StopCameraPath();
		OnCameraPathFinished.Broadcast(Path);  // a handler may start another path
		return;
	}
	// The next tick renders the camera at the next game frame's time: between recorded poses
	// when the game runs faster than the recording, skipping some when it runs slower.
	PathSeconds += DeltaTime * FMath::Max(0.0f, CameraPathPlayRate);
}

void UWorldFMViewComponent::MoveOwnerCamera(const FVector& Location, const FRotator& Rotation, float HorizontalFovDeg)
{
	AActor* Owner = GetOwner();
	if (!Owner)
	{
		return;
	}
	if (UCameraComponent* Camera = Owner->FindComponentByClass<UCameraComponent>())
	{
		Camera->SetWorldLocationAndRotation(Location, Rotation);
		Camera->SetFieldOfView(HorizontalFovDeg);
		return;
	}
	Owner->SetActorLocationAndRotation(Location, Rotation);
}
