// The seed sentences on rotation and key management against a real AWS KMS peer (moto, IAM checks
// on, and the fault proxy): the CMK's own rotation in the KMS needs no action in ekm, each
// environment has its own CMK, the workspace default applies to new environments only, and revoking
// one environment's CMK leaves the others untouched.
#include <gtest/gtest.h>

#include <ctime>
#include <map>

#include "ekm/base/clock.h"
#include "ekm/envelope/envelope.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

using testing::MotoPeer;

class KmsLifecycleTest : public ::testing::Test {
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
    clock_.SetUnixSeconds(static_cast<int64_t>(std::time(nullptr)));
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    const auto& u = peer_->setup()["users"]["ekm-describe"];
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
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
  }

  static std::string KeyArn(const char* name) { return peer_->setup()["keys"][name]["arn"]; }

  Bytes Encrypt(std::string_view env, std::string_view text) {
    Bytes ct;
    Status s = svc_->Encrypt(TestOp(), "acme", env, "orders", AsBytes(text), &ct);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ct;
  }
  StatusOr<std::string> Decrypt(std::string_view env, const Bytes& ct) {
    Bytes pt;
    Status s = svc_->Decrypt(TestOp(), "acme", env, ct, &pt);
    if (!s.ok()) return s;
    return std::string(AsChars(pt));
  }

  static MotoPeer* peer_;
  FakeClock clock_;
  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};
MotoPeer* KmsLifecycleTest::peer_ = nullptr;

// The seed sections, as test suites (each starts its own moto).
class SeedRotation : public KmsLifecycleTest {};
class SeedKeyManagement : public KmsLifecycleTest {};

// "Key rotation/replacement is a manual process unless auto-rotation is enabled in the KMS,
// which we recommend as a best practice."
TEST_F(SeedRotation, KeyRotationIsAManualProcessUnlessAutoRotationIsEnabledInTheKms) {
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  auto set = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  // Auto-rotation off: `ekm key show` says so, and "Update key" recommended turning it on.
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_TRUE(info->description.has_value()) << info->description_error;
  EXPECT_EQ(info->description->rotation, CmkRotation::kDisabled);
  bool recommended = false;
  for (const auto& c : set->checks) {
    if (c.name == "rotation") recommended = c.detail.find("recommended") != std::string::npos;
  }
  EXPECT_TRUE(recommended);
  // Nothing in ekm rotates by itself: a year later, with no schedule, the same EK is current.
  clock_.Advance(std::chrono::hours(24 * 365));
  auto run = svc_->RunScheduledRotations(TestOp());
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->rotated.empty());
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->ek_version, info->ek_version);
  // Rotation is a manual step (or a schedule the operator sets).
  auto r = svc_->RotateEnvironmentKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->to_version, info->ek_version + 1);
  // Enabling auto-rotation in the KMS shows up in `ekm key show`.
  ASSERT_TRUE(
      peer_->RunBoto3("client('kms').enable_key_rotation(KeyId='" + KeyArn("main") + "')").ok());
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->description->rotation,
            CmkRotation::kEnabled);
}

// "If auto-rotation is enabled in the KMS, Workato will automatically use the latest generation
// of the key. No replacement in Workato is necessary."
TEST_F(SeedRotation, IfAutoRotationIsEnabledTheLatestGenerationIsUsedAndNoReplacementIsNecessary) {
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  ASSERT_TRUE(svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("rotating")).ok());
  auto before_info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(before_info.ok());
  EXPECT_EQ(before_info->description->rotation, CmkRotation::kEnabled);
  Bytes before = Encrypt("prod", "before the KMS rotation");
  // The KMS rotates its key (on demand here; automatic rotation does the same on its schedule).
  std::string out;
  Status rotated = peer_->RunBoto3(
      "kms = client('kms')\n"
      "kms.rotate_key_on_demand(KeyId='" +
          KeyArn("rotating") +
          "')\n"
          "print(len(kms.list_key_rotations(KeyId='" +
          KeyArn("rotating") + "')['Rotations']))\n",
      &out);
  ASSERT_TRUE(rotated.ok()) << rotated.ToString();
  EXPECT_NE(out.find('1'), std::string::npos) << out;
  // No action in ekm: after the key cache TTL ekm asks the KMS again, old and new data decrypt,
  // and no new EK version was needed.
  clock_.Advance(options_.key_cache_ttl + std::chrono::seconds(1));
  Bytes after = Encrypt("prod", "after the KMS rotation");
  EXPECT_EQ(*Decrypt("prod", before), "before the KMS rotation");
  EXPECT_EQ(*Decrypt("prod", after), "after the KMS rotation");
  auto after_info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(after_info.ok());
  EXPECT_EQ(after_info->ek_version, before_info->ek_version);
  EXPECT_EQ(after_info->key_id, KeyArn("rotating"));
}

