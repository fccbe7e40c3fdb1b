// The client core against the real Python server (tests/unreal_plugin/live_server.py:
// python_bridge.server with the anchor-fallback pipeline), over real sockets: handshake,
// a procedural scene uploaded from Unreal poses, a camera path, latest-wins, version
// refusal, and a server that crashes and comes back.
#include "WorldFMCore/Client.h"
#include "WorldFMCore/ClientWorker.h"

#include "ProceduralRoom.h"
#include "ServerProcess.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

namespace
{
using namespace WorldFMTest;
using FClock = std::chrono::steady_clock;

constexpr int ViewWidth = 80, ViewHeight = 60;
constexpr int FrameWidth = 64, FrameHeight = 48;

WorldFM::FClientConfig TestConfig(const std::string& Endpoint)
{
	WorldFM::FClientConfig Config;
	Config.Endpoint = Endpoint;
	Config.ClientName = "cpp-core-test";
	Config.RequestTimeoutMs = 1500;
	Config.BuildTimeoutMs = 120000;
	Config.RenderTimeoutMs = 30000;
	Config.ReconnectBackoffMs = 100;
	Config.ReconnectBackoffMaxMs = 500;
	return Config;
}

std::shared_ptr<const std::vector<WorldFM::FViewUpload>> Room()
{
	static const auto Views = std::make_shared<const std::vector<WorldFM::FViewUpload>>(RoomViews(ViewWidth, ViewHeight));
	return Views;
}

WorldFM::FRenderRequest RequestFor(const FUnrealCamera& Camera)
{
	WorldFM::FRenderRequest Request;
	Request.CameraToWorld = PoseOf(Camera);
	Request.K = IntrinsicsOf(Camera, FrameWidth, FrameHeight);
	Request.Size = std::make_pair(FrameWidth, FrameHeight);
	return Request;
}

/** Pump until a frame arrives or Seconds pass. */
bool WaitForFrame(WorldFM::FClient& Client, WorldFM::FFrame& Frame, int Seconds)
{
	const auto Deadline = FClock::now() + std::chrono::seconds(Seconds);
	while (FClock::now() < Deadline)
	{
		if (Client.Pump(50, Frame))
		{
			return true;
		}
	}
	return false;
}

double MaxPoseDifference(const WorldFM::FMat4& A, const WorldFM::FMat4& B)
{
	double Worst = 0.0;
	for (size_t I = 0; I < 16; ++I)
	{
		Worst = std::max(Worst, std::abs(A[I] - B[I]));
	}
	return Worst;
}

/** Mean absolute RGB difference between a frame and the analytic room at Pose. */
double MeanErrorAgainstRoom(const WorldFM::FFrame& Frame, const WorldFM::FMat4& Pose)
{
	std::vector<uint8_t> Expected;
	std::vector<float> Depth;
	RenderRoom(Pose, Frame.K, Frame.Width, Frame.Height, Expected, Depth);
	double Sum = 0.0;
	for (size_t I = 0; I < Expected.size(); ++I)
	{
		Sum += std::abs(int(Expected[I]) - int(Frame.Pixels[I]));
	}
	return Sum / double(Expected.size());
}

/** One server for the tests that do not stop it (starting Python costs seconds). */
FServerProcess& SharedServer()
{
	static FServerProcess Server;
	return Server;
}

WorldFM::FClient& Connected(WorldFM::FClient& Client)
{
	const WorldFM::FStatus Status = Client.Connect();
	REQUIRE_MESSAGE(Status.IsOk(), Status.Message);
	return Client;
}
}  // namespace

