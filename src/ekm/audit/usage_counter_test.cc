#include "ekm/audit/usage_counter.h"

#include <gtest/gtest.h>

#include <thread>

namespace ekm {
namespace {

TEST(UsageCounter, CountsPerMinuteEnvironmentScopeAndOperation) {
  UsageCounter c;
  c.Count("acme", "prod", "default", usage_op::kEncrypt, 100);
  c.Count("acme", "prod", "default", usage_op::kEncrypt, 100);
  c.Count("acme", "prod", "default", usage_op::kDecrypt, 100);
  c.Count("acme", "prod", "billing", usage_op::kEncrypt, 100, 5);
  c.Count("acme", "prod", "default", usage_op::kEncrypt, 101);
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
      for (int i = 0; i < 1000; ++i) c.Count("acme", "prod", "default", "encrypt", 7);
    });
  }
  for (auto& t : threads) t.join();
  auto rows = c.Drain();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].count, 4000u);
}

}  // namespace
}  // namespace ekm
