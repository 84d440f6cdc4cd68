// Nonces for single-form envelopes: 8-byte random prefix | 4-byte message index.
//
// A process leases `count` messages of a DK version from the store (Store::ReserveMessages, an
// atomic conditional increment of the DK's messages_reserved): the lease is the messages
// [first, first + count) of that DK version, and no other lease, thread, ekmd replica or CLI
// process is ever given the same indexes. The index of each message is the nonce's last 4
// bytes, so nonces under one DK version are unique by construction, however many leases there
// are (the CLI leases 16 messages at a time, up to 2^28 leases per DK version). The message
// bound per DK version (at most 2^32, enforced by the reservation) keeps the index within 4
// bytes.
//
// The random prefix (one RAND_bytes per lease) is for the one case the store's counter cannot
// cover: a store restored from a backup, which hands out indexes again. A nonce then repeats
// only if a re-issued index gets the same 64-bit prefix as its first issue: at most 2^-64 per
// message issued twice (docs/format.md §3).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "ekm/base/endian.h"

namespace ekm {

class NonceSequence {
 public:
  // The lease of `count` messages starting at message index `first` (first + count <= 2^32).
  NonceSequence(uint64_t prefix, uint32_t count, uint32_t first = 0)
      : prefix_(prefix), count_(count), first_(first) {}

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

  // The nonce of the lease's i-th message (i < count), taken by Next or Take: the prefix, then
  // the message's index in the DK version.
  void Format(uint64_t i, std::span<uint8_t, 12> out) const {
    StoreBigEndian64(out.data(), prefix_);
    StoreBigEndian32(out.data() + 8, static_cast<uint32_t>(first_ + i));
  }

 private:
  const uint64_t prefix_;
  const uint64_t count_;
  const uint64_t first_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace ekm
