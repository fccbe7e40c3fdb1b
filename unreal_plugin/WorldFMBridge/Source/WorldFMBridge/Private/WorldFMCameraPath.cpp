#include "WorldFMCameraPath.h"

#include "HAL/FileManager.h"
#include "Misc/FileHelper.h"
#include "Misc/Paths.h"
#include "UObject/Package.h"
#include "WorldFMCore/CameraPath.h"
#include "WorldFMCore/UnrealCamera.h"

#include <string>

UWorldFMCameraPath* UWorldFMCameraPath::LoadCameraPath(const FString& FilePath, FString& Error)
{
	// ProjectDir() may itself be relative to the executable: make the combination absolute.
	const FString FullPath = FPaths::IsRelative(FilePath)
	                             ? FPaths::ConvertRelativePathToFull(FPaths::Combine(FPaths::ProjectDir(), FilePath))
	                             : FilePath;
	const int64 Bytes = IFileManager::Get().FileSize(*FullPath);
	if (Bytes < 0)
	{
		Error = FString::Printf(TEXT("cannot read camera path %s: no such file"), *FullPath);
		return nullptr;
	}
	if (uint64(Bytes) > uint64(WorldFM::MaxCameraPathBytes))
	{
		Error = FString::Printf(TEXT("cannot read camera path %s: %lld bytes; files over %d MiB are refused"), *FullPath,
		                        Bytes, int32(WorldFM::MaxCameraPathBytes >> 20));
		return nullptr;
	}
	// The bytes as they are (UTF-8): the core parses them, no round trip through TCHAR.
	TArray<uint8> Text;
	if (!FFileHelper::LoadFileToArray(Text, *FullPath))
	{
		Error = FString::Printf(TEXT("cannot read camera path %s: reading it failed"), *FullPath);
		return nullptr;
	}
	return FromText(std::string(reinterpret_cast<const char*>(Text.GetData()), Text.Num()), FullPath, Error);
}

UWorldFMCameraPath* UWorldFMCameraPath::ParseCameraPath(const FString& Json, const FString& Source, FString& Error)
{
	return FromText(std::string(TCHAR_TO_UTF8(*Json)), Source, Error);
}

UWorldFMCameraPath* UWorldFMCameraPath::FromText(const std::string& Utf8, const FString& Source, FString& Error)
{
	auto Parsed = WorldFM::ParseCameraPath(Utf8, TCHAR_TO_UTF8(*Source));
	if (!Parsed)
	{
		Error = UTF8_TO_TCHAR(Parsed.ErrorMessage().c_str());
		return nullptr;
	}
	UWorldFMCameraPath* Out = NewObject<UWorldFMCameraPath>(GetTransientPackage());
	Out->Path = MakeShared<WorldFM::FCameraPath>(MoveTemp(Parsed.Get()));
	Out->SourceName = Source;
	Error.Reset();
	return Out;
}

bool UWorldFMCameraPath::SampleUnrealCamera(float Seconds, FVector& Location, FRotator& Rotation, float& HorizontalFovDeg) const
{
	if (!Path)
	{
		return false;
	}
	// Validated poses and K: the conversions below cannot fail on them.
	const auto Camera = WorldFM::CameraToWorldToUnreal(WorldFM::SampleCameraPath(*Path, Seconds));
	const auto Fov = WorldFM::HorizontalFovFromIntrinsics(Path->K, Path->Width);
	if (!Camera || !Fov)
	{
		return false;
	}
	Location = FVector(Camera->LocationCm[0], Camera->LocationCm[1], Camera->LocationCm[2]);
	Rotation = FRotator(Camera->PitchYawRollDeg[0], Camera->PitchYawRollDeg[1], Camera->PitchYawRollDeg[2]);
	HorizontalFovDeg = float(*Fov);
	return true;
}

float UWorldFMCameraPath::GetDuration() const { return Path ? float(Path->DurationSeconds()) : 0.0f; }

int32 UWorldFMCameraPath::GetNumPoses() const { return Path ? int32(Path->Poses.size()) : 0; }

float UWorldFMCameraPath::GetFramesPerSecond() const { return Path ? float(Path->Fps) : 0.0f; }

FIntPoint UWorldFMCameraPath::GetFrameSize() const { return Path ? FIntPoint(Path->Width, Path->Height) : FIntPoint::ZeroValue; }
