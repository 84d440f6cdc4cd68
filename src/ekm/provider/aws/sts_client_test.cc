// STS client tests: pure parsing/mapping, then against a real moto_server (ekm::testing::
// MotoPeer, IAM checks on, over HTTPS with a throwaway CA) and its fault proxy (for throttling
// and 5xx, and to sign AssumeRoleWithWebIdentity as AWS would accept it unsigned).
#include "ekm/provider/aws/sts_client.h"

#include <gtest/gtest.h>

#include <fstream>

#include "ekm/provider/aws/aws_credentials.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

using std::chrono::minutes;

TEST(StsParseTest, PrincipalArnFromCallerIdentity) {
  EXPECT_EQ(
      PrincipalArnFromCallerIdentity("arn:aws:sts::123456789012:assumed-role/ekm-role/i-0abc"),
      "arn:aws:iam::123456789012:role/ekm-role");
  EXPECT_EQ(PrincipalArnFromCallerIdentity("arn:aws-cn:sts::123456789012:assumed-role/r/s@x"),
            "arn:aws-cn:iam::123456789012:role/r");
  for (const char* unchanged :
       {"arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:root",
        "arn:aws:sts::123456789012:federated-user/bob", "arn:aws:sts::123456789012:assumed-role/",
        "arn:aws:sts::123456789012:assumed-role/no-session", "not an arn", ""}) {
    EXPECT_EQ(PrincipalArnFromCallerIdentity(unchanged), unchanged);
  }
}

TEST(StsParseTest, ErrorMapping) {
  const std::string aws =
      "<ErrorResponse "
      "xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>"
      "<Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/u is not authorized to perform: "
      "sts:AssumeRole on resource: arn:aws:iam::1:role/r</Message></Error><RequestId>x</RequestId>"
      "</ErrorResponse>";
  Status s = StsErrorToStatus("AssumeRole", 403, aws);
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "STS AssumeRole failed: AccessDenied (User: arn:aws:iam::1:user/u is not authorized to "
            "perform: sts:AssumeRole on resource: arn:aws:iam::1:role/r)");
  EXPECT_NE(s.hint().find("trust policy"), std::string::npos);
  EXPECT_EQ(s.provider_code(), "AccessDenied");

  // moto's shape: <ErrorResponse><Errors><Error>.
  const std::string moto =
      "<?xml version=\"1.0\" "
      "encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch"
      "</Code><Message>The request signature we calculated does not "
      "match</Message><Type>Sender</Type>"
      "</Error></Errors></ErrorResponse>";
  s = StsErrorToStatus("GetCallerIdentity", 403, moto);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(s.hint().find("platform's own AWS credentials"), std::string::npos);

  EXPECT_EQ(StsErrorToStatus("AssumeRole", 400,
                             "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded"
                             "</Message></Error></ErrorResponse>")
                .code(),
            StatusCode::kUnavailable);
  s = StsErrorToStatus("AssumeRole", 503, "<html><body>Service Unavailable</body></html>");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "STS AssumeRole failed: HTTP 503");
  EXPECT_EQ(s.provider_code(), "");
  EXPECT_EQ(StsErrorToStatus(
                "AssumeRoleWithWebIdentity", 400,
                "<ErrorResponse><Error><Code>InvalidIdentityToken</Code></Error></ErrorResponse>")
                .code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(
      StsErrorToStatus(
          "AssumeRole", 403,
          "<ErrorResponse><Error><Code>RegionDisabledException</Code></Error></ErrorResponse>")
          .code(),
      StatusCode::kFailedPrecondition);
  EXPECT_EQ(StsErrorToStatus("AssumeRole", 400, "garbage <<<").code(),
            StatusCode::kInvalidArgument);

  // No external entities, no entity expansion (XXE).
  const std::string xxe =
      "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<ErrorResponse><Error><Code>AccessDenied</Code><Message>&x;</Message></Error></"
      "ErrorResponse>";
  s = StsErrorToStatus("AssumeRole", 403, xxe);
  EXPECT_EQ(s.message().find("root:"), std::string::npos) << s.message();
}

