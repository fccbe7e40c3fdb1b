// Automation tests of the plugin inside the editor, against a real `worldfm serve` that each
// test starts (anchor fallback, --no-model) on a port of its own:
//
//   UnrealEditor-Cmd <Project>.uproject -ExecCmds="Automation RunTests WorldFM" \
//       -TestExit="Automation Test Queue Empty" -nullrhi -unattended -log
//
// $WORLDFM_SERVE is the full path of the worldfm executable (e.g. the project's
// .venv/bin/worldfm, or .venv\Scripts\worldfm.exe). docs/unreal.md says what a passing run prints.
#include "CoreMinimal.h"
#include "Misc/AutomationTest.h"

#if WITH_DEV_AUTOMATION_TESTS

#include "Containers/Ticker.h"
#include "Editor.h"
#include "Engine/Texture2D.h"
#include "Engine/World.h"
#include "HAL/PlatformMisc.h"
#include "HAL/PlatformProcess.h"
#include "Misc/Paths.h"
#include "Math/UnrealMathUtility.h"
#include "Tests/AutomationEditorCommon.h"
#include "WorldFMBridgeSettings.h"
#include "WorldFMBridgeSubsystem.h"
#include "WorldFMCameraPath.h"
#include "WorldFMEngineViewCapture.h"

namespace WorldFMBridgeTests
{
/** `worldfm serve --no-model` on Endpoint, as a child process the test can kill and restart. */
class FServer
{
public:
	~FServer() { Kill(); }

	bool Start(const FString& Endpoint)
	{
		const FString Executable = FPlatformMisc::GetEnvironmentVariable(TEXT("WORLDFM_SERVE"));
		if (Executable.IsEmpty() || !FPaths::FileExists(Executable))
		{
			return false;
		}
		const FString Args = FString::Printf(TEXT("serve --no-model --bind %s"), *Endpoint);
		Handle = FPlatformProcess::CreateProc(*Executable, *Args, false, true, true, nullptr, 0, nullptr, nullptr);
		return Handle.IsValid();
	}

	/** Stop the process: the server's sessions and scenes go with it, as in a crash. */
	void Kill()
	{
		if (Handle.IsValid())
		{
			FPlatformProcess::TerminateProc(Handle, true);
			FPlatformProcess::WaitForProc(Handle);
			FPlatformProcess::CloseProc(Handle);
		}
	}

private:
	FProcHandle Handle;
};

/** Four views around the origin of a box whose walls stand 3 m away: colour and depth. */
TArray<FWorldFMCapturedView> BoxViews()
{
	constexpr int32 Width = 64, Height = 48;
	TArray<FWorldFMCapturedView> Views;
	for (int32 Index = 0; Index < 4; ++Index)
	{
		FWorldFMCapturedView& View = Views.AddDefaulted_GetRef();
		View.Name = FString::Printf(TEXT("box_%d"), Index);
		View.Location = FVector(0.0, 0.0, 150.0);
		View.Rotation = FRotator(0.0, 90.0 * Index, 0.0);
		View.HorizontalFovDeg = 90.0f;
		View.Size = FIntPoint(Width, Height);
		View.Color.SetNum(Width * Height);
		View.DepthCm.SetNum(Width * Height);
		for (int32 Y = 0; Y < Height; ++Y)
		{
			for (int32 X = 0; X < Width; ++X)
			{
				const bool bChecker = ((X / 8) + (Y / 8)) % 2 == 0;
				View.Color[Y * Width + X] = FColor(uint8(60 * Index + (bChecker ? 40 : 0)), uint8(4 * X), uint8(5 * Y));
				View.DepthCm[Y * Width + X] = 300.0f;  // a wall facing the camera: z-depth is constant
			}
		}
	}
	return Views;
}

/**
 * A camera path in the box's world, as `worldfm view` writes one: two poses half a second
 * apart (the Unreal cameras at 150 cm looking along yaw 0 and yaw 20, from models.cameras.ue_to_c2w),
 * an 80 x 60 frame whose size K implies.
 */
const TCHAR* BoxPathJson = TEXT(R"json({"fps": 2, "K": [[40.0, 0.0, 40.0], [0.0, 40.0, 30.0], [0.0, 0.0, 1.0]],
 "c2w": [[[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]],
         [[-0.342020143326, 0.0, 0.939692620786, 0.0], [-0.939692620786, 0.0, -0.342020143326, 0.0],
          [0.0, -1.0, 0.0, 1.5], [0.0, 0.0, 0.0, 1.0]]]})json");

