// "Update key" end to end through EkmService against moto (IAM checks on), the fault proxy for
// what moto cannot produce, and the policy statement and doctor for the same workspace.
#include <gtest/gtest.h>

#include <map>

#include "ekm/api/key_json.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

using testing::MotoPeer;

class CustomerKeyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto peer = MotoPeer::Start({.tls = true, .fault_proxy = true});
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
    options_.data_dir = dir_.path() + "/data";
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    Open("ekm-platform");
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }

  // (Re)opens the service signing as `user`, straight to moto over HTTPS or through the proxy.
  void Open(const std::string& user, bool via_proxy = false, std::string secret = {}) {
    svc_.reset();
    const auto& u = peer_->setup()["users"][user];
    std::map<std::string, std::string> env = {
        {"AWS_ACCESS_KEY_ID", u["access_key_id"]},
        {"AWS_SECRET_ACCESS_KEY",
         secret.empty() ? u["secret_access_key"].get<std::string>() : secret},
        {"AWS_ENDPOINT_URL", via_proxy ? peer_->proxy_endpoint() : peer_->endpoint()},
        {"AWS_REGION", "us-east-1"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
        {"HOME", dir_.path()}};
    options_.aws.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    options_.aws.ca_file = peer_->ca_file();
    options_.aws.call_timeout = std::chrono::milliseconds(2000);
    options_.aws.call_deadline = std::chrono::milliseconds(3000);
    auto svc = EkmService::Open(options_);
    ASSERT_TRUE(svc.ok()) << svc.status().ToString();
    svc_ = std::move(*svc);
  }

  static std::string KeyArn(const char* name) { return peer_->setup()["keys"][name]["arn"]; }

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

  // The environment is still on the platform key, and its data still decrypts.
  void ExpectUnchanged() {
    auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->provider, "platform");
    EXPECT_EQ(info->ek_version, 1u);
  }

  static MotoPeer* peer_;
  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

MotoPeer* CustomerKeyTest::peer_ = nullptr;

TEST_F(CustomerKeyTest, UpdateKeyMakesTheAwsKeyTheCmkAndEverythingStillDecrypts) {
  Bytes before = Encrypt("orders", "written under the platform key");
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok);
  std::map<std::string, std::string> outcome;
  for (const auto& c : v->checks) outcome[c.name] = c.outcome;
  EXPECT_EQ(outcome["key id"], "passed");
  EXPECT_EQ(outcome["encrypt"], "passed");
  EXPECT_EQ(outcome["decrypt"], "passed");
  EXPECT_EQ(outcome["describe"], "skipped");  // ekm-platform may not DescribeKey
  EXPECT_EQ(outcome["store"], "passed");

  Bytes after = Encrypt("invoices", "written under the customer's key");
  EXPECT_EQ(Decrypt(before), "written under the platform key");
  EXPECT_EQ(Decrypt(after), "written under the customer's key");

  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->provider, "aws-kms");
  EXPECT_EQ(info->key_id, KeyArn("main"));
  EXPECT_EQ(info->ek_version, 2u);
  ASSERT_TRUE(info->description.has_value()) << info->description_error;
  EXPECT_EQ(info->description->region, "us-east-1");
  ASSERT_TRUE(info->last_validation.has_value());
  EXPECT_TRUE(info->last_validation->ok);

  // A restart unwraps the new EK through AWS KMS again (no cache survives it).
  Open("ekm-platform");
  EXPECT_EQ(Decrypt(after), "written under the customer's key");
  EXPECT_EQ(Decrypt(before), "written under the platform key");

  // Data written after "Update key" depends on the customer's key, in old scopes too: a
  // principal that may not Decrypt reads only what the platform key still wraps.
  Bytes orders_after = Encrypt("orders", "an old scope, written after the change");
  Open("ekm-no-decrypt");
  Bytes out;
  Status denied = svc_->Decrypt(TestOp(), "acme", "prod", orders_after, &out);
  EXPECT_EQ(denied.code(), StatusCode::kFailedPrecondition) << denied.ToString();
  EXPECT_NE(denied.message().find("AccessDenied"), std::string::npos) << denied.ToString();
  EXPECT_EQ(Decrypt(before), "written under the platform key");
  Open("ekm-platform");
  // The refusal started the stored backoff, which a fresh process keeps to; validating the key
  // proves access is back and ends it at once (as an operator does after fixing access).
  auto validated = svc_->ValidateCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  ASSERT_TRUE(validated.ok() && validated->ok) << validated.status().ToString();
  EXPECT_EQ(Decrypt(orders_after), "an old scope, written after the change");

  // The same key again is a re-validation, not a new EK version.
  auto again = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto info2 = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info2.ok());
  EXPECT_EQ(info2->ek_version, 2u);
}

