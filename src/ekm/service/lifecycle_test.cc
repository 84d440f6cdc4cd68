// The key lifecycle through EkmService on the platform provider: EK and DK rotation (on demand and
// scheduled, FakeClock), rewrap, crypto-shredding, the workspace default CMK and the events.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "ekm/base/clock.h"
#include "ekm/envelope/envelope.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

class LifecycleDTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    options_.key_cache_ttl = std::chrono::seconds(300);
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    svc_ = Open();
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
  }
  std::unique_ptr<EkmService> Open() {
    auto s = EkmService::Open(options_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  Bytes Encrypt(std::string_view env, std::string_view scope, std::string_view plain,
                EkmService* svc = nullptr) {
    Bytes out;
    Status s =
        (svc ? svc : svc_.get())->Encrypt(TestOp(), "acme", env, scope, AsBytes(plain), &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  StatusOr<std::string> Decrypt(std::string_view env, const Bytes& ct, EkmService* svc = nullptr) {
    Bytes out;
    Status s = (svc ? svc : svc_.get())->Decrypt(TestOp(), "acme", env, ct, &out);
    if (!s.ok()) return s;
    return std::string(AsChars(out));
  }
  static uint32_t DkVersion(const Bytes& ct) {
    auto h = ParseHeader(ct);
    EXPECT_TRUE(h.ok());
    return h.ok() ? h->header.context.dk_version : 0;
  }
  std::vector<LifecycleEventInfo> Events(std::string type) {
    EventQuery q;
    q.workspace = "acme";
    q.type = std::move(type);
    q.limit = 1000;
    auto e = svc_->ListEvents(TestOp(), q);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : std::vector<LifecycleEventInfo>{};
  }
  uint32_t EkVersion(std::string_view env) {
    auto list = svc_->ListEnvironments(TestOp(), "acme");
    EXPECT_TRUE(list.ok());
    for (const auto& e : *list) {
      if (e.name == env) return e.ek_version;
    }
    return 0;
  }

  FakeClock clock_;
  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

TEST_F(LifecycleDTest, EnvironmentKeyRotationOnDemandKeepsOldDataReadable) {
  Bytes before = Encrypt("prod", "orders", "written under EK v1");
  auto r = svc_->RotateEnvironmentKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->kind, "ek");
  EXPECT_EQ(r->from_version, 1u);
  EXPECT_EQ(r->to_version, 2u);
  EXPECT_EQ(EkVersion("prod"), 2u);
  EXPECT_EQ(EkVersion("dev"), 1u);  // other environments untouched
  // The scope moves to a new DK under the new EK at its next use.
  Bytes after = Encrypt("prod", "orders", "written under EK v2");
  EXPECT_EQ(DkVersion(before), 1u);
  EXPECT_EQ(DkVersion(after), 2u);
  EXPECT_EQ(*Decrypt("prod", before), "written under EK v1");
  EXPECT_EQ(*Decrypt("prod", after), "written under EK v2");
  // Also from a cold cache (a restarted node).
  svc_ = Open();
  EXPECT_EQ(*Decrypt("prod", before), "written under EK v1");
  auto ev = Events("ek.rotated");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].environment, "prod");
  auto d = nlohmann::json::parse(ev[0].detail);
  EXPECT_EQ(d["to_version"], 2);
  EXPECT_EQ(d["cmk"]["provider"], "platform");
}

TEST_F(LifecycleDTest, DataKeyRotationOnDemandPerScopeAndAllScopes) {
  Bytes a1 = Encrypt("prod", "a", "a1");
  Bytes b1 = Encrypt("prod", "b", "b1");
  auto r = svc_->RotateDataKeys(TestOp(), "acme", "prod", {"a"}, false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].scope, "a");
  EXPECT_EQ((*r)[0].to_version, 2u);
  EXPECT_EQ(DkVersion(Encrypt("prod", "a", "a2")), 2u);
  EXPECT_EQ(DkVersion(Encrypt("prod", "b", "b2")), 1u);
  auto all = svc_->RotateDataKeys(TestOp(), "acme", "prod", {}, true);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(DkVersion(Encrypt("prod", "a", "a3")), 3u);
  EXPECT_EQ(DkVersion(Encrypt("prod", "b", "b3")), 2u);
  EXPECT_EQ(*Decrypt("prod", a1), "a1");
  EXPECT_EQ(*Decrypt("prod", b1), "b1");
  EXPECT_EQ(Events("dk.rotated").size(), 3u);
  // Neither or both: refused.
  EXPECT_EQ(svc_->RotateDataKeys(TestOp(), "acme", "prod", {}, false).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->RotateDataKeys(TestOp(), "acme", "prod", {"a"}, true).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->RotateDataKeys(TestOp(), "acme", "prod", {"bad scope!"}, false).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(LifecycleDTest, ScheduledRotationRotatesOnlyWhatIsDue) {
  Bytes old = Encrypt("prod", "orders", "old");
  Encrypt("dev", "orders", "dev");
  // No schedule: nothing rotates, however much time passes ("a manual process").
  clock_.Advance(std::chrono::hours(24 * 400));
  auto none = svc_->RunScheduledRotations(TestOp());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->rotated.empty());

  EnvironmentSettings set;
  set.ek_rotation_period_seconds = 30 * 86400;
  set.dk_rotation_period_seconds = 7 * 86400;
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  // The EK and the DK are both a year old: both are due now.
  auto first = svc_->RunScheduledRotations(CallContext::Operator(std::string(kScheduleActor)));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->rotated.size(), 2u);
  EXPECT_EQ(first->rotated[0].kind, "ek");
  EXPECT_EQ(first->rotated[1].kind, "dk");
  EXPECT_EQ(first->rotated[1].scope, "orders");
  EXPECT_EQ(EkVersion("prod"), 2u);
  EXPECT_EQ(EkVersion("dev"), 1u);
  // Nothing is due right after.
  EXPECT_TRUE(svc_->RunScheduledRotations(TestOp())->rotated.empty());
  // After 8 days only the DK is due.
  clock_.Advance(std::chrono::hours(24 * 8));
  auto second = svc_->RunScheduledRotations(TestOp());
  ASSERT_EQ(second->rotated.size(), 1u);
  EXPECT_EQ(second->rotated[0].kind, "dk");
  EXPECT_EQ(second->rotated[0].to_version, 3u);
  EXPECT_EQ(*Decrypt("prod", old), "old");
  auto ev = Events("dk.rotated");
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].actor, "system:schedule");
}

