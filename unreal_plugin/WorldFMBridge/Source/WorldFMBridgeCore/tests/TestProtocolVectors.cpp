// Both ends against the same bytes: tests/data/protocol_vectors.json holds one encoded
// example of every v1 message, written by the Python side (tests/data/make_protocol_vectors.py).
// The core must encode its requests to exactly those bytes and decode every reply to the
// fields listed beside them.
#include "WorldFMCore/Protocol.h"

#include "TestPaths.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

namespace
{
using nlohmann::json;

json LoadMessages()
{
	const std::string Path = WorldFMTest::RepoRoot() + "/tests/data/protocol_vectors.json";
	std::ifstream File(Path);
	REQUIRE_MESSAGE(File.good(), "cannot open " << Path);
	const json Vectors = json::parse(File);
	REQUIRE(Vectors.at("protocol").get<int>() == WorldFM::ProtocolVersion);
	return Vectors.at("messages");
}

const json& Message(const json& Messages, const std::string& Name)
{
	for (const json& Entry : Messages)
	{
		if (Entry.at("name") == Name)
		{
			return Entry;
		}
	}
	FAIL("protocol_vectors.json has no message named " << Name);
	throw std::logic_error("unreachable");
}

std::string FromHex(const std::string& Hex)
{
	std::string Bytes(Hex.size() / 2, '\0');
	for (size_t I = 0; I < Bytes.size(); ++I)
	{
		Bytes[I] = static_cast<char>(std::stoi(Hex.substr(2 * I, 2), nullptr, 16));
	}
	return Bytes;
}

std::vector<std::string> Frames(const json& Entry)
{
	std::vector<std::string> Out;
	for (const json& Hex : Entry.at("frames_hex"))
	{
		Out.push_back(FromHex(Hex.get<std::string>()));
	}
	return Out;
}

WorldFM::TExpected<WorldFM::FReply> Decode(const std::vector<std::string>& Parts)
{
	std::vector<WorldFM::FWireFrame> Wire;
	for (const std::string& Part : Parts)
	{
		Wire.push_back({Part.data(), Part.size()});
	}
	return WorldFM::DecodeReply(Wire.data(), Wire.size());
}

template <size_t N>
std::array<double, N> Matrix(const json& Values)
{
	REQUIRE(Values.size() == N);
	std::array<double, N> Out{};
	for (size_t I = 0; I < N; ++I)
	{
		Out[I] = Values[I].get<double>();
	}
	return Out;
}

/** The view of the vectors' open_scene/add_views: 2 x 2, RGB 0..11, depth from the JSON. */
WorldFM::FViewUpload VectorView(const json& Entry)
{
	const json& View = Entry.at("fields").at("views").at(0);
	WorldFM::FViewUpload Out;
	Out.Name = View.at("name");
	Out.Width = View.at("width");
	Out.Height = View.at("height");
	Out.K = Matrix<9>(View.at("K"));
	Out.CameraToWorld = Matrix<16>(View.at("c2w"));
	for (const json& Value : Entry.at("blobs").at(0).at("values"))
	{
		Out.Rgb.push_back(Value.get<uint8_t>());
	}
	for (const json& Value : Entry.at("blobs").at(1).at("values"))
	{
		Out.Depth.push_back(Value.get<float>());
	}
	return Out;
}

void CheckEncoded(const WorldFM::FEncodedMessage& Encoded, const json& Entry)
{
	const std::vector<std::string> Expected = Frames(Entry);
	REQUIRE(Expected.size() == 1 + Encoded.Blobs.size());
	CHECK_MESSAGE(Encoded.Header == Expected[0], "header bytes of " << Entry.at("name").get<std::string>() << " differ");
	for (size_t I = 0; I < Encoded.Blobs.size(); ++I)
	{
		const std::string Blob(static_cast<const char*>(Encoded.Blobs[I].first), Encoded.Blobs[I].second);
		CHECK(Blob == Expected[I + 1]);
	}
}
}  // namespace

