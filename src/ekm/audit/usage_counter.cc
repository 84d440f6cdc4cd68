#include "ekm/audit/usage_counter.h"

#include <sched.h>

#include "ekm/base/non_blocking_scope.h"

namespace ekm {

namespace {
// The shard of the CPU the caller runs on: two threads running at once never share one, however
// many threads come and go (a thread moved between the call and the lock only costs a wait).
size_t CpuShard(size_t shards) {
  const int cpu = sched_getcpu();  // vDSO: no system call
  return cpu < 0 ? 0 : static_cast<size_t>(cpu) % shards;
}
}  // namespace

std::string_view UsageOutcomeName(UsageOutcome outcome) {
  switch (outcome) {
    case UsageOutcome::kOk:
      return "ok";
    case UsageOutcome::kRefused:
      return "refused";
    case UsageOutcome::kFailed:
      return "failed";
  }
  return "failed";  // not reached: the switch is exhaustive
}

UsageOutcome UsageOutcomeOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return UsageOutcome::kOk;
    // The key was not there to use: what a revocation or an outage answers.
    case StatusCode::kFailedPrecondition:
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kPermissionDenied:
    case StatusCode::kResourceExhausted:
      return UsageOutcome::kRefused;
    default:
      return UsageOutcome::kFailed;
  }
}

namespace {
thread_local UsageCounter::Hold* t_hold = nullptr;  // the innermost Hold of this thread
}  // namespace

UsageCounter::Hold::Hold(UsageCounter* counter) {
  if (!InNonBlockingScope()) return;
  counter_ = counter;
  outer_ = t_hold;
  t_hold = this;
}

UsageCounter::Hold::~Hold() {
  if (counter_ == nullptr) return;
  t_hold = outer_;
  if (BlockingDeferred()) return;
  for (const auto& [k, n] : held_) {
    counter_->Count(std::get<0>(k), std::get<1>(k), std::get<3>(k), std::get<4>(k), std::get<5>(k),
                    std::get<2>(k), n);
  }
}

void UsageCounter::Count(std::string_view workspace, std::string_view environment,
                         std::string_view scope, std::string_view operation, UsageOutcome outcome,
                         int64_t minute, uint64_t n) {
  if (t_hold != nullptr && t_hold->counter_ == this) {
    t_hold->held_.emplace_back(Key{std::string(workspace), std::string(environment), minute,
                                   std::string(scope), std::string(operation), outcome},
                               n);
    return;
  }
  Shard& shard = shards_[CpuShard(kShards)];
  const KeyView view{workspace, environment, minute, scope, operation, outcome};
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.counts.find(view);
  if (it != shard.counts.end()) {
    it->second += n;
    return;
  }
  shard.counts.emplace(Key{std::string(workspace), std::string(environment), minute,
                           std::string(scope), std::string(operation), outcome},
                       n);
}

std::vector<UsageCounter::Row> UsageCounter::Drain() {
  Counts taken;
  for (Shard& shard : shards_) {
    Counts part;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      part.swap(shard.counts);
    }
    if (taken.empty()) {
      taken.swap(part);
      continue;
    }
    for (auto& [k, n] : part) taken[k] += n;
  }
  std::vector<Row> out;
  out.reserve(taken.size());
  for (auto& [k, n] : taken) {
    out.push_back(Row{std::get<0>(k), std::get<1>(k), std::get<3>(k), std::get<4>(k),
                      std::get<5>(k), std::get<2>(k), n});
  }
  return out;
}

}  // namespace ekm
