// Tests of the credential chain with injected environments and temp files. The EC2 instance
// metadata (IMDSv2) and ECS container credential protocols have no real peer on this machine:
// a tiny Python server on 127.0.0.1 speaks both, as AWS documents them. No test ever sends
// anything to 169.254.x.x: every chain test points the metadata endpoint at 127.0.0.1 or
// disables it.
#include "ekm/provider/aws/aws_credentials.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ekm/testing/python_server.h"
#include "ekm/testing/temp_dir.h"

extern char** environ;

namespace ekm {
namespace {

using PyServer = testing::PythonServer;

using std::chrono::minutes;
using std::chrono::seconds;

std::string Reveal(const SecretBytes& s) {
  return std::string(s.RevealForCrypto().begin(), s.RevealForCrypto().end());
}

// IMDSv2 (token PUT with a TTL header, role listing and role credentials, both requiring the
// token) and the ECS container endpoint (Authorization must equal argv[2]). Credentials expire
// at argv[1] (unix seconds); each fetch returns new ones (a counter in the key id).
// GET /__count returns how many credentials each protocol handed out.
constexpr const char* kMetadataServer = R"PY(
import json, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
EXP = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(sys.argv[1])))
AUTH = sys.argv[2]
lock = threading.Lock()
count = {"imds": 0, "ecs": 0, "token": 0}
def creds(kind):
    with lock:
        count[kind] += 1
        n = count[kind]
    return {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIA%s%d" % (kind.upper(), n),
            "SecretAccessKey": "%s-secret-%d" % (kind, n), "Token": "%s-token-%d" % (kind, n),
            "Expiration": EXP, "LastUpdated": "2020-01-01T00:00:00Z"}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, body):
        out = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if self.path != "/latest/api/token": return self.reply(404, "")
        if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"): return self.reply(400, "")
        with lock: count["token"] += 1
        self.reply(200, "imds-session-token")
    def do_GET(self):
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == "/__count": return self.reply(200, count)
        if self.path.startswith(base):
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                return self.reply(401, "")
            if self.path == base: return self.reply(200, "ekm-role\n")
            if self.path == base + "ekm-role": return self.reply(200, creds("imds"))
            return self.reply(404, "")
        if self.path == "/ecs/creds":
            if self.headers.get("Authorization") != AUTH: return self.reply(403, "denied")
            return self.reply(200, creds("ecs"))
        self.reply(404, "")
ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
)PY";

class MetadataServerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kStart = 1'800'000'000;  // FakeClock's time in these tests
  static constexpr int64_t kExpiry = kStart + 3600;
  static void SetUpTestSuite() {
    server_ =
        PyServer::Start(kMetadataServer, {std::to_string(kExpiry), "Bearer ecs-auth"}).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << "python3 metadata server did not start";
    clock_.SetUnixSeconds(kStart);
    HttpTransportOptions o;
    o.allow_insecure_http = true;
    transport_ = NewCurlHttpTransport(o);
  }
  nlohmann::json Count() {
    HttpRequest req;
    req.method = "GET";
    req.url = server_->url() + "/__count";
    return nlohmann::json::parse(transport_->Send(req)->body);
  }
  // Environment for the chain: nothing configured but what the test adds; files in a temp HOME.
  std::map<std::string, std::string> BaseEnv() {
    return {{"HOME", home_.path()}, {"AWS_EC2_METADATA_SERVICE_ENDPOINT", server_->url()}};
  }
  AwsCredentialsProviderPtr Chain(std::map<std::string, std::string> env) {
    AwsCredentialsChainOptions o;
    o.env = MapGetEnv(std::move(env));
    o.metadata_transport = transport_;
    o.clock = &clock_;
    return NewDefaultAwsCredentialsChain(std::move(o));
  }

  static PyServer* server_;
  FakeClock clock_;
  std::shared_ptr<HttpTransport> transport_;
  testing::TempDir home_;
};
PyServer* MetadataServerTest::server_ = nullptr;

TEST_F(MetadataServerTest, InstanceMetadataV2AndRefresh) {
  InstanceMetadataProviderOptions o;
  o.endpoint = server_->url() + "/";
  auto p = NewInstanceMetadataAwsCredentialsProvider(transport_, o, &clock_);
  EXPECT_EQ(p->Source(), "instance metadata (IMDSv2)");
  int before = Count()["imds"];
  auto c = p->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "ASIAIMDS" + std::to_string(before + 1));
  EXPECT_EQ(Reveal(c->secret_access_key), "imds-secret-" + std::to_string(before + 1));
  EXPECT_EQ(c->session_token, "imds-token-" + std::to_string(before + 1));

  // Cached until 5 minutes before expiry, then refreshed.
  clock_.Advance(minutes(54));
  EXPECT_EQ(p->Get()->access_key_id, c->access_key_id);
  EXPECT_EQ(Count()["imds"], before + 1);
  clock_.Advance(minutes(2));  // 56 min: inside the refresh window
  EXPECT_EQ(p->Get()->access_key_id, "ASIAIMDS" + std::to_string(before + 2));
}

