#include "WorldFMCore/Protocol.h"

// zmq.h and msgpack include <winsock2.h>, whose windows.h min/max macros would break std::min.
#if defined(_WIN32) && !defined(NOMINMAX)
#define NOMINMAX
#endif
#include <msgpack.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <string_view>

namespace WorldFM
{
namespace
{
using FPacker = msgpack::packer<msgpack::sbuffer>;

// ---------------------------------------------------------------- encoding

/** Writes the common envelope; the caller then writes ExtraFields key/value pairs. */
void PackEnvelope(FPacker& Packer, const char* Type, uint64_t Id, uint32_t ExtraFields, int Version = ProtocolVersion)
{
	Packer.pack_map(3 + ExtraFields);
	Packer.pack(std::string_view("v"));
	Packer.pack(Version);
	Packer.pack(std::string_view("type"));
	Packer.pack(std::string_view(Type));
	Packer.pack(std::string_view("id"));
	Packer.pack_uint64(Id);
}

/**
 * A float64 always, as Python's msgpack writes floats. (msgpack-cxx's pack_double writes
 * integral values such as 1.0 as integers: valid, but not the bytes the shared vectors hold.)
 */
void PackFloat64(msgpack::sbuffer& Buffer, double Value)
{
	uint64_t Bits;
	std::memcpy(&Bits, &Value, sizeof(Bits));
	char Bytes[9];
	Bytes[0] = static_cast<char>(0xcb);
	for (int I = 0; I < 8; ++I)
	{
		Bytes[1 + I] = static_cast<char>((Bits >> (56 - 8 * I)) & 0xff);  // big-endian
	}
	Buffer.write(Bytes, sizeof(Bytes));
}

template <size_t N>
void PackMatrix(FPacker& Packer, msgpack::sbuffer& Buffer, const std::array<double, N>& Matrix)
{
	Packer.pack_array(N);
	for (double Value : Matrix)
	{
		PackFloat64(Buffer, Value);
	}
}

FEncodedMessage Finish(msgpack::sbuffer& Buffer)
{
	FEncodedMessage Message;
	Message.Header.assign(Buffer.data(), Buffer.size());
	return Message;
}

// ---------------------------------------------------------------- decoding

struct FDecodeError
{
	std::string Message;
	std::string Code;
};

[[noreturn]] void Fail(const std::string& Message, const std::string& Code = {}) { throw FDecodeError{Message, Code}; }

bool KeyIs(const msgpack::object& Key, std::string_view Name)
{
	return Key.type == msgpack::type::STR && std::string_view(Key.via.str.ptr, Key.via.str.size) == Name;
}

/** The value of Map[Name], or nullptr when absent or nil. */
const msgpack::object* Find(const msgpack::object& Map, std::string_view Name)
{
	for (uint32_t I = 0; I < Map.via.map.size; ++I)
	{
		const msgpack::object_kv& Pair = Map.via.map.ptr[I];
		if (KeyIs(Pair.key, Name))
		{
			return Pair.val.type == msgpack::type::NIL ? nullptr : &Pair.val;
		}
	}
	return nullptr;
}

bool IsNumber(const msgpack::object& Value)
{
	return Value.type == msgpack::type::POSITIVE_INTEGER || Value.type == msgpack::type::NEGATIVE_INTEGER ||
	       Value.type == msgpack::type::FLOAT64 || Value.type == msgpack::type::FLOAT32;
}

double NumberOf(const msgpack::object& Value)
{
	switch (Value.type)
	{
		case msgpack::type::POSITIVE_INTEGER: return static_cast<double>(Value.via.u64);
		case msgpack::type::NEGATIVE_INTEGER: return static_cast<double>(Value.via.i64);
		default: return Value.via.f64;
	}
}

/** Typed field readers for a reply of type Where. Required fields fail when absent. */
class FFields
{
public:
	FFields(const msgpack::object& InMap, std::string InWhere) : Map(InMap), Where(std::move(InWhere)) {}

	const msgpack::object* Optional(std::string_view Name) const { return Find(Map, Name); }

	const msgpack::object& Required(std::string_view Name) const
	{
		const msgpack::object* Value = Find(Map, Name);
		if (!Value)
		{
			Fail(Where + " reply lacks field '" + std::string(Name) + "'");
		}
		return *Value;
	}

