// A counter that many threads add to without sharing a cache line: each adds to the slot of
// the CPU it runs on (so two running threads never share one, however many threads come and
// go), and Value() sums them. For statistics on hot paths.
#pragma once

#include <sched.h>

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
    const int cpu = sched_getcpu();  // vDSO: no system call
    return cpu < 0 ? 0 : static_cast<size_t>(cpu) % kSlots;
  }

  std::array<Slot, kSlots> slots_;
};

}  // namespace ekm
