#include "ekm/audit/usage_counter.h"

#include <atomic>

namespace ekm {

namespace {
size_t ThreadShard(size_t shards) {
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed);
  return shard % shards;
}
}  // namespace

void UsageCounter::Count(std::string_view workspace, std::string_view environment,
                         std::string_view scope, std::string_view operation, int64_t minute,
                         uint64_t n) {
  Shard& shard = shards_[ThreadShard(kShards)];
  const KeyView view{workspace, environment, minute, scope, operation};
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.counts.find(view);
  if (it != shard.counts.end()) {
    it->second += n;
    return;
  }
  shard.counts.emplace(Key{std::string(workspace), std::string(environment), minute,
                           std::string(scope), std::string(operation)},
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
                      std::get<2>(k), n});
  }
  return out;
}

}  // namespace ekm