TEST(StsParseTest, FormUrlEncode) {
  EXPECT_EQ(FormUrlEncode("arn:aws:iam::1:role/a b+c"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc");
  EXPECT_EQ(FormUrlEncode("A-z_0.9~"), "A-z_0.9~");
}

std::string Str(const nlohmann::json& j) { return j.get<std::string>(); }

AwsCredentials UserCredentials(const nlohmann::json& user, std::string secret = "") {
  AwsCredentials c;
  c.access_key_id = Str(user["access_key_id"]);
  if (secret.empty()) secret = Str(user["secret_access_key"]);
  c.secret_access_key = SecretBytes(reinterpret_cast<const uint8_t*>(secret.data()), secret.size());
  return c;
}

class StsMotoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto peer = testing::MotoPeer::Start({.tls = true, .fault_proxy = true});
    if (!peer.ok()) {
      start_error_ = new std::string(peer.status().ToString());
      return;
    }
    peer_ = std::move(peer).value().release();
  }
  static void TearDownTestSuite() {
    delete peer_;
    peer_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(peer_, nullptr) << (start_error_ ? *start_error_ : std::string("no peer"));
    ASSERT_TRUE(peer_->ClearFaults().ok());
    HttpTransportOptions o;
    o.ca_file = peer_->ca_file();
    transport_ = NewCurlHttpTransport(o);
  }
  // An STS client on moto (HTTPS) or on the fault proxy (HTTP, loopback).
  std::shared_ptr<StsClient> Sts(bool via_proxy = false, const Clock* clock = &Clock::Real()) {
    auto ep = ParseAwsEndpoint(via_proxy ? peer_->proxy_endpoint() : peer_->endpoint(), "us-east-1",
                               "test");
    EXPECT_TRUE(ep.ok());
    StsClientOptions o;
    o.endpoint = *ep;
    o.transport = transport_;
    o.clock = clock;
    return std::make_shared<StsClient>(std::move(o));
  }
  const nlohmann::json& User(const char* name) { return peer_->setup()["users"][name]; }
  std::string RoleArn() { return Str(peer_->setup()["roles"]["ekm-platform-role"]["arn"]); }

  static testing::MotoPeer* peer_;
  static std::string* start_error_;
  std::shared_ptr<HttpTransport> transport_;
};
testing::MotoPeer* StsMotoTest::peer_ = nullptr;
std::string* StsMotoTest::start_error_ = nullptr;

TEST_F(StsMotoTest, GetCallerIdentityWithUserKeys) {
  auto id = Sts()->GetCallerIdentity(UserCredentials(User("ekm-platform")));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->arn, "arn:aws:iam::123456789012:user/ekm-platform");
  EXPECT_EQ(id->account, "123456789012");
  EXPECT_FALSE(id->user_id.empty());
  EXPECT_EQ(PrincipalArnFromCallerIdentity(id->arn), id->arn);
}

TEST_F(StsMotoTest, AssumeRoleAndUseTemporaryCredentials) {
  auto sts = Sts();
  AssumeRoleRequest req{RoleArn(), "ekm-session", "ext-1234", std::chrono::seconds(900)};
  auto t = sts->AssumeRole(UserCredentials(User("ekm-platform")), req);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(t->credentials.access_key_id.starts_with("ASIA")) << t->credentials.access_key_id;
  ASSERT_TRUE(t->credentials.session_token.has_value());
  EXPECT_FALSE(t->credentials.session_token->empty());
  EXPECT_EQ(t->credentials.secret_access_key.size(), 40u);
  EXPECT_GT(t->expiration, std::chrono::system_clock::now());
  EXPECT_EQ(t->assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/ekm-platform-role/ekm-session");

  // Signed with the session token (X-Amz-Security-Token).
  auto id = sts->GetCallerIdentity(t->credentials);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->arn, "arn:aws:sts::123456789012:assumed-role/ekm-platform-role/ekm-session");
  EXPECT_EQ(PrincipalArnFromCallerIdentity(id->arn), RoleArn());

  // The same temporary keys without their token are refused.
  AwsCredentials no_token = CloneAwsCredentials(t->credentials);
  no_token.session_token.reset();
  auto refused = sts->GetCallerIdentity(no_token);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnauthenticated);
}

