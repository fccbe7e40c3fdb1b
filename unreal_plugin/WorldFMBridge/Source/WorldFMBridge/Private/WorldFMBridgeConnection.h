// The core's FClientWorker on an Unreal worker thread (FRunnable). Creating a connection
// starts the thread; destroying it stops the thread (blocking waits inside end within ~50 ms).
#pragma once

#include "CoreMinimal.h"
#include "HAL/Runnable.h"
#include "HAL/RunnableThread.h"
#include "WorldFMCore/ClientWorker.h"

#include <atomic>

class FWorldFMBridgeConnection final : public FRunnable
{
public:
	explicit FWorldFMBridgeConnection(const WorldFM::FClientConfig& Config) : Worker(Config)
	{
		Thread = FRunnableThread::Create(this, TEXT("WorldFMBridgeClient"), 0, TPri_Normal);
	}

	virtual ~FWorldFMBridgeConnection() override
	{
		if (Thread)
		{
			Stop();
			Thread->WaitForCompletion();
			delete Thread;
		}
	}

	virtual uint32 Run() override
	{
		Worker.Run(StopRequested);
		return 0;
	}

	/** Also called by FRunnableThread::Kill. */
	virtual void Stop() override { StopRequested.store(true); }

	/** Commands and poses in, frames and events out; see WorldFMCore/ClientWorker.h for which thread may call what. */
	WorldFM::FClientWorker Worker;

private:
	std::atomic<bool> StopRequested{false};
	FRunnableThread* Thread = nullptr;
};
