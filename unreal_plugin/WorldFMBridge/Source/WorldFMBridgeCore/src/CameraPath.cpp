#include "WorldFMCore/CameraPath.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <sstream>
#include <system_error>

namespace WorldFM
{
namespace
{
using FJson = nlohmann::json;

/** A malformed or invalid field: the message without the file name (ParseCameraPath adds it). */
struct FFieldError
{
	std::string Message;
};

bool IsMatrix(const FJson& Value, std::size_t Rows, std::size_t Cols)
{
	if (!Value.is_array() || Value.size() != Rows)
	{
		return false;
	}
	return std::all_of(Value.begin(), Value.end(), [Cols](const FJson& Row) {
		return Row.is_array() && Row.size() == Cols &&
		       std::all_of(Row.begin(), Row.end(), [](const FJson& V) { return V.is_number(); });
	});
}

/** Rows x Cols numbers, row-major; the caller checked IsMatrix. */
template <std::size_t N>
std::array<double, N> ReadMatrix(const FJson& Value)
{
	std::array<double, N> Out{};
	std::size_t Index = 0;
	for (const FJson& Row : Value)
	{
		for (const FJson& V : Row)
		{
			Out[Index++] = V.get<double>();
		}
	}
	return Out;
}

/** "c2w": one 4x4 or a list of them (numpy reads both; so does the Python loader). */
std::vector<FMat4> ReadPoses(const FJson& C2W)
{
	constexpr const char* Shape = "c2w must be a 4x4 matrix (or N x 4 x 4) of numbers";
	if (!C2W.is_array())
	{
		throw FFieldError{std::string(Shape) + "; got " + C2W.type_name()};
	}
	if (C2W.empty())
	{
		throw FFieldError{"the path has no poses"};
	}
	std::vector<FMat4> Poses;
	if (IsMatrix(C2W, 4, 4))  // a single pose
	{
		Poses.push_back(ReadMatrix<16>(C2W));
		if (FStatus Valid = ValidateCameraToWorld(Poses.back(), "c2w"); !Valid)
		{
			throw FFieldError{Valid.Message};
		}
		return Poses;
	}
	Poses.reserve(C2W.size());
	for (std::size_t I = 0; I < C2W.size(); ++I)
	{
		const std::string Name = "c2w[" + std::to_string(I) + "]";
		if (!IsMatrix(C2W[I], 4, 4))
		{
			throw FFieldError{std::string(Shape) + "; " + Name + " is not a 4x4 matrix of numbers"};
		}
		Poses.push_back(ReadMatrix<16>(C2W[I]));
		if (FStatus Valid = ValidateCameraToWorld(Poses.back(), Name); !Valid)
		{
			throw FFieldError{Valid.Message};
		}
	}
	return Poses;
}

/** A frame side: a positive whole number of pixels (256 or 256.0). */
int ReadSide(const FJson& Data, const char* Key, int Default)
{
	const auto Found = Data.find(Key);
	if (Found == Data.end())
	{
		return Default;
	}
	const double Value = Found->is_number() ? Found->get<double>() : std::nan("");
	if (!(Value >= 1.0 && Value <= 65536.0 && Value == std::floor(Value)))
	{
		throw FFieldError{std::string("'") + Key + "' must be a positive whole number of pixels; got " + Found->dump()};
	}
	return int(Value);
}

double ReadNumber(const FJson& Data, const char* Key, double Default)
{
	const auto Found = Data.find(Key);
	if (Found == Data.end())
	{
		return Default;
	}
	if (!Found->is_number())
	{
		throw FFieldError{std::string("'") + Key + "' must be a number; got " + Found->dump()};
	}
	return Found->get<double>();
}

FCameraPath ReadPath(const FJson& Data)
{
	if (!Data.is_object() || !Data.contains("c2w"))
	{
		throw FFieldError{"a camera path is a JSON object with a 'c2w' list of 4x4 matrices"};
	}
	FCameraPath Path;
	Path.Poses = ReadPoses(Data.at("c2w"));
	if (Data.contains("K"))
	{
		const FJson& K = Data.at("K");
		if (!IsMatrix(K, 3, 3))
		{
			throw FFieldError{"K must be 3x3 numbers; got " + K.dump()};
		}
		Path.K = ReadMatrix<9>(K);
		if (FStatus Valid = ValidateIntrinsics(Path.K); !Valid)
		{
			throw FFieldError{Valid.Message};
		}
		// Without a size, the one K implies: a centred principal point, as the WorldFM meta.json
		// has (rounded half to even, as Python's round()).
		const auto Implied = [](double Centre) {
			const double Side = std::nearbyint(2.0 * Centre);
			return Side >= 1.0 && Side <= 65536.0 ? int(Side) : 0;
		};
		Path.Width = ReadSide(Data, "width", Implied(Path.K[2]));
		Path.Height = ReadSide(Data, "height", Implied(Path.K[5]));
		if (FStatus Valid = ValidateIntrinsics(Path.K, std::make_pair(Path.Width, Path.Height)); !Valid)
		{
			throw FFieldError{Valid.Message};
		}
	}
	else if (Data.contains("hfov_deg") && Data.contains("width") && Data.contains("height"))
	{
		Path.Width = ReadSide(Data, "width", 0);
		Path.Height = ReadSide(Data, "height", 0);
		auto K = IntrinsicsFromHorizontalFov(ReadNumber(Data, "hfov_deg", 0.0), Path.Width, Path.Height);
		if (!K)
		{
			throw FFieldError{K.ErrorMessage()};
		}
		Path.K = *K;
	}
	else
	{
		throw FFieldError{"give 'K' (3x3 pixels) or 'hfov_deg' with 'width' and 'height'"};
	}
	Path.Fps = ReadNumber(Data, "fps", DefaultCameraPathFps);
	if (!(Path.Fps > 0.0 && Path.Fps <= MaxCameraPathFps))
	{
		std::ostringstream Out;
		Out << "fps must be in (0, " << MaxCameraPathFps << "]; got " << Path.Fps;
		throw FFieldError{Out.str()};
	}
	return Path;
}

using FQuat = std::array<double, 4>;  // (w, x, y, z)

/** Unit quaternion, w >= 0, of the rotation from pose M's to pose N's: R_M^T R_N. */
FQuat RelativeRotation(const FMat4& M, const FMat4& N)
{
	double R[3][3];
	for (int I = 0; I < 3; ++I)
	{
		for (int J = 0; J < 3; ++J)
		{
			R[I][J] = M[I] * N[J] + M[4 + I] * N[4 + J] + M[8 + I] * N[8 + J];
		}
	}
	// Shepperd's method: divide by the largest of 4w^2, 4x^2, 4y^2, 4z^2, never by a small one.
	const double Trace = R[0][0] + R[1][1] + R[2][2];
	FQuat Q;
	if (Trace >= R[0][0] && Trace >= R[1][1] && Trace >= R[2][2])
	{
		const double S = 2.0 * std::sqrt(std::max(0.0, 1.0 + Trace));
		Q = {S / 4.0, (R[2][1] - R[1][2]) / S, (R[0][2] - R[2][0]) / S, (R[1][0] - R[0][1]) / S};
	}
	else if (R[0][0] >= R[1][1] && R[0][0] >= R[2][2])
	{
		const double S = 2.0 * std::sqrt(std::max(0.0, 1.0 + R[0][0] - R[1][1] - R[2][2]));
		Q = {(R[2][1] - R[1][2]) / S, S / 4.0, (R[0][1] + R[1][0]) / S, (R[0][2] + R[2][0]) / S};
	}
	else if (R[1][1] >= R[2][2])
	{
		const double S = 2.0 * std::sqrt(std::max(0.0, 1.0 + R[1][1] - R[0][0] - R[2][2]));
		Q = {(R[0][2] - R[2][0]) / S, (R[0][1] + R[1][0]) / S, S / 4.0, (R[1][2] + R[2][1]) / S};
	}
	else
	{
		const double S = 2.0 * std::sqrt(std::max(0.0, 1.0 + R[2][2] - R[0][0] - R[1][1]));
		Q = {(R[1][0] - R[0][1]) / S, (R[0][2] + R[2][0]) / S, (R[1][2] + R[2][1]) / S, S / 4.0};
	}
	if (Q[0] < 0.0)  // the shortest arc: angle in [0, pi], as cv2.Rodrigues' axis-angle
	{
		for (double& V : Q)
		{
			V = -V;
		}
	}
	return Q;
}

/** R_M * exp(Fraction * log(R_M^T R_N)): the geodesic step interpolate_poses takes. */
void Slerp(const FMat4& M, const FMat4& N, double Fraction, FMat4& Out)
{
	const FQuat Q = RelativeRotation(M, N);
	const double SinHalf = std::sqrt(Q[1] * Q[1] + Q[2] * Q[2] + Q[3] * Q[3]);
	const double Angle = 2.0 * std::atan2(SinHalf, Q[0]);
	double Step[4] = {1.0, 0.0, 0.0, 0.0};
	if (SinHalf > 0.0)
	{
		const double Half = Fraction * Angle / 2.0;
		const double Scale = std::sin(Half) / SinHalf;
		Step[0] = std::cos(Half);
		Step[1] = Q[1] * Scale;
		Step[2] = Q[2] * Scale;
		Step[3] = Q[3] * Scale;
	}
	const double W = Step[0], X = Step[1], Y = Step[2], Z = Step[3];
	const double S[3][3] = {
	    {1.0 - 2.0 * (Y * Y + Z * Z), 2.0 * (X * Y - W * Z), 2.0 * (X * Z + W * Y)},
	    {2.0 * (X * Y + W * Z), 1.0 - 2.0 * (X * X + Z * Z), 2.0 * (Y * Z - W * X)},
	    {2.0 * (X * Z - W * Y), 2.0 * (Y * Z + W * X), 1.0 - 2.0 * (X * X + Y * Y)},
	};
	for (int I = 0; I < 3; ++I)
	{
		for (int J = 0; J < 3; ++J)
		{
			Out[4 * I + J] = M[4 * I] * S[0][J] + M[4 * I + 1] * S[1][J] + M[4 * I + 2] * S[2][J];
		}
	}
}
}  // namespace

TExpected<FCameraPath> ParseCameraPath(const std::string& Json, const std::string& Source)
{
	try
	{
		FJson Data;
		try
		{
			Data = FJson::parse(Json);
		}
		catch (const FJson::exception& Error)  // syntax errors, numbers beyond double's range
		{
			return FStatus::Error("cannot read camera path " + Source + ": " + Error.what());
		}
		return ReadPath(Data);
	}
	catch (const FFieldError& Error)
	{
		return FStatus::Error(Source + ": " + Error.Message);
	}
	catch (const std::exception& Error)  // e.g. out of memory: the API never throws
	{
		return FStatus::Error(Source + ": cannot read camera path (" + Error.what() + ")");
	}
}

TExpected<FCameraPath> LoadCameraPath(const std::string& FilePath)
{
	errno = 0;
	std::ifstream File(FilePath, std::ios::binary | std::ios::ate);  // opened at the end: its size
	if (!File)
	{
		return FStatus::Error("cannot read camera path " + FilePath + ": " +
		                      (errno ? std::generic_category().message(errno) : std::string("cannot open it")));
	}
	const std::streamoff Bytes = File.tellg();
	if (Bytes < 0)
	{
		return FStatus::Error("cannot read camera path " + FilePath + ": not a readable file");
	}
	if (std::uintmax_t(Bytes) > MaxCameraPathBytes)
	{
		std::ostringstream Out;
		Out << "cannot read camera path " << FilePath << ": " << Bytes << " bytes; files over "
		    << (MaxCameraPathBytes >> 20) << " MiB are refused (split the recording)";
		return FStatus::Error(Out.str());
	}
	std::string Text(std::size_t(Bytes), '\0');
	File.seekg(0);
	if (!File.read(Text.data(), Bytes))
	{
		return FStatus::Error("cannot read camera path " + FilePath + ": reading it failed");
	}
	return ParseCameraPath(Text, FilePath);
}

FMat4 SampleCameraPath(const FCameraPath& Path, double Seconds)
{
	if (Path.Poses.empty())
	{
		return IdentityPose();
	}
	const std::size_t Last = Path.Poses.size() - 1;
	// Keyframe index; NaN time (or fps) plays the first pose.
	const double Index = std::clamp(std::isnan(Seconds * Path.Fps) ? 0.0 : Seconds * Path.Fps, 0.0, double(Last));
	const std::size_t K = std::min(std::size_t(Index), Last);
	const double Fraction = Index - double(K);
	if (Fraction == 0.0)  // on a keyframe (and at both ends): that pose exactly, no rounding
	{
		return Path.Poses[K];
	}
	const FMat4& A = Path.Poses[K];
	const FMat4& B = Path.Poses[K + 1];
	FMat4 Out = IdentityPose();
	Slerp(A, B, Fraction, Out);
	for (int Row = 0; Row < 3; ++Row)
	{
		Out[4 * Row + 3] = A[4 * Row + 3] + Fraction * (B[4 * Row + 3] - A[4 * Row + 3]);
	}
	return Out;
}
}  // namespace WorldFM
