#include "ekm/server/rate_limiter.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimiterTest, BurstThenRefusedWithRetryAfterThenRecovers) {
  RateLimiter limiter(2, 3);  // 2/s, bursts of 3
  auto t0 = RateLimiter::Clock::time_point{} + seconds(1000);
  EXPECT_EQ(limiter.Acquire("token:a", t0), 0);
  EXPECT_EQ(limiter.Acquire("token:a", t0), 0);
  EXPECT_EQ(limiter.Acquire("token:a", t0), 0);
  EXPECT_EQ(limiter.Acquire("token:a", t0), 1);  // empty: one token in 0.5 s, rounded up
  EXPECT_EQ(limiter.Acquire("token:b", t0), 0);  // another client has its own bucket
  EXPECT_EQ(limiter.Acquire("token:a", t0 + milliseconds(600)), 0);
  EXPECT_GE(limiter.Acquire("token:a", t0 + milliseconds(600)), 1);
}

TEST(RateLimiterTest, ZeroRateIsOff) {
  RateLimiter limiter(0, 0);
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(limiter.Acquire("x"), 0);
  EXPECT_EQ(limiter.BucketCount(), 0u);
}

TEST(RateLimiterTest, IdleBucketsAreDroppedAndMemoryIsBounded) {
  RateLimiter limiter(100, 100);  // full again after 1 s
  auto t0 = RateLimiter::Clock::time_point{} + seconds(1000);
  for (int i = 0; i < 1000; ++i) limiter.Acquire("addr:" + std::to_string(i), t0);
  EXPECT_EQ(limiter.BucketCount(), 1000u);
  // After they are all full again, the next sweep (every 10 s at most) drops them.
  for (int i = 0; i < 64; ++i) limiter.Acquire("later:" + std::to_string(i), t0 + seconds(11));
  EXPECT_LE(limiter.BucketCount(), 64u);
  // Many more clients than the cap, all at once: never more than the cap.
  for (size_t i = 0; i < RateLimiter::kShards * RateLimiter::kMaxBucketsPerShard + 5000; ++i) {
    limiter.Acquire("flood:" + std::to_string(i), t0 + seconds(20));
  }
  EXPECT_LE(limiter.BucketCount(), RateLimiter::kShards * RateLimiter::kMaxBucketsPerShard);
}

TEST(RateLimiterTest, TheTokenIdIsReadFromAnEkmBearerTokenOnly) {
  const std::string token = "ekm_0123456789abcdef_" + std::string(43, 'A');
  EXPECT_EQ(TokenIdFromAuthorization("bearer " + token), "0123456789abcdef");
  EXPECT_EQ(TokenIdFromAuthorization("Bearer placeholder"), "");
  EXPECT_EQ(TokenIdFromAuthorization(""), "");
  EXPECT_EQ(TokenIdFromAuthorization("Bearer ekm_0123456789abcdeg_x"), "");
  EXPECT_EQ(TokenIdFromAuthorization("Basic ekm_0123456789abcdef_x"), "");
}

}  // namespace
}  // namespace ekm
