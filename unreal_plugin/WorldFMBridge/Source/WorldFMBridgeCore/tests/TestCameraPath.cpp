// The camera-path reader against files the Python side wrote: tests/unreal_plugin/
// camera_path_fixtures.py writes them with python_bridge.camera_path (and copies nothing: the
// published WorldFM meta.json is read where it lies) and records what load_camera_path read,
// which files it refused and why, and poses from interpolate_poses. pytest hands its folder
// over in $WORLDFM_CAMERA_PATH_FIXTURES (its manifest.json); run bare, this binary runs the
// script itself with $WORLDFM_PYTHON.
#include "WorldFMCore/CameraPath.h"
#include "WorldFMCore/UnrealCamera.h"

#include "TestPaths.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <unistd.h>

namespace
{
/** The fixtures' manifest, written once per process. */
const nlohmann::json& Manifest()
{
	static const nlohmann::json Loaded = [] {
		std::string Path;
		if (const char* FromEnv = std::getenv("WORLDFM_CAMERA_PATH_FIXTURES"); FromEnv && *FromEnv)
		{
			Path = FromEnv;
		}
		else
		{
			const std::filesystem::path Folder =
			    std::filesystem::temp_directory_path() / ("worldfm-camera-paths-" + std::to_string(getpid()));
			const std::string Command = "\"" + WorldFMTest::PythonExecutable() + "\" \"" + WorldFMTest::RepoRoot() +
			                            "/tests/unreal_plugin/camera_path_fixtures.py\" \"" + Folder.string() + "\"";
			const int Status = std::system(Command.c_str());
			REQUIRE_MESSAGE(Status == 0, "writing the fixtures failed (set WORLDFM_PYTHON to a Python with the project "
			                             "installed): " << Command);
			Path = (Folder / "manifest.json").string();
		}
		std::ifstream File(Path);
		REQUIRE_MESSAGE(File.good(), "cannot open the fixtures' manifest " << Path);
		return nlohmann::json::parse(File);
	}();
	return Loaded;
}

template <typename Matrix>
double MaxAbsDifference(const Matrix& Ours, const nlohmann::json& Rows)
{
	double Worst = 0.0;
	std::size_t Index = 0;
	for (const auto& Row : Rows)
	{
		for (const auto& Value : Row)
		{
			Worst = std::max(Worst, std::abs(Ours[Index++] - Value.get<double>()));
		}
	}
	CHECK(Index == Ours.size());
	return Worst;
}

/** Difference of two angles in degrees, modulo a full turn (yaw 180 and -180 are one angle). */
double AngleDifference(double A, double B)
{
	const double D = std::fmod(std::abs(A - B), 360.0);
	return std::min(D, 360.0 - D);
}
}  // namespace

TEST_CASE("files the Python side wrote read back to the values load_camera_path read")
{
	const auto& Good = Manifest().at("good");
	REQUIRE(Good.size() >= 4);
	for (const auto& Expected : Good)
	{
		const std::string File = Expected.at("file").get<std::string>();
		INFO(File);
		const auto Path = WorldFM::LoadCameraPath(File);
		REQUIRE_MESSAGE(Path.IsOk(), Path.ErrorMessage());
		CHECK(Path->Width == Expected.at("width").get<int>());
		CHECK(Path->Height == Expected.at("height").get<int>());
		CHECK(Path->Fps == Expected.at("fps").get<double>());
		// Both sides parse the same decimal text into doubles; K from hfov_deg is computed.
		CHECK(MaxAbsDifference(Path->K, Expected.at("K")) <= 1e-12);
		const auto& Poses = Expected.at("c2w");
		REQUIRE(Path->Poses.size() == Poses.size());
		for (std::size_t I = 0; I < Poses.size(); ++I)
		{
			CHECK(MaxAbsDifference(Path->Poses[I], Poses[I]) == 0.0);
		}
		CHECK(Path->DurationSeconds() == doctest::Approx(double(Poses.size() - 1) / Path->Fps));

		// What the plugin makes of them: Unreal cameras and FOV, as models.cameras does.
		const auto Fov = WorldFM::HorizontalFovFromIntrinsics(Path->K, Path->Width);
		REQUIRE(Fov.IsOk());
		CHECK(*Fov == doctest::Approx(Expected.at("hfov_deg").get<double>()).epsilon(1e-12));
		const auto& Ue = Expected.at("ue");
		for (std::size_t I = 0; I < Poses.size(); ++I)
		{
			const auto Camera = WorldFM::CameraToWorldToUnreal(Path->Poses[I]);
			REQUIRE(Camera.IsOk());
			INFO("pose " << I << ": Python's Unreal camera " << Ue[I].dump());
			for (int Axis = 0; Axis < 3; ++Axis)
			{
				CHECK(std::abs(Camera->LocationCm[Axis] - Ue[I][Axis].get<double>()) <= 1e-9);
				CHECK(AngleDifference(Camera->PitchYawRollDeg[Axis], Ue[I][3 + Axis].get<double>()) <= 1e-9);
			}
		}
	}
}

