// CMK replacement through EkmService against moto (IAM checks on, through the fault proxy so
// that the test sees every KMS call): once per replacement period, emergencies, and the repack
// after it. FakeClock: no test waits for a period or a TTL.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

#include "ekm/api/repack_json.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

using std::chrono::hours;
using std::chrono::seconds;
using testing::MotoPeer;

class ReplacementTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto peer = MotoPeer::Start({.tls = false, .fault_proxy = true});
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = std::move(*peer).release();
  }
  static void TearDownTestSuite() {
    delete peer_;
    peer_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(peer_, nullptr);
    ASSERT_TRUE(peer_->ClearFaults().ok());
    clock_.SetUnixSeconds(1'790'000'000);
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    Open();
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }

  void Open() {
    svc_.reset();
    const auto& u = peer_->setup()["users"]["ekm-platform"];
    std::map<std::string, std::string> env = {{"AWS_ACCESS_KEY_ID", u["access_key_id"]},
                                              {"AWS_SECRET_ACCESS_KEY", u["secret_access_key"]},
                                              {"AWS_ENDPOINT_URL", peer_->proxy_endpoint()},
                                              {"AWS_REGION", "us-east-1"},
                                              {"AWS_EC2_METADATA_DISABLED", "true"},
                                              {"HOME", dir_.path()}};
    options_.aws.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    options_.aws.call_timeout = std::chrono::milliseconds(2000);
    options_.aws.call_deadline = std::chrono::milliseconds(3000);
    auto svc = EkmService::Open(options_);
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    svc_ = std::move(*svc);
  }

  static std::string KeyArn(const char* name) { return peer_->setup()["keys"][name]["arn"]; }

  StatusOr<KeyValidation> Set(const std::string& provider, const std::string& key,
                              KeyChangeOptions o = {}) {
    return svc_->SetCustomerKey(TestOp(), "acme", "prod", provider, key, o);
  }
  StatusOr<KeyValidation> SetAws(const char* name, KeyChangeOptions o = {}) {
    return Set("aws-kms", KeyArn(name), o);
  }

  Bytes Encrypt(std::string_view scope, std::string_view text) {
    Bytes ct;
    Status s = svc_->Encrypt(TestOp(), "acme", "prod", scope, AsBytes(text), &ct);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ct;
  }
  std::string Decrypt(const Bytes& ct) {
    Bytes pt;
    Status s = svc_->Decrypt(TestOp(), "acme", "prod", ct, &pt);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return std::string(AsChars(pt));
  }

  // Events of one type, read from the store beside the service.
  std::vector<LifecycleEventRecord> Events(std::string_view type) {
    auto store = EkmService::OpenStore(options_);
    EXPECT_TRUE(store.ok());
    LifecycleEventFilter f;
    f.workspace = "acme";
    f.type = std::string(type);
    auto events = (*store)->ListLifecycleEvents(f);
    EXPECT_TRUE(events.ok());
    return *events;
  }

  int KmsRequests() {
    auto stats = peer_->FaultStats();
    EXPECT_TRUE(stats.ok());
    int n = 0;
    for (const auto& [target, count] : (*stats)["requests"].items()) n += count.get<int>();
    return n;
  }

  static MotoPeer* peer_;
  testing::TempDir dir_;
  FakeClock clock_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

MotoPeer* ReplacementTest::peer_ = nullptr;

TEST_F(ReplacementTest, TheFirstCustomerKeyIsNotAReplacementAndMayBeReplacedAfterThePeriod) {
  auto first = SetAws("main");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  clock_.Advance(hours(24));
  auto second = SetAws("rotating");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->ok);
}

// The seed sentences of section Rotation, with the same moto fixture.
class SeedRotation : public ReplacementTest {};

