// The C++ Unreal conversion against the vectors models.cameras writes
// (tests/data/camera_vectors.json): both sides of the boundary must agree to 1e-9.
#include "WorldFMCore/Client.h"
#include "WorldFMCore/UnrealCamera.h"

#include "TestPaths.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

namespace
{
nlohmann::json LoadVectors()
{
	std::ifstream File(WorldFMTest::CameraVectorsPath());
	REQUIRE_MESSAGE(File.good(), "cannot open " << WorldFMTest::CameraVectorsPath());
	return nlohmann::json::parse(File);
}

double MaxAbsDifference(const double* Ours, const nlohmann::json& Rows)
{
	double Worst = 0.0;
	size_t Index = 0;
	for (const auto& Row : Rows)
	{
		for (const auto& Value : Row)
		{
			Worst = std::max(Worst, std::abs(Ours[Index++] - Value.get<double>()));
		}
	}
	return Worst;
}
}  // namespace

TEST_CASE("UnrealToCameraToWorld matches models.cameras.ue_to_c2w on the shared vectors")
{
	const nlohmann::json Vectors = LoadVectors();
	const double Tolerance = Vectors.at("tolerance").get<double>();
	const auto& Poses = Vectors.at("poses");
	REQUIRE(Poses.size() >= 5);
	for (const auto& Pose : Poses)
	{
		const auto Location = Pose.at("ue_location_cm").get<std::array<double, 3>>();
		const auto Rotation = Pose.at("ue_rotation_pitch_yaw_roll_deg").get<std::array<double, 3>>();
		const auto C2W = WorldFM::UnrealToCameraToWorld(Location, Rotation);
		REQUIRE(C2W.IsOk());
		INFO("location " << Pose.at("ue_location_cm").dump() << " rotation " << Pose.at("ue_rotation_pitch_yaw_roll_deg").dump());
		CHECK(MaxAbsDifference(C2W->data(), Pose.at("c2w")) <= Tolerance);
	}
}

TEST_CASE("CameraToWorldToUnreal matches models.cameras.c2w_to_ue on the shared vectors")
{
	// The vectors' angles lie in the ranges c2w_to_ue returns, so the inverse gives them back
	// (tests/models/test_cameras.py checks the same on the Python side).
	const nlohmann::json Vectors = LoadVectors();
	for (const auto& Pose : Vectors.at("poses"))
	{
		WorldFM::FMat4 C2W;
		for (std::size_t Row = 0; Row < 4; ++Row)
		{
			for (std::size_t Col = 0; Col < 4; ++Col)
			{
				C2W[Row * 4 + Col] = Pose.at("c2w")[Row][Col].get<double>();
			}
		}
		const auto Camera = WorldFM::CameraToWorldToUnreal(C2W);
		REQUIRE(Camera.IsOk());
		INFO("location " << Pose.at("ue_location_cm").dump() << " rotation " << Pose.at("ue_rotation_pitch_yaw_roll_deg").dump());
		for (std::size_t Axis = 0; Axis < 3; ++Axis)
		{
			CHECK(Camera->LocationCm[Axis] == doctest::Approx(Pose.at("ue_location_cm")[Axis].get<double>()).epsilon(1e-12));
			CHECK(std::abs(Camera->PitchYawRollDeg[Axis] - Pose.at("ue_rotation_pitch_yaw_roll_deg")[Axis].get<double>()) <= 1e-9);
		}
	}
}

TEST_CASE("IntrinsicsFromHorizontalFov matches models.cameras.K_from_hfov on the shared vectors")
{
	const nlohmann::json Vectors = LoadVectors();
	const double Tolerance = Vectors.at("tolerance").get<double>();
	const auto& Fovs = Vectors.at("fov");
	REQUIRE(!Fovs.empty());
	for (const auto& Case : Fovs)
	{
		const auto K = WorldFM::IntrinsicsFromHorizontalFov(Case.at("hfov_deg").get<double>(), Case.at("width").get<int>(),
		                                                     Case.at("height").get<int>());
		REQUIRE(K.IsOk());
		CHECK(MaxAbsDifference(K->data(), Case.at("K")) <= Tolerance);
	}
}

TEST_CASE("the converted pose is a rigid right-handed transform")
{
	// Independent of the vectors: R must be orthonormal with det +1 for any input angles.
	for (double Pitch : {-89.0, -30.0, 0.0, 45.0, 89.0})
	{
		for (double Yaw : {-170.0, -45.0, 0.0, 90.0, 179.0})
		{
			const auto C2W = WorldFM::UnrealToCameraToWorld({1.0, 2.0, 3.0}, {Pitch, Yaw, 33.0});
			REQUIRE(C2W.IsOk());
			const double* M = C2W->data();
			for (int I = 0; I < 3; ++I)
			{
				for (int J = 0; J < 3; ++J)
				{
					double Dot = 0.0;
					for (int K = 0; K < 3; ++K)
					{
						Dot += M[K * 4 + I] * M[K * 4 + J];
					}
					CHECK(Dot == doctest::Approx(I == J ? 1.0 : 0.0).epsilon(1e-12));
				}
			}
			const double Det = M[0] * (M[5] * M[10] - M[6] * M[9]) - M[1] * (M[4] * M[10] - M[6] * M[8]) +
			                   M[2] * (M[4] * M[9] - M[5] * M[8]);
			CHECK(Det == doctest::Approx(1.0));
		}
	}
}

