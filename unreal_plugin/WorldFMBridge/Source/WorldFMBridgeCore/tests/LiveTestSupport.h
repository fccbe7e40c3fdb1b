// What the live-server tests (TestLiveServer.cpp, TestLiveRestart.cpp) share: the client
// configuration, the procedural room as a scene, requests from Unreal cameras, and waits
// that end when what they wait for happens (ServerProcess.h's Patience() is only a hang guard).
#pragma once

#include "WorldFMCore/Client.h"

#include "ProceduralRoom.h"
#include "ServerProcess.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace WorldFMTest
{
using FClock = std::chrono::steady_clock;

inline constexpr int ViewWidth = 80, ViewHeight = 60;
inline constexpr int FrameWidth = 64, FrameHeight = 48;

inline WorldFM::FClientConfig TestConfig(const std::string& Endpoint)
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

inline std::shared_ptr<const std::vector<WorldFM::FViewUpload>> Room()
{
	static const auto Views = std::make_shared<const std::vector<WorldFM::FViewUpload>>(RoomViews(ViewWidth, ViewHeight));
	return Views;
}

inline WorldFM::FRenderRequest RequestFor(const FUnrealCamera& Camera)
{
	WorldFM::FRenderRequest Request;
	Request.CameraToWorld = PoseOf(Camera);
	Request.K = IntrinsicsOf(Camera, FrameWidth, FrameHeight);
	Request.Size = std::make_pair(FrameWidth, FrameHeight);
	return Request;
}

/** Pump until a frame arrives (true) or the hang guard runs out (false). */
inline bool WaitForFrame(WorldFM::FClient& Client, WorldFM::FFrame& Frame)
{
	const auto Deadline = FClock::now() + Patience();
	while (FClock::now() < Deadline)
	{
		if (Client.Pump(50, Frame))
		{
			return true;
		}
	}
	return false;
}

inline double MaxPoseDifference(const WorldFM::FMat4& A, const WorldFM::FMat4& B)
{
	double Worst = 0.0;
	for (size_t I = 0; I < 16; ++I)
	{
		Worst = std::max(Worst, std::abs(A[I] - B[I]));
	}
	return Worst;
}

inline WorldFM::FClient& Connected(WorldFM::FClient& Client)
{
	const WorldFM::FStatus Status = Client.Connect();
	REQUIRE_MESSAGE(Status.IsOk(), Status.Message);
	return Client;
}
}  // namespace WorldFMTest