TEST_F(StsMotoTest, AssumeRoleNotTrustedIsAccessDenied) {
  // ekm-admin may do anything by IAM policy, but the role's trust policy names only ekm-platform.
  AssumeRoleRequest req{RoleArn(), "ekm-session", "", std::chrono::seconds(900)};
  auto t = Sts()->AssumeRole(UserCredentials(User("ekm-admin")), req);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kPermissionDenied) << t.status().ToString();
  EXPECT_TRUE(t.status().message().starts_with("STS AssumeRole failed: AccessDenied"))
      << t.status().message();
  EXPECT_NE(t.status().hint().find("trust policy"), std::string::npos);
}

TEST_F(StsMotoTest, WrongSecretIsUnauthenticated) {
  auto id = Sts()->GetCallerIdentity(
      UserCredentials(User("ekm-platform"), "wrong-secret-wrong-secret-wrong-secret00"));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(
      id.status().message().starts_with("STS GetCallerIdentity failed: SignatureDoesNotMatch"))
      << id.status().message();
  EXPECT_NE(id.status().hint().find("platform's own AWS credentials"), std::string::npos);
  EXPECT_EQ(id.status().message().find("wrong-secret"), std::string::npos);

  AwsCredentials unknown = UserCredentials(User("ekm-platform"));
  unknown.access_key_id = "AKIAUNKNOWNUNKNOWN00";
  auto r = Sts()->GetCallerIdentity(unknown);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("InvalidClientTokenId"), std::string::npos);
}

TEST_F(StsMotoTest, ThrottlingAnd5xxAreUnavailable) {
  auto sts = Sts(/*via_proxy=*/true);
  AssumeRoleRequest req{RoleArn(), "ekm-session", "", std::chrono::seconds(900)};
  ASSERT_TRUE(peer_->ArmFault("sts.AssumeRole", "Throttling", 1, 0).ok());
  auto t = sts->AssumeRole(UserCredentials(User("ekm-platform")), req);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnavailable) << t.status().ToString();
  ASSERT_TRUE(peer_->ArmFault("sts.AssumeRole", "ServiceUnavailable", 1, 0).ok());
  t = sts->AssumeRole(UserCredentials(User("ekm-platform")), req);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnavailable) << t.status().ToString();
  EXPECT_EQ(t.status().message(), "STS AssumeRole failed: HTTP 503");
  // The fault is used up: the next call goes through to moto.
  EXPECT_TRUE(sts->AssumeRole(UserCredentials(User("ekm-platform")), req).ok());
}