TEST_F(CustomerKeyTest, AliasArnAndRotationStatusWhereDescribeIsPermitted) {
  Open("ekm-describe");
  std::string alias = peer_->setup()["keys"]["rotating"]["alias_arn"];
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", alias);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  std::map<std::string, KeyCheck> by_name;
  for (const auto& c : v->checks) by_name[c.name] = c;
  EXPECT_EQ(by_name["describe"].outcome, "passed");
  EXPECT_NE(by_name["describe"].detail.find("SYMMETRIC_DEFAULT"), std::string::npos);
  EXPECT_EQ(by_name["rotation"].outcome, "passed");
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->description.has_value());
  EXPECT_EQ(info->description->rotation, CmkRotation::kEnabled);
  EXPECT_EQ(info->description->resolved_key_id, KeyArn("rotating"));
}

TEST_F(CustomerKeyTest, AMalformedArnIsNamedPreciselyAndNothingChanges) {
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", " " + KeyArn("main"));
  ASSERT_EQ(v.status().code(), StatusCode::kInvalidArgument) << v.status().ToString();
  EXPECT_NE(v.status().message().find("key id check"), std::string::npos);
  EXPECT_NE(v.status().message().find("space"), std::string::npos) << v.status().ToString();
  ExpectUnchanged();
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->last_validation.has_value());
  EXPECT_FALSE(info->last_validation->ok);
  EXPECT_EQ(info->last_validation->error_code, "invalid_argument");

  // A pasted key id that is not even UTF-8 is recorded as typed and still reported as JSON.
  auto bytes = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", "arn:aws:kms:\xff");
  ASSERT_EQ(bytes.status().code(), StatusCode::kInvalidArgument);
  auto shown = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(shown.ok());
  std::string text = JsonText(CustomerKeyInfoToJson(*shown));
  EXPECT_NE(text.find("arn:aws:kms:\xef\xbf\xbd"), std::string::npos) << text;
  ExpectUnchanged();
}

TEST_F(CustomerKeyTest, WithoutDecryptTheAdminIsToldToFixTheKeyPolicy) {
  Open("ekm-no-decrypt");
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  ASSERT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find("decrypt check"), std::string::npos);
  EXPECT_NE(v.status().message().find("AccessDenied"), std::string::npos);
  EXPECT_NE(v.status().hint().find("ekm key policy --workspace acme --environment prod"),
            std::string::npos)
      << v.status().hint();
  ExpectUnchanged();
  auto info = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(info.ok() && info->last_validation);
  EXPECT_EQ(info->last_validation->provider_code, "AccessDenied");
}

TEST_F(CustomerKeyTest, AWrongSecretPointsAtThePlatformsCredentials) {
  Open("ekm-platform", false, "not/the/right/secret/access/key/at/all/0");
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
  // docs/api.md: the platform's own credentials wrong: 409, the operator must fix them.
  ASSERT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find("SignatureDoesNotMatch"), std::string::npos);
  EXPECT_NE(v.status().hint().find("platform"), std::string::npos);
  ExpectUnchanged();
}

TEST_F(CustomerKeyTest, ANonexistentKeyPointsAtTheArnAndRegion) {
  std::string arn = "arn:aws:kms:us-east-1:" + peer_->setup()["account"].get<std::string>() +
                    ":key/0f0f0f0f-0000-4000-8000-000000000000";
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", arn);
  ASSERT_EQ(v.status().code(), StatusCode::kNotFound) << v.status().ToString();
  EXPECT_NE(v.status().hint().find("region"), std::string::npos);
  ExpectUnchanged();
}

