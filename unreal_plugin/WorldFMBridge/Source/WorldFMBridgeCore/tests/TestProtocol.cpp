// The client codec in isolation: what it encodes is a v1 message with the documented
// fields, and what it decodes is checked (version, frame counts, blob sizes, field types).
// The live tests (TestLiveServer.cpp) then check both directions against the real server.
#include "WorldFMCore/Protocol.h"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace
{
using WorldFM::FWireFrame;

msgpack::object_handle Unpack(const std::string& Bytes) { return msgpack::unpack(Bytes.data(), Bytes.size()); }

std::map<std::string, msgpack::object> AsMap(const msgpack::object& Object)
{
	REQUIRE(Object.type == msgpack::type::MAP);
	std::map<std::string, msgpack::object> Out;
	for (uint32_t I = 0; I < Object.via.map.size; ++I)
	{
		Out[Object.via.map.ptr[I].key.as<std::string>()] = Object.via.map.ptr[I].val;
	}
	return Out;
}

/** A reply header packed the way python_bridge.protocol.encode packs it. */
class FReplyBuilder
{
public:
	FReplyBuilder(const std::string& Type, int64_t Id, size_t ExtraFields, int Version = 1) : Packer(&Buffer)
	{
		Packer.pack_map(static_cast<uint32_t>(3 + ExtraFields));
		Packer.pack(std::string("v"));
		Packer.pack(Version);
		Packer.pack(std::string("type"));
		Packer.pack(Type);
		Packer.pack(std::string("id"));
		if (Id < 0)
		{
			Packer.pack_nil();
		}
		else
		{
			Packer.pack(Id);
		}
	}
	template <typename T>
	FReplyBuilder& Field(const std::string& Name, const T& Value)
	{
		Packer.pack(Name);
		Packer.pack(Value);
		return *this;
	}
	std::string Bytes() const { return std::string(Buffer.data(), Buffer.size()); }

	msgpack::sbuffer Buffer;
	msgpack::packer<msgpack::sbuffer> Packer;
};

struct FBlobDescriptor
{
	std::string dtype;
	std::vector<int> shape;
	MSGPACK_DEFINE_MAP(dtype, shape);
};

std::string FrameHeader(int Width, int Height, int Version = 1, std::vector<int> BlobShape = {})
{
	if (BlobShape.empty())
	{
		BlobShape = {Height, Width, 3};
	}
	std::vector<double> C2W(16, 0.0), K = {50, 0, 2, 0, 50, 1.5, 0, 0, 1};
	C2W[0] = C2W[5] = C2W[10] = C2W[15] = 1.0;
	C2W[3] = 0.25;
	std::vector<FBlobDescriptor> Blobs{FBlobDescriptor{"uint8", BlobShape}};
	std::map<std::string, double> Timings{{"total_ms", 12.5}, {"queue_ms", 0.5}};
	FReplyBuilder Reply("frame", 7, 8, Version);
	Reply.Field("scene", std::string("s1"))
		.Field("c2w", C2W)
		.Field("K", K)
		.Field("size", std::vector<int>{Width, Height})
		.Field("encoding", std::string("raw"))
		.Field("t_client", 1234.5)
		.Field("timings", Timings)
		.Field("blobs", Blobs);
	return Reply.Bytes();
}
}  // namespace

TEST_CASE("render requests carry the v1 envelope and the pose as 16 row-major floats")
{
	WorldFM::FRenderRequest Request;
	Request.CameraToWorld[3] = 1.5;
	Request.K = WorldFM::FMat3{100, 0, 32, 0, 100, 24, 0, 0, 1};
	Request.Size = std::make_pair(64, 48);
	Request.Steps = 2;
	Request.ClientTimestamp = 99.0;
	const WorldFM::FEncodedMessage Message = WorldFM::EncodeRender(42, "scene-a", Request);
	CHECK(Message.Blobs.empty());
	const auto Handle = Unpack(Message.Header);
	auto Fields = AsMap(Handle.get());
	CHECK(Fields["v"].as<int>() == 1);
	CHECK(Fields["type"].as<std::string>() == "render");
	CHECK(Fields["id"].as<uint64_t>() == 42);
	CHECK(Fields["scene"].as<std::string>() == "scene-a");
	const auto C2W = Fields["c2w"].as<std::vector<double>>();
	REQUIRE(C2W.size() == 16);
	CHECK(C2W[3] == 1.5);
	CHECK(C2W[0] == 1.0);
	CHECK(Fields["K"].as<std::vector<double>>()[2] == 32.0);
	CHECK(Fields["size"].as<std::vector<int>>() == std::vector<int>{64, 48});
	CHECK(Fields["steps"].as<int>() == 2);
	CHECK(Fields["encoding"].as<std::string>() == "raw");
	CHECK(Fields.count("seed") == 0);
}

