// The client core against a server that is not there yet, then crashes and comes back:
// the tests that start and kill their own server processes (tests/unreal_plugin/live_server.py).
// One test, two server starts: Python's start-up is the slow part on a loaded machine.
#include "WorldFMCore/Client.h"

#include "LiveTestSupport.h"

#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace
{
using namespace WorldFMTest;

bool SawSceneReopened(const std::vector<WorldFM::FClientEvent>& Events)
{
	for (const auto& Event : Events)
	{
		if (Event.Kind == WorldFM::FClientEvent::EKind::SceneReady && Event.Message.find("re-opened") != std::string::npos)
		{
			return true;
		}
	}
	return false;
}
}  // namespace

TEST_CASE("a client started before its server connects when it comes up, and survives its crash and restart")
{
	// Before the server: Connect fails with a message saying what to do, and Pump keeps trying.
	const std::string Endpoint = FreeEndpoint();
	WorldFM::FClientConfig Config = TestConfig(Endpoint);
	Config.RequestTimeoutMs = 500;
	Config.ConnectAttempts = 1;
	std::vector<WorldFM::FClientEvent> Events;
	WorldFM::FClient Client(Config);
	Client.SetEventSink([&](const WorldFM::FClientEvent& Event) { Events.push_back(Event); });
	const WorldFM::FStatus Status = Client.Connect();
	CHECK_FALSE(Status.IsOk());
	CHECK(Status.Message.find("worldfm serve") != std::string::npos);
	CHECK(Client.State() == WorldFM::EConnectionState::Disconnected);

	auto Server = std::make_unique<FServerProcess>(std::vector<std::string>{"--bind", Endpoint});
	WorldFM::FFrame Frame;
	const auto Deadline = FClock::now() + Patience();
	while (Client.State() != WorldFM::EConnectionState::Connected && FClock::now() < Deadline)
	{
		Client.Pump(50, Frame);
	}
	REQUIRE(Client.State() == WorldFM::EConnectionState::Connected);
	CHECK(Client.Stats().Reconnects >= 1);
	REQUIRE(Client.OpenScene("room", Room()).IsOk());
	const std::string FirstScene = Client.SceneId();
	Client.SetPose(RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 10.0, 0.0}, 90.0}));
	REQUIRE(WaitForFrame(Client, Frame));

	// A crash: no goodbye, the session and scene die with it; a new server on the same port.
	Server->Stop(SIGKILL);
	Server = std::make_unique<FServerProcess>(std::vector<std::string>{"--bind", Endpoint});

	const WorldFM::FRenderRequest After = RequestFor(FUnrealCamera{{0.0, 0.0, 150.0}, {0.0, 30.0, 0.0}, 90.0});
	Client.SetPose(After);
	REQUIRE_MESSAGE(WaitForFrame(Client, Frame), "no frame after the restart");
	CHECK(MaxPoseDifference(Frame.CameraToWorld, After.CameraToWorld) < 1e-12);
	CHECK(Frame.Pixels.size() == size_t(FrameWidth) * FrameHeight * 3);
	CHECK(Client.State() == WorldFM::EConnectionState::Connected);
	CHECK(Client.Stats().SceneReopens == 1);
	CHECK(Client.SceneId() != FirstScene);
	CHECK(SawSceneReopened(Events));
}
