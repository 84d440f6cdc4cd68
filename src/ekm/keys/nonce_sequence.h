// Nonces for single-form envelopes: 8-byte random prefix | 4-byte counter.
//
// A process leases `count` messages of a DK version from the store (Store::ReserveMessages),
// draws a fresh random prefix for the lease and counts up. Within a lease nonces never repeat;
// across leases (other threads' refills, other ekmd replicas, CLI processes, restarts, a
// restored backup) they differ unless two 64-bit random prefixes collide. With the default
// bound of 2^32 messages per DK version in leases of 2^20, a DK version sees at most 2^12 leases:
// collision probability below 2^-41. The reservation counter enforces the bound on messages per
// DK version. One RAND_bytes per lease instead of per message keeps small messages cheap.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "ekm/base/endian.h"

namespace ekm {

class NonceSequence {
 public:
  NonceSequence(uint64_t prefix, uint32_t count) : prefix_(prefix), count_(count) {}

  // Thread-safe. False when the lease is used up.
  bool Next(std::span<uint8_t, 12> out) {
    uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= count_) return false;
    Format(i, out);
    return true;
  }

  // Thread-safe. Takes up to `n` indices at once, [*first, *end), for one thread to hand out
  // with Format (see DataPathMemos: threads do not then share the counter per message). False
  // when the lease is used up.
  bool Take(uint64_t n, uint64_t* first, uint64_t* end) {
    uint64_t i = next_.fetch_add(n, std::memory_order_relaxed);
    if (i >= count_) return false;
    *first = i;
    *end = i + n < count_ ? i + n : count_;
    return true;
  }

  // The nonce of index i (< count), taken by Next or Take.
  void Format(uint64_t i, std::span<uint8_t, 12> out) const {
    StoreBigEndian64(out.data(), prefix_);
    StoreBigEndian32(out.data() + 8, static_cast<uint32_t>(i));
  }

 private:
  const uint64_t prefix_;
  const uint64_t count_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace ekm