TEST_F(LifecycleDTest, RewrapMovesACiphertextToTheNewestDataKeyOfItsScope) {
  Bytes old = Encrypt("prod", "orders", "secret order");
  ASSERT_TRUE(svc_->RotateDataKeys(TestOp(), "acme", "prod", {"orders"}, false).ok());
  Bytes fresh;
  auto r = svc_->Rewrap(TestOp(), "acme", "prod", old, &fresh);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->scope, "orders");
  EXPECT_EQ(r->from_dk_version, 1u);
  EXPECT_EQ(r->dk_version, 2u);
  EXPECT_EQ(DkVersion(fresh), 2u);
  // The result is a ciphertext, never the plaintext.
  std::string as_text(AsChars(fresh));
  EXPECT_EQ(as_text.find("secret order"), std::string::npos);
  EXPECT_EQ(*Decrypt("prod", fresh), "secret order");

  // Text form in, text form out.
  std::string text = EnvelopeToText(old) + "\n";
  Bytes text_out;
  ASSERT_TRUE(svc_->Rewrap(TestOp(), "acme", "prod", AsBytes(text), &text_out).ok());
  std::string t(AsChars(text_out));
  EXPECT_TRUE(t.starts_with("ekm1:")) << t;
  EXPECT_EQ(*Decrypt("prod", text_out), "secret order");

  // Stream form (of any size) stays a stream.
  auto enc = svc_->NewEncryptStream(TestOp(), "acme", "prod", "orders", false);
  ASSERT_TRUE(enc.ok());
  std::string big(300 * 1024, 'x');
  Bytes stream;
  ASSERT_TRUE((*enc)->Update(AsBytes(big), &stream).ok());
  ASSERT_TRUE((*enc)->Finish(&stream).ok());
  ASSERT_TRUE(svc_->RotateDataKeys(TestOp(), "acme", "prod", {"orders"}, false).ok());
  Bytes stream_out;
  auto rs = svc_->Rewrap(TestOp(), "acme", "prod", stream, &stream_out);
  ASSERT_TRUE(rs.ok()) << rs.status().ToString();
  EXPECT_EQ(rs->dk_version, 3u);
  auto hdr = ParseHeader(stream_out);
  ASSERT_TRUE(hdr.ok());
  EXPECT_EQ(hdr->header.type, EnvelopeType::kStream);
  EXPECT_EQ(*Decrypt("prod", stream_out), big);

  // Another environment's ciphertext is refused, naming both.
  Bytes other;
  auto wrong = svc_->Rewrap(TestOp(), "acme", "dev", old, &other);
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("prod"), std::string::npos);
  EXPECT_TRUE(other.empty());
  // Garbage is a 4xx-class error.
  EXPECT_EQ(svc_->Rewrap(TestOp(), "acme", "prod", AsBytes("nope"), &other).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(LifecycleDTest, CryptoShredMakesDataUnreadableEvenWithWarmCaches) {
  Bytes ct = Encrypt("prod", "orders", "to be destroyed");
  Bytes dev = Encrypt("dev", "orders", "stays");
  // A second node on the same store, its caches warm too.
  auto node2 = Open();
  ASSERT_EQ(*Decrypt("prod", ct, node2.get()), "to be destroyed");
  ASSERT_EQ(*Decrypt("prod", ct), "to be destroyed");

  auto c = svc_->RequestShred(TestOp(), "acme", "prod");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->expires_at, ToUnixSeconds(clock_.Now()) + 120);
  // The second confirmation must name the environment.
  EXPECT_EQ(svc_->ShredEnvironment(TestOp(), "acme", "prod", c->token, "dev").status().code(),
            StatusCode::kInvalidArgument);
  // A token of another environment does not shred this one.
  EXPECT_EQ(svc_->ShredEnvironment(TestOp(), "acme", "dev", c->token, "dev").status().code(),
            StatusCode::kInvalidArgument);
  c = svc_->RequestShred(TestOp(), "acme", "prod");
  auto done = svc_->ShredEnvironment(TestOp(), "acme", "prod", c->token, "prod");
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->ek_versions_destroyed, 1u);
  EXPECT_EQ(done->dk_versions_destroyed, 1u);
  // The token was single use.
  EXPECT_FALSE(svc_->ShredEnvironment(TestOp(), "acme", "prod", c->token, "prod").ok());

  // This node: refused at once, despite its warm caches.
  auto gone = Decrypt("prod", ct);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(gone.status().message().find("was crypto-shredded at"), std::string::npos);
  EXPECT_NE(gone.status().message().find("can never be read"), std::string::npos);
  Bytes out;
  EXPECT_EQ(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes("x"), &out).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(svc_->RotateEnvironmentKey(TestOp(), "acme", "prod").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod").status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(svc_->Rewrap(TestOp(), "acme", "prod", ct, &out).status().code(),
            StatusCode::kFailedPrecondition);
  // The name stays taken, with the reason.
  auto again = svc_->CreateEnvironment(TestOp(), "acme", "prod");
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("crypto-shredded"), std::string::npos);
  // Other environments are untouched.
  EXPECT_EQ(*Decrypt("dev", dev), "stays");

  // The other node loses its cached keys within one TTL; after that, nothing anywhere reads it.
  clock_.Advance(options_.key_cache_ttl + std::chrono::seconds(1));
  auto node2_gone = Decrypt("prod", ct, node2.get());
  EXPECT_EQ(node2_gone.status().code(), StatusCode::kFailedPrecondition);
  // Even a fresh node that skipped the shred check could not unwrap: the EK blobs are gone.
  auto fresh = Open();
  EXPECT_FALSE(Decrypt("prod", ct, fresh.get()).ok());

  auto ev = Events("environment.shredded");
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].environment, "prod");
}

