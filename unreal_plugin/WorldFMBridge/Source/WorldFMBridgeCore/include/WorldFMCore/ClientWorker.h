// FClient on a thread of its own, with an engine-friendly surface.
//
// The engine's game thread submits the newest camera pose every tick and its render
// thread picks up the newest frame; both are lock-free (TLatestValue), so a slow network
// or a slow server never stalls a frame. Rare commands (connect, open a scene) and the
// events coming back (connected, errors) go through small mutex-protected queues.
//
// The worker does not own a thread: Run() is the thread body. Tests run it on a
// std::thread; the Unreal plugin runs it inside an FRunnable.
#pragma once

#include "WorldFMCore/Client.h"
#include "WorldFMCore/Export.h"
#include "WorldFMCore/LatestValue.h"

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace WorldFM
{
class WORLDFM_CORE_API FClientWorker
{
public:
	explicit FClientWorker(FClientConfig Config);
	~FClientWorker();

	// ---- any thread: commands, carried out in order on the worker thread
	void Connect();
	void OpenScene(std::string Name, std::shared_ptr<const std::vector<FViewUpload>> Views);
	void CloseScene();

	// ---- one producer thread (the game thread): the newest pose, lock-free
	void SubmitPose(const FRenderRequest& Request);

	// ---- one consumer thread (game or render thread): the newest frame, lock-free
	/** True when a frame newer than the last acquired one is now in Frame(). */
	bool AcquireFrame();
	const FFrame& Frame() const;

	// ---- any thread: what happened, and how things stand
	std::vector<FClientEvent> TakeEvents();
	EConnectionState State() const;
	FClientStats Stats() const;

	// ---- the worker thread
	/** Run until StopRequested becomes true; blocking calls inside give up promptly then. */
	void Run(const std::atomic<bool>& StopRequested);

private:
	struct FCommand
	{
		enum class EKind
		{
			Connect,
			OpenScene,
			CloseScene
		} Kind;
		std::string Name;
		std::shared_ptr<const std::vector<FViewUpload>> Views;
	};

	void Enqueue(FCommand Command);
	void Execute(const FCommand& Command);
	void Report(const FClientEvent& Event);

	FClient Client;
	TLatestValue<FRenderRequest> Poses;
	TLatestValue<FFrame> Frames;
	std::atomic<int> ConnectionState{static_cast<int>(EConnectionState::Disconnected)};

	mutable std::mutex Mutex;  // guards the three members below
	std::deque<FCommand> Commands;
	std::vector<FClientEvent> Events;
	FClientStats StatsCopy;
};
}  // namespace WorldFM
