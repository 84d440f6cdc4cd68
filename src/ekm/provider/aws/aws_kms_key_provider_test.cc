// The AWS KMS provider against a real peer: moto_server with IAM checks on (SigV4 verified,
// IAM policies applied), over HTTPS with a throwaway CA, and the fault-injecting proxy in front
// of it for the errors moto cannot produce (key state, throttling, 5xx, timeouts, resets).
#include "ekm/provider/aws/aws_kms_key_provider.h"

#include <gtest/gtest.h>

#include "ekm/base/random.h"
#include "ekm/provider/aws/aws_config.h"
#include "ekm/provider/aws/sts_client.h"
#include "ekm/testing/moto_peer.h"

namespace ekm {
namespace {

using testing::MotoPeer;

class AwsKmsTest : public ::testing::Test {
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
  }

  static const nlohmann::json& Peer() { return peer_->setup(); }
  static std::string KeyArn(const char* name) { return Peer()["keys"][name]["arn"]; }

  static AwsCredentials UserCredentials(const std::string& user, std::string secret = {}) {
    const auto& u = Peer()["users"][user];
    if (secret.empty()) secret = u["secret_access_key"].get<std::string>();
    return AwsCredentials{u["access_key_id"].get<std::string>(), SecretBytes(AsBytes(secret)),
                          std::nullopt};
  }

  // A provider that signs as `user`; through the fault proxy (plain HTTP) or straight to moto
  // over HTTPS with the test CA.
  std::unique_ptr<AwsKmsKeyProvider> Provider(const std::string& user, bool via_proxy = false,
                                              std::string secret = {},
                                              KmsClientOptions options = FastRetries()) {
    auto creds = std::make_shared<AwsCredentials>(UserCredentials(user, secret));
    return ProviderWith(
        [creds]() -> StatusOr<AwsCredentials> {
          return AwsCredentials{creds->access_key_id, creds->secret_access_key.Clone(),
                                creds->session_token};
        },
        via_proxy, options);
  }

  std::unique_ptr<AwsKmsKeyProvider> ProviderWith(AwsCredentialsSource source, bool via_proxy,
                                                  KmsClientOptions options = FastRetries(),
                                                  std::string ca_file = peer_->ca_file()) {
    HttpTransportOptions t;
    t.ca_file = ca_file;
    std::string url = via_proxy ? peer_->proxy_endpoint() : peer_->endpoint();
    KmsEndpointResolver endpoints = [url](std::string_view region) -> StatusOr<AwsServiceEndpoint> {
      EKM_ASSIGN_OR_RETURN(AwsEndpoint e, ParseAwsEndpoint(url, region, "test"));
      return AwsServiceEndpoint{e.url + "/", "/", e.host_header, e.signing_region};
    };
    return std::make_unique<AwsKmsKeyProvider>(std::make_unique<KmsClient>(
        NewCurlHttpTransport(t), endpoints, std::move(source), &Clock::Real(), options));
  }

  static KmsClientOptions FastRetries() {
    KmsClientOptions o;
    o.attempt_timeout = std::chrono::milliseconds(2000);
    o.deadline = std::chrono::milliseconds(6000);
    o.max_attempts = 4;
    o.backoff_base = std::chrono::milliseconds(10);
    o.backoff_cap = std::chrono::milliseconds(50);
    return o;
  }

  static EncryptionContext Context(std::string ws = "acme") {
    return {{"ekm:workspace", ws}, {"ekm:environment", "prod"}, {"ekm:ek-version", "1"}};
  }

  static SecretBytes NewKey() { return std::move(RandomSecret(32)).value(); }

  int Requests(const std::string& target) {
    auto stats = peer_->FaultStats();
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? (*stats)["requests"].value(target, 0) : -1;
  }

