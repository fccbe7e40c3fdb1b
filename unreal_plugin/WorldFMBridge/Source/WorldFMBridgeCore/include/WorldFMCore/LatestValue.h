// A single-producer / single-consumer "latest value" slot (a triple buffer).
//
// The network worker writes frames; the engine (game or render thread) reads the newest
// one every tick. Neither side ever blocks or takes a lock: three slots rotate through
// the roles "being written", "newest published" and "being read", and only the index
// of the middle slot is shared, through one atomic. A reader that is slower than the
// writer simply skips frames (latest wins); a reader that is faster sees the same frame
// again and Acquire() reports that nothing new arrived.
//
// Slots are reused, so a T holding std::vector buffers stops allocating once every slot
// has grown to the frame size.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace WorldFM
{
template <typename T>
class TLatestValue
{
public:
	TLatestValue() = default;
	TLatestValue(const TLatestValue&) = delete;
	TLatestValue& operator=(const TLatestValue&) = delete;

	/** Producer only: the slot to fill next. Its contents are whatever was there before. */
	T& WriteSlot() { return Slots[WriteIndex]; }

	/** Producer only: make the filled write slot the newest value, and take a free slot. */
	void Publish()
	{
		const uint8_t Previous = Shared.exchange(static_cast<uint8_t>(WriteIndex | FreshBit), std::memory_order_acq_rel);
		WriteIndex = Previous & IndexMask;
	}

	/**
	 * Consumer only: move to the newest published value if there is one.
	 * Returns true when ReadSlot() now holds a value it did not hold before.
	 */
	bool Acquire()
	{
		if ((Shared.load(std::memory_order_relaxed) & FreshBit) == 0)
		{
			return false;
		}
		const uint8_t Previous = Shared.exchange(ReadIndex, std::memory_order_acq_rel);
		ReadIndex = Previous & IndexMask;
		return true;
	}

	/** Consumer only: the value last acquired (default-constructed before the first). */
	const T& ReadSlot() const { return Slots[ReadIndex]; }

private:
	static constexpr uint8_t IndexMask = 0x3;
	static constexpr uint8_t FreshBit = 0x4;

	std::array<T, 3> Slots{};
	uint8_t WriteIndex = 0;          // producer's private slot
	std::atomic<uint8_t> Shared{1};  // middle slot index | FreshBit when unread
	uint8_t ReadIndex = 2;           // consumer's private slot
};
}  // namespace WorldFM