// Seed: "Replacing a key in Workato is allowed once per 24-hour period." A second replacement
// inside the period is refused, naming the next allowed time; after it, it is allowed.
TEST_F(SeedRotation, ReplacingAKeyIsAllowedOncePerTwentyFourHourPeriod) {
  ASSERT_TRUE(SetAws("main").ok());  // the first customer key: not a replacement
  // The period counts from the last change, a set or a replacement.
  clock_.Advance(hours(1));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(hours(23));
  ASSERT_TRUE(SetAws("rotating").ok());
  // ekm's data under the new key, then the second replacement inside 24 h.
  Bytes ct = Encrypt("orders", "hello");
  clock_.Advance(hours(18) + std::chrono::minutes(57));
  ASSERT_TRUE(peer_->ClearFaults().ok());
  auto refused = SetAws("main");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  const std::string m = refused.status().message();
  EXPECT_NE(m.find("once per 24 h 0 min"), std::string::npos) << m;
  EXPECT_NE(m.find("the next replacement is allowed at " +
                   FormatRfc3339(FromUnixSeconds(1'790'000'000 + 2 * 86400))),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("(in 5 h 3 min)"), std::string::npos) << m;
  EXPECT_NE(refused.status().hint().find("--emergency"), std::string::npos);
  EXPECT_EQ(KmsRequests(), 0) << "refused before any call to the key provider";
  auto refusals = Events(event::kKeyReplacementRefused);
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_NE(refusals[0].detail.find("next_allowed_at"), std::string::npos);
  // Recorded: the failed validation, and nothing changed.
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->key_id, KeyArn("rotating"));
  EXPECT_EQ(info->ek_version, 3u);
  ASSERT_TRUE(info->last_validation.has_value());
  EXPECT_FALSE(info->last_validation->ok);
  EXPECT_EQ(info->last_validation->key_id, KeyArn("main"));
  EXPECT_EQ(Decrypt(ct), "hello");
  // After the period it is allowed.
  clock_.Advance(hours(5) + std::chrono::minutes(3));
  auto allowed = SetAws("main");
  ASSERT_TRUE(allowed.ok()) << allowed.status().ToString();
  EXPECT_EQ(Decrypt(ct), "hello");
}

TEST_F(ReplacementTest, AnEmergencyReplacementNeedsAReasonAndIsRecordedAsSuch) {
  ASSERT_TRUE(SetAws("main").ok());
  clock_.Advance(hours(24));
  ASSERT_TRUE(SetAws("rotating").ok());
  clock_.Advance(hours(1));
  auto no_reason = SetAws("main", {.emergency = true, .reason = "  "});
  ASSERT_FALSE(no_reason.ok());
  EXPECT_EQ(no_reason.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_reason.status().message().find("needs a reason"), std::string::npos);
  auto emergency =
      SetAws("main", {.emergency = true, .reason = "key material may have leaked (INC-4711)"});
  ASSERT_TRUE(emergency.ok()) << emergency.status().ToString();
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->key_id, KeyArn("main"));
  auto recorded = Events(event::kKeyEmergencyReplaced);
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_NE(recorded[0].detail.find("INC-4711"), std::string::npos) << recorded[0].detail;
  auto store = EkmService::OpenStore(options_);
  ASSERT_TRUE(store.ok());
  auto env = (*store)->GetEnvironment("acme", "prod");
  auto change = (*store)->GetLatestCmkChange(env->id);
  ASSERT_TRUE(change.ok() && change->has_value());
  EXPECT_TRUE((*change)->emergency);
  EXPECT_EQ((*change)->kind, "replacement");
  EXPECT_EQ((*change)->reason, "key material may have leaked (INC-4711)");
  // And the emergency itself counts as the last change: a normal replacement waits again.
  clock_.Advance(hours(1));
  auto refused = SetAws("rotating");
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ReplacementTest, AnEnvironmentSettingSetsThePeriod) {
  EnvironmentSettings set;
  set.replacement_period_seconds = 3600;
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  ASSERT_TRUE(SetAws("main").ok());
  clock_.Advance(hours(24));
  ASSERT_TRUE(SetAws("rotating").ok());
  clock_.Advance(std::chrono::minutes(59));
  auto refused = SetAws("main");
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("(in 1 min 0 s)"), std::string::npos)
      << refused.status().message();
  clock_.Advance(std::chrono::minutes(1));
  EXPECT_TRUE(SetAws("main").ok());
}

TEST_F(ReplacementTest, TheDeploymentDefaultPeriodIsConfigurable) {
  options_.replacement_period = seconds(600);
  Open();
  ASSERT_TRUE(SetAws("main").ok());
  clock_.Advance(seconds(600));
  ASSERT_TRUE(SetAws("rotating").ok());
  clock_.Advance(seconds(599));
  EXPECT_EQ(SetAws("main").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(seconds(1));
  EXPECT_TRUE(SetAws("main").ok());
}

// Issue 12: the period cannot be switched off. It has a floor (kMinReplacementPeriod), and a
// shorter period applies only once the period running since the last change has ended.
TEST_F(ReplacementTest, ThePeriodHasAFloor) {
  EnvironmentSettings set;
  set.replacement_period_seconds = 0;
  auto zero = svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {});
  ASSERT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("at least 3600 seconds (1 h)"), std::string::npos)
      << zero.status().message();
  EXPECT_NE(zero.status().hint().find("--emergency"), std::string::npos);
  set.replacement_period_seconds = kMinReplacementPeriod.count() - 1;
  EXPECT_EQ(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).status().code(),
            StatusCode::kInvalidArgument);
  set.replacement_period_seconds = kMinReplacementPeriod.count();
  EXPECT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  // A value below the floor stored by an older version counts as the floor.
  {
    auto store = EkmService::OpenStore(options_);
    ASSERT_TRUE(store.ok());
    auto env = (*store)->GetEnvironment("acme", "prod");
    ASSERT_TRUE(env.ok());
    ASSERT_TRUE((*store)->SetEnvironmentSetting(env->id, kSettingReplacementPeriod, 0).ok());
  }
  ASSERT_TRUE(SetAws("main").ok());
  clock_.Advance(std::chrono::minutes(10));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(std::chrono::minutes(50));
  EXPECT_TRUE(SetAws("rotating").ok());
}