  static MotoPeer* peer_;
};

MotoPeer* AwsKmsTest::peer_ = nullptr;

TEST_F(AwsKmsTest, UserWithOnlyEncryptAndDecryptRoundTripsOverHttps) {
  auto p = Provider("ekm-platform");
  SecretBytes ek = NewKey();
  for (const std::string& id :
       {KeyArn("main"), Peer()["keys"]["main"]["alias_arn"].get<std::string>()}) {
    auto wrapped = p->Wrap(id, ek, Context());
    ASSERT_TRUE(wrapped.ok()) << id << ": " << wrapped.status().ToString();
    auto back = p->Unwrap(id, *wrapped, Context());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(*back == ek);
  }
}

TEST_F(AwsKmsTest, AnotherEncryptionContextDoesNotUnwrap) {
  auto p = Provider("ekm-platform");
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context("acme"));
  ASSERT_TRUE(wrapped.ok());
  auto back = p->Unwrap(KeyArn("main"), *wrapped, Context("globex"));
  EXPECT_EQ(back.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(back.status().message().find("InvalidCiphertextException"), std::string::npos);
}

TEST_F(AwsKmsTest, WrongSecretIsASignatureErrorAboutThePlatformsCredentials) {
  auto p = Provider("ekm-platform", false, "wrong/secret/wrong/secret/wrong/secret12");
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
  ASSERT_EQ(wrapped.status().code(), StatusCode::kUnauthenticated) << wrapped.status().ToString();
  EXPECT_NE(wrapped.status().message().find("SignatureDoesNotMatch"), std::string::npos);
  EXPECT_NE(wrapped.status().hint().find("platform"), std::string::npos);
}

TEST_F(AwsKmsTest, UserWithoutDecryptGetsAccessDenied) {
  auto p = Provider("ekm-no-decrypt");
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
  auto back = p->Unwrap(KeyArn("main"), *wrapped, Context());
  ASSERT_EQ(back.status().code(), StatusCode::kPermissionDenied) << back.status().ToString();
  EXPECT_NE(back.status().message().find("AccessDenied"), std::string::npos);
  EXPECT_NE(back.status().hint().find("key policy"), std::string::npos);
}

TEST_F(AwsKmsTest, AssumeRoleCredentialsWithASessionTokenWork) {
  HttpTransportOptions t;
  t.ca_file = peer_->ca_file();
  StsClientOptions so;
  auto ep = ParseAwsEndpoint(peer_->endpoint(), "us-east-1", "test");
  ASSERT_TRUE(ep.ok());
  so.endpoint = *ep;
  so.transport = NewCurlHttpTransport(t);
  StsClient sts(so);
  AssumeRoleRequest req;
  req.role_arn = Peer()["roles"]["ekm-platform-role"]["arn"];
  req.role_session_name = "ekm-test";
  auto temp = sts.AssumeRole(UserCredentials("ekm-platform"), req);
  ASSERT_TRUE(temp.ok()) << temp.status().ToString();
  ASSERT_TRUE(temp->credentials.session_token.has_value());
  auto shared = std::make_shared<AwsTemporaryCredentials>(std::move(*temp));
  auto p = ProviderWith(
      [shared]() -> StatusOr<AwsCredentials> {
        return AwsCredentials{shared->credentials.access_key_id,
                              shared->credentials.secret_access_key.Clone(),
                              shared->credentials.session_token};
      },
      false);
  SecretBytes ek = NewKey();
  auto wrapped = p->Wrap(KeyArn("main"), ek, Context());
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
  auto back = p->Unwrap(KeyArn("main"), *wrapped, Context());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == ek);
  // The role may describe the key; the session token is part of what is signed.
  auto d = p->Describe(KeyArn("main"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->describe_permitted);
}

TEST_F(AwsKmsTest, NonexistentKeyIsNotFoundWithTheArnAdvice) {
  auto p = Provider("ekm-platform");
  std::string arn = "arn:aws:kms:us-east-1:" + Peer()["account"].get<std::string>() +
                    ":key/00000000-0000-0000-0000-000000000000";
  auto wrapped = p->Wrap(arn, NewKey(), Context());
  // moto checks IAM before the key exists: allowed users get NotFoundException.
  ASSERT_EQ(wrapped.status().code(), StatusCode::kNotFound) << wrapped.status().ToString();
  EXPECT_NE(wrapped.status().message().find("NotFoundException"), std::string::npos);
  EXPECT_NE(wrapped.status().hint().find("region"), std::string::npos);
}

TEST_F(AwsKmsTest, DescribeReadsStateSpecAndRotationWherePermitted) {
  auto describer = Provider("ekm-describe");
  auto main = describer->Describe(KeyArn("main"));
  ASSERT_TRUE(main.ok()) << main.status().ToString();
  EXPECT_EQ(main->state, CmkKeyState::kEnabled);
  EXPECT_EQ(main->provider_state, "Enabled");
  EXPECT_TRUE(main->usable.ok());
  EXPECT_EQ(main->key_spec, "SYMMETRIC_DEFAULT");
  EXPECT_EQ(main->key_usage, "ENCRYPT_DECRYPT");
  EXPECT_EQ(main->region, "us-east-1");
  EXPECT_EQ(main->rotation, CmkRotation::kDisabled);
  auto rotating = describer->Describe(KeyArn("rotating"));
  ASSERT_TRUE(rotating.ok());
  EXPECT_EQ(rotating->rotation, CmkRotation::kEnabled);
  auto alias = describer->Describe(Peer()["keys"]["rotating"]["alias_arn"].get<std::string>());
  if (!Peer()["keys"]["rotating"]["alias_arn"].is_null()) {
    ASSERT_TRUE(alias.ok()) << alias.status().ToString();
    EXPECT_EQ(alias->resolved_key_id, KeyArn("rotating"));
    EXPECT_EQ(alias->rotation, CmkRotation::kEnabled);
  }
  auto disabled = describer->Describe(KeyArn("disabled"));
  ASSERT_TRUE(disabled.ok());
  EXPECT_EQ(disabled->state, CmkKeyState::kDisabled);
  EXPECT_EQ(disabled->provider_state, "Disabled");
  EXPECT_EQ(disabled->usable.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(disabled->usable.provider_code(), "DisabledException");

  // Without kms:DescribeKey the description is partial, not an error.
  auto limited = Provider("ekm-platform")->Describe(KeyArn("main"));
  ASSERT_TRUE(limited.ok()) << limited.status().ToString();
  EXPECT_FALSE(limited->describe_permitted);
  EXPECT_EQ(limited->state, CmkKeyState::kUnknown);
  EXPECT_EQ(limited->provider_state, "unknown");
  ASSERT_FALSE(limited->notes.empty());
  EXPECT_NE(limited->notes[0].find("DescribeKey"), std::string::npos);
}

TEST_F(AwsKmsTest, WithoutTheTestCaTheCertificateIsRefused) {
  auto p =
      ProviderWith([]() -> StatusOr<AwsCredentials> { return UserCredentials("ekm-platform"); },
                   false, FastRetries(), /*ca_file=*/"");
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
  ASSERT_FALSE(wrapped.ok());
  EXPECT_EQ(wrapped.status().code(), StatusCode::kUnavailable) << wrapped.status().ToString();
  EXPECT_NE(wrapped.status().message().find("certificate"), std::string::npos)
      << wrapped.status().ToString();
}

struct FaultCase {
  std::string kind;
  StatusCode code;
  std::string message;  // in the status message
  std::string hint;     // in the hint
};

TEST_F(AwsKmsTest, ErrorsMotoCannotProduceThroughTheFaultProxy) {
  std::vector<FaultCase> cases = {
      {"DisabledException", StatusCode::kFailedPrecondition, "DisabledException", "enable it"},
      {"KMSInvalidStateException", StatusCode::kFailedPrecondition, "KMSInvalidStateException",
       "pending deletion"},
      {"AccessDeniedException", StatusCode::kPermissionDenied, "AccessDeniedException",
       "key policy"},
      {"NotFoundException", StatusCode::kNotFound, "NotFoundException", "region"},
      {"UnrecognizedClientException", StatusCode::kUnauthenticated, "UnrecognizedClientException",
       "platform"},
      {"ThrottlingException", StatusCode::kUnavailable, "ThrottlingException",
       "AWS Health Dashboard"},
      {"KMSInternalException", StatusCode::kUnavailable, "KMSInternalException",
       "AWS Health Dashboard"},
      {"ServiceUnavailable", StatusCode::kUnavailable, "503", "AWS Health Dashboard"},
      {"reset", StatusCode::kUnavailable, "", "AWS Health Dashboard"},
  };
  auto p = Provider("ekm-platform", /*via_proxy=*/true);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kind);
    ASSERT_TRUE(peer_->ClearFaults().ok());
    ASSERT_TRUE(peer_->ArmFault("TrentService.Encrypt", c.kind).ok());
    auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
    ASSERT_FALSE(wrapped.ok());
    EXPECT_EQ(wrapped.status().code(), c.code) << wrapped.status().ToString();
    EXPECT_NE(wrapped.status().message().find(c.message), std::string::npos)
        << wrapped.status().ToString();
    EXPECT_NE(wrapped.status().hint().find(c.hint), std::string::npos)
        << wrapped.status().ToString();
    // Transient errors are retried (4 attempts; libcurl itself retries a reset once on a
    // reused connection), definitive ones never.
    int requests = Requests("TrentService.Encrypt");
    if (c.code == StatusCode::kUnavailable) {
      EXPECT_GE(requests, 4);
      EXPECT_LE(requests, 5);
    } else {
      EXPECT_EQ(requests, 1);
    }
  }
}