	std::string String(std::string_view Name, bool IsRequired = true) const
	{
		const msgpack::object* Value = IsRequired ? &Required(Name) : Optional(Name);
		if (!Value)
		{
			return {};
		}
		if (Value->type != msgpack::type::STR)
		{
			Fail(Where + " field '" + std::string(Name) + "' must be a string");
		}
		return std::string(Value->via.str.ptr, Value->via.str.size);
	}

	double Number(std::string_view Name, bool IsRequired = true, double Default = 0.0) const
	{
		const msgpack::object* Value = IsRequired ? &Required(Name) : Optional(Name);
		if (!Value)
		{
			return Default;
		}
		if (!IsNumber(*Value))
		{
			Fail(Where + " field '" + std::string(Name) + "' must be a number");
		}
		return NumberOf(*Value);
	}

	int64_t Integer(std::string_view Name, bool IsRequired = true, int64_t Default = 0) const
	{
		const msgpack::object* Value = IsRequired ? &Required(Name) : Optional(Name);
		if (!Value)
		{
			return Default;
		}
		if (Value->type == msgpack::type::POSITIVE_INTEGER)
		{
			return static_cast<int64_t>(Value->via.u64);
		}
		if (Value->type == msgpack::type::NEGATIVE_INTEGER)
		{
			return Value->via.i64;
		}
		Fail(Where + " field '" + std::string(Name) + "' must be an integer");
	}

	template <size_t N>
	std::array<double, N> Matrix(std::string_view Name) const
	{
		const msgpack::object& Value = Required(Name);
		if (Value.type != msgpack::type::ARRAY || Value.via.array.size != N)
		{
			Fail(Where + " field '" + std::string(Name) + "' must be a flat list of " + std::to_string(N) + " numbers");
		}
		std::array<double, N> Out{};
		for (size_t I = 0; I < N; ++I)
		{
			if (!IsNumber(Value.via.array.ptr[I]))
			{
				Fail(Where + " field '" + std::string(Name) + "' must contain only numbers");
			}
			Out[I] = NumberOf(Value.via.array.ptr[I]);
		}
		return Out;
	}

	std::pair<int, int> Size(std::string_view Name) const
	{
		// msgpack's POSITIVE_INTEGER includes 0: an image side must be at least 1 (and fit an int).
		const auto IsSide = [](const msgpack::object& Side) {
			return Side.type == msgpack::type::POSITIVE_INTEGER && Side.via.u64 >= 1 && Side.via.u64 <= MaxSide;
		};
		const msgpack::object& Value = Required(Name);
		if (Value.type != msgpack::type::ARRAY || Value.via.array.size != 2 || !IsSide(Value.via.array.ptr[0]) ||
		    !IsSide(Value.via.array.ptr[1]))
		{
			Fail(Where + " field '" + std::string(Name) + "' must be [width, height], integers from 1 to " +
			     std::to_string(MaxSide));
		}
		return {static_cast<int>(Value.via.array.ptr[0].via.u64), static_cast<int>(Value.via.array.ptr[1].via.u64)};
	}

	/** An integer that must be at least 1 when present (limits, intervals). */
	int PositiveInteger(std::string_view Name, int Default) const
	{
		const int64_t Value = Integer(Name, false, Default);
		if (Value < 1 || Value > std::numeric_limits<int>::max())
		{
			Fail(Where + " field '" + std::string(Name) + "' must be a positive integer; got " + std::to_string(Value));
		}
		return static_cast<int>(Value);
	}

	FFields Map_(std::string_view Name) const
	{
		const msgpack::object* Value = Optional(Name);
		if (Value && Value->type != msgpack::type::MAP)
		{
			Fail(Where + " field '" + std::string(Name) + "' must be a map");
		}
		return FFields(Value ? *Value : EmptyMap(), Where + "." + std::string(Name));
	}

private:
	// Far above any image a server sends (max_image_side is 4096), far below int overflow.
	static constexpr uint64_t MaxSide = 1 << 15;

	static const msgpack::object& EmptyMap()
	{
		static const msgpack::object Empty = [] {
			msgpack::object Object;
			Object.type = msgpack::type::MAP;
			Object.via.map.size = 0;
			Object.via.map.ptr = nullptr;
			return Object;
		}();
		return Empty;
	}