/**
 * Runs Steps one after another on the game thread's ticker, each polled until it returns
 * true; the whole sequence gives up after Patience. Done is called either way.
 */
class FSequence : public TSharedFromThis<FSequence>
{
public:
	struct FStep
	{
		FString What;
		TFunction<bool()> Until;
	};

	static void Run(FAutomationTestBase& Test, TArray<FStep> Steps, const FDoneDelegate& Done, double PatienceSeconds)
	{
		TSharedRef<FSequence> Sequence = MakeShared<FSequence>();
		Sequence->Steps = MoveTemp(Steps);
		Sequence->Deadline = FPlatformTime::Seconds() + PatienceSeconds;
		FTSTicker::GetCoreTicker().AddTicker(FTickerDelegate::CreateLambda(
			[Sequence, &Test, Done](float) { return Sequence->Tick(Test, Done); }));
	}

private:
	bool Tick(FAutomationTestBase& Test, const FDoneDelegate& Done)
	{
		while (Next < Steps.Num() && Steps[Next].Until())
		{
			++Next;
		}
		if (Next == Steps.Num())
		{
			Done.Execute();
			return false;
		}
		if (FPlatformTime::Seconds() > Deadline)
		{
			Test.AddError(FString::Printf(TEXT("gave up waiting: %s"), *Steps[Next].What));
			Done.Execute();
			return false;
		}
		return true;  // poll again next tick
	}

	TArray<FStep> Steps;
	int32 Next = 0;
	double Deadline = 0.0;
};
}  // namespace WorldFMBridgeTests

BEGIN_DEFINE_SPEC(FWorldFMBridgeSpec, "WorldFM.Bridge",
                  EAutomationTestFlags::EditorContext | EAutomationTestFlags::ProductFilter)
	TUniquePtr<WorldFMBridgeTests::FServer> Server;
	FString Endpoint;
	FIntPoint SavedResolution;
	UWorldFMBridgeSubsystem* Bridge = nullptr;
	int64 FramesBefore = 0;
	double Yaw = 0.0;

	/** Python's start-up is seconds, tens of seconds on a loaded machine: a hang guard only. */
	static constexpr double PatienceSeconds = 300.0;

	/** Submit a camera pose nobody sent before, and note the frame count. */
	void LookSomewhereNew()
	{
		Yaw += 7.0;
		FramesBefore = Bridge->GetStats().FramesReceived;
		Bridge->SubmitCameraPose(FVector(0.0, 0.0, 150.0), FRotator(0.0, Yaw, 0.0), 90.0f);
	}

	bool NewFrameArrived() const
	{
		const UTexture2D* Texture = Bridge->GetFrameTexture();
		const FIntPoint Expected = GetDefault<UWorldFMBridgeSettings>()->Resolution;
		return Bridge->GetStats().FramesReceived > FramesBefore && Texture && Texture->GetSizeX() == Expected.X &&
		       Texture->GetSizeY() == Expected.Y;
	}
END_DEFINE_SPEC(FWorldFMBridgeSpec)