TEST_F(ReplacementTest, AShorterPeriodAppliesOnlyAfterTheRunningOne) {
  ASSERT_TRUE(SetAws("main").ok());  // the 24 h period begins
  EnvironmentSettings set;
  set.replacement_period_seconds = 3600;
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  clock_.Advance(hours(2));
  auto refused = SetAws("rotating");
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("the replacement period of 24 h"), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("(in 22 h"), std::string::npos)
      << refused.status().message();
  auto changed = Events(event::kEnvironmentSettingsChanged);
  ASSERT_FALSE(changed.empty());
  EXPECT_NE(changed.back().detail.find("next_replacement_allowed_at"), std::string::npos)
      << changed.back().detail;
  // A reset to the default (24 h) and back again changes nothing of it either.
  ASSERT_TRUE(
      svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", {}, {"replacement_period_seconds"})
          .ok());
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  clock_.Advance(hours(22) - seconds(1));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(seconds(1));
  ASSERT_TRUE(SetAws("rotating").ok());
  // From then on the shorter period is the one.
  clock_.Advance(hours(1));
  EXPECT_TRUE(SetAws("main").ok());
}

TEST_F(ReplacementTest, ALongerPeriodAppliesAtOnceAndKeepsRunningWhenShortenedAgain) {
  ASSERT_TRUE(SetAws("main").ok());
  EnvironmentSettings set;
  set.replacement_period_seconds = 48 * 3600;
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  clock_.Advance(hours(24));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  set.replacement_period_seconds = 3600;  // the 48 h now running still ends as it would
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  clock_.Advance(hours(24) - seconds(1));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(seconds(1));
  EXPECT_TRUE(SetAws("rotating").ok());
}

