#include "WorldFMCore/UnrealCamera.h"

#include <cmath>
#include <sstream>

namespace WorldFM
{
namespace
{
constexpr double Pi = 3.14159265358979323846;

double Radians(double Degrees) { return Degrees * (Pi / 180.0); }  // as Python math.radians

bool AllFinite(const std::array<double, 3>& V)
{
	return std::isfinite(V[0]) && std::isfinite(V[1]) && std::isfinite(V[2]);
}
}  // namespace

TExpected<FMat4> UnrealToCameraToWorld(const std::array<double, 3>& LocationCm,
                                       const std::array<double, 3>& PitchYawRollDeg)
{
	if (!AllFinite(LocationCm) || !AllFinite(PitchYawRollDeg))
	{
		return FStatus::Error("Unreal location/rotation must be finite; got NaN or inf");
	}
	const double SP = std::sin(Radians(PitchYawRollDeg[0])), CP = std::cos(Radians(PitchYawRollDeg[0]));
	const double SY = std::sin(Radians(PitchYawRollDeg[1])), CY = std::cos(Radians(PitchYawRollDeg[1]));
	const double SR = std::sin(Radians(PitchYawRollDeg[2])), CR = std::cos(Radians(PitchYawRollDeg[2]));
	// Rows of Unreal's FRotationMatrix: forward (X), right (Y), up (Z), in Unreal's world.
	const double Forward[3] = {CP * CY, CP * SY, SP};
	const double Right[3] = {SR * SP * CY - CR * SY, SR * SP * SY + CR * CY, -SR * CP};
	const double Up[3] = {-(CR * SP * CY + SR * SY), CY * SR - CR * SP * SY, CR * CP};
	// OpenCV camera axes are Unreal's right (x), -up (y), forward (z); mirroring Y takes
	// every Unreal world vector into ours.
	const double Mirror[3] = {1.0, -1.0, 1.0};
	FMat4 C2W{};
	for (int Row = 0; Row < 3; ++Row)
	{
		C2W[Row * 4 + 0] = Mirror[Row] * Right[Row];
		C2W[Row * 4 + 1] = Mirror[Row] * -Up[Row];
		C2W[Row * 4 + 2] = Mirror[Row] * Forward[Row];
		C2W[Row * 4 + 3] = Mirror[Row] * LocationCm[Row] / UnrealCentimetresPerMetre;
	}
	C2W[15] = 1.0;
	return C2W;
}

TExpected<FMat3> IntrinsicsFromHorizontalFov(double HorizontalFovDeg, int Width, int Height)
{
	if (!(std::isfinite(HorizontalFovDeg) && HorizontalFovDeg > 0.0 && HorizontalFovDeg < 180.0))
	{
		std::ostringstream Out;
		Out << "horizontal FOV must be in (0, 180) degrees; got " << HorizontalFovDeg;
		return FStatus::Error(Out.str());
	}
	if (Width <= 0 || Height <= 0)
	{
		std::ostringstream Out;
		Out << "image size must be positive; got " << Width << "x" << Height;
		return FStatus::Error(Out.str());
	}
	const double Focal = (Width / 2.0) / std::tan(Radians(HorizontalFovDeg) / 2.0);
	return FMat3{Focal, 0.0, Width / 2.0, 0.0, Focal, Height / 2.0, 0.0, 0.0, 1.0};
}

FMat4 IdentityPose()
{
	return FMat4{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
}
}  // namespace WorldFM