TEST_F(LifecycleDTest, ShredConfirmationExpires) {
  auto c = svc_->RequestShred(TestOp(), "acme", "prod");
  ASSERT_TRUE(c.ok());
  clock_.Advance(kShredConfirmationTtl + std::chrono::seconds(1));
  auto s = svc_->ShredEnvironment(TestOp(), "acme", "prod", c->token, "prod");
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("expired"), std::string::npos);
  EXPECT_EQ(svc_->ShredEnvironment(TestOp(), "acme", "prod", "made-up", "prod").status().code(),
            StatusCode::kFailedPrecondition);
  Bytes ct = Encrypt("prod", "x", "still here");
  EXPECT_EQ(*Decrypt("prod", ct), "still here");
}

// The confirmation lives in the store: step two may reach another process on it (another
// replica, another `ekm` run), once; the store keeps a hash of the token, never the token.
TEST_F(LifecycleDTest, ShredStepTwoOnAnotherNodeOfTheStore) {
  auto c = svc_->RequestShred(TestOp(), "acme", "prod");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto node2 = Open();
  // A token for prod refuses dev and stays usable for prod.
  EXPECT_EQ(node2->ShredEnvironment(TestOp(), "acme", "dev", c->token, "dev").status().code(),
            StatusCode::kInvalidArgument);
  auto done = node2->ShredEnvironment(TestOp(), "acme", "prod", c->token, "prod");
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  // Single use for every node (the store test holds the take itself to one use).
  EXPECT_EQ(svc_->ShredEnvironment(TestOp(), "acme", "prod", c->token, "prod").status().code(),
            StatusCode::kFailedPrecondition);

  auto c2 = svc_->RequestShred(TestOp(), "acme", "dev");
  ASSERT_TRUE(c2.ok());
  std::ifstream db(options_.data_dir + "/ekm.db", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(db)), std::istreambuf_iterator<char>());
  std::ifstream wal(options_.data_dir + "/ekm.db-wal", std::ios::binary);
  bytes.append((std::istreambuf_iterator<char>(wal)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.find(c2->token.substr(6)), std::string::npos) << "the token is in the store";
}