TEST_F(ReplacementTest, AShorterDeploymentDefaultAppliesOnlyAfterTheRunningPeriod) {
  ASSERT_TRUE(SetAws("main").ok());        // under the default 24 h
  options_.replacement_period = hours(1);  // ekmd restarted with a shorter default
  Open();
  clock_.Advance(hours(2));
  EXPECT_EQ(SetAws("rotating").status().code(), StatusCode::kFailedPrecondition);
  clock_.Advance(hours(22));
  ASSERT_TRUE(SetAws("rotating").ok());
  clock_.Advance(hours(1));
  EXPECT_TRUE(SetAws("main").ok());
}

TEST_F(ReplacementTest, SettingTheSameKeyAgainOnlyRevalidates) {
  ASSERT_TRUE(SetAws("main").ok());
  clock_.Advance(hours(1));
  auto again = SetAws("main");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  EXPECT_EQ(info->ek_version, 2u);
}

// Seed: "Workato will repack the key hierarchy when a key is replaced. This process can take
// some time." (How much time: RepackTest.OneHundredThousandDataKeysAreRepacked and the kill -9
// test.)
TEST_F(SeedRotation, WorkatoWillRepackTheKeyHierarchyWhenAKeyIsReplacedThisProcessCanTakeSomeTime) {
  std::vector<std::pair<Bytes, std::string>> data;
  for (int i = 0; i < 50; ++i) {
    std::string text = "platform " + std::to_string(i);
    data.push_back({Encrypt("scope-" + std::to_string(i), text), text});
  }
  ASSERT_TRUE(SetAws("main").ok());  // the first customer key also repacks
  auto st = svc_->GetRepackStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "pending");
  EXPECT_EQ(st->total, 50u);
  auto run = svc_->RunRepack(TestOp(), "acme", "prod", nullptr);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->state, "finished");
  for (int i = 0; i < 30; ++i) {
    std::string text = "main " + std::to_string(i);
    data.push_back({Encrypt("scope-" + std::to_string(i), text), text});
  }
  clock_.Advance(hours(24));
  ASSERT_TRUE(SetAws("rotating").ok());
  st = svc_->GetRepackStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "pending");
  EXPECT_EQ(st->total, 50u) << "one DK per scope: the repack of the first key moved them all";
  std::vector<RepackStatus> seen;
  run =
      svc_->RunRepack(TestOp(), "acme", "prod", [&](const RepackStatus& s) { seen.push_back(s); });
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(run->state, "finished");
  EXPECT_EQ(run->done, 50u);
  EXPECT_EQ(run->total, 50u);
  EXPECT_TRUE(run->finished_at_ms.has_value());
  // The inventory: platform EK v1 and main's EK v2 destroyed, all 50 DKs under rotating's v3.
  ASSERT_EQ(run->inventory.size(), 3u);
  EXPECT_EQ(run->inventory[0].state, "destroyed");
  EXPECT_EQ(run->inventory[1].state, "destroyed");
  EXPECT_EQ(run->inventory[1].cmk_key_id, KeyArn("main"));
  EXPECT_EQ(run->inventory[2].state, "current");
  EXPECT_EQ(run->inventory[2].cmk_key_id, KeyArn("rotating"));
  EXPECT_EQ(run->inventory[2].data_keys, 50u);
  auto json = RepackStatusToJson(*run);
  EXPECT_EQ(RepackStatusToJson(RepackStatusFromJson(json)), json);
  // Everything still decrypts, through a fresh cache after the TTL.
  clock_.Advance(seconds(301));
  Open();
  for (const auto& [ct, text] : data) EXPECT_EQ(Decrypt(ct), text);
}