// "Unlike the Workato-managed key that is used by default, bringing your own key allows you to
// maintain control over all aspects of your workspace's Customer Main Key."
TEST_F(SeedKeyManagement, BringingYourOwnKeyGivesControlOverTheWorkspacesCustomerMainKey) {
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "old").ok());
  // By default the platform-managed key.
  auto def = svc_->GetWorkspaceDefaultKey(TestOp(), "acme");
  ASSERT_TRUE(def.ok());
  EXPECT_FALSE(def->set);
  EXPECT_EQ(def->provider, "platform");
  // The workspace's own key, validated by a round trip before it is stored.
  auto set = svc_->SetWorkspaceDefaultKey(TestOp(), "acme", "aws-kms", KeyArn("main"));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->set);
  EXPECT_EQ(set->key_id, KeyArn("main"));
  // New environments are wrapped under it; the existing one is unchanged.
  auto fresh = svc_->CreateEnvironment(TestOp(), "acme", "new");
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(fresh->cmk_provider, "aws-kms");
  EXPECT_EQ(fresh->cmk_key_id, KeyArn("main"));
  auto envs = svc_->ListEnvironments(TestOp(), "acme");
  ASSERT_TRUE(envs.ok());
  for (const auto& e : *envs) {
    if (e.name == "old") {
      EXPECT_EQ(e.cmk_provider, "platform");
    }
  }
  Bytes ct = Encrypt("new", "under the customer's key");
  EXPECT_EQ(*Decrypt("new", ct), "under the customer's key");
  // A key the platform cannot use is refused and nothing changes.
  auto bad = svc_->SetWorkspaceDefaultKey(
      TestOp(), "acme", "aws-kms",
      "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(svc_->GetWorkspaceDefaultKey(TestOp(), "acme")->key_id, KeyArn("main"));
  // Back to the platform default.
  ASSERT_TRUE(svc_->ResetWorkspaceDefaultKey(TestOp(), "acme").ok());
  EXPECT_EQ(svc_->CreateEnvironment(TestOp(), "acme", "later")->cmk_provider, "platform");
}

// "If you're using the Environments feature, note that the info in this section applies to a
// single environment and not the workspace as a whole."
TEST_F(SeedKeyManagement, TheKeySettingsApplyToASingleEnvironmentNotTheWorkspaceAsAWhole) {
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "staging").ok());
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
  // Each environment its own CMK: two customer keys and the platform key.
  ASSERT_TRUE(svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main")).ok());
  ASSERT_TRUE(
      svc_->SetCustomerKey(TestOp(), "acme", "staging", "aws-kms", KeyArn("rotating")).ok());
  Bytes prod = Encrypt("prod", "p");
  Bytes staging = Encrypt("staging", "s");
  Bytes dev = Encrypt("dev", "d");
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->key_id, KeyArn("main"));
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "staging")->key_id, KeyArn("rotating"));
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "dev")->provider, "platform");
  // Rotating one environment's EK leaves the others' versions alone.
  ASSERT_TRUE(svc_->RotateEnvironmentKey(TestOp(), "acme", "prod").ok());
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "staging")->ek_version, 2u);
  // The customer revokes prod's CMK (the KMS now refuses it); after one TTL prod cannot be read,
  // and staging (another key) and dev (the platform key) carry on.
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "DisabledException").ok());
  ASSERT_TRUE(peer_->ArmFault("TrentService.Encrypt", "DisabledException").ok());
  clock_.Advance(options_.key_cache_ttl + std::chrono::seconds(1));
  EXPECT_FALSE(Decrypt("prod", prod).ok());
  EXPECT_EQ(*Decrypt("dev", dev), "d");
  ASSERT_TRUE(peer_->ClearFaults().ok());
  // The customer restores the key: prod is read again once its backoff (at most 60 s) is over.
  clock_.Advance(std::chrono::seconds(61));
  // Shredding staging leaves prod and dev readable.
  auto c = svc_->RequestShred(TestOp(), "acme", "staging");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(svc_->ShredEnvironment(TestOp(), "acme", "staging", c->token, "staging").ok());
  EXPECT_FALSE(Decrypt("staging", staging).ok());
  EXPECT_EQ(*Decrypt("prod", prod), "p");
  EXPECT_EQ(*Decrypt("dev", dev), "d");
}

}  // namespace
}  // namespace ekm
