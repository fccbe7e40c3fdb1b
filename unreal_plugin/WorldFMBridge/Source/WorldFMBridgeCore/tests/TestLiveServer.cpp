// The client core against the real Python server (tests/unreal_plugin/live_server.py:
// python_bridge.server with the anchor-fallback pipeline), over real sockets: handshake,
// a procedural scene uploaded from Unreal poses, a camera path, latest-wins, unchanged poses
// skipped, an idle worker's CPU, version refusal, session expiry and CurveZMQ. One server
// process serves them all (TestLiveRestart.cpp starts and kills its own).
#include "WorldFMCore/Client.h"
#include "WorldFMCore/ClientWorker.h"

#include "LiveTestSupport.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <pthread.h>
#include <thread>
#include <time.h>

namespace
{
using namespace WorldFMTest;

/** Session expiry of the "expiring" server: short, yet far above a heartbeat (200 ms). */
constexpr double ExpiringTimeoutS = 1.5;

/** The one server process of this binary: "main", "expiring" and "curve" (see live_server.py). */
class FSharedServers
{
public:
	static const FServerAddress& Get(const std::string& Name = "main")
	{
		static FSharedServers Shared;
		return Shared.Process->Server(Name);
	}

private:
	FSharedServers()
	{
		char Template[] = "/tmp/worldfm-curve-XXXXXX";
		REQUIRE(mkdtemp(Template) != nullptr);
		CurveDir = Template;
		Process = std::make_unique<FServerProcess>(std::vector<std::string>{
			"--expiring-timeout-s", std::to_string(ExpiringTimeoutS), "--curve-dir", CurveDir});
	}
	~FSharedServers()
	{
		Process.reset();
		std::filesystem::remove_all(CurveDir);
	}

	std::string CurveDir;
	std::unique_ptr<FServerProcess> Process;
};

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

/** CPU seconds a thread has used. */
double ThreadCpuSeconds(std::thread& Thread)
{
	clockid_t Clock;
	REQUIRE(pthread_getcpuclockid(Thread.native_handle(), &Clock) == 0);
	timespec Now{};
	REQUIRE(clock_gettime(Clock, &Now) == 0);
	return double(Now.tv_sec) + 1e-9 * double(Now.tv_nsec);
}

/** Take the worker's events until one of Kind arrives (true) or the hang guard runs out. */
bool WaitForEvent(WorldFM::FClientWorker& Worker, WorldFM::FClientEvent::EKind Kind,
                  std::vector<WorldFM::FClientEvent>& Seen)
{
	const auto Deadline = FClock::now() + Patience();
	while (FClock::now() < Deadline)
	{
		for (const WorldFM::FClientEvent& Event : Worker.TakeEvents())
		{
			Seen.push_back(Event);
			if (Event.Kind == Kind)
			{
				return true;
			}
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	return false;
}
}  // namespace

TEST_CASE("handshake, a procedural scene from Unreal poses, and a camera path")
{
	WorldFM::FClient Client(TestConfig(FSharedServers::Get().Endpoint));
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
		REQUIRE_MESSAGE(WaitForFrame(Client, Frame), "no frame for step " << Step);
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
	REQUIRE(WaitForFrame(Client, Frame));
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
	WorldFM::FClient Client(TestConfig(FSharedServers::Get().Endpoint));
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
	const auto Deadline = FClock::now() + Patience();
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
	WorldFM::FClientConfig Config = TestConfig(FSharedServers::Get().Endpoint);
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

TEST_CASE("heartbeats keep an idle session alive; a stalled client's expired session is restored")
{
	// The "expiring" server forgets a session that sends nothing for ExpiringTimeoutS.
	WorldFM::FClient Client(TestConfig(FSharedServers::Get("expiring").Endpoint));
	Connected(Client);
	REQUIRE(Client.Welcome().ClientTimeoutMs == int(ExpiringTimeoutS * 1000));
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	WorldFM::FFrame Frame;
	const auto RenderAndCheck = [&](double YawDeg) {
		const WorldFM::FRenderRequest Request = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, YawDeg, 0.0}, 90.0});
		Client.SetPose(Request);
		REQUIRE_MESSAGE(WaitForFrame(Client, Frame), "no frame at yaw " << YawDeg);
		CHECK(MaxPoseDifference(Frame.CameraToWorld, Request.CameraToWorld) < 1e-12);
	};

	// Idle but pumping: a ping every heartbeat (200 ms) keeps the session alive for several
	// session lifetimes, pong or no pong.
	const auto IdleUntil = FClock::now() + std::chrono::milliseconds(int(3000 * ExpiringTimeoutS));
	while (FClock::now() < IdleUntil)
	{
		CHECK_FALSE(Client.Pump(50, Frame));
	}
	RenderAndCheck(45.0);
	CHECK(Client.Stats().SceneReopens == 0);

	// Stalled (not pumping, as a paused game thread would): the session and its scene expire.
	// The server looks for idle sessions once a second, so the stall covers the lifetime, that
	// second and as much again.
	std::this_thread::sleep_for(std::chrono::milliseconds(int(1000 * (2 * ExpiringTimeoutS + 2.0))));
	RenderAndCheck(60.0);
	CHECK(Client.Stats().SceneReopens == 1);
	CHECK(Client.State() == WorldFM::EConnectionState::Connected);
}

