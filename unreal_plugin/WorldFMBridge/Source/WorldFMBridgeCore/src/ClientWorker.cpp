#include "WorldFMCore/ClientWorker.h"

namespace WorldFM
{
namespace
{
// How long one Pump() may wait for replies before the worker looks for a newer pose or a
// command again: bounds the pose pick-up delay without spinning.
constexpr int PumpSliceMs = 2;
}  // namespace

FClientWorker::FClientWorker(FClientConfig Config) : Client(std::move(Config))
{
	Client.SetEventSink([this](const FClientEvent& Event) { Report(Event); });
}

FClientWorker::~FClientWorker() = default;

void FClientWorker::Connect() { Enqueue(FCommand{FCommand::EKind::Connect, {}, nullptr}); }

void FClientWorker::OpenScene(std::string Name, std::shared_ptr<const std::vector<FViewUpload>> Views)
{
	Enqueue(FCommand{FCommand::EKind::OpenScene, std::move(Name), std::move(Views)});
}

void FClientWorker::CloseScene() { Enqueue(FCommand{FCommand::EKind::CloseScene, {}, nullptr}); }

void FClientWorker::SubmitPose(const FRenderRequest& Request)
{
	Poses.WriteSlot() = Request;
	Poses.Publish();
}

bool FClientWorker::AcquireFrame() { return Frames.Acquire(); }

const FFrame& FClientWorker::Frame() const { return Frames.ReadSlot(); }

std::vector<FClientEvent> FClientWorker::TakeEvents()
{
	std::lock_guard<std::mutex> Lock(Mutex);
	std::vector<FClientEvent> Out;
	Out.swap(Events);
	return Out;
}

EConnectionState FClientWorker::State() const
{
	return static_cast<EConnectionState>(ConnectionState.load(std::memory_order_relaxed));
}

FClientStats FClientWorker::Stats() const
{
	std::lock_guard<std::mutex> Lock(Mutex);
	return StatsCopy;
}

void FClientWorker::Run(const std::atomic<bool>& StopRequested)
{
	Client.SetCancelFlag(&StopRequested);
	while (!StopRequested.load(std::memory_order_relaxed))
	{
		while (true)
		{
			FCommand Command;
			{
				std::lock_guard<std::mutex> Lock(Mutex);
				if (Commands.empty())
				{
					break;
				}
				Command = std::move(Commands.front());
				Commands.pop_front();
			}
			Execute(Command);
		}
		if (Poses.Acquire())
		{
			Client.SetPose(Poses.ReadSlot());
		}
		if (Client.Pump(PumpSliceMs, Frames.WriteSlot()))
		{
			Frames.Publish();
		}
		ConnectionState.store(static_cast<int>(Client.State()), std::memory_order_relaxed);
		std::lock_guard<std::mutex> Lock(Mutex);
		StatsCopy = Client.Stats();
	}
	Client.SetCancelFlag(nullptr);
}

void FClientWorker::Enqueue(FCommand Command)
{
	std::lock_guard<std::mutex> Lock(Mutex);
	Commands.push_back(std::move(Command));
}

void FClientWorker::Execute(const FCommand& Command)
{
	FStatus Status;
	switch (Command.Kind)
	{
		case FCommand::EKind::Connect:
			Status = Client.Connect();
			break;
		case FCommand::EKind::OpenScene:
		{
			TExpected<FSceneInfo> Info = Client.OpenScene(Command.Name, Command.Views);
			Status = Info ? FStatus::Ok() : Info.Status();
			break;
		}
		case FCommand::EKind::CloseScene:
			Status = Client.CloseScene();
			break;
	}
	// Successes are reported by the client's own events (Connected, SceneReady).
	if (!Status && Status.Code != "version_mismatch")  // a refusal was reported as Refused already
	{
		Report(FClientEvent{FClientEvent::EKind::Error, Status.Message, Status.Code});
	}
}

void FClientWorker::Report(const FClientEvent& Event)
{
	std::lock_guard<std::mutex> Lock(Mutex);
	Events.push_back(Event);
}
}  // namespace WorldFM
