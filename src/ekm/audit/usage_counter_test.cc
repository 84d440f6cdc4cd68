#include "ekm/audit/usage_counter.h"

#include <gtest/gtest.h>

#include <thread>

namespace ekm {
namespace {

constexpr auto kOk = UsageOutcome::kOk;

TEST(UsageCounter, CountsPerMinuteEnvironmentScopeAndOperation) {
  UsageCounter c;
  c.Count("acme", "prod", "default", usage_op::kEncrypt, kOk, 100);
  c.Count("acme", "prod", "default", usage_op::kEncrypt, kOk, 100);
  c.Count("acme", "prod", "default", usage_op::kDecrypt, kOk, 100);
  c.Count("acme", "prod", "billing", usage_op::kEncrypt, kOk, 100, 5);
  c.Count("acme", "prod", "default", usage_op::kEncrypt, kOk, 101);
  auto rows = c.Drain();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].scope, "billing");
  EXPECT_EQ(rows[0].count, 5u);
  EXPECT_EQ(rows[1].operation, "decrypt");
  EXPECT_EQ(rows[2].count, 2u);
  EXPECT_EQ(rows[3].minute, 101);
  EXPECT_TRUE(c.Drain().empty());
}

TEST(UsageCounter, ConcurrentCountsAreAllKept) {
  UsageCounter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 1000; ++i) c.Count("acme", "prod", "default", "encrypt", kOk, 7);
    });
  }
  for (auto& t : threads) t.join();
  auto rows = c.Drain();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].count, 4000u);
}

// Issue 12: a decrypt refused while the CMK is revoked, or one that does not authenticate, is
// not a decrypt done: outcomes are counted apart.
TEST(UsageCounter, OutcomesAreCountedApart) {
  UsageCounter c;
  c.Count("acme", "prod", "default", usage_op::kDecrypt, kOk, 7);
  c.Count("acme", "prod", "default", usage_op::kDecrypt, UsageOutcome::kRefused, 7, 3);
  c.Count("acme", "prod", "default", usage_op::kDecrypt, UsageOutcome::kFailed, 7);
  auto rows = c.Drain();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].outcome, kOk);
  EXPECT_EQ(rows[0].count, 1u);
  EXPECT_EQ(rows[1].outcome, UsageOutcome::kRefused);
  EXPECT_EQ(rows[1].count, 3u);
  EXPECT_EQ(UsageOutcomeName(rows[2].outcome), "failed");
}

TEST(UsageCounter, TheOutcomeOfAStatus) {
  EXPECT_EQ(UsageOutcomeOf(Status::Ok()), kOk);
  // No key to use: the CMK refused (revoked, disabled, material deleted) or its KMS is out of
  // reach.
  for (StatusCode code : {StatusCode::kFailedPrecondition, StatusCode::kUnavailable,
                          StatusCode::kDeadlineExceeded, StatusCode::kPermissionDenied}) {
    EXPECT_EQ(UsageOutcomeOf(Status(code, "x")), UsageOutcome::kRefused) << StatusCodeName(code);
  }
  // Bad input: tampered or truncated, another environment's, an unknown DK version.
  for (StatusCode code :
       {StatusCode::kDataLoss, StatusCode::kInvalidArgument, StatusCode::kNotFound}) {
    EXPECT_EQ(UsageOutcomeOf(Status(code, "x")), UsageOutcome::kFailed) << StatusCodeName(code);
  }
  EXPECT_EQ(UsageOutcomeName(UsageOutcome::kOk), "ok");
  EXPECT_EQ(UsageOutcomeName(UsageOutcome::kRefused), "refused");
}

}  // namespace
}  // namespace ekm
