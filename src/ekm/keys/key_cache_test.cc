#include "ekm/keys/key_cache.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

using std::chrono::seconds;
using TP = std::chrono::steady_clock::time_point;

TEST(KeyCacheTest, ExpiresAtTheGivenTime) {
  KeyCache<int> cache(10);
  TP t0{};
  cache.Put("a", std::make_shared<int>(1), t0 + seconds(300));
  ASSERT_NE(cache.Get("a", t0 + seconds(299)), nullptr);
  EXPECT_EQ(cache.Get("a", t0 + seconds(300)), nullptr);
  EXPECT_EQ(cache.size(), 0u);  // expired entries are dropped
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
}

TEST(KeyCacheTest, EvictsLeastRecentlyUsed) {
  KeyCache<int> cache(2);
  TP t0{};
  TP far = t0 + seconds(1000);
  cache.Put("a", std::make_shared<int>(1), far);
  cache.Put("b", std::make_shared<int>(2), far);
  ASSERT_NE(cache.Get("a", t0), nullptr);  // a is now the most recent
  cache.Put("c", std::make_shared<int>(3), far);
  EXPECT_NE(cache.Get("a", t0), nullptr);
  EXPECT_EQ(cache.Get("b", t0), nullptr);
  EXPECT_NE(cache.Get("c", t0), nullptr);
}

TEST(KeyCacheTest, EvictedValueLivesWhileInUse) {
  KeyCache<int> cache(1);
  TP t0{};
  cache.Put("a", std::make_shared<int>(7), t0 + seconds(10));
  auto held = cache.Get("a", t0);
  cache.Put("b", std::make_shared<int>(8), t0 + seconds(10));
  EXPECT_EQ(cache.Get("a", t0), nullptr);
  EXPECT_EQ(*held, 7);
}

}  // namespace
}  // namespace ekm
