#include "ekm/api/call_context.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

TEST(CallContextTest, ARequestNamesItsTokenOrTheAnonymousCaller) {
  auth::Principal p;
  p.token_id = "00000000000000aa";
  p.role = auth::Role::kApp;
  CallContext c = CallContext::Request(p, "req-1", "192.0.2.7");
  EXPECT_EQ(c.actor, "token:00000000000000aa");
  EXPECT_EQ(c.request_id, "req-1");
  EXPECT_EQ(c.remote_address, "192.0.2.7");
  EXPECT_FALSE(c.caller.local_operator);
  // The open routes (/healthz, /readyz) have no token.
  EXPECT_EQ(CallContext::Request({}, "req-2", "192.0.2.7").actor, "api");
}

TEST(CallContextTest, TheOperatorAndTheSystemMayDoEverything) {
  CallContext op = CallContext::Operator("cli:alice");
  EXPECT_EQ(op.actor, "cli:alice");
  EXPECT_TRUE(op.caller.local_operator);
  CallContext sys = CallContext::System("schedule");
  EXPECT_EQ(sys.actor, "system:schedule");
  EXPECT_TRUE(sys.caller.local_operator);
}

}  // namespace
}  // namespace ekm
