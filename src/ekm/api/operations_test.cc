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
    if (r.rule.scope == auth::RouteScope::kOpen) {
      EXPECT_TRUE(r.id == RouteId::kHealth || r.id == RouteId::kReady) << r.name << " is open";
      EXPECT_EQ(r.rule.roles, 0u) << r.name;
    } else {
      EXPECT_NE(r.rule.roles, 0u) << r.name << " allows no role";
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(RouteId::kRunDueRotations) + 1);
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
