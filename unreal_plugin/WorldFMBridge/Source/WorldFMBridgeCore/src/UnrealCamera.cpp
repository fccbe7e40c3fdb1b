#include "WorldFMCore/UnrealCamera.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace WorldFM
{
namespace
{
constexpr double Pi = 3.14159265358979323846;

double Radians(double Degrees) { return Degrees * (Pi / 180.0); }  // as Python math.radians
double Degrees(double Radians) { return Radians * (180.0 / Pi); }  // as Python math.degrees

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

TExpected<FUnrealCamera> CameraToWorldToUnreal(const FMat4& CameraToWorld)
{
	if (FStatus Valid = ValidateCameraToWorld(CameraToWorld); !Valid)
	{
		return Valid;
	}
	const FMat4& M = CameraToWorld;
	// Columns of R are the camera's x (right), y (down) and z (forward) in our world; mirroring
	// Y takes them into Unreal's, where the camera's up is -y.
	const double Right[3] = {M[0], -M[4], M[8]};
	const double Up[3] = {-M[1], M[5], -M[9]};
	const double Forward[3] = {M[2], -M[6], M[10]};
	FUnrealCamera Out;
	const double Pitch = std::atan2(Forward[2], std::hypot(Forward[0], Forward[1]));
	const double Yaw = std::atan2(Forward[1], Forward[0]);
	// Roll is measured against the right axis the same pitch and yaw would have at zero roll.
	const double Right0[3] = {-std::sin(Yaw), std::cos(Yaw), 0.0};
	const double Roll = std::atan2(Up[0] * Right0[0] + Up[1] * Right0[1] + Up[2] * Right0[2],
	                               Right[0] * Right0[0] + Right[1] * Right0[1] + Right[2] * Right0[2]);
	Out.PitchYawRollDeg = {Degrees(Pitch), Degrees(Yaw), Degrees(Roll)};
	Out.LocationCm = {M[3] * UnrealCentimetresPerMetre, -M[7] * UnrealCentimetresPerMetre,
	                  M[11] * UnrealCentimetresPerMetre};
	return Out;
}

TExpected<double> HorizontalFovFromIntrinsics(const FMat3& K, int Width)
{
	if (FStatus Valid = ValidateIntrinsics(K); !Valid)
	{
		return Valid;
	}
	if (Width <= 0)
	{
		std::ostringstream Out;
		Out << "image width must be positive; got " << Width;
		return FStatus::Error(Out.str());
	}
	return Degrees(2.0 * std::atan((Width / 2.0) / K[0]));
}

FStatus ValidateCameraToWorld(const FMat4& CameraToWorld, const std::string& Name)
{
	const FMat4& M = CameraToWorld;
	if (!std::all_of(M.begin(), M.end(), [](double V) { return std::isfinite(V); }))
	{
		return FStatus::Error(Name + " must be finite; it contains NaN or inf");
	}
	const double LastRowError =
	    std::max({std::abs(M[12]), std::abs(M[13]), std::abs(M[14]), std::abs(M[15] - 1.0)});
	if (LastRowError > OrthonormalTolerance)
	{
		std::ostringstream Out;
		Out << Name << " last row must be [0, 0, 0, 1]; got [" << M[12] << ", " << M[13] << ", " << M[14] << ", "
		    << M[15] << "]";
		return FStatus::Error(Out.str());
	}
	// |R R^T - I|: the rows' norms and pairwise dot products.
	double OrthoError = 0.0;
	for (int A = 0; A < 3; ++A)
	{
		for (int B = A; B < 3; ++B)
		{
			const double Dot = M[4 * A] * M[4 * B] + M[4 * A + 1] * M[4 * B + 1] + M[4 * A + 2] * M[4 * B + 2];
			OrthoError = std::max(OrthoError, std::abs(Dot - (A == B ? 1.0 : 0.0)));
		}
	}
	if (OrthoError > OrthonormalTolerance)
	{
		std::ostringstream Out;
		Out.precision(3);
		Out << Name << " rotation must be orthonormal (a rigid transform, no scale or shear); max |R R^T - I| = "
		    << OrthoError << " > " << OrthonormalTolerance;
		return FStatus::Error(Out.str());
	}
	const double Det = M[0] * (M[5] * M[10] - M[6] * M[9]) - M[1] * (M[4] * M[10] - M[6] * M[8]) +
	                   M[2] * (M[4] * M[9] - M[5] * M[8]);
	if (Det < 0.0)
	{
		std::ostringstream Out;
		Out.precision(3);
		Out << Name << " must be a rigid transform; got det(R)=" << Det
		    << " (a reflection: mixed-handed axes? convert to the project convention first, docs/conventions.md)";
		return FStatus::Error(Out.str());
	}
	return FStatus::Ok();
}

FStatus ValidateIntrinsics(const FMat3& K, std::optional<std::pair<int, int>> Size)
{
	if (!std::all_of(K.begin(), K.end(), [](double V) { return std::isfinite(V); }))
	{
		return FStatus::Error("K must be finite; it contains NaN or inf");
	}
	if (K[0] <= 0.0 || K[4] <= 0.0)
	{
		std::ostringstream Out;
		Out << "focal lengths must be positive; got fx=" << K[0] << ", fy=" << K[4];
		return FStatus::Error(Out.str());
	}
	// numpy.allclose's test (rtol 1e-5, atol 1e-8) on the last row, as models.cameras.validate_K.
	const auto Close = [](double A, double B) { return std::abs(A - B) <= 1e-8 + 1e-5 * std::abs(B); };
	if (!Close(K[6], 0.0) || !Close(K[7], 0.0) || !Close(K[8], 1.0) || K[3] != 0.0)
	{
		std::ostringstream Out;
		Out << "K must be upper-triangular with last row [0, 0, 1]; got [[" << K[0] << ", " << K[1] << ", " << K[2]
		    << "], [" << K[3] << ", " << K[4] << ", " << K[5] << "], [" << K[6] << ", " << K[7] << ", " << K[8] << "]]";
		return FStatus::Error(Out.str());
	}
	if (Size)
	{
		const auto [Width, Height] = *Size;
		if (Width <= 0 || Height <= 0)
		{
			std::ostringstream Out;
			Out << "image size must be positive; got " << Width << "x" << Height;
			return FStatus::Error(Out.str());
		}
		if (!(K[2] > 0.0 && K[2] < Width && K[5] > 0.0 && K[5] < Height))
		{
			std::ostringstream Out;
			Out << "principal point (" << K[2] << ", " << K[5] << ") lies outside a " << Width << "x" << Height
			    << " image; is K written for another resolution? rescale it (models.cameras.scale_K)";
			return FStatus::Error(Out.str());
		}
	}
	return FStatus::Ok();
}

FMat4 IdentityPose()
{
	return FMat4{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
}
}  // namespace WorldFM
