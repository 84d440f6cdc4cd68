// API tokens through EkmService: create, authenticate (each 401 reason, recorded), expiry
// bounds, revocation (at once on this node, within kApiTokenCacheTtl on another), bootstrap.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "ekm/events/lifecycle_event.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

std::string Text(const SecretBytes& s) {
  auto r = s.RevealForCrypto();
  return std::string(r.begin(), r.end());
}

// A token's caller of `role` (what the router hands the service after authentication).
CallContext Caller(auth::Role role) {
  auth::Principal p;
  p.token_id = "00000000000000c" + std::to_string(static_cast<int>(role));
  p.role = role;
  p.workspace = role == auth::Role::kAdmin ? "" : "acme";
  return CallContext::Request(std::move(p), "req", "127.0.0.1");
}

class ApiTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.SetUnixSeconds(1'800'000'000);
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    options_.aws.enabled = false;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    svc_ = Open();
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }
  std::unique_ptr<EkmService> Open() {
    auto s = EkmService::Open(options_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  }
  NewApiToken Create(std::string role, std::string ws = "acme",
                     std::chrono::seconds expires_in = {}) {
    auto t = svc_->CreateApiToken(TestOp(), ApiTokenRequest{role, ws, {}, "test", expires_in});
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return std::move(*t);
  }
  std::vector<LifecycleEventInfo> Events(std::string ws, std::string type) {
    EventQuery q;
    q.workspace = ws;
    q.type = type;
    auto e = svc_->ListEvents(TestOp(), q);
    return e.ok() ? *e : std::vector<LifecycleEventInfo>{};
  }

  FakeClock clock_;
  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

TEST_F(ApiTokenTest, CreateAuthenticateAndTheDefaultLifetime) {
  NewApiToken t = Create("key-manager");
  EXPECT_EQ(t.info.expires_at, 1'800'000'000 + kDefaultApiTokenLifetime.count());
  EXPECT_EQ(t.info.created_by, "cli:test");  // the caller's actor (TestOp)
  auto p = svc_->Authenticate(Text(t.token), "key.show", "127.0.0.1");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->role, auth::Role::kKeyManager);
  EXPECT_EQ(p->workspace, "acme");
  EXPECT_EQ(p->Actor(), "token:" + t.info.id);
  auto created = Events("acme", "token.created");
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0].detail.find(Text(t.token).substr(21)), std::string::npos);
}

