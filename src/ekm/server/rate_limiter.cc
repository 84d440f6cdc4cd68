#include "ekm/server/rate_limiter.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>

namespace ekm {

RateLimiter::RateLimiter(double rate, double burst) : rate_(rate), burst_(std::max(1.0, burst)) {
  full_after_ = rate_ > 0 ? std::chrono::nanoseconds(static_cast<int64_t>(burst_ / rate_ * 1e9))
                          : std::chrono::nanoseconds(0);
}

void RateLimiter::Sweep(Shard& shard, Clock::time_point now) {
  shard.last_sweep = now;
  // A bucket idle long enough to be full is the same as no bucket.
  std::erase_if(shard.buckets, [&](const auto& kv) { return now - kv.second.last >= full_after_; });
}

int64_t RateLimiter::Peek(std::string_view key, Clock::time_point now) {
  if (rate_ <= 0) return 0;
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) return 0;  // a new bucket starts full
  const Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  const double tokens = std::min(burst_, b.tokens + std::max(0.0, elapsed) * rate_);
  if (tokens >= 1) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1 - tokens) / rate_)));
}

int64_t RateLimiter::Acquire(std::string_view key, Clock::time_point now) {
  if (rate_ <= 0) return 0;
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  if (now - shard.last_sweep >=
      std::max(full_after_, std::chrono::nanoseconds(std::chrono::seconds(10)))) {
    Sweep(shard, now);
  }
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= kMaxBucketsPerShard) {
      // A flood of new keys: sweep at most once a second, not once per request.
      if (now - shard.last_sweep >= std::chrono::seconds(1)) Sweep(shard, now);
      // Still full: more active clients than the cap. Forget one bucket at random rather than
      // grow: that client gets a fresh burst, the memory stays bounded.
      if (shard.buckets.size() >= kMaxBucketsPerShard) shard.buckets.erase(shard.buckets.begin());
    }
    it = shard.buckets.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::chrono::duration<double>(now - b.last).count();
  if (elapsed > 0) {
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.last = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1 - b.tokens) / rate_)));
}

size_t RateLimiter::BucketCount() {
  size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

std::string TokenIdFromAuthorization(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() < kBearer.size()) return "";
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kBearer[i]))) {
      return "";
    }
  }
  std::string_view token = authorization.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  // ekm_<16 hex>_<secret>
  if (token.size() < 4 + 16 + 1 || token.substr(0, 4) != "ekm_" || token[20] != '_') return "";
  std::string_view id = token.substr(4, 16);
  for (char c : id) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return "";
  }
  return std::string(id);
}

}  // namespace ekm