TEST_CASE("handshake, a procedural scene from Unreal poses, and a camera path")
{
	WorldFM::FClient Client(TestConfig(SharedServer().Endpoint));
	Connected(Client);
	CHECK(Client.State() == WorldFM::EConnectionState::Connected);
	CHECK(Client.Welcome().Protocol == WorldFM::ProtocolVersion);
	CHECK(Client.Welcome().Server == "worldfm-bridge");
	CHECK(Client.Welcome().FrameWidth > 0);
	const auto RoundTrip = Client.Ping();
	REQUIRE(RoundTrip.IsOk());
	CHECK(*RoundTrip > 0.0);

	const auto Info = Client.OpenScene("procedural-room", Room());
	REQUIRE_MESSAGE(Info.IsOk(), Info.ErrorMessage());
	CHECK(Info->Views == int(Room()->size()));
	CHECK(Info->Points > 0);
	CHECK(Client.SceneId() == Info->Scene);

	// A camera path as an Unreal level would drive it: walk and turn inside the room.
	uint64_t LastId = 0;
	WorldFM::FFrame Frame;
	for (int Step = 0; Step < 6; ++Step)
	{
		const FUnrealCamera Camera{{-40.0 + 15.0 * Step, 20.0, 140.0}, {-5.0, -50.0 + 20.0 * Step, 0.0}, 90.0};
		const WorldFM::FRenderRequest Request = RequestFor(Camera);
		Client.SetPose(Request);
		REQUIRE_MESSAGE(WaitForFrame(Client, Frame, 60), "no frame for step " << Step);
		CHECK(Frame.Width == FrameWidth);
		CHECK(Frame.Height == FrameHeight);
		CHECK_FALSE(Frame.Jpeg);
		REQUIRE(Frame.Pixels.size() == size_t(FrameWidth) * FrameHeight * 3);
		CHECK(MaxPoseDifference(Frame.CameraToWorld, Request.CameraToWorld) < 1e-12);  // the pose echo
		CHECK(Frame.K[0] == doctest::Approx((*Request.K)[0]));
		CHECK(Frame.RequestId > LastId);
		CHECK(Frame.LatencyMs > 0.0);
		LastId = Frame.RequestId;

		// The frame shows the room from this pose, not from some other one: it is much
		// closer to the analytic view at the requested pose than to the view turned 90 degrees.
		const double Error = MeanErrorAgainstRoom(Frame, Request.CameraToWorld);
		const FUnrealCamera Turned{Camera.LocationCm, {-5.0, Camera.PitchYawRollDeg[1] + 90.0, 0.0}, 90.0};
		const double TurnedError = MeanErrorAgainstRoom(Frame, PoseOf(Turned));
		INFO("step " << Step << ": mean error " << Error << " vs " << TurnedError << " for a pose turned 90 degrees");
		CHECK(Error < 0.5 * TurnedError);
	}
	CHECK(Client.Stats().FramesReceived == 6);

	// JPEG for remote servers: the frame carries the file (decoded by the engine's ImageWrapper).
	WorldFM::FRenderRequest Jpeg = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 0.0, 0.0}, 90.0});
	Jpeg.Jpeg = true;
	Client.SetPose(Jpeg);
	REQUIRE(WaitForFrame(Client, Frame, 60));
	CHECK(Frame.Jpeg);
	CHECK(Frame.Width == FrameWidth);
	REQUIRE(Frame.Pixels.size() > 4);
	CHECK(Frame.Pixels[0] == 0xFF);  // JPEG start-of-image marker
	CHECK(Frame.Pixels[1] == 0xD8);
	CHECK(Frame.Pixels.size() < size_t(FrameWidth) * FrameHeight * 3);

	CHECK(Client.CloseScene().IsOk());
	CHECK(Client.SceneId().empty());
}

TEST_CASE("latest wins: only the newest pose is in flight and every frame answers a newer pose")
{
	WorldFM::FClient Client(TestConfig(SharedServer().Endpoint));
	Connected(Client);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());

	constexpr int Poses = 40;
	std::vector<WorldFM::FRenderRequest> Sent;
	std::vector<WorldFM::FFrame> Received;
	WorldFM::FFrame Frame;
	for (int I = 0; I < Poses; ++I)
	{
		Sent.push_back(RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, -80.0 + 4.0 * I, 0.0}, 90.0}));
		Client.SetPose(Sent.back());
		if (Client.Pump(1, Frame))
		{
			Received.push_back(Frame);
		}
	}
	// Drain until the newest pose is answered.
	const auto Deadline = FClock::now() + std::chrono::seconds(60);
	while ((Received.empty() || MaxPoseDifference(Received.back().CameraToWorld, Sent.back().CameraToWorld) > 1e-12) &&
	       FClock::now() < Deadline)
	{
		if (Client.Pump(50, Frame))
		{
			Received.push_back(Frame);
		}
	}
	REQUIRE(!Received.empty());
	CHECK(MaxPoseDifference(Received.back().CameraToWorld, Sent.back().CameraToWorld) < 1e-12);
	CHECK(Client.Stats().RendersSent < uint64_t(Poses));  // poses were skipped, not queued
	CHECK(Client.Stats().RendersSent == Client.Stats().FramesReceived + Client.Stats().Superseded);
	int LastIndex = -1;
	for (const WorldFM::FFrame& Got : Received)
	{
		int Index = -1;
		for (int I = 0; I < Poses; ++I)
		{
			if (MaxPoseDifference(Got.CameraToWorld, Sent[I].CameraToWorld) < 1e-12)
			{
				Index = I;
			}
		}
		CHECK(Index > LastIndex);  // each frame answers a pose newer than the previous frame's
		LastIndex = Index;
	}
	MESSAGE(Poses << " poses submitted, " << Client.Stats().RendersSent << " sent, " << Received.size()
	              << " frames received");
}

