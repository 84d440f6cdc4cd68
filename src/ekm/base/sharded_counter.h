// A counter that many threads add to without sharing a cache line: each thread adds to its own
// slot (threads are spread over kSlots), and Value() sums them. For statistics on hot paths.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ekm {

class ShardedCounter {
 public:
  void Add(uint64_t n = 1) { slots_[ThreadSlot()].value.fetch_add(n, std::memory_order_relaxed); }

  uint64_t Value() const {
    uint64_t sum = 0;
    for (const Slot& s : slots_) sum += s.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr size_t kSlots = 16;
  struct alignas(64) Slot {
    std::atomic<uint64_t> value{0};
  };

  static size_t ThreadSlot() {
    static std::atomic<size_t> next{0};
    thread_local const size_t slot = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    return slot;
  }

  std::array<Slot, kSlots> slots_;
};

}  // namespace ekm
