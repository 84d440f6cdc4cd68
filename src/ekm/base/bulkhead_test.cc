#include "ekm/base/bulkhead.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace ekm {
namespace {

TEST(BulkheadTest, RefusesPastTheLimitPerKeyAndGivesPlacesBack) {
  Bulkhead b(2);
  auto t1 = b.TryEnter("acme/prod");
  auto t2 = b.TryEnter("acme/prod");
  EXPECT_TRUE(t1.held() && t2.held());
  EXPECT_FALSE(b.TryEnter("acme/prod").held());   // full
  EXPECT_TRUE(b.TryEnter("globex/prod").held());  // another tenant is not affected
  EXPECT_EQ(b.InUse("acme/prod"), 2);
  { Bulkhead::Ticket gone = std::move(t1); }
  EXPECT_FALSE(t1.held());  // moved from: gives nothing back twice
  EXPECT_EQ(b.InUse("acme/prod"), 1);
  EXPECT_TRUE(b.TryEnter("acme/prod").held());
  EXPECT_EQ(b.InUse("acme/prod"), 1);  // that ticket went at the end of its statement
  EXPECT_EQ(b.InUse("globex/prod"), 0);
}

TEST(BulkheadTest, ZeroIsNoLimit) {
  Bulkhead b(0);
  std::vector<Bulkhead::Ticket> held;
  for (int i = 0; i < 100; ++i) held.push_back(b.TryEnter("k"));
  for (const auto& t : held) EXPECT_TRUE(t.held());
  EXPECT_EQ(b.InUse("k"), 100);
  held.clear();
  EXPECT_EQ(b.InUse("k"), 0);
}

}  // namespace
}  // namespace ekm
