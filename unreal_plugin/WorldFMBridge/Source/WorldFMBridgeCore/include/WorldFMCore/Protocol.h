// Wire format v1 of the WorldFM bridge, client side (docs/protocol.md,
// python_bridge/protocol.py is the server's half).
//
// Every message is one ZeroMQ multipart message: frame 0 is a msgpack map
// {"v": 1, "type": ..., "id": ..., fields...}; frames 1..n are raw little-endian arrays
// described in order by header["blobs"] = [{"dtype": "uint8"|"float32", "shape": [...]}].
// Poses are 4x4 camera-to-world matrices (metres, OpenCV axes) and intrinsics 3x3 pixel
// matrices, both flat row-major lists. Replies carry the id of the request they answer.
//
// This header has no msgpack or ZeroMQ types so the Unreal modules can include it with
// exceptions disabled; encoding and decoding live in Protocol.cpp.
#pragma once

#include "WorldFMCore/Expected.h"
#include "WorldFMCore/Export.h"
#include "WorldFMCore/UnrealCamera.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace WorldFM
{
inline constexpr int ProtocolVersion = 1;

/** An encoded message ready to send: header bytes, then the binary frames in order. */
struct FEncodedMessage
{
	std::string Header;
	std::vector<std::pair<const void*, size_t>> Blobs;  // not owned: valid while the caller's data is
};

/** One posed view to upload: RGB uint8 (Height, Width, 3) and optional depth float32 (Height, Width) metres. */
struct FViewUpload
{
	std::string Name;
	int Width = 0;
	int Height = 0;
	FMat3 K{};
	FMat4 CameraToWorld{};
	std::vector<uint8_t> Rgb;
	std::vector<float> Depth;  // empty = no depth for this view
};

/** A render request: the pose, optionally K for a Size (width, height), and quality knobs. */
struct FRenderRequest
{
	FMat4 CameraToWorld = IdentityPose();
	std::optional<FMat3> K;                  // requires Size
	std::optional<std::pair<int, int>> Size;  // (width, height) pixels
	std::optional<int> Steps;
	std::optional<uint64_t> Seed;
	bool Jpeg = false;  // ask for a JPEG instead of raw RGB (for remote servers)
	double ClientTimestamp = 0.0;  // seconds; echoed back as t_client
};

// ---------------------------------------------------------------- requests

WORLDFM_CORE_API FEncodedMessage EncodeHello(uint64_t Id, const std::string& ClientName, const std::string& Session,
                            int Version = ProtocolVersion);
WORLDFM_CORE_API FEncodedMessage EncodePing(uint64_t Id, double ClientTimestamp);
/** open_scene when Scene is empty (with Name), add_views otherwise; Final starts the build. */
WORLDFM_CORE_API FEncodedMessage EncodeViews(uint64_t Id, const std::string& Scene, const std::string& Name,
                            const FViewUpload* Views, size_t Count, bool Final);
WORLDFM_CORE_API FEncodedMessage EncodeRender(uint64_t Id, const std::string& Scene, const FRenderRequest& Request);
WORLDFM_CORE_API FEncodedMessage EncodeCloseScene(uint64_t Id, const std::string& Scene);

// ---------------------------------------------------------------- replies

enum class EReplyType
{
	Welcome,
	ViewsAdded,
	SceneReady,
	Frame,
	Superseded,
	SceneClosed,
	Pong,
	Error,
};

WORLDFM_CORE_API const char* ToString(EReplyType Type);

/** A received ZeroMQ frame: bytes owned by the transport, valid until the next receive. */
struct FWireFrame
{
	const void* Data = nullptr;
	size_t Size = 0;
};

/** welcome: what the server is and what it accepts. */
struct FWelcome
{
	int Protocol = 0;
	std::string Server;
	std::string Session;
	std::string ModelName;
	int FrameWidth = 0;
	int FrameHeight = 0;
	int HeartbeatMs = 1000;
	int ClientTimeoutMs = 30000;
	int MaxViewsPerMessage = 16;
	int MaxRenderSide = 2048;
};

/** scene_ready / views_added. */
struct FSceneInfo
{
	std::string Scene;
	int Views = 0;
	int64_t Points = 0;
	int Candidates = 0;
	double BuildMs = 0.0;
};

/** The header of a frame reply; the image is FReply::Blobs[0]. */
struct FFrameHeader
{
	std::string Scene;
	FMat4 CameraToWorld{};
	FMat3 K{};
	int Width = 0;
	int Height = 0;
	bool Jpeg = false;
	double ClientTimestamp = 0.0;
	double ServerTimestamp = 0.0;
	int Reference = -1;
	std::string Mode;
	std::vector<std::pair<std::string, double>> TimingsMs;
};

/** A binary frame as its descriptor says: dtype, shape and the bytes (not owned). */
struct FBlobView
{
	bool Float32 = false;  // else uint8
	std::vector<int64_t> Shape;
	const void* Data = nullptr;
	size_t Size = 0;
};

/** Any decoded reply. Only the fields of its Type are meaningful. */
struct FReply
{
	EReplyType Type = EReplyType::Error;
	std::optional<uint64_t> Id;
	FWelcome Welcome;            // Welcome
	FSceneInfo Scene;            // SceneReady, ViewsAdded (Scene, Views), SceneClosed (Scene)
	FFrameHeader Frame;          // Frame
	std::optional<uint64_t> By;  // Superseded: the request that replaced this one
	std::string ErrorCode;       // Error: protocol.E_* code
	std::string ErrorMessage;    // Error: what went wrong and what to do
	double PongClientTimestamp = 0.0;
	std::vector<FBlobView> Blobs;
};

/**
 * Whether a frame of Width x Height answers a render that asked for Requested (width, height;
 * none: the server's default): both sides at least 1, no side beyond what the welcome allows
 * (max_render_side, or frame_size when that is larger), and the size asked for (the welcome's
 * frame_size when the render gave none; docs/protocol.md, render "size"). A frame that fails
 * this is refused before any buffer is sized from it.
 */
WORLDFM_CORE_API FStatus CheckFrameSize(int Width, int Height, const FWelcome& Welcome,
                                        const std::optional<std::pair<int, int>>& Requested);

/**
 * Decode a reply. Checks the header is a msgpack map of protocol v1 with a known reply
 * type, that the binary frames match header["blobs"] in count and size, and that the
 * fields of the type are present and well-typed. Blob views point into Frames.
 */
WORLDFM_CORE_API TExpected<FReply> DecodeReply(const FWireFrame* Frames, size_t Count);
}  // namespace WorldFM
