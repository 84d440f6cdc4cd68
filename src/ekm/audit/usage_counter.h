// Data-plane usage for the audit log: per-minute counts by workspace, environment, scope,
// operation and outcome, kept in memory (the hot path takes its CPU's shard lock and bumps a
// counter) and drained into `data_plane.usage` records by the service every flush (ekmd: each
// minute; local mode: when the service closes). Not one record per request. Outcomes are
// counted apart so that an auditor can tell data read from attempts refused while the CMK was
// revoked.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "ekm/base/status.h"

namespace ekm {

// Operation names, stable: they are stored.
namespace usage_op {
inline constexpr std::string_view kEncrypt = "encrypt";
inline constexpr std::string_view kDecrypt = "decrypt";
inline constexpr std::string_view kRewrap = "rewrap";
inline constexpr std::string_view kGenerateDataKey = "generate_data_key";
}  // namespace usage_op

// How an operation ended. Names, stable (they are stored): "ok", "refused", "failed".
enum class UsageOutcome : uint8_t {
  kOk,       // done: the data was sealed or opened
  kRefused,  // no key: the CMK refused (revoked, disabled, material deleted) or its KMS was out
             // of reach
  kFailed,   // bad input: does not authenticate (tampered, truncated), another environment's,
             // an unknown data key version
};
std::string_view UsageOutcomeName(UsageOutcome outcome);
// The outcome of an operation that ended with `s`.
UsageOutcome UsageOutcomeOf(const Status& s);

class UsageCounter {
 public:
  using Key = std::tuple<std::string, std::string, int64_t, std::string, std::string, UsageOutcome>;

  // One call per data-plane operation (a batch of n items: n). `minute` is unix seconds / 60.
  void Count(std::string_view workspace, std::string_view environment, std::string_view scope,
             std::string_view operation, UsageOutcome outcome, int64_t minute, uint64_t n = 1);

  // While a Hold lives, this thread's counts to `counter` are kept back, and counted when it
  // ends, unless the thread's NonBlockingScope was deferred by then: a batch that must run
  // again on the blocking pool (base/non_blocking_scope.h) counts its items once, there.
  // Outside a NonBlockingScope a Hold does nothing.
  class Hold {
   public:
    explicit Hold(UsageCounter* counter);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    friend class UsageCounter;
    UsageCounter* counter_ = nullptr;  // null: not holding
    Hold* outer_ = nullptr;
    std::vector<std::pair<Key, uint64_t>> held_;
  };

  struct Row {
    std::string workspace, environment, scope, operation;
    UsageOutcome outcome = UsageOutcome::kOk;
    int64_t minute = 0;
    uint64_t count = 0;
  };
  // Takes every count so far (the current minute's too: a minute may span two flushes, each
  // recording what it saw), ordered by workspace, environment, minute, scope, operation,
  // outcome.
  std::vector<Row> Drain();

 private:
  using KeyView = std::tuple<std::string_view, std::string_view, int64_t, std::string_view,
                             std::string_view, UsageOutcome>;
  // Compares owned keys and views alike, so a count for a key already seen allocates nothing.
  struct Less {
    using is_transparent = void;
    static KeyView View(const Key& k) {
      return {std::get<0>(k), std::get<1>(k), std::get<2>(k),
              std::get<3>(k), std::get<4>(k), std::get<5>(k)};
    }
    static const KeyView& View(const KeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) < View(b);
    }
  };
  using Counts = std::map<Key, uint64_t, Less>;
  // Each CPU counts into its own shard, so data-plane threads do not queue on one lock;
  // Drain sums the shards.
  struct alignas(64) Shard {
    std::mutex mu;
    Counts counts;
  };
  static constexpr size_t kShards = 16;
  std::array<Shard, kShards> shards_;
};

}  // namespace ekm
