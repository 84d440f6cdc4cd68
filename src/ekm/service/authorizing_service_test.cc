// The authorizing service decides for every front end: these calls come from no router, as a
// console or another door would make them, and get the same answers as ekmd's routes.
#include "ekm/service/authorizing_service.h"

#include <gtest/gtest.h>

#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"
#include "ekm/testing/test_service.h"

namespace ekm {
namespace {

CallContext Token(auth::Role role, std::vector<std::string> environments = {}) {
  auth::Principal p;
  p.token_id = "00000000000000" + std::to_string(10 + static_cast<int>(role));
  p.role = role;
  p.workspace = role == auth::Role::kAdmin ? "" : "acme";
  p.environments = std::move(environments);
  return CallContext::Request(std::move(p), "req", "192.0.2.7");
}

class AuthorizingServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto svc = testing::NewTestService(dir_.path(), EkmOptions{});
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    service_ = std::move(*svc);
    api_ = NewAuthorizingService(service_.get());
    ASSERT_TRUE(api_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(api_->CreateWorkspace(TestOp(), "globex").ok());
    ASSERT_TRUE(api_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    ASSERT_TRUE(api_->CreateEnvironment(TestOp(), "acme", "dev").ok());
  }

  size_t Denials() {
    EventQuery q;
    q.workspace = "acme";
    q.type = "token.permission_denied";
    auto events = service_->ListEvents(TestOp(), q);
    return events.ok() ? events->size() : 0;
  }

  testing::TempDir dir_;
  std::unique_ptr<EkmService> service_;
  std::unique_ptr<EkmService> api_;
};

TEST_F(AuthorizingServiceTest, TheRouteRuleOfEachOperation) {
  Bytes out;
  // The data plane is the app's; a key-manager changes keys and never reads data.
  EXPECT_TRUE(api_->Encrypt(Token(auth::Role::kApp), "acme", "prod", "s", AsBytes("x"), &out).ok());
  EXPECT_EQ(
      api_->Encrypt(Token(auth::Role::kKeyManager), "acme", "prod", "s", AsBytes("x"), &out).code(),
      StatusCode::kPermissionDenied);
  EXPECT_EQ(api_->SetCustomerKey(Token(auth::Role::kApp), "acme", "prod", "platform", "root")
                .status()
                .code(),
            StatusCode::kPermissionDenied);
  // Another workspace: the same answer whether it exists or not.
  EXPECT_EQ(api_->GetWorkspace(Token(auth::Role::kOwner), "globex").status().message(),
            api_->GetWorkspace(Token(auth::Role::kOwner), "initech").status().message());
  EXPECT_EQ(Denials(), 4u);  // each recorded, in the caller's workspace
}

TEST_F(AuthorizingServiceTest, OwnerOnlyChangesAndOperatorOnlyWork) {
  KeyChangeOptions emergency;
  emergency.emergency = true;
  emergency.reason = "suspected compromise";
  auto by_key_manager = api_->SetCustomerKey(Token(auth::Role::kKeyManager), "acme", "prod",
                                             "platform", "root", emergency);
  EXPECT_EQ(by_key_manager.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(by_key_manager.status().message().find("owner"), std::string::npos);
  EnvironmentSettings period;
  period.replacement_period_seconds = 7200;
  EXPECT_EQ(
      api_->UpdateEnvironmentSettings(Token(auth::Role::kKeyManager), "acme", "prod", period, {})
          .status()
          .code(),
      StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      api_->UpdateEnvironmentSettings(Token(auth::Role::kOwner), "acme", "prod", period, {}).ok());
  // The due rotations of every workspace are the admin's; a foreground repack has no route: the
  // operator's.
  EXPECT_EQ(api_->RunScheduledRotations(Token(auth::Role::kOwner)).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(api_->RunScheduledRotations(Token(auth::Role::kAdmin)).ok());
  EXPECT_EQ(api_->RunRepack(Token(auth::Role::kAdmin), "acme", "prod", nullptr).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(api_->RunRepack(TestOp(), "acme", "prod", nullptr).ok());
}

TEST_F(AuthorizingServiceTest, ListsShowWhatTheCallerMaySee) {
  auto ws = api_->ListWorkspaces(Token(auth::Role::kOwner));
  ASSERT_TRUE(ws.ok());
  ASSERT_EQ(ws->size(), 1u);
  EXPECT_EQ((*ws)[0].name, "acme");
  EXPECT_EQ(api_->ListWorkspaces(Token(auth::Role::kAdmin))->size(), 2u);
  auto envs = api_->ListEnvironments(Token(auth::Role::kAuditor, {"dev"}), "acme");
  ASSERT_TRUE(envs.ok());
  ASSERT_EQ(envs->size(), 1u);
  EXPECT_EQ((*envs)[0].name, "dev");
  // An environment-restricted token reads events of its own environments only.
  EventQuery q;
  q.workspace = "acme";
  EXPECT_EQ(api_->ListEvents(Token(auth::Role::kAuditor, {"dev"}), q).status().code(),
            StatusCode::kPermissionDenied);
  q.environment = "dev";
  EXPECT_TRUE(api_->ListEvents(Token(auth::Role::kAuditor, {"dev"}), q).ok());
}

TEST_F(AuthorizingServiceTest, TokenAdministration) {
  // The owner's token mints tokens of its own workspace; the admin only owners and admins.
  ApiTokenRequest app;
  app.role = "app";
  auto made = api_->CreateApiToken(Token(auth::Role::kOwner), app);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_EQ(made->info.workspace, "acme");
  app.workspace = "acme";
  EXPECT_EQ(api_->CreateApiToken(Token(auth::Role::kAdmin), app).status().code(),
            StatusCode::kPermissionDenied);
  // Another workspace's owner learns nothing of the token: the answer of an unknown id.
  auth::Principal globex;
  globex.token_id = "00000000000000ee";
  globex.role = auth::Role::kOwner;
  globex.workspace = "globex";
  const CallContext other = CallContext::Request(globex, "req", "192.0.2.8");
  auto seen = api_->GetApiToken(other, made->info.id);
  auto unknown = api_->GetApiToken(other, "00000000000000ff");
  EXPECT_EQ(seen.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(seen.status().message(), unknown.status().message());
  EXPECT_EQ(api_->RevokeApiToken(other, made->info.id).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(api_->RevokeApiToken(Token(auth::Role::kOwner), made->info.id).ok());
}

}  // namespace
}  // namespace ekm