TEST_F(AwsKmsTest, ThrottlingIsRetriedUntilItPasses) {
  auto p = Provider("ekm-platform", /*via_proxy=*/true);
  ASSERT_TRUE(peer_->ArmFault("TrentService.Encrypt", "ThrottlingException", 2).ok());
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
  EXPECT_EQ(Requests("TrentService.Encrypt"), 3);
}

TEST_F(AwsKmsTest, ATimeoutIsRetriedWithinTheDeadlineAndReportedAsAnOutage) {
  KmsClientOptions o = FastRetries();
  o.attempt_timeout = std::chrono::milliseconds(300);
  o.deadline = std::chrono::milliseconds(1000);
  auto p = Provider("ekm-platform", /*via_proxy=*/true, {}, o);
  ASSERT_TRUE(peer_->ArmFault("TrentService.Encrypt", "timeout", -1, 2000).ok());
  auto start = std::chrono::steady_clock::now();
  auto wrapped = p->Wrap(KeyArn("main"), NewKey(), Context());
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(wrapped.ok());
  EXPECT_TRUE(wrapped.status().code() == StatusCode::kDeadlineExceeded ||
              wrapped.status().code() == StatusCode::kUnavailable)
      << wrapped.status().ToString();
  EXPECT_NE(wrapped.status().hint().find("AWS Health Dashboard"), std::string::npos);
  EXPECT_GE(Requests("TrentService.Encrypt"), 2);
  // Bounded by the deadline (generously: this is a correctness bound, not a benchmark).
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST_F(AwsKmsTest, ErrorBodiesOfBothShapesAreParsed) {
  KmsError e;
  Status json = KmsErrorToStatus(
      "Decrypt", "arn:k", 400,
      R"({"__type":"com.amazonaws.kms#AccessDeniedException","message":"User x is not authorized"})",
      "", &e);
  EXPECT_EQ(e.code, "AccessDeniedException");
  EXPECT_EQ(e.message, "User x is not authorized");
  EXPECT_EQ(json.code(), StatusCode::kPermissionDenied);
  // The AWS code travels in the status, not only in its text.
  EXPECT_EQ(json.provider_code(), "AccessDeniedException");
  EXPECT_EQ(json.WithContext("unwrapping").provider_code(), "AccessDeniedException");
  Status xml = KmsErrorToStatus(
      "Encrypt", "arn:k", 403,
      "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code>"
      "<Message>The security token included in the request is invalid.</Message></Error>"
      "</Errors></ErrorResponse>",
      "", &e);
  EXPECT_EQ(e.code, "InvalidClientTokenId");
  EXPECT_EQ(xml.code(), StatusCode::kUnauthenticated);
  Status header = KmsErrorToStatus("Encrypt", "arn:k", 400, "",
                                   "DisabledException:http://internal.amazon.com/", &e);
  EXPECT_EQ(e.code, "DisabledException");
  EXPECT_EQ(header.code(), StatusCode::kFailedPrecondition);
  Status html = KmsErrorToStatus("Encrypt", "arn:k", 502, "<html>Bad Gateway</html>", "", &e);
  EXPECT_EQ(e.code, "HTTP 502");
  EXPECT_EQ(html.code(), StatusCode::kUnavailable);
  EXPECT_EQ(html.provider_code(), "");  // an answer without an AWS error name
}

TEST(AwsKmsRefusalAdviceTest, SaysWhatToDoInAwsTermsByTheErrorCode) {
  AwsKmsKeyProvider provider(nullptr);
  auto advice = [&](StatusCode code, const char* aws_code, int64_t last_success = 0) {
    return provider.RefusalAdvice(Status(code, "refused", "hint").WithProviderCode(aws_code),
                                  last_success);
  };
  EXPECT_NE(advice(StatusCode::kFailedPrecondition, "AccessDeniedException").find("key policy"),
            std::string::npos);
  EXPECT_NE(advice(StatusCode::kFailedPrecondition, "DisabledException").find("Enable"),
            std::string::npos);
  EXPECT_NE(advice(StatusCode::kFailedPrecondition, "KMSInvalidStateException")
                .find("cancel the key deletion"),
            std::string::npos);
  // Not found after it worked: deleted, which re-entering the ARN does not undo.
  const std::string gone = advice(StatusCode::kNotFound, "NotFoundException", 1795514645);
  EXPECT_NE(gone.find("until 2026-11-24T10:04:05Z"), std::string::npos) << gone;
  EXPECT_NE(gone.find("cannot be recovered"), std::string::npos);
  // Anything else: the refusal's own hint.
  EXPECT_EQ(advice(StatusCode::kFailedPrecondition, "SomethingNew"), "hint");
}

}  // namespace
}  // namespace ekm