TEST_F(StsMotoTest, AssumeRoleProviderRefreshesBeforeExpiry) {
  FakeClock clock;
  clock.SetUnixSeconds(ToUnixSeconds(std::chrono::system_clock::now()));
  auto base = NewStaticAwsCredentialsProvider(UserCredentials(User("ekm-platform")), "test user");
  AssumeRoleProviderOptions o;
  o.role_arn = RoleArn();
  o.session_name = "refresh-test";
  o.duration = std::chrono::seconds(3600);
  auto p = NewAssumeRoleAwsCredentialsProvider(base, Sts(true, &clock), o, &clock);
  EXPECT_EQ(p->Source(), "assume-role " + RoleArn());

  auto calls = [&] {
    auto stats = peer_->FaultStats();
    return stats.ok() ? stats->value("/forwarded/sts.AssumeRole"_json_pointer, 0) : -1;
  };
  auto a = p->Get();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(calls(), 1);
  clock.Advance(minutes(54));
  auto b = p->Get();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->access_key_id, a->access_key_id);  // cached
  EXPECT_EQ(calls(), 1);
  clock.Advance(minutes(2));  // 56 min: within 5 min of the 60 min expiry
  auto c = p->Get();
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->access_key_id, a->access_key_id);
  EXPECT_EQ(calls(), 2);

  // A failed refresh while the cached credentials are still valid returns those. (moto dates
  // expiry from its own real clock, so c also expires about 60 min after the start.)
  clock.Advance(minutes(2));
  ASSERT_TRUE(peer_->ArmFault("sts.AssumeRole", "Throttling", -1, 0).ok());
  auto d = p->Get();
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->access_key_id, c->access_key_id);
  clock.Advance(minutes(3));  // now expired: the error comes through
  auto e = p->Get();
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(e.status().message().starts_with("assuming " + RoleArn() +
                                               " with credentials from test user: "))
      << e.status().message();
}

TEST_F(StsMotoTest, ChainProfileAssumeRole) {
  testing::TempDir dir;
  const auto& user = User("ekm-platform");
  std::ofstream(dir.path() + "/config")
      << "[profile base]\naws_access_key_id = " << Str(user["access_key_id"])
      << "\naws_secret_access_key = " << Str(user["secret_access_key"])
      << "\n[profile ekm]\nrole_arn = " << RoleArn()
      << "\nsource_profile = base\nexternal_id = ext-42\nrole_session_name = ekm-node-1\n"
         "duration_seconds = 1800\nregion = us-east-1\n";
  AwsCredentialsChainOptions o;
  o.env = MapGetEnv({{"HOME", dir.path()},
                     {"AWS_CONFIG_FILE", dir.path() + "/config"},
                     {"AWS_PROFILE", "ekm"},
                     {"AWS_ENDPOINT_URL_STS", peer_->endpoint()},
                     {"AWS_EC2_METADATA_DISABLED", "true"}});
  o.transport = transport_;
  auto chain = NewDefaultAwsCredentialsChain(std::move(o));
  auto c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(chain->Source(), "assume-role " + RoleArn());
  auto id = Sts()->GetCallerIdentity(*c);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->arn, "arn:aws:sts::123456789012:assumed-role/ekm-platform-role/ekm-node-1");
}

TEST_F(StsMotoTest, ChainWebIdentity) {
  testing::TempDir dir;
  std::ofstream(dir.path() + "/token") << "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2ln\n";
  AwsCredentialsChainOptions o;
  o.env = MapGetEnv({{"HOME", dir.path()},
                     {"AWS_ROLE_ARN", Str(peer_->setup()["roles"]["ekm-web-role"]["arn"])},
                     {"AWS_WEB_IDENTITY_TOKEN_FILE", dir.path() + "/token"},
                     {"AWS_ROLE_SESSION_NAME", "pod-ekm-0"},
                     // The proxy signs the unsigned call for moto (AWS accepts it unsigned).
                     {"AWS_ENDPOINT_URL_STS", peer_->proxy_endpoint()},
                     {"AWS_EC2_METADATA_DISABLED", "true"}});
  o.transport = transport_;
  auto chain = NewDefaultAwsCredentialsChain(std::move(o));
  auto c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(chain->Source(), "web identity");
  EXPECT_TRUE(c->access_key_id.starts_with("ASIA"));
  ASSERT_TRUE(c->session_token.has_value());

  auto missing = NewWebIdentityAwsCredentialsProvider(
      Sts(true), WebIdentityProviderOptions{"arn:aws:iam::123456789012:role/ekm-web-role",
                                            dir.path() + "/nope", "s1", std::chrono::seconds(900)});
  auto r = missing->Get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "web identity token file " + dir.path() + "/nope does not exist");
}

}  // namespace
}  // namespace ekm
