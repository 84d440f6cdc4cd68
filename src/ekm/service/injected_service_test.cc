// The service built from injected dependencies (NewEkmService), as the composition root builds
// it, but with a fake CMK: the lifecycle of a customer key without moto.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "ekm/service/ekm_service.h"
#include "ekm/testing/fake_key_provider.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"
#include "ekm/testing/test_service.h"

namespace ekm {
namespace {

using testing::FakeKeyProvider;

class InjectedServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fake = FakeKeyProvider::Create("fake-kms", dir_.path() + "/fake.key");
    cmk_ = fake.get();
    std::vector<std::unique_ptr<KeyProvider>> extra;
    extra.push_back(std::move(fake));
    EkmOptions options;
    options.clock = &clock_;
    options.key_cache_ttl = std::chrono::seconds(300);
    auto svc = testing::NewTestService(dir_.path(), options, std::move(extra));
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    svc_ = std::move(*svc);
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }

  testing::TempDir dir_;
  FakeClock clock_;
  FakeKeyProvider* cmk_ = nullptr;
  std::unique_ptr<EkmService> svc_;
};

TEST_F(InjectedServiceTest, ACustomerKeyOfAnyProviderRevokesAndRestoresWithinTheTtl) {
  auto set = svc_->SetCustomerKey(TestOp(), "acme", "prod", "fake-kms", "key-1");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->ok);
  Bytes sealed;
  const std::string secret = "card 4111";
  ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes(secret), &sealed).ok());

  // Revoked: still served from the cache within the TTL, refused after it.
  cmk_->answer = FakeKeyProvider::Answer::kRefuse;
  Bytes out;
  EXPECT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", sealed, &out).ok());
  clock_.Advance(std::chrono::seconds(301));
  out.clear();
  Status refused = svc_->Decrypt(TestOp(), "acme", "prod", sealed, &out);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused.ToString();
  EXPECT_EQ(refused.provider_code(), "AccessDeniedException");
  auto status = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, "unavailable");

  // Access restored: nothing was lost (after the retry the status names).
  cmk_->answer = FakeKeyProvider::Answer::kOk;
  clock_.Advance(std::chrono::seconds(120));
  out.clear();
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", sealed, &out).ok());
  EXPECT_EQ(std::string(out.begin(), out.end()), secret);
}

// The caller travels with the call, not with the thread: calls made on other threads, one of
// them while another caller's call runs, each record their own actor.
TEST_F(InjectedServiceTest, EventsNameTheCallersContextWhateverThreadRunsTheCall) {
  std::thread alice([&] {
    EXPECT_TRUE(svc_->CreateEnvironment(CallContext::Operator("cli:alice"), "acme", "a").ok());
  });
  std::thread bob([&] {
    auth::Principal p;
    p.token_id = "00000000000000bb";
    p.role = auth::Role::kOwner;
    p.workspace = "acme";
    EXPECT_TRUE(
        svc_->CreateEnvironment(CallContext::Request(p, "req-7", "192.0.2.7"), "acme", "b").ok());
  });
  alice.join();
  bob.join();
  EventQuery q;
  q.workspace = "acme";
  q.type = "environment.created";
  auto events = svc_->ListEvents(TestOp(), q);
  ASSERT_TRUE(events.ok());
  std::map<std::string, std::string> actor_of;
  for (const auto& e : *events) actor_of[e.environment] = e.actor;
  EXPECT_EQ(actor_of["prod"], "cli:test");
  EXPECT_EQ(actor_of["a"], "cli:alice");
  EXPECT_EQ(actor_of["b"], "token:00000000000000bb");
}

TEST_F(InjectedServiceTest, KeyHistoryHasTheValidationsAndCmkChangesOfItsEnvironmentOnly) {
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
  cmk_->answer = FakeKeyProvider::Answer::kRefuse;
  auto failed = svc_->ValidateCustomerKey(TestOp(), "acme", "prod", "fake-kms", "key-1");
  ASSERT_TRUE(failed.ok()) << failed.status().ToString();
  EXPECT_FALSE(failed->ok);
  cmk_->answer = FakeKeyProvider::Answer::kOk;
  ASSERT_TRUE(svc_->SetCustomerKey(TestOp(), "acme", "prod", "fake-kms", "key-1").ok());
  ASSERT_TRUE(svc_->SetCustomerKey(TestOp(), "acme", "dev", "fake-kms", "key-2").ok());
  // Not key history: a rotation and data.
  ASSERT_TRUE(svc_->RotateEnvironmentKey(TestOp(), "acme", "prod").ok());

  auto history = svc_->KeyHistory(TestOp(), "acme", "prod", 0, 100);
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  std::vector<std::string> types;
  for (const auto& e : *history) {
    EXPECT_EQ(e.environment, "prod");
    EXPECT_EQ(e.actor, "cli:test");
    types.push_back(e.type);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"key.validation_failed", "key.set", "key.validated"}));
  // Paging: after the first, at most one.
  auto page = svc_->KeyHistory(TestOp(), "acme", "prod", (*history)[0].id, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].type, "key.set");
  EXPECT_EQ(svc_->KeyHistory(TestOp(), "acme", "prod", 0, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->KeyHistory(TestOp(), "acme", "nope", 0, 10).status().code(),
            StatusCode::kNotFound);
}

TEST_F(InjectedServiceTest, ScopesListTheirCurrentDataKeyVersionAndMessagesReserved) {
  auto empty = svc_->ListScopes(TestOp(), "acme", "prod");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->scopes.empty());
  Bytes sealed;
  for (const char* scope : {"orders", "invoices", "orders"}) {
    ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", scope, AsBytes("x"), &sealed).ok());
  }
  ASSERT_TRUE(svc_->RotateDataKeys(TestOp(), "acme", "prod", {"orders"}, false).ok());
  auto list = svc_->ListScopes(TestOp(), "acme", "prod");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ(list->max_messages_per_dk, uint64_t{1} << 32);
  ASSERT_EQ(list->scopes.size(), 2u);
  EXPECT_EQ(list->scopes[0].scope, "invoices");  // by name
  EXPECT_EQ(list->scopes[0].dk_version, 1u);
  EXPECT_GE(list->scopes[0].messages_reserved, 1u);
  EXPECT_EQ(list->scopes[1].scope, "orders");
  EXPECT_EQ(list->scopes[1].dk_version, 2u);  // rotated: the new version has sealed nothing yet
  EXPECT_EQ(list->scopes[1].messages_reserved, 0u);
  EXPECT_EQ(list->scopes[1].ek_version, 1u);
}

}  // namespace
}  // namespace ekm