TEST_CASE("view uploads describe one rgb blob per view plus depth where given")
{
	std::vector<WorldFM::FViewUpload> Views(2);
	for (int I = 0; I < 2; ++I)
	{
		Views[I].Name = "v" + std::to_string(I);
		Views[I].Width = 4;
		Views[I].Height = 3;
		Views[I].K = {4, 0, 2, 0, 4, 1.5, 0, 0, 1};
		Views[I].CameraToWorld = WorldFM::IdentityPose();
		Views[I].Rgb.assign(4 * 3 * 3, uint8_t(I));
	}
	Views[1].Depth.assign(4 * 3, 2.0f);
	const auto Open = WorldFM::EncodeViews(1, "", "room", Views.data(), Views.size(), true);
	const auto Handle = Unpack(Open.Header);
	auto Fields = AsMap(Handle.get());
	CHECK(Fields["type"].as<std::string>() == "open_scene");
	CHECK(Fields["name"].as<std::string>() == "room");
	CHECK(Fields["final"].as<bool>());
	const auto Blobs = Fields["blobs"].as<std::vector<FBlobDescriptor>>();
	REQUIRE(Blobs.size() == 3);  // rgb, rgb, depth
	CHECK(Blobs[0].shape == std::vector<int>{3, 4, 3});
	CHECK(Blobs[2].dtype == "float32");
	CHECK(Blobs[2].shape == std::vector<int>{3, 4});
	REQUIRE(Open.Blobs.size() == 3);
	CHECK(Open.Blobs[2].second == 4 * 3 * sizeof(float));
	auto ViewList = Fields["views"].as<std::vector<msgpack::object>>();
	REQUIRE(ViewList.size() == 2);
	CHECK_FALSE(AsMap(ViewList[0])["depth"].as<bool>());
	CHECK(AsMap(ViewList[1])["depth"].as<bool>());

	const auto Add = WorldFM::EncodeViews(2, "s9", "ignored", Views.data(), 1, false);
	const auto AddHandle = Unpack(Add.Header);
	auto AddFields = AsMap(AddHandle.get());
	CHECK(AddFields["type"].as<std::string>() == "add_views");
	CHECK(AddFields["scene"].as<std::string>() == "s9");
	CHECK(AddFields.count("name") == 0);
}

TEST_CASE("a frame reply decodes with its pose echo, timings and a view of the image bytes")
{
	const std::string Header = FrameHeader(4, 3);
	const std::vector<uint8_t> Image(4 * 3 * 3, 200);
	const FWireFrame Frames[] = {{Header.data(), Header.size()}, {Image.data(), Image.size()}};
	const auto Reply = WorldFM::DecodeReply(Frames, 2);
	REQUIRE_MESSAGE(Reply.IsOk(), Reply.ErrorMessage());
	CHECK(Reply->Type == WorldFM::EReplyType::Frame);
	CHECK(Reply->Id.value() == 7);
	CHECK(Reply->Frame.Width == 4);
	CHECK(Reply->Frame.Height == 3);
	CHECK(Reply->Frame.CameraToWorld[3] == 0.25);
	CHECK(Reply->Frame.K[0] == 50.0);
	CHECK(Reply->Frame.ClientTimestamp == 1234.5);
	CHECK(Reply->Frame.TimingsMs.size() == 2);
	REQUIRE(Reply->Blobs.size() == 1);
	CHECK(Reply->Blobs[0].Data == Image.data());  // no copy while decoding
}