TEST_CASE("the published WorldFM meta.json is a camera path, as in Python")
{
	const std::string Meta = WorldFMTest::RepoRoot() + "/tests/data/worldfm-demo/meta.json";
	const auto Path = WorldFM::LoadCameraPath(Meta);
	REQUIRE_MESSAGE(Path.IsOk(), Path.ErrorMessage());
	// tests/python_bridge/test_commands.py: 30 poses, 512 x 512 implied by cx = cy = 256, 24 fps.
	CHECK(Path->Poses.size() == 30);
	CHECK(Path->Width == 512);
	CHECK(Path->Height == 512);
	CHECK(Path->Fps == WorldFM::DefaultCameraPathFps);
	bool Listed = false;
	for (const auto& Expected : Manifest().at("good"))
	{
		Listed = Listed || std::filesystem::equivalent(Expected.at("file").get<std::string>(), Meta);
	}
	CHECK_MESSAGE(Listed, "the fixtures check meta.json pose by pose too");
}

TEST_CASE("files load_camera_path refuses are refused, the message naming the file and the problem")
{
	const auto& Bad = Manifest().at("bad");
	REQUIRE(Bad.size() >= 20);
	for (const auto& Case : Bad)
	{
		const std::string File = Case.at("file").get<std::string>();
		const std::string Expect = Case.at("expect").get<std::string>();
		INFO(File << "\n  Python said: " << Case.at("python_message").get<std::string>());
		const auto Path = WorldFM::LoadCameraPath(File);
		REQUIRE_FALSE(Path.IsOk());
		INFO("  C++ said: " << Path.ErrorMessage());
		CHECK(Path.ErrorMessage().find(File) != std::string::npos);
		CHECK(Path.ErrorMessage().find(Expect) != std::string::npos);
	}
}

TEST_CASE("sampling by time passes through interpolate_poses' poses")
{
	const auto& Case = Manifest().at("interpolation");
	const auto Path = WorldFM::LoadCameraPath(Case.at("file").get<std::string>());
	REQUIRE_MESSAGE(Path.IsOk(), Path.ErrorMessage());
	const auto& Seconds = Case.at("seconds");
	const auto& Poses = Case.at("c2w");
	REQUIRE(Seconds.size() == Poses.size());
	REQUIRE(Poses.size() > Path->Poses.size());  // poses between the keyframes too
	for (std::size_t J = 0; J < Poses.size(); ++J)
	{
		INFO("pose " << J << " at " << Seconds[J].get<double>() << " s");
		const WorldFM::FMat4 Sampled = WorldFM::SampleCameraPath(*Path, Seconds[J].get<double>());
		CHECK(MaxAbsDifference(Sampled, Poses[J]) <= 1e-9);
		CHECK(WorldFM::ValidateCameraToWorld(Sampled).IsOk());
	}
}