TEST_F(MetadataServerTest, ContainerCredentials) {
  std::string token_file = home_.path() + "/ecs-token";
  std::ofstream(token_file) << "Bearer ecs-auth\n";
  ContainerProviderOptions o;
  o.url = server_->url() + "/ecs/creds";
  o.authorization_token_file = token_file;
  auto p = NewContainerAwsCredentialsProvider(transport_, std::move(o), &clock_);
  auto c = p->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->access_key_id.starts_with("ASIAECS"));
  EXPECT_EQ(p->Source(), "container credentials");

  ContainerProviderOptions wrong;
  wrong.url = server_->url() + "/ecs/creds";
  wrong.authorization_token = SecretBytes(reinterpret_cast<const uint8_t*>("nope"), 4);
  auto w = NewContainerAwsCredentialsProvider(transport_, std::move(wrong), &clock_)->Get();
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(w.status().message(), "container credentials endpoint returned HTTP 403");
  EXPECT_NE(w.status().hint().find("AWS_CONTAINER_AUTHORIZATION_TOKEN"), std::string::npos);
}

TEST_F(MetadataServerTest, ChainOrder) {
  testing::TempDir files;
  std::string creds = files.path() + "/credentials";
  std::ofstream(creds)
      << "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n";
  std::string token = files.path() + "/ecs-token";
  std::ofstream(token) << "Bearer ecs-auth";

  auto env = BaseEnv();
  env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = server_->url() + "/ecs/creds";
  env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = token;
  env["AWS_SHARED_CREDENTIALS_FILE"] = creds;
  env["AWS_ACCESS_KEY_ID"] = "AKIAENV";
  env["AWS_SECRET_ACCESS_KEY"] = "env-secret";
  env["AWS_SESSION_TOKEN"] = "env-token";

  // 1. environment
  auto chain = Chain(env);
  EXPECT_EQ(chain->Source(), "default chain (not resolved yet)");
  auto c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "AKIAENV");
  EXPECT_EQ(Reveal(c->secret_access_key), "env-secret");
  EXPECT_EQ(c->session_token, "env-token");
  EXPECT_EQ(chain->Source(), "environment");

  // 2. shared credentials file
  env.erase("AWS_ACCESS_KEY_ID");
  env.erase("AWS_SECRET_ACCESS_KEY");
  env.erase("AWS_SESSION_TOKEN");
  chain = Chain(env);
  c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "AKIAPROFILE");
  EXPECT_FALSE(c->session_token.has_value());
  EXPECT_EQ(chain->Source(), "profile default (shared credentials file)");

  // 4. container (3, web identity, is covered against moto in sts_client_test)
  env.erase("AWS_SHARED_CREDENTIALS_FILE");
  chain = Chain(env);
  c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->access_key_id.starts_with("ASIAECS"));
  EXPECT_EQ(chain->Source(), "container credentials");

  // 5. instance metadata
  env.erase("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  chain = Chain(env);
  c = chain->Get();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->access_key_id.starts_with("ASIAIMDS"));
  EXPECT_EQ(chain->Source(), "instance metadata (IMDSv2)");
  // The chain sticks to its source and the source caches.
  int n = Count()["imds"];
  EXPECT_TRUE(chain->Get().ok());
  EXPECT_EQ(Count()["imds"], n);
}

TEST_F(MetadataServerTest, NothingFoundListsEverySource) {
  auto env = BaseEnv();
  env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9";  // nothing listens
  auto c = Chain(env)->Get();
  ASSERT_FALSE(c.ok());
  // The instance metadata service did not answer: on EC2 an outage, so retryable (503).
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(c.status().hint().find("AWS_EC2_METADATA_DISABLED=true"), std::string::npos);
  const std::string h = home_.path();
  EXPECT_TRUE(c.status().message().starts_with(
      "no AWS credentials found: environment (AWS_ACCESS_KEY_ID not set), shared credentials file "
      "(" +
      h + "/.aws/credentials: no such file; " + h +
      "/.aws/config: no such file), web identity "
      "(AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE not set), container credentials "
      "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set), "
      "instance metadata (instance metadata at http://127.0.0.1:9: cannot connect to 127.0.0.1"))
      << c.status().message();
  EXPECT_NE(c.status().hint().find("AWS_ACCESS_KEY_ID"), std::string::npos);

  env["AWS_EC2_METADATA_DISABLED"] = "true";
  std::string config = home_.path() + "/config";
  std::ofstream(config) << "[profile other]\nregion = eu-west-1\n";
  env["AWS_CONFIG_FILE"] = config;
  c = Chain(env)->Get();
  ASSERT_FALSE(c.ok());
  // Nothing configured anywhere: a precondition the platform operator must meet (409).
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition) << c.status().ToString();
  EXPECT_NE(c.status().hint().find("platform operator"), std::string::npos);
  EXPECT_NE(c.status().message().find("shared credentials file (profile default not found in " + h +
                                      "/.aws/credentials or " + config + ")"),
            std::string::npos)
      << c.status().message();
  EXPECT_TRUE(c.status().message().ends_with("instance metadata (AWS_EC2_METADATA_DISABLED=true)"))
      << c.status().message();
}