TEST_F(ApiTokenTest, BadRequestsAreRefused) {
  auto req = [](std::string role, std::string ws, std::vector<std::string> envs = {},
                std::chrono::seconds expires_in = {}) {
    return ApiTokenRequest{std::move(role), std::move(ws), std::move(envs), "", expires_in};
  };
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("root", "acme")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("app", "")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("admin", "acme")).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("app", "nope")).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("app", "acme", {"nope"})).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("app", "acme", {}, std::chrono::seconds(10)))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateApiToken(TestOp(), req("app", "acme", {},
                                               kMaxApiTokenLifetime + std::chrono::seconds(1)))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ApiTokenTest, EachFailureIs401AndRecordedWithItsReasonNeverTheSecret) {
  NewApiToken t = Create("app", "acme", std::chrono::seconds(3600));
  std::string good = Text(t.token);
  std::string wrong = good;
  wrong.back() = wrong.back() == 'A' ? 'Q' : 'A';
  std::string unknown = good;
  unknown[4] = unknown[4] == 'a' ? 'b' : 'a';
  auto code = [&](const std::string& text) {
    return svc_->Authenticate(text, "data.encrypt", "10.0.0.1").status();
  };
  EXPECT_EQ(code("").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(code("ekm_garbage").code(), StatusCode::kUnauthenticated);
  Status w = code(wrong), u = code(unknown);
  EXPECT_EQ(w.code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(w.message(), u.message());  // a guess learns nothing
  EXPECT_NE(w.hint().find("EKM_TOKEN"), std::string::npos);
  clock_.Advance(std::chrono::seconds(3600));
  Status e = code(good);
  EXPECT_EQ(e.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(e.message().find("expired"), std::string::npos);
  // Known token: in its workspace; the rest on the platform ("").
  auto in_ws = Events("acme", "token.auth_failed");
  ASSERT_EQ(in_ws.size(), 2u);
  EXPECT_NE(in_ws[0].detail.find("wrong_secret"), std::string::npos);
  EXPECT_NE(in_ws[1].detail.find("expired"), std::string::npos);
  EXPECT_NE(in_ws[1].detail.find("10.0.0.1"), std::string::npos);
  for (const auto& ev : in_ws) EXPECT_EQ(ev.detail.find(good.substr(21)), std::string::npos);
}

TEST_F(ApiTokenTest, RevocationIsImmediateHereAndWithinTheCacheTtlOnAnotherNode) {
  NewApiToken t = Create("app");
  std::string text = Text(t.token);
  std::unique_ptr<EkmService> other = Open();            // another node on the same store
  ASSERT_TRUE(other->Authenticate(text, "r", "").ok());  // now cached there
  ASSERT_TRUE(svc_->Authenticate(text, "r", "").ok());
  ASSERT_TRUE(svc_->RevokeApiToken(TestOp(), t.info.id).ok());
  EXPECT_EQ(svc_->Authenticate(text, "r", "").status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(other->Authenticate(text, "r", "").ok()) << "cached: the bounded staleness";
  std::this_thread::sleep_for(kApiTokenCacheTtl + std::chrono::milliseconds(200));
  Status s = other->Authenticate(text, "r", "").status();
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(s.message().find("revoked"), std::string::npos);
  ASSERT_TRUE(svc_->RevokeApiToken(TestOp(), t.info.id).ok());  // again: no change, one event
  EXPECT_EQ(Events("acme", "token.revoked").size(), 1u);
}

TEST_F(ApiTokenTest, BootstrapAdminTokenOnceAndFromAFile) {
  auto b = svc_->EnsureBootstrapAdminToken(TestOp(), std::nullopt);
  ASSERT_TRUE(b.ok() && b->created);
  auto p = svc_->Authenticate(Text(b->token), "r", "");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->IsAdmin());
  EXPECT_EQ(p->expires_at, 0);
  auto again = svc_->EnsureBootstrapAdminToken(TestOp(), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  // Given in a file (another data directory): stored as is.
  ASSERT_TRUE(svc_->RevokeApiToken(TestOp(), b->id).ok());
  auto gen = auth::GenerateToken();
  ASSERT_TRUE(gen.ok());
  std::string given = Text(gen->text);
  auto g = svc_->EnsureBootstrapAdminToken(TestOp(), given);
  ASSERT_TRUE(g.ok() && g->created);
  EXPECT_TRUE(g->token.empty());
  EXPECT_TRUE(svc_->Authenticate(given, "r", "").ok());
  EXPECT_EQ(svc_->EnsureBootstrapAdminToken(TestOp(), std::string("nonsense")).status().code(),
            StatusCode::kOk);  // an admin exists: nothing read
}

// Issue 12: the admin creates a workspace's owner only while the workspace has no valid owner
// token (its first owner, or a recovery), and every creation and revocation is in the
// workspace's own audit chain (and, the admin's, in the platform chain), never the secret.
TEST_F(ApiTokenTest, TheAdminCreatesAnOwnerOnlyForAWorkspaceWithoutAValidOne) {
  auto as_admin = [](std::string role, std::chrono::seconds expires_in = {}) {
    return ApiTokenRequest{std::move(role), "acme", {}, "test", expires_in};
  };
  const CallContext admin = Caller(auth::Role::kAdmin), owner = Caller(auth::Role::kOwner);
  auto first = svc_->CreateApiToken(admin, as_admin("owner", std::chrono::seconds(3600)));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = svc_->CreateApiToken(admin, as_admin("owner"));
  ASSERT_EQ(second.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(second.status().message().find("has a valid owner token"), std::string::npos);
  EXPECT_NE(second.status().hint().find("ekm token create -w acme -r owner"), std::string::npos);
  // An owner creates a second owner; revoking the first leaves that one valid.
  ApiTokenRequest by_owner{"owner", "acme", {}, "second owner", {}};
  auto owner2 = svc_->CreateApiToken(owner, by_owner);
  ASSERT_TRUE(owner2.ok()) << owner2.status().ToString();
  ASSERT_TRUE(svc_->RevokeApiToken(owner, first->info.id).ok());
  EXPECT_EQ(svc_->CreateApiToken(admin, as_admin("owner")).status().code(),
            StatusCode::kPermissionDenied);
  // Every owner token revoked or expired: the admin may create one, a recovery.
  ASSERT_TRUE(svc_->RevokeApiToken(owner, owner2->info.id).ok());
  auto recovered = svc_->CreateApiToken(admin, as_admin("owner"));
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_TRUE(svc_->Authenticate(Text(recovered->token), "r", "").ok());

  auto created = Events("acme", "token.created");
  ASSERT_EQ(created.size(), 3u);
  auto detail = [](const LifecycleEventInfo& e) { return nlohmann::json::parse(e.detail); };
  EXPECT_EQ(detail(created[0])["created_by_role"], "admin");
  EXPECT_EQ(detail(created[0])["recovery"], false);  // the first owner
  EXPECT_EQ(detail(created[1])["created_by_role"], "owner");
  EXPECT_FALSE(detail(created[1]).contains("recovery"));
  EXPECT_EQ(detail(created[2])["token_id"], recovered->info.id);
  EXPECT_EQ(detail(created[2])["role"], "owner");
  EXPECT_EQ(detail(created[2])["recovery"], true);  // the customer sees it
  for (const auto& e : created) {
    EXPECT_EQ(e.detail.find(Text(recovered->token).substr(21)), std::string::npos);
  }
  auto revoked = Events("acme", "token.revoked");
  ASSERT_EQ(revoked.size(), 2u);
  EXPECT_EQ(detail(revoked[0])["revoked_by_role"], "owner");
  // The admin's creations are admin actions: in the platform chain too, naming the workspace.
  EventQuery q;
  q.workspace = "";
  q.type = "token.created";
  auto platform = svc_->QueryAudit(TestOp(), q);
  ASSERT_TRUE(platform.ok());
  ASSERT_EQ(platform->size(), 2u);
  EXPECT_EQ(nlohmann::json::parse((*platform)[1].detail)["workspace"], "acme");
  EXPECT_EQ(nlohmann::json::parse((*platform)[1].detail)["recovery"], true);
}

TEST_F(ApiTokenTest, AnExpiredOwnerTokenLetsTheAdminRecoverTheWorkspace) {
  ApiTokenRequest r{"owner", "acme", {}, "", std::chrono::seconds(600)};
  const CallContext admin = Caller(auth::Role::kAdmin);
  ASSERT_TRUE(svc_->CreateApiToken(admin, r).ok());
  clock_.Advance(std::chrono::seconds(599));
  EXPECT_EQ(svc_->CreateApiToken(admin, r).status().code(), StatusCode::kPermissionDenied);
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(svc_->CreateApiToken(admin, r).ok());
  // The operator in local mode (no role) is not bound by it.
  EXPECT_TRUE(svc_->CreateApiToken(TestOp(), ApiTokenRequest{"owner", "acme", {}, "", {}}).ok());
}

}  // namespace
}  // namespace ekm
