#include "ekm/audit/usage_counter.h"

namespace ekm {

void UsageCounter::Count(std::string_view workspace, std::string_view environment,
                         std::string_view scope, std::string_view operation, int64_t minute,
                         uint64_t n) {
  Key key{std::string(workspace), std::string(environment), minute, std::string(scope),
          std::string(operation)};
  std::lock_guard<std::mutex> lock(mu_);
  counts_[std::move(key)] += n;
}

std::vector<UsageCounter::Row> UsageCounter::Drain() {
  std::map<Key, uint64_t> taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    taken.swap(counts_);
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