TEST_F(LifecycleDTest, WorkspaceDefaultKeyAppliesToNewEnvironmentsOnly) {
  auto none = svc_->GetWorkspaceDefaultKey(TestOp(), "acme");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->set);
  EXPECT_EQ(none->provider, "platform");
  // The platform provider is the only one here; an unknown provider or key is refused.
  EXPECT_FALSE(svc_->SetWorkspaceDefaultKey(TestOp(), "acme", "nope", "x").ok());
  EXPECT_FALSE(svc_->SetWorkspaceDefaultKey(TestOp(), "acme", "platform", "not-root").ok());
  auto set = svc_->SetWorkspaceDefaultKey(TestOp(), "acme", "platform", "root");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->set);
  EXPECT_TRUE(svc_->GetWorkspaceDefaultKey(TestOp(), "acme")->set);
  auto reset = svc_->ResetWorkspaceDefaultKey(TestOp(), "acme");
  ASSERT_TRUE(reset.ok());
  EXPECT_FALSE(svc_->GetWorkspaceDefaultKey(TestOp(), "acme")->set);
  EXPECT_EQ(Events("workspace.default_key_set").size(), 2u);
  EXPECT_EQ(svc_->GetWorkspaceDefaultKey(TestOp(), "nope").status().code(), StatusCode::kNotFound);
}

TEST_F(LifecycleDTest, EventsFilterByEnvironmentTypeTimeAndPage) {
  clock_.Advance(std::chrono::seconds(10));
  const int64_t mid = ToUnixSeconds(clock_.Now()) * 1000;
  ASSERT_TRUE(svc_->RotateEnvironmentKey(TestOp(), "acme", "prod").ok());
  ASSERT_TRUE(svc_->RotateEnvironmentKey(TestOp(), "acme", "dev").ok());
  EventQuery q;
  q.workspace = "acme";
  q.environment = "prod";
  auto prod = svc_->ListEvents(TestOp(), q);
  ASSERT_TRUE(prod.ok());
  for (const auto& e : *prod) EXPECT_EQ(e.environment, "prod");
  q.environment.reset();
  q.since_ms = mid;
  auto recent = svc_->ListEvents(TestOp(), q);
  ASSERT_EQ(recent->size(), 2u);
  q.limit = 1;
  auto page1 = svc_->ListEvents(TestOp(), q);
  ASSERT_EQ(page1->size(), 1u);
  q.after_id = (*page1)[0].id;
  auto page2 = svc_->ListEvents(TestOp(), q);
  ASSERT_EQ(page2->size(), 1u);
  EXPECT_EQ((*page2)[0].environment, "dev");
  q.limit = 0;
  EXPECT_EQ(svc_->ListEvents(TestOp(), q).status().code(), StatusCode::kInvalidArgument);
  q.limit = 10;
  q.workspace = "nope";
  EXPECT_EQ(svc_->ListEvents(TestOp(), q).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ekm
