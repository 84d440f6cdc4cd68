#include "ekm/base/non_blocking_scope.h"

#include <gtest/gtest.h>

#include <thread>

namespace ekm {
namespace {

TEST(NonBlockingScopeTest, OutsideAScopeWaitingIsAllowed) {
  EXPECT_TRUE(MayBlock("a store query").ok());
  EXPECT_FALSE(BlockingDeferred());
}

TEST(NonBlockingScopeTest, InsideAScopeAWaitDefersTheWork) {
  NonBlockingScope scope;
  EXPECT_FALSE(scope.deferred());
  EXPECT_FALSE(BlockingDeferred());
  Status s = MayBlock("a KMS call");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("a KMS call"), std::string::npos);
  EXPECT_TRUE(scope.deferred());
  EXPECT_TRUE(BlockingDeferred());
}

TEST(NonBlockingScopeTest, TheScopeEndsWithItsBlockAndNestsOnOneThreadOnly) {
  {
    NonBlockingScope outer;
    {
      NonBlockingScope inner;
      MayBlock("x").IgnoreError();
      EXPECT_TRUE(inner.deferred());
    }
    EXPECT_FALSE(outer.deferred());  // the inner scope's work was deferred, not the outer's
    std::thread other([] { EXPECT_TRUE(MayBlock("y").ok()); });  // another thread: no scope
    other.join();
    EXPECT_FALSE(outer.deferred());
  }
  EXPECT_TRUE(MayBlock("z").ok());
}

}  // namespace
}  // namespace ekm
