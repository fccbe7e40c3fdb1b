// TLatestValue under a real producer/consumer race: the reader must never see a torn
// value (half of one frame, half of another), must see values in publish order, and must
// end up with the last one published.
#include "WorldFMCore/LatestValue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace
{
struct FStamped
{
	uint64_t Sequence = 0;
	std::vector<uint64_t> Payload;  // every element == Sequence when consistent
};
}  // namespace

TEST_CASE("a single thread sees only published values, newest first")
{
	WorldFM::TLatestValue<int> Latest;
	CHECK_FALSE(Latest.Acquire());
	Latest.WriteSlot() = 1;
	Latest.Publish();
	Latest.WriteSlot() = 2;
	CHECK(Latest.Acquire());
	CHECK(Latest.ReadSlot() == 1);  // 2 was written but not published
	CHECK_FALSE(Latest.Acquire());
	Latest.Publish();
	Latest.WriteSlot() = 3;
	Latest.Publish();
	CHECK(Latest.Acquire());
	CHECK(Latest.ReadSlot() == 3);  // 2 was overtaken: latest wins
	CHECK_FALSE(Latest.Acquire());
	CHECK(Latest.ReadSlot() == 3);
}

TEST_CASE("concurrent producer and consumer never tear or reorder values")
{
	// The producer keeps publishing until the consumer has acquired enough values to make
	// the race meaningful. It yields now and then so the two threads interleave even when
	// they share one busy core; the deadline only stops a broken buffer from hanging.
	constexpr uint64_t WantAcquired = 1000;
	const auto Deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
	constexpr size_t PayloadSize = 256;
	WorldFM::TLatestValue<FStamped> Latest;
	std::atomic<bool> ConsumerReady{false}, Done{false};
	std::atomic<uint64_t> Acquired{0};
	uint64_t Published = 0;

	std::thread Producer([&] {
		while (!ConsumerReady.load(std::memory_order_acquire))
		{
			std::this_thread::yield();
		}
		while (Acquired.load(std::memory_order_relaxed) < WantAcquired && std::chrono::steady_clock::now() < Deadline)
		{
			FStamped& Slot = Latest.WriteSlot();
			++Published;
			Slot.Sequence = Published;
			Slot.Payload.assign(PayloadSize, Published);
			Latest.Publish();
			if (Published % 64 == 0)
			{
				std::this_thread::yield();
			}
		}
		Done.store(true, std::memory_order_release);
	});

	uint64_t LastSeen = 0, Torn = 0, Reordered = 0;
	auto Check = [&] {
		const FStamped& Value = Latest.ReadSlot();
		Acquired.fetch_add(1, std::memory_order_relaxed);
		Reordered += Value.Sequence <= LastSeen;
		for (uint64_t Element : Value.Payload)
		{
			Torn += Element != Value.Sequence;
		}
		LastSeen = Value.Sequence;
	};
	ConsumerReady.store(true, std::memory_order_release);
	while (!Done.load(std::memory_order_acquire))
	{
		if (Latest.Acquire())
		{
			Check();
		}
	}
	Producer.join();
	if (Latest.Acquire())
	{
		Check();
	}

	CHECK(Torn == 0);
	CHECK(Reordered == 0);
	CHECK(LastSeen == Published);  // the consumer ends on the newest value
	CHECK(Acquired.load() >= WantAcquired);
	MESSAGE("consumer acquired " << Acquired.load() << " of " << Published << " published values");
}
