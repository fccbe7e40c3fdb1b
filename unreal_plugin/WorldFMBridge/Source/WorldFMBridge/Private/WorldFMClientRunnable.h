// The worker thread body: runs the core's FClientWorker until asked to stop.
#pragma once

#include "CoreMinimal.h"
#include "HAL/Runnable.h"
#include "WorldFMCore/ClientWorker.h"

#include <atomic>

class FWorldFMClientRunnable final : public FRunnable
{
public:
	explicit FWorldFMClientRunnable(WorldFM::FClientWorker& InWorker) : Worker(InWorker) {}

	virtual uint32 Run() override
	{
		Worker.Run(StopRequested);
		return 0;
	}

	/** Called by FRunnableThread::Kill and by the subsystem; blocking waits end within ~50 ms. */
	virtual void Stop() override { StopRequested.store(true); }

private:
	WorldFM::FClientWorker& Worker;
	std::atomic<bool> StopRequested{false};
};