TEST_CASE("the core encodes every request it sends to the shared vectors' exact bytes")
{
	const json Messages = LoadMessages();

	const json& Hello = Message(Messages, "hello");
	CheckEncoded(WorldFM::EncodeHello(Hello.at("id"), Hello.at("fields").at("client"), Hello.at("fields").at("session")),
	             Hello);

	const json& Ping = Message(Messages, "ping");
	CheckEncoded(WorldFM::EncodePing(Ping.at("id"), Ping.at("fields").at("t_client")), Ping);

	const json& Open = Message(Messages, "open_scene");
	const WorldFM::FViewUpload OpenView = VectorView(Open);
	CheckEncoded(WorldFM::EncodeViews(Open.at("id"), "", Open.at("fields").at("name"), &OpenView, 1,
	                                  Open.at("fields").at("final")),
	             Open);

	const json& Add = Message(Messages, "add_views");
	const WorldFM::FViewUpload AddView = VectorView(Add);
	CheckEncoded(WorldFM::EncodeViews(Add.at("id"), Add.at("fields").at("scene"), "", &AddView, 1,
	                                  Add.at("fields").at("final")),
	             Add);

	const json& Render = Message(Messages, "render");
	const json& Fields = Render.at("fields");
	WorldFM::FRenderRequest Request;
	Request.CameraToWorld = Matrix<16>(Fields.at("c2w"));
	Request.K = Matrix<9>(Fields.at("K"));
	Request.Size = std::make_pair(Fields.at("size")[0].get<int>(), Fields.at("size")[1].get<int>());
	Request.ClientTimestamp = Fields.at("t_client");
	Request.Jpeg = Fields.at("encoding") == "jpeg";
	Request.Steps = Fields.at("steps").get<int>();
	Request.Seed = Fields.at("seed").get<uint64_t>();
	CheckEncoded(WorldFM::EncodeRender(Render.at("id"), Fields.at("scene"), Request), Render);

	const json& Close = Message(Messages, "close_scene");
	CheckEncoded(WorldFM::EncodeCloseScene(Close.at("id"), Close.at("fields").at("scene")), Close);
}

