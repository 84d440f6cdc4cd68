#include "ekm/auth/authorization.h"

#include <gtest/gtest.h>

#include "ekm/api/operations.h"

namespace ekm::auth {
namespace {

Principal Token(Role role, std::string workspace = "acme",
                std::vector<std::string> environments = {}) {
  Principal p;
  p.token_id = "00000000000000aa";
  p.role = role;
  p.workspace = role == Role::kAdmin ? "" : std::move(workspace);
  p.environments = std::move(environments);
  return p;
}

StatusCode Check(const Principal& p, RouteId id, std::string_view ws = "acme",
                 std::string_view env = "prod") {
  return Authorize(p, RouteInfoFor(id).rule, "route", ws, env).code();
}

constexpr auto kOk = StatusCode::kOk;
constexpr auto kDenied = StatusCode::kPermissionDenied;

TEST(AuthorizationTest, TheRoleTable) {
  Principal admin = Token(Role::kAdmin), owner = Token(Role::kOwner), km = Token(Role::kKeyManager),
            app = Token(Role::kApp), auditor = Token(Role::kAuditor);
  struct Row {
    RouteId id;
    StatusCode admin, owner, km, app, auditor;
  };
  const Row rows[] = {
      {RouteId::kHealth, kOk, kOk, kOk, kOk, kOk},
      {RouteId::kKeyCacheStats, kOk, kDenied, kDenied, kDenied, kDenied},
      {RouteId::kCreateWorkspace, kOk, kDenied, kDenied, kDenied, kDenied},
      {RouteId::kListWorkspaces, kOk, kOk, kOk, kDenied, kOk},
      {RouteId::kListEnvironments, kOk, kOk, kOk, kDenied, kOk},
      {RouteId::kCreateEnvironment, kOk, kOk, kDenied, kDenied, kDenied},
      {RouteId::kShowKey, kOk, kOk, kOk, kDenied, kOk},
      {RouteId::kCheckPolicy, kOk, kOk, kOk, kDenied, kDenied},
      {RouteId::kSetKey, kDenied, kOk, kOk, kDenied, kDenied},
      {RouteId::kSetDefaultKey, kDenied, kOk, kOk, kDenied, kDenied},
      {RouteId::kShred, kDenied, kOk, kDenied, kDenied, kDenied},
      {RouteId::kEncrypt, kDenied, kDenied, kDenied, kOk, kDenied},
      {RouteId::kRewrap, kDenied, kDenied, kDenied, kOk, kDenied},
      {RouteId::kListEvents, kOk, kOk, kDenied, kDenied, kOk},
      {RouteId::kCreateToken, kOk, kOk, kDenied, kDenied, kDenied},
      {RouteId::kGetToken, kOk, kOk, kDenied, kDenied, kDenied},
      {RouteId::kWhoAmI, kOk, kOk, kOk, kOk, kOk},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(Check(admin, r.id), r.admin) << static_cast<int>(r.id);
    EXPECT_EQ(Check(owner, r.id), r.owner) << static_cast<int>(r.id);
    EXPECT_EQ(Check(km, r.id), r.km) << static_cast<int>(r.id);
    EXPECT_EQ(Check(app, r.id), r.app) << static_cast<int>(r.id);
    EXPECT_EQ(Check(auditor, r.id), r.auditor) << static_cast<int>(r.id);
  }
  EXPECT_EQ(Check(Principal::LocalOperator(), RouteId::kShred), kOk);
}

TEST(AuthorizationTest, AnotherWorkspaceIsRefusedWithTheSameMessageWhetherItExistsOrNot) {
  Principal km = Token(Role::kKeyManager, "acme");
  Status a = Authorize(km, RouteInfoFor(RouteId::kShowKey).rule, "key.show", "globex", "prod");
  Status b =
      Authorize(km, RouteInfoFor(RouteId::kShowKey).rule, "key.show", "no-such-workspace", "prod");
  EXPECT_EQ(a.code(), kDenied);
  EXPECT_EQ(a.message(), b.message());
  EXPECT_EQ(a.message().find("globex"), std::string::npos);
}

TEST(AuthorizationTest, EnvironmentRestriction) {
  Principal km = Token(Role::kKeyManager, "acme", {"staging"});
  EXPECT_EQ(Check(km, RouteId::kSetKey, "acme", "staging"), kOk);
  EXPECT_EQ(Check(km, RouteId::kSetKey, "acme", "prod"), kDenied);
  EXPECT_EQ(Check(km, RouteId::kSetDefaultKey, "acme", ""), kDenied);  // workspace-wide
  EXPECT_EQ(Check(km, RouteId::kListEnvironments, "acme", ""), kOk);   // the handler filters
  Principal owner = Token(Role::kOwner, "acme", {"staging"});
  EXPECT_EQ(Check(owner, RouteId::kCreateEnvironment, "acme", ""), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, TokenAction::kList, "acme").code(), kDenied);
}

TEST(AuthorizationTest, ListsAndRecordQueriesShowATokenItsOwn) {
  Principal admin = Token(Role::kAdmin);
  Principal reader = Token(Role::kAuditor, "acme");
  Principal km = Token(Role::kKeyManager, "acme", {"staging"});
  EXPECT_TRUE(MaySeeWorkspace(admin, "globex"));
  EXPECT_TRUE(MaySeeWorkspace(reader, "acme"));
  EXPECT_FALSE(MaySeeWorkspace(reader, "globex"));
  EXPECT_TRUE(MaySeeEnvironment(reader, "prod"));
  EXPECT_TRUE(MaySeeEnvironment(km, "staging"));
  EXPECT_FALSE(MaySeeEnvironment(km, "prod"));
  // Events and audit records: a restricted token must name one of its environments.
  EXPECT_EQ(AuthorizeRecordQuery(reader, std::nullopt, "events").code(), kOk);
  EXPECT_EQ(AuthorizeRecordQuery(km, std::nullopt, "events").code(), kDenied);
  EXPECT_EQ(AuthorizeRecordQuery(km, std::string("prod"), "events").code(), kDenied);
  EXPECT_EQ(AuthorizeRecordQuery(km, std::string("staging"), "events").code(), kOk);
  // The export is the whole chain.
  EXPECT_EQ(AuthorizeAuditExport(reader).code(), kOk);
  EXPECT_EQ(AuthorizeAuditExport(km).code(), kDenied);
}

TEST(AuthorizationTest, OwnerOnlyAndTokenAdministration) {
  EXPECT_EQ(AuthorizeOwnerOnly(Token(Role::kOwner), "x").code(), kOk);
  EXPECT_EQ(AuthorizeOwnerOnly(Token(Role::kKeyManager), "x").code(), kDenied);
  EXPECT_EQ(AuthorizeOwnerOnly(Token(Role::kAdmin), "x").code(), kDenied);
  EXPECT_EQ(AuthorizeOwnerOnly(Principal::LocalOperator(), "x").code(), kOk);
  constexpr auto kCreate = TokenAction::kCreate, kList = TokenAction::kList,
                 kRevoke = TokenAction::kRevoke;
  Principal owner = Token(Role::kOwner, "acme");
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kCreate, "acme", "app").code(), kOk);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kCreate, "acme", "owner").code(), kOk);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kCreate, "acme", "admin").code(), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kCreate, "globex", "app").code(), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kRevoke, "acme", "owner").code(), kOk);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kRevoke, "globex", "app").code(), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(owner, kList, "globex").code(), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(Token(Role::kAdmin), kCreate, "", "admin").code(), kOk);
  EXPECT_EQ(AuthorizeTokenAdministration(Token(Role::kApp), kList, "acme").code(), kDenied);
  EXPECT_EQ(AuthorizeTokenAdministration(Token(Role::kKeyManager), kCreate, "acme", "app").code(),
            kDenied);
}

