// Per-client request rate limits for ekmd: one token bucket per key (the bearer token's id,
// or the remote address without one). Buckets live in shards, each with its own small mutex,
// so concurrent requests of different clients rarely meet; idle buckets (refilled to full)
// are dropped, and each shard holds at most a fixed number, so memory stays bounded whatever
// the clients send.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ekm {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxBucketsPerShard = 8192;

  // `rate` requests per second refill, `burst` the bucket size; rate 0 allows everything.
  RateLimiter(double rate, double burst);

  // 0: allowed (one token taken). Otherwise refused: the whole seconds to wait (>= 1), for
  // Retry-After.
  int64_t Acquire(std::string_view key, Clock::time_point now = Clock::now());

  // The wait Acquire would answer, without taking a token: 0 when a request would pass.
  int64_t Peek(std::string_view key, Clock::time_point now = Clock::now());

  bool enabled() const { return rate_ > 0; }
  size_t BucketCount();  // for tests

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;
    Clock::time_point last_sweep{};
  };
  void Sweep(Shard& shard, Clock::time_point now);

  double rate_;
  double burst_;
  std::chrono::nanoseconds full_after_;  // an untouched bucket is full again after this
  std::array<Shard, kShards> shards_;
};

// The token id in an Authorization header holding an ekm token ("" otherwise).
std::string TokenIdFromAuthorization(std::string_view authorization);

}  // namespace ekm