TEST_CASE("a client announcing another protocol version is refused, without retries")
{
	WorldFM::FClientConfig Config = TestConfig(SharedServer().Endpoint);
	Config.AnnouncedVersion = WorldFM::ProtocolVersion + 1;
	Config.ConnectAttempts = 3;
	std::vector<WorldFM::FClientEvent> Events;
	WorldFM::FClient Client(Config);
	Client.SetEventSink([&](const WorldFM::FClientEvent& Event) { Events.push_back(Event); });
	const WorldFM::FStatus Status = Client.Connect();
	REQUIRE_FALSE(Status.IsOk());
	CHECK(Status.Code == "version_mismatch");
	CHECK(Status.Message.find("v1") != std::string::npos);  // says which version the server speaks
	CHECK(Client.State() == WorldFM::EConnectionState::Refused);
	REQUIRE(Events.size() == 1);
	CHECK(Events[0].Kind == WorldFM::FClientEvent::EKind::Refused);

	// The refusal is final: pumping does not reconnect.
	WorldFM::FFrame Frame;
	CHECK_FALSE(Client.Pump(300, Frame));
	CHECK(Client.Stats().Reconnects == 0);
}

TEST_CASE("the client survives a server crash and restart, re-uploading its scene")
{
	auto Server = std::make_unique<FServerProcess>();
	const std::string Endpoint = Server->Endpoint;
	std::vector<WorldFM::FClientEvent> Events;
	WorldFM::FClient Client(TestConfig(Endpoint));
	Client.SetEventSink([&](const WorldFM::FClientEvent& Event) { Events.push_back(Event); });
	Connected(Client);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	const std::string FirstScene = Client.SceneId();
	WorldFM::FFrame Frame;
	Client.SetPose(RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 10.0, 0.0}, 90.0}));
	REQUIRE(WaitForFrame(Client, Frame, 60));

	Server->Stop(SIGKILL);  // a crash: no goodbye, the session and scene die with it
	Server = std::make_unique<FServerProcess>(Endpoint);

	const WorldFM::FRenderRequest After = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 30.0, 0.0}, 90.0});
	Client.SetPose(After);
	REQUIRE_MESSAGE(WaitForFrame(Client, Frame, 120), "no frame after the restart");
	CHECK(MaxPoseDifference(Frame.CameraToWorld, After.CameraToWorld) < 1e-12);
	CHECK(Frame.Pixels.size() == size_t(FrameWidth) * FrameHeight * 3);
	CHECK(Client.State() == WorldFM::EConnectionState::Connected);
	CHECK(Client.Stats().SceneReopens == 1);
	CHECK(Client.SceneId() != FirstScene);
	bool SawReopen = false;
	for (const auto& Event : Events)
	{
		SawReopen = SawReopen || (Event.Kind == WorldFM::FClientEvent::EKind::SceneReady &&
		                          Event.Message.find("re-opened") != std::string::npos);
	}
	CHECK(SawReopen);
}

TEST_CASE("a client started before its server keeps trying and connects when the server comes up")
{
	const std::string Endpoint = FreeEndpoint();
	WorldFM::FClientConfig Config = TestConfig(Endpoint);
	Config.RequestTimeoutMs = 500;
	Config.ConnectAttempts = 1;
	WorldFM::FClient Client(Config);
	const WorldFM::FStatus Status = Client.Connect();
	CHECK_FALSE(Status.IsOk());
	CHECK(Status.Message.find("worldfm serve") != std::string::npos);  // says what to do
	CHECK(Client.State() == WorldFM::EConnectionState::Disconnected);

	FServerProcess Server(Endpoint);
	WorldFM::FFrame Frame;
	const auto Deadline = FClock::now() + std::chrono::seconds(60);
	while (Client.State() != WorldFM::EConnectionState::Connected && FClock::now() < Deadline)
	{
		Client.Pump(50, Frame);
	}
	REQUIRE(Client.State() == WorldFM::EConnectionState::Connected);
	CHECK(Client.Stats().Reconnects >= 1);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	Client.SetPose(RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 0.0, 0.0}, 90.0}));
	CHECK(WaitForFrame(Client, Frame, 60));
}