TEST_CASE("invalid Unreal input is refused with a reason")
{
	const double NaN = std::numeric_limits<double>::quiet_NaN();
	const auto BadPose = WorldFM::UnrealToCameraToWorld({0.0, NaN, 0.0}, {0.0, 0.0, 0.0});
	CHECK_FALSE(BadPose.IsOk());
	CHECK(BadPose.ErrorMessage().find("finite") != std::string::npos);
	CHECK_FALSE(WorldFM::IntrinsicsFromHorizontalFov(180.0, 256, 256).IsOk());
	CHECK_FALSE(WorldFM::IntrinsicsFromHorizontalFov(0.0, 256, 256).IsOk());
	CHECK_FALSE(WorldFM::IntrinsicsFromHorizontalFov(90.0, 0, 256).IsOk());

	// A mirrored pose has no Unreal rotation: refused, not turned into some rotator.
	WorldFM::FMat4 Mirrored = WorldFM::IdentityPose();
	Mirrored[0] = -1.0;
	const auto NoCamera = WorldFM::CameraToWorldToUnreal(Mirrored);
	REQUIRE_FALSE(NoCamera.IsOk());
	CHECK(NoCamera.ErrorMessage().find("det(R)=-1") != std::string::npos);
	CHECK_FALSE(WorldFM::HorizontalFovFromIntrinsics({0.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0}, 64).IsOk());
	const auto Fov = WorldFM::HorizontalFovFromIntrinsics(*WorldFM::IntrinsicsFromHorizontalFov(75.5, 1920, 1080), 1920);
	REQUIRE(Fov.IsOk());
	CHECK(*Fov == doctest::Approx(75.5).epsilon(1e-12));
}

TEST_CASE("IsSameView: an Unreal camera that moved less than the epsilons is the same view")
{
	const auto Request = [](double XCm, double YawDeg, double FovDeg = 90.0) {
		WorldFM::FRenderRequest Out;
		Out.CameraToWorld = *WorldFM::UnrealToCameraToWorld({XCm, 20.0, 150.0}, {-10.0, YawDeg, 0.0});
		Out.K = *WorldFM::IntrinsicsFromHorizontalFov(FovDeg, 64, 48);
		Out.Size = std::make_pair(64, 48);
		return Out;
	};
	constexpr double Metres = 1e-4, Degrees = 1e-2;  // FClientConfig's defaults
	const WorldFM::FRenderRequest Base = Request(100.0, 30.0);
	CHECK(WorldFM::IsSameView(Base, Base, Metres, Degrees));
	CHECK(WorldFM::IsSameView(Base, Request(100.005, 30.0), Metres, Degrees));   // 0.05 mm
	CHECK_FALSE(WorldFM::IsSameView(Base, Request(100.1, 30.0), Metres, Degrees));  // 1 mm
	CHECK(WorldFM::IsSameView(Base, Request(100.0, 30.005), Metres, Degrees));   // 0.005 degrees
	CHECK_FALSE(WorldFM::IsSameView(Base, Request(100.0, 30.05), Metres, Degrees));  // 0.05 degrees
	CHECK_FALSE(WorldFM::IsSameView(Base, Request(100.0, 210.0), Metres, Degrees));  // turned around
	CHECK_FALSE(WorldFM::IsSameView(Base, Request(100.0, 30.0, 60.0), Metres, Degrees));  // zoomed

	WorldFM::FRenderRequest Other = Base;
	Other.Size = std::make_pair(48, 64);
	CHECK_FALSE(WorldFM::IsSameView(Base, Other, Metres, Degrees));
	Other = Base;
	Other.Steps = 2;
	CHECK_FALSE(WorldFM::IsSameView(Base, Other, Metres, Degrees));
	Other = Base;
	Other.Jpeg = true;
	CHECK_FALSE(WorldFM::IsSameView(Base, Other, Metres, Degrees));
	Other = Base;
	Other.Seed = 7;
	CHECK_FALSE(WorldFM::IsSameView(Base, Other, Metres, Degrees));
	Other = Base;
	Other.ClientTimestamp = 99.0;  // when it was asked for does not change the view
	CHECK(WorldFM::IsSameView(Base, Other, Metres, Degrees));
}
