// Per-thread memos of the data path's key lookups, so that threads serving the same
// environment and scope do not meet on a shared lock or reference count for every message.
//
// The slow path (environment record, shred status, DK from the key cache) runs once per thread
// and (workspace, environment, scope, DK version); its result is kept in that thread's block
// and reused while:
//   - the generation is unchanged: every KeyCache of the hierarchy and the service bumps it on
//     any change (a put, an erase, an expiry, an eviction), so no memo outlives a change of
//     what it remembers;
//   - `valid_until_ns` (monotonic) has not passed: the earliest expiry of the cached records
//     the slow path read;
//   - the DK is still usable (its EK entry's valid-until: a revocation ends it at once).
// A memo holds a reference to its DK. DropAll() clears every thread's memos, releasing those
// references: the key hierarchy calls it wherever it drops keys (revocation, shredding, purges
// of expired keys), so memos never keep a dropped key in memory (SecretBytes wipes it when the
// last reference goes).
//
// Each block has its own mutex, taken by its thread on every use (uncontended, on the thread's
// own cache line) and by DropAll. Nonces come to each memo in blocks (NonceBlock), so threads do
// not share one counter either.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ekm/keys/nonce_sequence.h"
#include "ekm/store/store.h"

namespace ekm {

struct DataKeyHandle;

// A run of nonces taken from a NonceSequence at once, for one thread.
struct NonceBlock {
  NonceSequence* sequence = nullptr;
  uint64_t next = 0;
  uint64_t end = 0;

  bool Next(std::span<uint8_t, 12> out) {
    if (next >= end) return false;
    sequence->Format(next++, out);
    return true;
  }
};

class DataPathMemos {
 public:
  struct Entry {
    uint64_t generation = 0;  // 0: empty
    int64_t valid_until_ns = 0;
    std::string workspace, environment, scope;
    uint32_t version = 0;  // 0: the scope's current DK (encrypt); else that version (decrypt)
    EnvironmentRecord env;
    std::shared_ptr<DataKeyHandle> dk;
    NonceBlock nonces;  // current-DK memos only
  };

  static constexpr size_t kEntriesPerThread = 8;

  struct alignas(64) Block {
    std::thread::id owner;
    std::mutex mu;
    std::array<Entry, kEntriesPerThread> entries;
    size_t next_victim = 0;

    // The memo for exactly these names and version, if its generation is `generation` and it
    // is valid at `now_ns`; nullptr otherwise.
    Entry* Find(uint64_t generation, int64_t now_ns, std::string_view workspace,
                std::string_view environment, std::string_view scope, uint32_t version) {
      for (Entry& e : entries) {
        if (e.generation == generation && e.version == version && now_ns < e.valid_until_ns &&
            e.scope == scope && e.environment == environment && e.workspace == workspace) {
          return &e;
        }
      }
      return nullptr;
    }
    // A slot for a new memo (the oldest one, round-robin), cleared.
    Entry& Slot() {
      Entry& e = entries[next_victim];
      next_victim = (next_victim + 1) % entries.size();
      e = Entry{};
      return e;
    }
  };

  DataPathMemos();
  DataPathMemos(const DataPathMemos&) = delete;
  DataPathMemos& operator=(const DataPathMemos&) = delete;

  // The calling thread's block, locked for the caller.
  std::unique_lock<std::mutex> Lock(Block** block);

  // Clears every thread's memos (and so releases their keys).
  void DropAll();

  // Bumped by every change of a cache the memos remember from.
  std::atomic<uint64_t>& generation() { return generation_; }
  uint64_t current_generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  Block* Register();

  const uint64_t id_;  // unique in the process, never reused (threads key their blocks on it)
  std::atomic<uint64_t> generation_{1};
  std::mutex mu_;
  std::vector<std::unique_ptr<Block>> blocks_;
};

}  // namespace ekm