TEST_CASE("malformed replies are refused with a reason")
{
	const std::vector<uint8_t> Image(4 * 3 * 3, 0);
	SUBCASE("wrong protocol version")
	{
		const std::string Header = FrameHeader(4, 3, 2);
		const FWireFrame Frames[] = {{Header.data(), Header.size()}, {Image.data(), Image.size()}};
		const auto Reply = WorldFM::DecodeReply(Frames, 2);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.Status().Code == "version_mismatch");
	}
	SUBCASE("binary frame count differs from the descriptors")
	{
		const std::string Header = FrameHeader(4, 3);
		const FWireFrame Frames[] = {{Header.data(), Header.size()}};
		const auto Reply = WorldFM::DecodeReply(Frames, 1);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.ErrorMessage().find("binary frames") != std::string::npos);
	}
	SUBCASE("blob size differs from its shape")
	{
		const std::string Header = FrameHeader(4, 3);
		const FWireFrame Frames[] = {{Header.data(), Header.size()}, {Image.data(), Image.size() - 1}};
		const auto Reply = WorldFM::DecodeReply(Frames, 2);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.ErrorMessage().find("bytes") != std::string::npos);
	}
	SUBCASE("image shape disagrees with the frame size")
	{
		const std::string Header = FrameHeader(4, 3, 1, {4, 3, 3});  // same bytes, transposed
		const FWireFrame Frames[] = {{Header.data(), Header.size()}, {Image.data(), Image.size()}};
		const auto Reply = WorldFM::DecodeReply(Frames, 2);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.ErrorMessage().find("does not match its header") != std::string::npos);
	}
	SUBCASE("header is not a map")
	{
		msgpack::sbuffer Buffer;
		msgpack::pack(Buffer, std::vector<int>{1, 2, 3});
		const FWireFrame Frames[] = {{Buffer.data(), Buffer.size()}};
		const auto Reply = WorldFM::DecodeReply(Frames, 1);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.ErrorMessage().find("map") != std::string::npos);
	}
	SUBCASE("header is not msgpack")
	{
		const std::string Garbage = "\xc1\xc1\xc1";
		const FWireFrame Frames[] = {{Garbage.data(), Garbage.size()}};
		CHECK_FALSE(WorldFM::DecodeReply(Frames, 1).IsOk());
	}
	SUBCASE("unknown reply type")
	{
		const std::string Header = FReplyBuilder("render", 1, 0).Bytes();  // a request, not a reply
		const FWireFrame Frames[] = {{Header.data(), Header.size()}};
		CHECK_FALSE(WorldFM::DecodeReply(Frames, 1).IsOk());
	}
	SUBCASE("required field of the wrong type")
	{
		const std::string Header = FReplyBuilder("scene_ready", 3, 5)
		                               .Field("scene", std::string("s"))
		                               .Field("views", std::string("four"))
		                               .Field("points", 10)
		                               .Field("candidates", 4)
		                               .Field("build_ms", 1.0)
		                               .Bytes();
		const FWireFrame Frames[] = {{Header.data(), Header.size()}};
		const auto Reply = WorldFM::DecodeReply(Frames, 1);
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.ErrorMessage().find("'views'") != std::string::npos);
	}
}

TEST_CASE("an error reply without a request id still decodes")
{
	const std::string Header = FReplyBuilder("error", -1, 2)
	                               .Field("code", std::string("malformed"))
	                               .Field("message", std::string("header frame is not valid msgpack"))
	                               .Bytes();
	const FWireFrame Frames[] = {{Header.data(), Header.size()}};
	const auto Reply = WorldFM::DecodeReply(Frames, 1);
	REQUIRE(Reply.IsOk());
	CHECK_FALSE(Reply->Id.has_value());
	CHECK(Reply->ErrorCode == "malformed");
}

TEST_CASE("a frame of zero width or height is refused by the decoder")
{
	const std::vector<uint8_t> Nothing;
	for (const std::pair<int, int>& Size : {std::pair{0, 0}, std::pair{4, 0}, std::pair{0, 3}})
	{
		const int Width = Size.first, Height = Size.second;
		// The descriptor agrees with the header, so only the size rule can refuse it.
		const std::string Header = FrameHeader(Width, Height, 1, {Height, Width, 3});
		const FWireFrame Frames[] = {{Header.data(), Header.size()}, {Nothing.data(), 0}};
		const auto Reply = WorldFM::DecodeReply(Frames, 2);
		INFO("size [" << Width << ", " << Height << "]");
		REQUIRE_FALSE(Reply.IsOk());
		CHECK(Reply.Status().Code == "malformed");
		CHECK(Reply.ErrorMessage().find("'size'") != std::string::npos);
	}
}