TEST_CASE("the core decodes every reply in the shared vectors to the listed fields")
{
	const json Messages = LoadMessages();

	SUBCASE("welcome")
	{
		const json& Entry = Message(Messages, "welcome");
		const auto Reply = Decode(Frames(Entry));
		REQUIRE_MESSAGE(Reply.IsOk(), Reply.ErrorMessage());
		const json& F = Entry.at("fields");
		CHECK(Reply->Type == WorldFM::EReplyType::Welcome);
		CHECK(Reply->Id == Entry.at("id").get<uint64_t>());
		CHECK(Reply->Welcome.Protocol == F.at("protocol").get<int>());
		CHECK(Reply->Welcome.Server == F.at("server").get<std::string>());
		CHECK(Reply->Welcome.Session == F.at("session").get<std::string>());
		CHECK(Reply->Welcome.ModelName == F.at("model").at("name").get<std::string>());
		CHECK(Reply->Welcome.FrameWidth == F.at("frame_size")[0].get<int>());
		CHECK(Reply->Welcome.FrameHeight == F.at("frame_size")[1].get<int>());
		CHECK(Reply->Welcome.HeartbeatMs == F.at("heartbeat_ms").get<int>());
		CHECK(Reply->Welcome.ClientTimeoutMs == F.at("client_timeout_ms").get<int>());
		CHECK(Reply->Welcome.MaxViewsPerMessage == F.at("limits").at("max_views_per_message").get<int>());
		CHECK(Reply->Welcome.MaxRenderSide == F.at("limits").at("max_render_side").get<int>());
	}
	SUBCASE("views_added and scene_ready")
	{
		const json& Added = Message(Messages, "views_added");
		const auto AddedReply = Decode(Frames(Added));
		REQUIRE_MESSAGE(AddedReply.IsOk(), AddedReply.ErrorMessage());
		CHECK(AddedReply->Type == WorldFM::EReplyType::ViewsAdded);
		CHECK(AddedReply->Scene.Scene == Added.at("fields").at("scene").get<std::string>());
		CHECK(AddedReply->Scene.Views == Added.at("fields").at("views").get<int>());

		const json& Ready = Message(Messages, "scene_ready");
		const auto ReadyReply = Decode(Frames(Ready));
		REQUIRE_MESSAGE(ReadyReply.IsOk(), ReadyReply.ErrorMessage());
		const json& F = Ready.at("fields");
		CHECK(ReadyReply->Type == WorldFM::EReplyType::SceneReady);
		CHECK(ReadyReply->Scene.Scene == F.at("scene").get<std::string>());
		CHECK(ReadyReply->Scene.Views == F.at("views").get<int>());
		CHECK(ReadyReply->Scene.Points == F.at("points").get<int64_t>());
		CHECK(ReadyReply->Scene.Candidates == F.at("candidates").get<int>());
		CHECK(ReadyReply->Scene.BuildMs == F.at("build_ms").get<double>());
	}
	SUBCASE("frame")
	{
		const json& Entry = Message(Messages, "frame");
		const std::vector<std::string> Parts = Frames(Entry);
		const auto Reply = Decode(Parts);
		REQUIRE_MESSAGE(Reply.IsOk(), Reply.ErrorMessage());
		const json& F = Entry.at("fields");
		CHECK(Reply->Type == WorldFM::EReplyType::Frame);
		CHECK(Reply->Frame.CameraToWorld == Matrix<16>(F.at("c2w")));
		CHECK(Reply->Frame.K == Matrix<9>(F.at("K")));
		CHECK(Reply->Frame.Width == F.at("size")[0].get<int>());
		CHECK(Reply->Frame.Height == F.at("size")[1].get<int>());
		CHECK(Reply->Frame.ClientTimestamp == F.at("t_client").get<double>());
		CHECK(Reply->Frame.Reference == F.at("reference").get<int>());
		CHECK(Reply->Frame.Mode == F.at("mode").get<std::string>());
		CHECK(Reply->Frame.TimingsMs.size() == F.at("timings").size());
		REQUIRE(Reply->Blobs.size() == 1);
		const auto* Pixels = static_cast<const uint8_t*>(Reply->Blobs[0].Data);
		const json& Values = Entry.at("blobs").at(0).at("values");
		REQUIRE(Reply->Blobs[0].Size == Values.size());
		for (size_t I = 0; I < Values.size(); ++I)
		{
			CHECK(Pixels[I] == Values[I].get<int>());
		}
	}
	SUBCASE("superseded, scene_closed, pong, error")
	{
		const json& Superseded = Message(Messages, "superseded");
		const auto SupersededReply = Decode(Frames(Superseded));
		REQUIRE(SupersededReply.IsOk());
		CHECK(SupersededReply->Type == WorldFM::EReplyType::Superseded);
		CHECK(SupersededReply->By == Superseded.at("fields").at("by").get<uint64_t>());

		const json& Closed = Message(Messages, "scene_closed");
		const auto ClosedReply = Decode(Frames(Closed));
		REQUIRE(ClosedReply.IsOk());
		CHECK(ClosedReply->Type == WorldFM::EReplyType::SceneClosed);
		CHECK(ClosedReply->Scene.Scene == Closed.at("fields").at("scene").get<std::string>());

		const json& Pong = Message(Messages, "pong");
		const auto PongReply = Decode(Frames(Pong));
		REQUIRE(PongReply.IsOk());
		CHECK(PongReply->Type == WorldFM::EReplyType::Pong);
		CHECK(PongReply->PongClientTimestamp == Pong.at("fields").at("t_client").get<double>());

		const json& Error = Message(Messages, "error");
		const auto ErrorReply = Decode(Frames(Error));
		REQUIRE(ErrorReply.IsOk());
		CHECK(ErrorReply->Type == WorldFM::EReplyType::Error);
		CHECK(ErrorReply->Id == Error.at("id").get<uint64_t>());
		CHECK(ErrorReply->ErrorCode == Error.at("fields").at("code").get<std::string>());
		CHECK(ErrorReply->ErrorMessage == Error.at("fields").at("message").get<std::string>());
	}
}