TEST_CASE("heartbeats keep an idle session alive; a stalled client's expired session is restored")
{
	FServerProcess Server("tcp://127.0.0.1:*", {"--client-timeout-s", "1"});
	WorldFM::FClient Client(TestConfig(Server.Endpoint));
	Connected(Client);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	WorldFM::FFrame Frame;
	const auto RenderAndCheck = [&](double YawDeg) {
		const WorldFM::FRenderRequest Request = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, YawDeg, 0.0}, 90.0});
		Client.SetPose(Request);
		REQUIRE_MESSAGE(WaitForFrame(Client, Frame, 60), "no frame at yaw " << YawDeg);
		CHECK(MaxPoseDifference(Frame.CameraToWorld, Request.CameraToWorld) < 1e-12);
	};

	// Idle but pumping: pings every heartbeat keep the 1 s session alive for 2.5 s.
	const auto IdleUntil = FClock::now() + std::chrono::milliseconds(2500);
	while (FClock::now() < IdleUntil)
	{
		CHECK_FALSE(Client.Pump(50, Frame));
	}
	RenderAndCheck(45.0);
	CHECK(Client.Stats().SceneReopens == 0);

	// Stalled (not pumping, as a paused game thread would): the session and its scene expire.
	std::this_thread::sleep_for(std::chrono::milliseconds(2500));
	RenderAndCheck(60.0);
	CHECK(Client.Stats().SceneReopens == 1);
	CHECK(Client.State() == WorldFM::EConnectionState::Connected);
}

TEST_CASE("the threaded worker: poses in and frames out without locks on the caller's side")
{
	WorldFM::FClientWorker Worker(TestConfig(SharedServer().Endpoint));
	std::atomic<bool> Stop{false};
	std::thread Thread([&] { Worker.Run(Stop); });
	Worker.Connect();
	Worker.OpenScene("room", Room());

	const auto Deadline = FClock::now() + std::chrono::seconds(90);
	int Frames = 0, Tick = 0;
	WorldFM::FMat4 LastPose{};
	bool EchoMatchesASubmittedPose = true;
	std::vector<WorldFM::FMat4> Submitted;
	while (Frames < 5 && FClock::now() < Deadline)
	{
		// A game thread: a new pose every "tick", the newest frame whenever there is one.
		const WorldFM::FRenderRequest Request = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, double(Tick % 90), 0.0}, 90.0});
		Submitted.push_back(Request.CameraToWorld);
		Worker.SubmitPose(Request);
		++Tick;
		if (Worker.AcquireFrame())
		{
			const WorldFM::FFrame& Frame = Worker.Frame();
			bool Found = false;
			for (const auto& Pose : Submitted)
			{
				Found = Found || MaxPoseDifference(Pose, Frame.CameraToWorld) < 1e-12;
			}
			EchoMatchesASubmittedPose = EchoMatchesASubmittedPose && Found &&
			                            Frame.Pixels.size() == size_t(FrameWidth) * FrameHeight * 3;
			LastPose = Frame.CameraToWorld;
			++Frames;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(16));
	}
	Stop = true;
	Thread.join();
	CHECK(Frames == 5);
	CHECK(EchoMatchesASubmittedPose);
	CHECK(Worker.State() == WorldFM::EConnectionState::Connected);
	bool Connected = false, SceneReady = false;
	for (const auto& Event : Worker.TakeEvents())
	{
		Connected = Connected || Event.Kind == WorldFM::FClientEvent::EKind::Connected;
		SceneReady = SceneReady || Event.Kind == WorldFM::FClientEvent::EKind::SceneReady;
		CHECK_MESSAGE(Event.Kind != WorldFM::FClientEvent::EKind::Error, Event.Message);
	}
	CHECK(Connected);
	CHECK(SceneReady);
}

TEST_CASE("CurveZMQ: the server's public key gets an encrypted session; no key gets no answer")
{
	char Template[] = "/tmp/worldfm-curve-XXXXXX";
	REQUIRE(mkdtemp(Template) != nullptr);
	FServerProcess Server("tcp://127.0.0.1:*", {"--curve-dir", Template});
	REQUIRE(Server.ServerPublicKey.size() == 40);

	WorldFM::FClientConfig Config = TestConfig(Server.Endpoint);
	Config.CurveServerKey = Server.ServerPublicKey;
	WorldFM::FClient Encrypted(Config);
	Connected(Encrypted);
	CHECK(Encrypted.Ping().IsOk());

	WorldFM::FClientConfig Plain = TestConfig(Server.Endpoint);
	Plain.RequestTimeoutMs = 500;
	Plain.ConnectAttempts = 1;
	WorldFM::FClient Unencrypted(Plain);
	const WorldFM::FStatus Status = Unencrypted.Connect();
	CHECK_FALSE(Status.IsOk());
	CHECK(Status.Code == "timeout");
	CHECK(Unencrypted.State() == WorldFM::EConnectionState::Disconnected);
	std::filesystem::remove_all(Template);  // the server has read its keys
}