// Profiles without any network: static keys from the config file, errors that stop the chain.
class ProfileChainTest : public ::testing::Test {
 protected:
  StatusOr<AwsCredentials> Get(const std::string& config, const std::string& credentials,
                               std::map<std::string, std::string> extra = {},
                               std::string* source = nullptr) {
    std::ofstream(dir_.path() + "/config") << config;
    std::ofstream(dir_.path() + "/credentials") << credentials;
    std::map<std::string, std::string> env = {
        {"HOME", dir_.path()},
        {"AWS_CONFIG_FILE", dir_.path() + "/config"},
        {"AWS_SHARED_CREDENTIALS_FILE", dir_.path() + "/credentials"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
        {"AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9"}};
    for (auto& [k, v] : extra) env[k] = v;
    AwsCredentialsChainOptions o;
    o.env = MapGetEnv(env);
    auto chain = NewDefaultAwsCredentialsChain(std::move(o));
    auto r = chain->Get();
    if (source) *source = chain->Source();
    return r;
  }
  testing::TempDir dir_;
};

TEST_F(ProfileChainTest, StaticKeysInConfigFileAndSessionToken) {
  std::string source;
  auto c =
      Get("[profile dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = s\n"
          "aws_session_token = tok\n",
          "", {{"AWS_PROFILE", "dev"}}, &source);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->access_key_id, "AKIADEV");
  EXPECT_EQ(c->session_token, "tok");
  EXPECT_EQ(source, "profile dev (config file)");
}

TEST_F(ProfileChainTest, ConfiguredButBrokenStopsTheChain) {
  auto c = Get("[default]\ncredential_process = /usr/bin/get-creds\n", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.status().message(),
            "profile default uses credential_process, which ekm does not support");

  c = Get("[default]\nsso_session = corp\n", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("SSO"), std::string::npos);

  c = Get("", "[default]\naws_access_key_id = AKIA\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "profile default has aws_access_key_id but no aws_secret_access_key");

  c = Get("", "", {{"AWS_PROFILE", "nope"}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(
      c.status().message().starts_with("AWS profile nope (from AWS_PROFILE) not found in "));

  c = Get("[default]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = missing\n", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.status().message().starts_with(
      "profile default: source_profile missing: profile missing not found in"))
      << c.status().message();

  c = Get("[default]\nrole_arn = arn:aws:iam::123456789012:role/r\n", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "profile default has role_arn but neither source_profile nor credential_source");

  c =
      Get("[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n"
          "[profile a]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n",
          "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("loops back"), std::string::npos) << c.status().message();

  c = Get("", "", {{"AWS_ACCESS_KEY_ID", "AKIA"}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");

  // An AssumeRole profile whose STS is unreachable fails with the role named, not silently.
  c =
      Get("[default]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n"
          "[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n",
          "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(c.status().message().starts_with(
      "assuming arn:aws:iam::123456789012:role/r with credentials from profile base (config "
      "file): STS AssumeRole: cannot connect to 127.0.0.1"))
      << c.status().message();
}

TEST(ContainerUrlTest, FromEnvironment) {
  // Only the URL is computed here: nothing is sent to 169.254.170.2.
  EXPECT_EQ(*ContainerCredentialsUrlFromEnv(
                MapGetEnv({{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc"}})),
            "http://169.254.170.2/v2/credentials/abc");
  EXPECT_EQ(*ContainerCredentialsUrlFromEnv(MapGetEnv(
                {{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"}})),
            "http://169.254.170.23/v1/credentials");
  EXPECT_EQ(*ContainerCredentialsUrlFromEnv(
                MapGetEnv({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://creds.example.com/x"}})),
            "https://creds.example.com/x");
  auto bad = ContainerCredentialsUrlFromEnv(
      MapGetEnv({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://creds.example.com/x"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ContainerCredentialsUrlFromEnv(MapGetEnv({})).status().code(), StatusCode::kNotFound);
}

TEST(StaticProviderTest, ReturnsIndependentCopies) {
  AwsCredentials c;
  c.access_key_id = "AKIA";
  c.secret_access_key = SecretBytes(reinterpret_cast<const uint8_t*>("secret"), 6);
  auto p = NewStaticAwsCredentialsProvider(std::move(c), "test");
  auto a = p->Get();
  a->secret_access_key.MutableForCrypto()[0] = 'X';
  EXPECT_EQ(Reveal(p->Get()->secret_access_key), "secret");
  EXPECT_EQ(p->Source(), "test");
}

}  // namespace
}  // namespace ekm