void FWorldFMBridgeSpec::Define()
{
	using WorldFMBridgeTests::FSequence;

	Describe(TEXT("against worldfm serve"), [this]
	{
		LatentBeforeEach(FTimespan::FromSeconds(PatienceSeconds), [this](const FDoneDelegate& Done)
		{
			Bridge = UWorldFMBridgeSubsystem::Get();
			if (!TestNotNull(TEXT("the WorldFM bridge subsystem"), Bridge))
			{
				Done.Execute();
				return;
			}
			// Small frames keep the CPU fallback quick; restored in AfterEach.
			UWorldFMBridgeSettings* Settings = GetMutableDefault<UWorldFMBridgeSettings>();
			SavedResolution = Settings->Resolution;
			Settings->Resolution = FIntPoint(96, 72);
			Endpoint = FString::Printf(TEXT("tcp://127.0.0.1:%d"), FMath::RandRange(20000, 40000));
			Server = MakeUnique<WorldFMBridgeTests::FServer>();
			if (!TestTrue(TEXT("`worldfm serve` started (set WORLDFM_SERVE to the full path of the worldfm executable)"),
		              Server->Start(Endpoint)))
			{
				Done.Execute();
				return;
			}
			// The client retries until the server is up: readiness, not a fixed wait.
			Bridge->ConnectTo(Endpoint, FString());
			FSequence::Run(*this,
				{{TEXT("connected"), [this] { return Bridge->GetConnectionState() == EWorldFMConnectionState::Connected; }},
				 {TEXT("scene uploaded"),
				  [this]
				  {
					  return TestTrue(TEXT("upload started"), Bridge->OpenSceneFromViews(TEXT("box"), WorldFMBridgeTests::BoxViews()));
				  }},
				 {TEXT("scene open"), [this] { return Bridge->HasScene(); }}},
				Done, PatienceSeconds);
		});

		AfterEach([this]
		{
			if (Bridge)
			{
				Bridge->Disconnect();
			}
			Server.Reset();
			GetMutableDefault<UWorldFMBridgeSettings>()->Resolution = SavedResolution;
		});

		LatentIt(TEXT("connects, opens a scene and receives frames into a texture"), FTimespan::FromSeconds(PatienceSeconds),
			[this](const FDoneDelegate& Done)
			{
				LookSomewhereNew();
				FSequence::Run(*this,
					{{TEXT("a frame in the texture"), [this] { return NewFrameArrived(); }},
					 {TEXT("a second pose's frame"),
					  [this]
					  {
						  LookSomewhereNew();
						  return true;
					  }},
					 {TEXT("the second frame"), [this] { return NewFrameArrived(); }},
					 {TEXT("no error reported"),
					  [this]
					  {
						  TestEqual(TEXT("last error"), Bridge->GetLastError(), FString());
						  return true;
					  }}},
					Done, PatienceSeconds);
			});

		LatentIt(TEXT("renders a camera path's camera at the path's own frame size"), FTimespan::FromSeconds(PatienceSeconds),
			[this](const FDoneDelegate& Done)
			{
				FString Error;
				UWorldFMCameraPath* Path = UWorldFMCameraPath::ParseCameraPath(WorldFMBridgeTests::BoxPathJson, TEXT("box path"), Error);
				if (!TestNotNull(TEXT("the path parsed"), Path) || !TestEqual(TEXT("parse error"), Error, FString()))
				{
					Done.Execute();
					return;
				}
				TestEqual(TEXT("poses"), Path->GetNumPoses(), 2);
				TestEqual(TEXT("duration"), Path->GetDuration(), 0.5f);
				TestTrue(TEXT("frame size implied by K: 80 x 60"), Path->GetFrameSize() == FIntPoint(80, 60));
				FVector Location;
				FRotator Rotation;
				float Fov = 0.0f;
				TestTrue(TEXT("sampled"), Path->SampleUnrealCamera(0.25f, Location, Rotation, Fov));
				TestTrue(TEXT("halfway: the same place"), Location.Equals(FVector(0.0, 0.0, 150.0), 1e-6));
				TestTrue(TEXT("halfway: half the turn"), Rotation.Equals(FRotator(0.0, 10.0, 0.0), 1e-6));
				TestEqual(TEXT("FOV from K: 2 atan(40 / 40)"), Fov, 90.0f, 1e-4f);
				FramesBefore = Bridge->GetStats().FramesReceived;
				Bridge->SubmitCameraPathPose(Path, 0.25f);
				FSequence::Run(*this,
					{{TEXT("a frame of the path's size"),
					  [this]
					  {
						  const UTexture2D* Texture = Bridge->GetFrameTexture();
						  return Bridge->GetStats().FramesReceived > FramesBefore && Texture && Texture->GetSizeX() == 80 &&
						         Texture->GetSizeY() == 60;
					  }},
					 {TEXT("no error reported"),
					  [this]
					  {
						  TestEqual(TEXT("last error"), Bridge->GetLastError(), FString());
						  return true;
					  }}},
					Done, PatienceSeconds);
			});

		LatentIt(TEXT("survives a server restart: reconnects, uploads the scene again, renders"),
			FTimespan::FromSeconds(PatienceSeconds), [this](const FDoneDelegate& Done)
			{
				LookSomewhereNew();
				FSequence::Run(*this,
					{{TEXT("a frame before the crash"), [this] { return NewFrameArrived(); }},
					 {TEXT("the server killed and started again"),
					  [this]
					  {
						  Server->Kill();
						  return TestTrue(TEXT("`worldfm serve` restarted"), Server->Start(Endpoint));
					  }},
					 {TEXT("a pose after the restart"),
					  [this]
					  {
						  LookSomewhereNew();
						  return true;
					  }},
					 {TEXT("a frame after the restart"), [this] { return NewFrameArrived(); }},
					 {TEXT("the scene uploaded again"),
					  [this]
					  {
						  TestTrue(TEXT("scene re-opened"), Bridge->GetStats().SceneReopens >= 1);
						  TestTrue(TEXT("connected"), Bridge->GetConnectionState() == EWorldFMConnectionState::Connected);
						  return true;
					  }}},
					Done, PatienceSeconds);
			});

		LatentIt(TEXT("survives a map change; the preview's engine-view capture lets go of the old world"),
			FTimespan::FromSeconds(PatienceSeconds), [this](const FDoneDelegate& Done)
			{
				TSharedRef<FWorldFMEngineViewCapture> Capture = MakeShared<FWorldFMEngineViewCapture>();
				UWorld* OldWorld = GEditor ? GEditor->GetEditorWorldContext().World() : nullptr;
				if (!TestNotNull(TEXT("an editor world"), OldWorld))
				{
					Done.Execute();
					return;
				}
				Capture->Update(OldWorld, FVector(0.0, 0.0, 150.0), FRotator::ZeroRotator, 90.0f, FIntPoint(64, 48), 10.0f,
				                FPlatformTime::Seconds());
				TestTrue(TEXT("capture registered with the editor world"), Capture->GetCaptureWorld() == OldWorld);
				TestEqual(TEXT("captures"), Capture->GetCaptureCount(), 1);

				// A new map: the old world is cleaned up and destroyed.
				FAutomationEditorCommonUtils::CreateNewMap();
				TestNull(TEXT("capture released with its world"), Capture->GetCaptureWorld());
				TestTrue(TEXT("a new editor world"), GEditor->GetEditorWorldContext().World() != OldWorld);

				LookSomewhereNew();
				FSequence::Run(*this,
					{{TEXT("a frame after the map change"), [this] { return NewFrameArrived(); }},
					 {TEXT("the capture follows the new world"),
					  [this, Capture]
					  {
						  UWorld* NewWorld = GEditor->GetEditorWorldContext().World();
						  Capture->Update(NewWorld, FVector(0.0, 0.0, 150.0), FRotator::ZeroRotator, 90.0f, FIntPoint(64, 48),
						                  10.0f, FPlatformTime::Seconds());
						  TestTrue(TEXT("capture registered with the new world"), Capture->GetCaptureWorld() == NewWorld);
						  return true;
					  }}},
					Done, PatienceSeconds);
			});

	});

	It(TEXT("refuses a camera path it cannot use, saying why"), [this]
	{
		FString Error;
		TestNull(TEXT("no poses"), UWorldFMCameraPath::ParseCameraPath(TEXT(R"({"hfov_deg": 60, "width": 64, "height": 48, "c2w": []})"),
		                                                                TEXT("empty.json"), Error));
		TestEqual(TEXT("message"), Error, FString(TEXT("empty.json: the path has no poses")));
		TestNull(TEXT("a missing file"), UWorldFMCameraPath::LoadCameraPath(TEXT("no/such/path.json"), Error));
		TestTrue(TEXT("names the file"), Error.Contains(TEXT("no/such/path.json")));
	});

	It(TEXT("throttles the engine-view capture: a resting camera is captured once"), [this]
	{
		UWorld* World = GEditor ? GEditor->GetEditorWorldContext().World() : nullptr;
		if (!TestNotNull(TEXT("an editor world"), World))
		{
			return;
		}
		FWorldFMEngineViewCapture Capture;
		const double Start = FPlatformTime::Seconds();
		for (int32 Tick = 0; Tick < 30; ++Tick)  // one second of 30 Hz editor ticks, camera at rest
		{
			Capture.Update(World, FVector(0.0, 0.0, 150.0), FRotator::ZeroRotator, 90.0f, FIntPoint(64, 48), 10.0f,
			               Start + Tick / 30.0);
		}
		TestEqual(TEXT("captures of a resting camera"), Capture.GetCaptureCount(), 1);
		for (int32 Tick = 0; Tick < 30; ++Tick)  // another second, the camera turning every tick
		{
			Capture.Update(World, FVector(0.0, 0.0, 150.0), FRotator(0.0, Tick, 0.0), 90.0f, FIntPoint(64, 48), 10.0f,
			               Start + 1.0 + Tick / 30.0);
		}
		TestTrue(TEXT("captures of a moving camera, at most 10 a second"), Capture.GetCaptureCount() <= 1 + 10);
		TestTrue(TEXT("the moving camera was captured"), Capture.GetCaptureCount() > 1);
	});
}

#endif  // WITH_DEV_AUTOMATION_TESTS