TEST_CASE("the threaded worker: poses in and frames out without locks on the caller's side")
{
	WorldFM::FClientWorker Worker(TestConfig(FSharedServers::Get().Endpoint));
	std::atomic<bool> Stop{false};
	std::thread Thread([&] { Worker.Run(Stop); });
	Worker.Connect();
	Worker.OpenScene("room", Room());

	const auto Deadline = FClock::now() + Patience();
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
	const FServerAddress& Server = FSharedServers::Get("curve");
	REQUIRE(Server.PublicKey.size() == 40);

	WorldFM::FClientConfig Config = TestConfig(Server.Endpoint);
	Config.CurveServerKey = Server.PublicKey;
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
}

TEST_CASE("an unchanged pose is rendered once; a pose moved beyond the epsilons is rendered again")
{
	WorldFM::FClient Client(TestConfig(FSharedServers::Get().Endpoint));
	Connected(Client);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	WorldFM::FFrame Frame;
	const FUnrealCamera Still{{10.0, 20.0, 150.0}, {-5.0, 30.0, 0.0}, 90.0};

	// A camera at rest, submitted every tick as the engine does: one render, the rest skipped.
	constexpr int Ticks = 50;
	int Frames = 0;
	for (int Tick = 0; Tick < Ticks; ++Tick)
	{
		Client.SetPose(RequestFor(Still));
		Frames += Client.Pump(5, Frame) ? 1 : 0;
	}
	if (Frames == 0)
	{
		REQUIRE(WaitForFrame(Client, Frame));
		++Frames;
	}
	CHECK(Frames == 1);
	CHECK(Client.Stats().RendersSent == 1);
	CHECK(Client.Stats().UnchangedPosesSkipped == uint64_t(Ticks - 1));

	// Jitter below the epsilons (0.05 mm, 0.002 degrees) is still the same view.
	Client.SetPose(RequestFor(FUnrealCamera{{10.005, 20.0, 150.0}, {-5.0, 30.002, 0.0}, 90.0}));
	CHECK_FALSE(Client.Pump(200, Frame));
	CHECK(Client.Stats().RendersSent == 1);

	// One centimetre, or a tenth of a degree, is a new view.
	Client.SetPose(RequestFor(FUnrealCamera{{11.0, 20.0, 150.0}, {-5.0, 30.0, 0.0}, 90.0}));
	REQUIRE(WaitForFrame(Client, Frame));
	Client.SetPose(RequestFor(FUnrealCamera{{11.0, 20.0, 150.0}, {-5.0, 30.1, 0.0}, 90.0}));
	REQUIRE(WaitForFrame(Client, Frame));
	CHECK(Client.Stats().RendersSent == 3);

	// A new scene renders the current pose again, even though it did not move.
	REQUIRE(Client.OpenScene("room again", Room()).IsOk());
	Client.SetPose(RequestFor(FUnrealCamera{{11.0, 20.0, 150.0}, {-5.0, 30.1, 0.0}, 90.0}));
	REQUIRE(WaitForFrame(Client, Frame));
	CHECK(Client.Stats().RendersSent == 4);
}

TEST_CASE("a connected worker whose camera rests uses almost no CPU and sends nothing")
{
	WorldFM::FClientWorker Worker(TestConfig(FSharedServers::Get().Endpoint));
	std::atomic<bool> Stop{false};
	std::thread Thread([&] { Worker.Run(Stop); });
	Worker.Connect();
	Worker.OpenScene("room", Room());
	std::vector<WorldFM::FClientEvent> Events;
	REQUIRE_MESSAGE(WaitForEvent(Worker, WorldFM::FClientEvent::EKind::SceneReady, Events), "the scene never opened");

	// The first submission is rendered; then the camera rests, submitted every 16 ms tick.
	const WorldFM::FRenderRequest Resting = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 15.0, 0.0}, 90.0});
	Worker.SubmitPose(Resting);
	const auto FrameDeadline = FClock::now() + Patience();
	bool Rendered = false;
	while (!(Rendered = Worker.AcquireFrame()) && FClock::now() < FrameDeadline)
	{
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	REQUIRE_MESSAGE(Rendered, "no frame for the first pose");
	std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the worker's stats copy follows its frames

	const uint64_t SentBefore = Worker.Stats().RendersSent;
	CHECK(SentBefore == 1);
	const double CpuBefore = ThreadCpuSeconds(Thread);
	const auto WallBefore = FClock::now();
	const auto Until = WallBefore + std::chrono::seconds(3);
	while (FClock::now() < Until)
	{
		Worker.SubmitPose(Resting);
		std::this_thread::sleep_for(std::chrono::milliseconds(16));
	}
	const double Cpu = ThreadCpuSeconds(Thread) - CpuBefore;
	const double Wall = std::chrono::duration<double>(FClock::now() - WallBefore).count();
	Stop = true;
	Thread.join();

	// Generous: measured about 2 % of a core once the pump stopped spinning (25-41 % before,
	// when the last fraction of each 2 ms slice polled with a zero timeout).
	const double Share = Cpu / Wall;
	MESSAGE("idle worker thread: " << 100.0 * Share << " % of a core over " << Wall << " s");
	CHECK(Share < 0.10);
	CHECK(Worker.Stats().RendersSent == SentBefore);  // a resting camera keeps the server idle
	CHECK(Worker.State() == WorldFM::EConnectionState::Connected);
}
