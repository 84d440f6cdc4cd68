// KeyCache::ErasePrefix (crypto-shredding drops one environment's keys at once).
#include <gtest/gtest.h>

#include "ekm/keys/key_cache.h"

namespace ekm {
namespace {

TEST(KeyCacheErasePrefix, DropsOnlyTheEntriesUnderThePrefix) {
  KeyCache<int> cache(10);
  auto later = std::chrono::steady_clock::time_point(std::chrono::hours(1));
  auto now = std::chrono::steady_clock::time_point(std::chrono::seconds(1));
  cache.Put("7/1", std::make_shared<int>(1), later);
  cache.Put("7/orders#1", std::make_shared<int>(2), later);
  cache.Put("71/1", std::make_shared<int>(3), later);  // another environment id
  cache.Put("8/1", std::make_shared<int>(4), later);
  cache.ErasePrefix("7/");
  EXPECT_EQ(cache.Get("7/1", now), nullptr);
  EXPECT_EQ(cache.Get("7/orders#1", now), nullptr);
  ASSERT_NE(cache.Get("71/1", now), nullptr);
  ASSERT_NE(cache.Get("8/1", now), nullptr);
  EXPECT_EQ(cache.size(), 2u);
  // The LRU list stays consistent: filling past capacity evicts without trouble.
  for (int i = 0; i < 20; ++i) cache.Put("9/" + std::to_string(i), std::make_shared<int>(i), later);
  EXPECT_EQ(cache.size(), 10u);
}

}  // namespace
}  // namespace ekm