TEST_CASE("frame sizes are checked against the welcome's limits and the size requested")
{
	WorldFM::FWelcome Welcome;
	Welcome.FrameWidth = 256;
	Welcome.FrameHeight = 256;
	Welcome.MaxRenderSide = 2048;
	const std::optional<std::pair<int, int>> Default;
	const std::optional<std::pair<int, int>> Asked = std::make_pair(640, 360);

	CHECK(WorldFM::CheckFrameSize(256, 256, Welcome, Default).IsOk());
	CHECK(WorldFM::CheckFrameSize(640, 360, Welcome, Asked).IsOk());
	CHECK(WorldFM::CheckFrameSize(2048, 2048, Welcome, std::make_pair(2048, 2048)).IsOk());

	// Beyond max_render_side, even when that is what the render asked for (70000x1 was accepted once).
	const WorldFM::FStatus Huge = WorldFM::CheckFrameSize(70000, 1, Welcome, std::make_pair(70000, 1));
	CHECK_FALSE(Huge.IsOk());
	CHECK(Huge.Code == "malformed");
	CHECK(Huge.Message.find("2048") != std::string::npos);
	CHECK_FALSE(WorldFM::CheckFrameSize(2049, 16, Welcome, std::make_pair(2049, 16)).IsOk());
	CHECK_FALSE(WorldFM::CheckFrameSize(0, 0, Welcome, Default).IsOk());
	CHECK_FALSE(WorldFM::CheckFrameSize(-4, 8, Welcome, std::make_pair(-4, 8)).IsOk());

	// Another size than asked for: transposed, or the default when a size was given.
	CHECK_FALSE(WorldFM::CheckFrameSize(360, 640, Welcome, Asked).IsOk());
	CHECK_FALSE(WorldFM::CheckFrameSize(256, 256, Welcome, Asked).IsOk());
	CHECK_FALSE(WorldFM::CheckFrameSize(640, 360, Welcome, Default).IsOk());

	// A model whose native frame is larger than max_render_side still gets its default frames.
	Welcome.FrameWidth = Welcome.FrameHeight = 4096;
	CHECK(WorldFM::CheckFrameSize(4096, 4096, Welcome, Default).IsOk());
}

TEST_CASE("a welcome with a zero frame size or non-positive limits is refused")
{
	const auto Welcome = [](std::vector<int> FrameSize, int HeartbeatMs, int MaxRenderSide) {
		std::map<std::string, int> Limits{{"max_render_side", MaxRenderSide}, {"max_views_per_message", 64}};
		return FReplyBuilder("welcome", 1, 6)
		    .Field("server", std::string("worldfm-bridge"))
		    .Field("protocol", 1)
		    .Field("session", std::string("0123456789abcdef"))
		    .Field("frame_size", FrameSize)
		    .Field("heartbeat_ms", HeartbeatMs)
		    .Field("limits", Limits)
		    .Bytes();
	};
	const auto Decode = [](const std::string& Header) {
		const FWireFrame Frames[] = {{Header.data(), Header.size()}};
		return WorldFM::DecodeReply(Frames, 1);
	};
	const auto Good = Decode(Welcome({256, 256}, 1000, 2048));
	REQUIRE_MESSAGE(Good.IsOk(), Good.ErrorMessage());
	CHECK(Good->Welcome.MaxRenderSide == 2048);
	CHECK_FALSE(Decode(Welcome({0, 0}, 1000, 2048)).IsOk());
	CHECK_FALSE(Decode(Welcome({256, 256}, 0, 2048)).IsOk());
	CHECK_FALSE(Decode(Welcome({256, 256}, 1000, 0)).IsOk());
}

TEST_CASE("a 'blobs' entry that is not a list is refused, not read as one")
{
	const std::string Header = FReplyBuilder("pong", 9, 2).Field("t_client", 1.5).Field("blobs", 42).Bytes();
	const FWireFrame Frames[] = {{Header.data(), Header.size()}};
	const auto Reply = WorldFM::DecodeReply(Frames, 1);
	REQUIRE_FALSE(Reply.IsOk());
	CHECK(Reply.ErrorMessage().find("'blobs' must be a list") != std::string::npos);
}