TEST_F(ReplacementTest, AfterTheRepackTheOldCustomerKeyCanBeRevokedWithoutAffectingData) {
  std::vector<std::pair<Bytes, std::string>> data;
  ASSERT_TRUE(SetAws("main").ok());
  for (int i = 0; i < 20; ++i) {
    std::string text = "under main " + std::to_string(i);
    // Appended, not `"s" + std::to_string(i)`: GCC 12 at -O2/-O3 reports a false -Wrestrict
    // in libstdc++'s insert for a one-character literal prefix (GCC bug 105651).
    data.push_back({Encrypt(std::string("s").append(std::to_string(i)), text), text});
  }
  ASSERT_TRUE(svc_->RunRepack(TestOp(), "acme", "prod", nullptr).ok());
  // Replace the AWS key by the platform key, repack, then revoke AWS KMS entirely.
  clock_.Advance(hours(24));
  ASSERT_TRUE(Set("platform", "root").ok());
  auto run = svc_->RunRepack(TestOp(), "acme", "prod", nullptr);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->state, "finished");
  ASSERT_TRUE(peer_->ArmFault("*", "AccessDeniedException").ok());
  clock_.Advance(seconds(301));
  Open();
  for (const auto& [ct, text] : data) EXPECT_EQ(Decrypt(ct), text);
  EXPECT_EQ(Encrypt("new", "x").size() > 0, true);
}

TEST_F(ReplacementTest, ARepackWaitsWhileTheOldCustomerKeyRefusesAndSaysWhy) {
  ASSERT_TRUE(SetAws("main").ok());
  for (int i = 0; i < 5; ++i) Encrypt(std::string("s").append(std::to_string(i)), "x");
  ASSERT_TRUE(svc_->RunRepack(TestOp(), "acme", "prod", nullptr).ok());
  clock_.Advance(hours(24));
  ASSERT_TRUE(Set("platform", "root").ok());
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "AccessDeniedException").ok());
  clock_.Advance(seconds(301));
  Open();
  auto run = svc_->RunRepack(TestOp(), "acme", "prod", nullptr);
  ASSERT_FALSE(run.ok());
  auto st = svc_->GetRepackStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "waiting");
  EXPECT_NE(st->last_error.find("the previous customer main key must stay available until the "
                                "repack completes"),
            std::string::npos)
      << st->last_error;
  ASSERT_TRUE(peer_->ClearFaults().ok());
  // Without a background runner (local mode) a re-run repacks in the caller's thread.
  run = svc_->RerunRepack(TestOp(), "acme", "prod");
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->state, "finished");
  // Nothing left to repack: the status as it is.
  run = svc_->RerunRepack(TestOp(), "acme", "prod");
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->state, "finished");
}

TEST_F(ReplacementTest, AWaitingRepackReRunWakesTheBackgroundRunner) {
  ASSERT_TRUE(SetAws("main").ok());
  for (int i = 0; i < 5; ++i) Encrypt(std::string("s").append(std::to_string(i)), "x");
  ASSERT_TRUE(svc_->RunRepack(TestOp(), "acme", "prod", nullptr).ok());
  clock_.Advance(hours(24));
  ASSERT_TRUE(Set("platform", "root").ok());
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "AccessDeniedException").ok());
  clock_.Advance(seconds(301));
  Open();
  ASSERT_FALSE(svc_->RunRepack(TestOp(), "acme", "prod", nullptr).ok());
  ASSERT_TRUE(peer_->ClearFaults().ok());
  svc_->StartRepackRunner();
  // With the runner (ekmd) the answer comes at once, and the runner does the work.
  auto woken = svc_->RerunRepack(TestOp(), "acme", "prod");
  ASSERT_TRUE(woken.ok()) << woken.status().ToString();
  EXPECT_NE(woken->state, "none");
  std::string state;
  for (int i = 0; i < 300 && state != "finished"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto st = svc_->GetRepackStatus(TestOp(), "acme", "prod");
    ASSERT_TRUE(st.ok());
    state = st->state;
  }
  svc_->StopRepackRunner();
  EXPECT_EQ(state, "finished");
}

}  // namespace
}  // namespace ekm