	const msgpack::object& Map;
	std::string Where;
};

bool ReplyTypeFromName(std::string_view Name, EReplyType& Out)
{
	static const std::pair<std::string_view, EReplyType> Types[] = {
		{"welcome", EReplyType::Welcome},         {"views_added", EReplyType::ViewsAdded},
		{"scene_ready", EReplyType::SceneReady},   {"frame", EReplyType::Frame},
		{"superseded", EReplyType::Superseded},    {"scene_closed", EReplyType::SceneClosed},
		{"pong", EReplyType::Pong},                {"error", EReplyType::Error},
	};
	for (const auto& [TypeName, Type] : Types)
	{
		if (TypeName == Name)
		{
			Out = Type;
			return true;
		}
	}
	return false;
}

std::vector<FBlobView> DecodeBlobs(const msgpack::object* Descriptors, const FWireFrame* Frames, size_t Count)
{
	if (Descriptors && Descriptors->type != msgpack::type::ARRAY)
	{
		Fail("header 'blobs' must be a list of {dtype, shape}");
	}
	const size_t Declared = Descriptors ? Descriptors->via.array.size : 0;
	if (Declared != Count - 1)
	{
		Fail("header lists " + std::to_string(Declared) + " binary frames but " + std::to_string(Count - 1) + " followed it");
	}
	std::vector<FBlobView> Blobs(Declared);
	for (size_t I = 0; I < Declared; ++I)
	{
		const msgpack::object& Descriptor = Descriptors->via.array.ptr[I];
		const std::string Where = "binary frame " + std::to_string(I + 1);
		if (Descriptor.type != msgpack::type::MAP)
		{
			Fail(Where + ": descriptor must be a map {dtype, shape}");
		}
		const FFields Fields(Descriptor, Where);
		const std::string DType = Fields.String("dtype");
		if (DType != "uint8" && DType != "float32")
		{
			Fail(Where + ": dtype must be uint8 or float32; got " + DType);
		}
		const msgpack::object& Shape = Fields.Required("shape");
		if (Shape.type != msgpack::type::ARRAY || Shape.via.array.size > 4)
		{
			Fail(Where + ": shape must be a list of up to 4 non-negative integers");
		}
		FBlobView& Blob = Blobs[I];
		Blob.Float32 = DType == "float32";
		uint64_t Bytes = Blob.Float32 ? 4 : 1;
		for (uint32_t D = 0; D < Shape.via.array.size; ++D)
		{
			if (Shape.via.array.ptr[D].type != msgpack::type::POSITIVE_INTEGER)
			{
				Fail(Where + ": shape must be a list of up to 4 non-negative integers");
			}
			const uint64_t Extent = Shape.via.array.ptr[D].via.u64;
			Blob.Shape.push_back(static_cast<int64_t>(Extent));
			Bytes *= Extent;
		}
		const FWireFrame& Frame = Frames[I + 1];
		if (Bytes != Frame.Size)
		{
			Fail(Where + ": " + DType + " needs " + std::to_string(Bytes) + " bytes; the frame has " +
			     std::to_string(Frame.Size));
		}
		Blob.Data = Frame.Data;
		Blob.Size = Frame.Size;
	}
	return Blobs;
}

void DecodeFields(const FFields& Fields, FReply& Reply)
{
	switch (Reply.Type)
	{
		case EReplyType::Welcome:
		{
			FWelcome& W = Reply.Welcome;
			W.Protocol = static_cast<int>(Fields.Integer("protocol"));
			W.Server = Fields.String("server");
			W.Session = Fields.String("session");
			W.ModelName = Fields.Map_("model").String("name", false);
			std::tie(W.FrameWidth, W.FrameHeight) = Fields.Size("frame_size");
			W.HeartbeatMs = Fields.PositiveInteger("heartbeat_ms", W.HeartbeatMs);
			W.ClientTimeoutMs = Fields.PositiveInteger("client_timeout_ms", W.ClientTimeoutMs);
			const FFields Limits = Fields.Map_("limits");
			W.MaxViewsPerMessage = Limits.PositiveInteger("max_views_per_message", W.MaxViewsPerMessage);
			W.MaxRenderSide = Limits.PositiveInteger("max_render_side", W.MaxRenderSide);
			break;
		}
		case EReplyType::SceneReady:
			Reply.Scene.Scene = Fields.String("scene");
			Reply.Scene.Views = static_cast<int>(Fields.Integer("views"));
			Reply.Scene.Points = Fields.Integer("points");
			Reply.Scene.Candidates = static_cast<int>(Fields.Integer("candidates"));
			Reply.Scene.BuildMs = Fields.Number("build_ms");
			break;
		case EReplyType::ViewsAdded:
			Reply.Scene.Scene = Fields.String("scene");
			Reply.Scene.Views = static_cast<int>(Fields.Integer("views"));
			break;
		case EReplyType::SceneClosed:
			Reply.Scene.Scene = Fields.String("scene");
			break;
		case EReplyType::Frame:
		{
			FFrameHeader& F = Reply.Frame;
			F.Scene = Fields.String("scene");
			F.CameraToWorld = Fields.Matrix<16>("c2w");
			F.K = Fields.Matrix<9>("K");
			std::tie(F.Width, F.Height) = Fields.Size("size");
			const std::string Encoding = Fields.String("encoding", false);
			if (!Encoding.empty() && Encoding != "raw" && Encoding != "jpeg")
			{
				Fail("frame field 'encoding' must be raw or jpeg; got " + Encoding);
			}
			F.Jpeg = Encoding == "jpeg";
			F.ClientTimestamp = Fields.Number("t_client", false);
			F.ServerTimestamp = Fields.Number("t_server", false);
			F.Reference = static_cast<int>(Fields.Integer("reference", false, -1));
			F.Mode = Fields.String("mode", false);
			if (const msgpack::object* Timings = Fields.Optional("timings"); Timings && Timings->type == msgpack::type::MAP)
			{
				for (uint32_t I = 0; I < Timings->via.map.size; ++I)
				{
					const msgpack::object_kv& Pair = Timings->via.map.ptr[I];
					if (Pair.key.type == msgpack::type::STR && IsNumber(Pair.val))
					{
						F.TimingsMs.emplace_back(std::string(Pair.key.via.str.ptr, Pair.key.via.str.size), NumberOf(Pair.val));
					}
				}
			}
			// The image, and with "anchor": true in the request the anchor rendering after it.
			if (Reply.Blobs.empty() || Reply.Blobs.size() > 2)
			{
				Fail("a frame carries one image (two with the anchor); got " + std::to_string(Reply.Blobs.size()) +
				     " binary frames");
			}
			for (const FBlobView& Image : Reply.Blobs)
			{
				const bool RawShapeOk = Image.Shape.size() == 3 && Image.Shape[0] == F.Height && Image.Shape[1] == F.Width &&
				                        Image.Shape[2] == 3;
				if (Image.Float32 || (!F.Jpeg && !RawShapeOk) || (F.Jpeg && Image.Shape.size() != 1))
				{
					std::ostringstream Out;
					Out << "frame image does not match its header: size " << F.Width << "x" << F.Height << ", encoding "
					    << (F.Jpeg ? "jpeg (uint8 [n])" : "raw (uint8 [h, w, 3])");
					Fail(Out.str());
				}
			}
			break;
		}
		case EReplyType::Superseded:
			if (const msgpack::object* By = Fields.Optional("by"); By && By->type == msgpack::type::POSITIVE_INTEGER)
			{
				Reply.By = By->via.u64;
			}
			break;
		case EReplyType::Pong:
			Reply.PongClientTimestamp = Fields.Number("t_client", false);
			break;
		case EReplyType::Error:
			Reply.ErrorCode = Fields.String("code");
			Reply.ErrorMessage = Fields.String("message", false);
			break;
	}
}
}  // namespace

const char* ToString(EReplyType Type)
{
	switch (Type)
	{
		case EReplyType::Welcome: return "welcome";
		case EReplyType::ViewsAdded: return "views_added";
		case EReplyType::SceneReady: return "scene_ready";
		case EReplyType::Frame: return "frame";
		case EReplyType::Superseded: return "superseded";
		case EReplyType::SceneClosed: return "scene_closed";
		case EReplyType::Pong: return "pong";
		case EReplyType::Error: return "error";
	}
	return "?";
}

FEncodedMessage EncodeHello(uint64_t Id, const std::string& ClientName, const std::string& Session, int Version)
{
	msgpack::sbuffer Buffer;
	FPacker Packer(&Buffer);
	PackEnvelope(Packer, "hello", Id, 2, Version);
	Packer.pack(std::string_view("client"));
	Packer.pack(ClientName);
	Packer.pack(std::string_view("session"));
	Packer.pack(Session);
	return Finish(Buffer);
}

FEncodedMessage EncodePing(uint64_t Id, double ClientTimestamp)
{
	msgpack::sbuffer Buffer;
	FPacker Packer(&Buffer);
	PackEnvelope(Packer, "ping", Id, 1);
	Packer.pack(std::string_view("t_client"));
	PackFloat64(Buffer, ClientTimestamp);
	return Finish(Buffer);
}

FEncodedMessage EncodeViews(uint64_t Id, const std::string& Scene, const std::string& Name, const FViewUpload* Views,
                            size_t Count, bool Final)
{
	const bool Open = Scene.empty();
	msgpack::sbuffer Buffer;
	FPacker Packer(&Buffer);
	PackEnvelope(Packer, Open ? "open_scene" : "add_views", Id, 4);
	// Field order follows python_bridge.protocol so both ends produce identical bytes
	// (checked against tests/data/protocol_vectors.json).
	Packer.pack(std::string_view(Open ? "name" : "scene"));
	Packer.pack(Open ? Name : Scene);
	Packer.pack(std::string_view("views"));
	Packer.pack_array(static_cast<uint32_t>(Count));
	size_t BlobCount = 0;
	for (size_t I = 0; I < Count; ++I)
	{
		const FViewUpload& View = Views[I];
		Packer.pack_map(6);
		Packer.pack(std::string_view("name"));
		Packer.pack(View.Name);
		Packer.pack(std::string_view("width"));
		Packer.pack(View.Width);
		Packer.pack(std::string_view("height"));
		Packer.pack(View.Height);
		Packer.pack(std::string_view("K"));
		PackMatrix(Packer, Buffer, View.K);
		Packer.pack(std::string_view("c2w"));
		PackMatrix(Packer, Buffer, View.CameraToWorld);
		Packer.pack(std::string_view("depth"));
		Packer.pack(!View.Depth.empty());
		BlobCount += View.Depth.empty() ? 1 : 2;
	}
	Packer.pack(std::string_view("final"));
	Packer.pack(Final);
	FEncodedMessage Message;
	Packer.pack(std::string_view("blobs"));
	Packer.pack_array(static_cast<uint32_t>(BlobCount));
	for (size_t I = 0; I < Count; ++I)
	{
		const FViewUpload& View = Views[I];
		Packer.pack_map(2);
		Packer.pack(std::string_view("dtype"));
		Packer.pack(std::string_view("uint8"));
		Packer.pack(std::string_view("shape"));
		Packer.pack_array(3);
		Packer.pack(View.Height);
		Packer.pack(View.Width);
		Packer.pack(3);
		Message.Blobs.emplace_back(View.Rgb.data(), View.Rgb.size());
		if (!View.Depth.empty())
		{
			Packer.pack_map(2);
			Packer.pack(std::string_view("dtype"));
			Packer.pack(std::string_view("float32"));
			Packer.pack(std::string_view("shape"));
			Packer.pack_array(2);
			Packer.pack(View.Height);
			Packer.pack(View.Width);
			Message.Blobs.emplace_back(View.Depth.data(), View.Depth.size() * sizeof(float));
		}
	}
	Message.Header.assign(Buffer.data(), Buffer.size());
	return Message;
}

FEncodedMessage EncodeRender(uint64_t Id, const std::string& Scene, const FRenderRequest& Request)
{
	const uint32_t Extra = 4 + (Request.K ? 1 : 0) + (Request.Size ? 1 : 0) + (Request.Steps ? 1 : 0) + (Request.Seed ? 1 : 0);
	msgpack::sbuffer Buffer;
	FPacker Packer(&Buffer);
	PackEnvelope(Packer, "render", Id, Extra);
	Packer.pack(std::string_view("scene"));
	Packer.pack(Scene);
	Packer.pack(std::string_view("c2w"));
	PackMatrix(Packer, Buffer, Request.CameraToWorld);
	if (Request.K)
	{
		Packer.pack(std::string_view("K"));
		PackMatrix(Packer, Buffer, *Request.K);
	}
	if (Request.Size)
	{
		Packer.pack(std::string_view("size"));
		Packer.pack_array(2);
		Packer.pack(Request.Size->first);
		Packer.pack(Request.Size->second);
	}
	Packer.pack(std::string_view("t_client"));
	PackFloat64(Buffer, Request.ClientTimestamp);
	Packer.pack(std::string_view("encoding"));
	Packer.pack(std::string_view(Request.Jpeg ? "jpeg" : "raw"));
	if (Request.Steps)
	{
		Packer.pack(std::string_view("steps"));
		Packer.pack(*Request.Steps);
	}
	if (Request.Seed)
	{
		Packer.pack(std::string_view("seed"));
		Packer.pack_uint64(*Request.Seed);
	}
	return Finish(Buffer);
}

FEncodedMessage EncodeCloseScene(uint64_t Id, const std::string& Scene)
{
	msgpack::sbuffer Buffer;
	FPacker Packer(&Buffer);
	PackEnvelope(Packer, "close_scene", Id, 1);
	Packer.pack(std::string_view("scene"));
	Packer.pack(Scene);
	return Finish(Buffer);
}

FStatus CheckFrameSize(int Width, int Height, const FWelcome& Welcome, const std::optional<std::pair<int, int>>& Requested)
{
	const std::string Got = std::to_string(Width) + "x" + std::to_string(Height);
	const int Limit = std::max({Welcome.MaxRenderSide, Welcome.FrameWidth, Welcome.FrameHeight});
	if (Width < 1 || Height < 1 || Width > Limit || Height > Limit)
	{
		return FStatus::Error("refused a " + Got + " frame: sides must be 1 to " + std::to_string(Limit) +
		                          " pixels (the server's max_render_side / frame_size)",
		                      "malformed");
	}
	const std::pair<int, int> Expected = Requested.value_or(std::make_pair(Welcome.FrameWidth, Welcome.FrameHeight));
	if (Width != Expected.first || Height != Expected.second)
	{
		return FStatus::Error("refused a " + Got + " frame: the render asked for " + std::to_string(Expected.first) + "x" +
		                          std::to_string(Expected.second),
		                      "malformed");
	}
	return FStatus::Ok();
}

TExpected<FReply> DecodeReply(const FWireFrame* Frames, size_t Count)
{
	if (Count == 0)
	{
		return FStatus::Error("empty message; a reply starts with a msgpack header frame");
	}
	try
	{
		// Caps far above any legitimate header keep a corrupt length from allocating gigabytes.
		const msgpack::unpack_limit Limit(1 << 16, 1 << 12, 1 << 20, 1 << 20, 1 << 10, 16);
		const msgpack::object_handle Handle =
			msgpack::unpack(static_cast<const char*>(Frames[0].Data), Frames[0].Size, nullptr, nullptr, Limit);
		const msgpack::object& Header = Handle.get();
		if (Header.type != msgpack::type::MAP)
		{
			Fail("header must be a msgpack map");
		}
		const FFields Envelope(Header, "reply");
		const int64_t Version = Envelope.Integer("v");
		if (Version != ProtocolVersion)
		{
			Fail("the server speaks protocol v" + std::to_string(Version) + "; this client speaks v" +
			     std::to_string(ProtocolVersion) + ". Use matching versions of the plugin and `worldfm serve`.",
			     "version_mismatch");
		}
		FReply Reply;
		const std::string Type = Envelope.String("type");
		if (!ReplyTypeFromName(Type, Reply.Type))
		{
			Fail("unknown reply type '" + Type + "'");
		}
		if (const msgpack::object* Id = Envelope.Optional("id"))
		{
			if (Id->type != msgpack::type::POSITIVE_INTEGER)
			{
				Fail("header 'id' must be a non-negative integer");
			}
			Reply.Id = Id->via.u64;
		}
		Reply.Blobs = DecodeBlobs(Envelope.Optional("blobs"), Frames, Count);
		DecodeFields(FFields(Header, Type), Reply);
		return Reply;
	}
	catch (const FDecodeError& Error)
	{
		return FStatus::Error("malformed reply: " + Error.Message, Error.Code.empty() ? "malformed" : Error.Code);
	}
	catch (const std::exception& Error)  // msgpack's parse errors
	{
		return FStatus::Error(std::string("malformed reply: header is not valid msgpack (") + Error.what() + ")", "malformed");
	}
}
}  // namespace WorldFM