TEST_CASE("sampling holds the ends, plays a single pose, and survives NaN time")
{
	WorldFM::FCameraPath Path;
	Path.Fps = 10.0;
	Path.Poses.push_back(WorldFM::IdentityPose());
	CHECK(Path.DurationSeconds() == 0.0);
	CHECK(WorldFM::SampleCameraPath(Path, 3.0) == WorldFM::IdentityPose());

	WorldFM::FMat4 Moved = *WorldFM::UnrealToCameraToWorld({100.0, 200.0, 300.0}, {10.0, 120.0, -5.0});
	Path.Poses.push_back(Moved);
	CHECK(Path.DurationSeconds() == doctest::Approx(0.1));
	CHECK(WorldFM::SampleCameraPath(Path, -1.0) == WorldFM::IdentityPose());
	CHECK(WorldFM::SampleCameraPath(Path, 0.0) == WorldFM::IdentityPose());
	CHECK(WorldFM::SampleCameraPath(Path, 0.1) == Moved);
	CHECK(WorldFM::SampleCameraPath(Path, 99.0) == Moved);
	CHECK(WorldFM::SampleCameraPath(Path, std::numeric_limits<double>::quiet_NaN()) == WorldFM::IdentityPose());
	// Halfway: half the distance, half the turn (the relative rotation's angle halves).
	const WorldFM::FMat4 Half = WorldFM::SampleCameraPath(Path, 0.05);
	CHECK(Half[3] == doctest::Approx(Moved[3] / 2.0));
	CHECK(Half[7] == doctest::Approx(Moved[7] / 2.0));
	const auto Angle = [](const WorldFM::FMat4& A, const WorldFM::FMat4& B) {
		double Trace = 0.0;
		for (int Row = 0; Row < 3; ++Row)
		{
			for (int Col = 0; Col < 3; ++Col)
			{
				Trace += A[4 * Row + Col] * B[4 * Row + Col];
			}
		}
		return std::acos(std::clamp((Trace - 1.0) / 2.0, -1.0, 1.0));
	};
	CHECK(Angle(WorldFM::IdentityPose(), Half) == doctest::Approx(Angle(WorldFM::IdentityPose(), Moved) / 2.0));
	CHECK(Angle(Half, Moved) == doctest::Approx(Angle(WorldFM::IdentityPose(), Moved) / 2.0));

	CHECK(WorldFM::SampleCameraPath(WorldFM::FCameraPath{}, 1.0) == WorldFM::IdentityPose());
}

TEST_CASE("text the Python loader would coerce is refused with a reason")
{
	const std::string Pose = "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]";
	const auto Parse = [&](const std::string& Fields) {
		return WorldFM::ParseCameraPath("{" + Fields + "\"c2w\": [" + Pose + "]}", "inline.json");
	};
	// Python's int() would truncate 256.5 and take true as 1; a path file means neither.
	const auto HalfPixel = Parse("\"K\": [[200,0,128],[0,200,96],[0,0,1]], \"width\": 256.5, ");
	REQUIRE_FALSE(HalfPixel.IsOk());
	CHECK(HalfPixel.ErrorMessage() == "inline.json: 'width' must be a positive whole number of pixels; got 256.5");
	CHECK_FALSE(Parse("\"hfov_deg\": 60, \"width\": true, \"height\": 48, ").IsOk());
	CHECK_FALSE(Parse("\"K\": [[200,0,128],[0,200,96],[0,0,1]], \"fps\": \"24\", ").IsOk());
	// Whole numbers written as floats, and a size given for one side only, are fine.
	const auto Mixed = Parse("\"K\": [[200,0,128],[0,200,96],[0,0,1]], \"width\": 256.0, ");
	REQUIRE_MESSAGE(Mixed.IsOk(), Mixed.ErrorMessage());
	CHECK(Mixed->Width == 256);
	CHECK(Mixed->Height == 192);  // implied by cy
}