TEST_F(CustomerKeyTest, ADisabledKeyIsRefusedEvenWhereTheKmsStillAnswers) {
  // moto keeps serving a disabled key; DescribeKey tells the truth.
  Open("ekm-describe");
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("disabled"));
  ASSERT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find("Disabled"), std::string::npos);
  EXPECT_NE(v.status().hint().find("enable the key"), std::string::npos);
  ExpectUnchanged();
}

TEST_F(CustomerKeyTest, KeyStateAndOutagesThroughTheFaultProxy) {
  Open("ekm-platform", /*via_proxy=*/true);
  struct Case {
    std::string target, kind;
    StatusCode code;
    std::string in_message, in_hint;
  };
  std::vector<Case> cases = {
      {"TrentService.Encrypt", "DisabledException", StatusCode::kFailedPrecondition,
       "encrypt check", "enable it"},
      {"TrentService.Decrypt", "KMSInvalidStateException", StatusCode::kFailedPrecondition,
       "decrypt check", "cancel it"},
      {"TrentService.Encrypt", "ThrottlingException", StatusCode::kUnavailable, "Throttling",
       "AWS Health Dashboard"},
      {"TrentService.Encrypt", "KMSInternalException", StatusCode::kUnavailable,
       "KMSInternalException", "try again"},
      {"TrentService.Encrypt", "timeout", StatusCode::kDeadlineExceeded, "encrypt check",
       "AWS Health Dashboard"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kind);
    ASSERT_TRUE(peer_->ClearFaults().ok());
    ASSERT_TRUE(peer_->ArmFault(c.target, c.kind, -1, 5000).ok());
    auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", KeyArn("main"));
    ASSERT_FALSE(v.ok());
    if (c.kind == "timeout") {
      EXPECT_TRUE(v.status().code() == StatusCode::kDeadlineExceeded ||
                  v.status().code() == StatusCode::kUnavailable)
          << v.status().ToString();
    } else {
      EXPECT_EQ(v.status().code(), c.code) << v.status().ToString();
    }
    EXPECT_NE(v.status().message().find(c.in_message), std::string::npos) << v.status().ToString();
    EXPECT_NE(v.status().hint().find(c.in_hint), std::string::npos) << v.status().ToString();
    ExpectUnchanged();
  }
}

TEST_F(CustomerKeyTest, PolicyStatementAndDoctorForTheWorkspace) {
  // No principal configured: ekm asks STS who its credentials are.
  auto advice = svc_->KeyPolicy(TestOp(), "acme", "prod");
  ASSERT_TRUE(advice.ok()) << advice.status().ToString();
  EXPECT_EQ(advice->principal_arn, peer_->setup()["users"]["ekm-platform"]["arn"]);
  EXPECT_NE(advice->statement.find("kms:EncryptionContext:ekm:workspace"), std::string::npos);
  EXPECT_NE(advice->statement.find("\"acme\""), std::string::npos);

  std::string policy = R"({"Version": "2012-10-17", "Statement": [)" + advice->statement + "]}";
  auto report = svc_->CheckKeyPolicy(TestOp(), "acme", policy);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  auto j = nlohmann::json::parse(*report);
  EXPECT_TRUE(j["granted"].get<bool>()) << j.dump(2);

  // The guide's missing comma between two statements.
  std::string broken = R"({"Version": "2012-10-17", "Statement": [
  {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
   "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}
  )" + advice->statement +
                       "]}";
  auto bad = svc_->CheckKeyPolicy(TestOp(), "acme", broken);
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  auto b = nlohmann::json::parse(*bad);
  EXPECT_FALSE(b["granted"].get<bool>());
  EXPECT_NE(b["text"].get<std::string>().find("add a comma"), std::string::npos) << b.dump(2);

  // A configured principal wins over STS.
  options_.aws.principal_arn = "arn:aws:iam::111122223333:role/ekm-platform";
  Open("ekm-platform");
  auto configured = svc_->KeyPolicy(TestOp(), "acme", "prod");
  ASSERT_TRUE(configured.ok());
  EXPECT_EQ(configured->principal_arn, "arn:aws:iam::111122223333:role/ekm-platform");
}

}  // namespace
}  // namespace ekm