// Issue 12: no admin token may obtain a token that reads data. It creates a workspace's owner
// (the service allows that only while the workspace has no valid owner token) and never an
// app, key-manager or auditor token; it cannot revoke owner tokens (revoking them all and
// creating one would reach the data).
TEST(AuthorizationTest, TheAdminCreatesOnlyOwnersAndCannotRevokeThem) {
  const Principal admin = Token(Role::kAdmin);
  for (const char* role : {"app", "key-manager", "auditor"}) {
    Status s = AuthorizeTokenAdministration(admin, TokenAction::kCreate, "acme", role);
    EXPECT_EQ(s.code(), kDenied) << role;
    EXPECT_NE(s.message().find("created by its owner"), std::string::npos) << s.message();
    EXPECT_NE(s.hint().find("-w acme -r owner"), std::string::npos) << s.hint();
    EXPECT_NE(s.hint().find(std::string("-r ") + role), std::string::npos) << s.hint();
  }
  EXPECT_EQ(AuthorizeTokenAdministration(admin, TokenAction::kCreate, "acme", "owner").code(), kOk);
  // An unknown role is left to the service's 400.
  EXPECT_EQ(AuthorizeTokenAdministration(admin, TokenAction::kCreate, "acme", "wizard").code(),
            kOk);
  Status revoke = AuthorizeTokenAdministration(admin, TokenAction::kRevoke, "acme", "owner");
  EXPECT_EQ(revoke.code(), kDenied);
  EXPECT_NE(revoke.hint().find("an owner of workspace \"acme\""), std::string::npos);
  EXPECT_EQ(AuthorizeTokenAdministration(admin, TokenAction::kRevoke, "acme", "app").code(), kOk);
  EXPECT_EQ(AuthorizeTokenAdministration(admin, TokenAction::kList, "").code(), kOk);
  // The platform operator on the data directory (local mode) is not an API caller.
  EXPECT_EQ(
      AuthorizeTokenAdministration(Principal::LocalOperator(), TokenAction::kCreate, "acme", "app")
          .code(),
      kOk);
}

TEST(AuthorizationTest, DeniedMessagesNameTheRoleNeeded) {
  Status s =
      Authorize(Token(Role::kApp), RouteInfoFor(RouteId::kSetKey).rule, "key.set", "acme", "prod");
  EXPECT_NE(s.message().find("owner or key-manager"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("key.set"), std::string::npos);
}

}  // namespace
}  // namespace ekm::auth
