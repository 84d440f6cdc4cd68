#include "ekm/api/operations.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace ekm {
namespace {

// Every operation has one row with its own stable name, and its authorization rule is written
// out: only the probes are open, and every other row allows some role.
TEST(OperationTableTest, EveryOperationHasOneRowWithARule) {
  std::set<int> ids;
  std::set<std::string> names;
  std::set<std::string> routes;
  for (const RouteInfo& r : RouteTable()) {
    EXPECT_TRUE(ids.insert(static_cast<int>(r.id)).second) << r.name;
    EXPECT_TRUE(names.insert(std::string(r.name)).second) << r.name;
    EXPECT_TRUE(routes.insert(std::string(r.method) + " " + std::string(r.path)).second) << r.name;
    EXPECT_EQ(&RouteInfoFor(r.id), &r) << r.name;
    EXPECT_NE(r.handler, nullptr) << r.name << " has no handler";
    if (r.rule.scope == auth::RouteScope::kOpen) {
      EXPECT_TRUE(r.id == RouteId::kHealth || r.id == RouteId::kReady) << r.name << " is open";
      EXPECT_EQ(r.rule.roles, 0u) << r.name;
    } else {
      EXPECT_NE(r.rule.roles, 0u) << r.name << " allows no role";
    }
  }
  EXPECT_EQ(ids.size(), kRouteIdCount);
}

// A GET or DELETE takes no body; a create answers 201 (docs/openapi.yaml agrees: routes_test).
TEST(OperationTableTest, BodyAndSuccessStatusFollowTheMethod) {
  for (const RouteInfo& r : RouteTable()) {
    const bool reads = r.method == "GET" || r.method == "DELETE";
    EXPECT_EQ(r.body == RouteBody::kNone, reads) << r.name;
    EXPECT_TRUE(r.success_status == 200 || (r.success_status == 201 && r.method == "POST"))
        << r.name;
  }
  EXPECT_EQ(RouteInfoFor(RouteId::kEncrypt).body, RouteBody::kJsonOrStream);
  EXPECT_EQ(RouteInfoFor(RouteId::kDecrypt).body, RouteBody::kJsonOrStream);
  EXPECT_EQ(RouteInfoFor(RouteId::kCreateWorkspace).success_status, 201);
}

// Placeholders are filled with one percent-encoded segment each: a name cannot add a segment.
TEST(OperationTableTest, RoutePathFillsAndEncodesThePlaceholders) {
  EXPECT_EQ(RoutePath(RouteId::kShowKey, {.workspace = "acme", .environment = "prod"}),
            "/v1/workspaces/acme/environments/prod/key");
  EXPECT_EQ(RoutePath(RouteId::kGetToken, {.id = "tok_1"}), "/v1/tokens/tok_1");
  EXPECT_EQ(RoutePath(RouteId::kListEnvironments, {.workspace = "a/b c"}),
            "/v1/workspaces/a%2Fb%20c/environments");
  EXPECT_EQ(RoutePath(RouteId::kListWorkspaces, {}), "/v1/workspaces");
}

// The data plane is the app role's alone; every change of a customer's key needs owner or
// key-manager, and a shred the owner.
TEST(OperationTableTest, RulesOfTheSensitiveRoutes) {
  using auth::Role;
  for (RouteId id : {RouteId::kEncrypt, RouteId::kDecrypt, RouteId::kRewrap,
                     RouteId::kGenerateDataKey, RouteId::kEncryptBatch, RouteId::kDecryptBatch}) {
    const auth::RouteRule& rule = RouteInfoFor(id).rule;
    EXPECT_EQ(rule.roles, auth::RoleBit(Role::kApp)) << RouteInfoFor(id).name;
    EXPECT_EQ(rule.scope, auth::RouteScope::kEnvironment) << RouteInfoFor(id).name;
  }
  EXPECT_EQ(RouteInfoFor(RouteId::kSetKey).rule.roles,
            auth::RoleBit(Role::kOwner) | auth::RoleBit(Role::kKeyManager));
  EXPECT_EQ(RouteInfoFor(RouteId::kShred).rule.roles, auth::RoleBit(Role::kOwner));
}

}  // namespace
}  // namespace ekm
