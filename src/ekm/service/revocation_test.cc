// Revocation, deletion and outages of a customer main key, end to end through EkmService and
// the API router against moto with IAM checks on (revocation = the platform principal's IAM
// policy removed), and the fault proxy for what moto does not enforce (disabled and
// pending-deletion keys, 5xx, throttling). Time is a FakeClock: no test waits for a TTL.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>

#include "ekm/events/lifecycle_event.h"
#include "ekm/server/http_server.h"
#include "ekm/server/routes.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

// "Bearer <a new app token of acme>": the API's data plane needs one.
std::string AppBearer(EkmService& svc) {
  auto t = svc.CreateApiToken(TestOp(), ApiTokenRequest{"app", "acme", {}, "test", {}});
  if (!t.ok()) return "";
  auto text = t->token.RevealForCrypto();
  return "Bearer " + std::string(text.begin(), text.end());
}

using std::chrono::seconds;
using testing::MotoPeer;

// One HTTP/1.1 request to 127.0.0.1:port; everything the server answers until it closes.
std::string HttpRequest(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    size_t off = 0;
    while (off < request.size()) {
      ssize_t n = write(fd, request.data() + off, request.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

// `bearer`: "Bearer <an app token>" (AppBearer).
std::string PostEncrypt(int port, const std::string& bearer, const std::string& content_type,
                        const std::string& body) {
  return HttpRequest(port,
                     "POST /v1/workspaces/acme/environments/prod/encrypt HTTP/1.1\r\n"
                     "Host: x\r\nConnection: close\r\nAuthorization: " +
                         bearer + "\r\nContent-Type: " + content_type +
                         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

class RevocationTest : public ::testing::Test {
 protected:
  // One moto for every suite of this binary (the seed suites derive from this fixture);
  // stopped by PeerEnvironment at exit.
  static void SetUpTestSuite() {
    if (peer_ != nullptr) return;
    auto peer = MotoPeer::Start({.tls = false, .fault_proxy = true});
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = std::move(*peer).release();
  }

  void SetUp() override {
    ASSERT_NE(peer_, nullptr);
    ASSERT_TRUE(peer_->ClearFaults().ok());
    // A platform principal of this test's own, so revoking it touches no other test.
    user_ = "ekm-rev-" + std::to_string(++users_);
    std::string out;
    Status made = peer_->RunBoto3(
        "import json\n"
        "iam = client('iam')\n"
        "iam.create_user(UserName='" +
            user_ + "')\n" + GrantCode() + "k = iam.create_access_key(UserName='" + user_ +
            "')['AccessKey']\n"
            "print('KEY ' + json.dumps({'id': k['AccessKeyId'], 'secret': "
            "k['SecretAccessKey']}))\n",
        &out);
    ASSERT_TRUE(made.ok()) << made.ToString();
    auto at = out.find("KEY ");
    ASSERT_NE(at, std::string::npos) << out;
    auto key = nlohmann::json::parse(out.substr(at + 4, out.find('\n', at) - at - 4));
    access_key_ = key["id"];
    secret_key_ = key["secret"];

    clock_.SetUnixSeconds(ToUnixSeconds(std::chrono::system_clock::now()));
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    svc_ = Open(/*via_proxy=*/true);
    ASSERT_NE(svc_, nullptr);
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    ASSERT_TRUE(
        svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());  // stays on the platform CMK
    auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms",
                                  peer_->setup()["keys"]["main"]["arn"].get<std::string>());
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ASSERT_TRUE(v->ok) << v->message;
  }

  std::string GrantCode() {
    return "iam.put_user_policy(UserName='" + user_ +
           "', PolicyName='kms', PolicyDocument=json.dumps({'Version': '2012-10-17', "
           "'Statement': [{'Effect': 'Allow', 'Action': ['kms:Encrypt', 'kms:Decrypt'], "
           "'Resource': '*'}]}))\n";
  }
  void Revoke() {
    Status s = peer_->RunBoto3("iam = client('iam')\niam.delete_user_policy(UserName='" + user_ +
                               "', PolicyName='kms')\n");
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Restore() {
    Status s = peer_->RunBoto3("import json\niam = client('iam')\n" + GrantCode());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Another node (or `ekm` in local mode) on the same data directory, with its own cache.
  std::unique_ptr<EkmService> Open(bool via_proxy) {
    std::map<std::string, std::string> env = {
        {"AWS_ACCESS_KEY_ID", access_key_},
        {"AWS_SECRET_ACCESS_KEY", secret_key_},
        {"AWS_ENDPOINT_URL", via_proxy ? peer_->proxy_endpoint() : peer_->endpoint()},
        {"AWS_REGION", "us-east-1"},
        {"AWS_EC2_METADATA_DISABLED", "true"},
        {"HOME", dir_.path()}};
    EkmOptions o = options_;
    o.aws.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    o.aws.call_timeout = std::chrono::milliseconds(2000);
    o.aws.call_deadline = std::chrono::milliseconds(3000);
    auto svc = EkmService::Open(o);
    EXPECT_TRUE(svc.ok()) << svc.status().ToString();
    return svc.ok() ? std::move(*svc) : nullptr;
  }

  Bytes Encrypt(std::string_view env, std::string_view scope, std::string_view text) {
    Bytes ct;
    Status s = svc_->Encrypt(TestOp(), "acme", env, scope, AsBytes(text), &ct);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ct;
  }
  StatusOr<std::string> Decrypt(EkmService& svc, std::string_view env, const Bytes& ct) {
    Bytes pt;
    EKM_RETURN_IF_ERROR(svc.Decrypt(TestOp(), "acme", env, ct, &pt));
    return std::string(AsChars(pt));
  }

  // The plaintext, or the error as text (so a failure shows what went wrong).
  static std::string Text(const StatusOr<std::string>& r) {
    return r.ok() ? *r : "error: " + r.status().ToString();
  }

  size_t CountEvents(std::string_view type) {
    auto store = EkmService::OpenStore(options_);
    EXPECT_TRUE(store.ok());
    LifecycleEventFilter f;
    f.workspace = "acme";
    f.environment = "prod";
    f.type = std::string(type);
    auto events = (*store)->ListLifecycleEvents(f);
    EXPECT_TRUE(events.ok());
    return events.ok() ? events->size() : 0;
  }

  int DecryptCalls() {
    auto stats = peer_->FaultStats();
    EXPECT_TRUE(stats.ok());
    return stats.ok() ? (*stats)["requests"].value("TrentService.Decrypt", 0) : 0;
  }

  static void ExpectUnavailable(const Status& s, std::string_view provider_code) {
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_TRUE(s.message().starts_with("the customer main key is unavailable: ")) << s.message();
    EXPECT_NE(s.message().find(provider_code), std::string::npos) << s.message();
    EXPECT_EQ(s.retry_after_seconds(), 0);  // not retryable: the customer must act
  }

  friend class PeerEnvironment;
  static MotoPeer* peer_;
  static int users_;
  std::string user_, access_key_, secret_key_;
  testing::TempDir dir_;
  FakeClock clock_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

MotoPeer* RevocationTest::peer_ = nullptr;
int RevocationTest::users_ = 0;

class PeerEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete RevocationTest::peer_;
    RevocationTest::peer_ = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kPeerEnvironment =
    ::testing::AddGlobalTestEnvironment(new PeerEnvironment);

// The seed sentences' suites (docs/lifecycle.md), on the same fixture and moto.
class SeedAccessRestriction : public RevocationTest {};
class SeedRevocationAndDeletion : public RevocationTest {};

// The issue's sequence: encrypt, revoke, readable before the TTL, the clear error after it,
// readable again once access is restored; the status says each step.
TEST_F(RevocationTest, RevokedAccessEndsAfterTheTtlAndRestoreBringsEverythingBack) {
  Bytes ct = Encrypt("prod", "orders", "paid");
  Revoke();
  clock_.Advance(seconds(299));
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "paid");
  clock_.Advance(seconds(1));
  auto gone = Decrypt(*svc_, "prod", ct);
  ExpectUnavailable(gone.status(), "AccessDenied");
  EXPECT_NE(gone.status().hint().find("key policy"), std::string::npos);

  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->state, "unavailable");
  EXPECT_EQ(st->provider_code, "AccessDenied");
  EXPECT_FALSE(st->retryable);
  EXPECT_GT(st->last_success, 0);
  EXPECT_EQ(st->since, ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(CountEvents(event::kCmkRevocationDetected), 1u);

  Restore();
  clock_.Advance(seconds(61));  // past the backoff
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "paid");
  st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "healthy");
  EXPECT_EQ(CountEvents(event::kCmkRestored), 1u);
}

// Issue 12: the audit log must not count refused operations as usage. While the CMK is
// revoked every data-plane attempt is counted as refused, apart from the decrypts done, so the
// auditor sees that no decrypt succeeded.
TEST_F(RevocationTest, UsageCountsAttemptsWhileRevokedAsRefusedNotAsDecrypts) {
  Bytes ct = Encrypt("prod", "orders", "paid");
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "paid");
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());  // before the revocation
  Revoke();
  clock_.Advance(seconds(300));
  for (int i = 0; i < 2; ++i)
    ExpectUnavailable(Decrypt(*svc_, "prod", ct).status(), "AccessDenied");
  Bytes out;
  EXPECT_EQ(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes("x"), &out).code(),
            StatusCode::kFailedPrecondition);
  auto batch = svc_->DecryptBatch(TestOp(), "acme", "prod", {ct, ct});
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();  // a refusal is each item's
  auto stream = svc_->NewDecryptStream(TestOp(), "acme", "prod");
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ((*stream)->Update(ct, &out).code(), StatusCode::kFailedPrecondition);
  stream->reset();
  EXPECT_EQ(svc_->GenerateDataKey(TestOp(), "acme", "prod", "blobs", 32, false).status().code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());

  EventQuery q;
  q.workspace = "acme";
  q.environment = "prod";
  q.type = "data_plane.usage";
  auto records = svc_->QueryAudit(TestOp(), q);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);  // one flush before, one after the revocation
  std::map<std::string, uint64_t> after;
  const nlohmann::json detail = nlohmann::json::parse(records->back().detail);
  for (const auto& c : detail["counts"]) {
    after[c["operation"].get<std::string>() + "/" + c["outcome"].get<std::string>()] +=
        c["count"].get<uint64_t>();
  }
  EXPECT_EQ(after,
            (std::map<std::string, uint64_t>{
                {"decrypt/refused", 5}, {"encrypt/refused", 1}, {"generate_data_key/refused", 1}}))
      << records->back().detail;
}

TEST_F(RevocationTest, ADisabledKeyIsUnavailableWithTheEnableHint) {
  Bytes ct = Encrypt("prod", "orders", "x");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "DisabledException").ok());
  clock_.Advance(seconds(300));
  auto s = Decrypt(*svc_, "prod", ct).status();
  ExpectUnavailable(s, "DisabledException");
  EXPECT_NE(s.hint().find("enable"), std::string::npos) << s.hint();
  ASSERT_TRUE(peer_->ClearFaults().ok());
  clock_.Advance(seconds(61));
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "x");
}

TEST_F(RevocationTest, APendingDeletionKeyIsUnavailableWithTheCancelDeletionHint) {
  Bytes ct = Encrypt("prod", "orders", "x");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "KMSInvalidStateException").ok());
  clock_.Advance(seconds(300));
  auto s = Decrypt(*svc_, "prod", ct).status();
  ExpectUnavailable(s, "KMSInvalidStateException");
  EXPECT_NE(s.hint().find("cancel the key deletion"), std::string::npos) << s.hint();
  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "unavailable");
}

// A key that worked for an hour and is then not found was deleted: say so (its data cannot be
// recovered), in the error and in `environment status`, never "copy the ARN again", the advice
// for an \"Update key\" of a new key.
TEST_F(RevocationTest, AKeyDeletedAfterAnHourOfUseIsToldDeletedNotToCopyTheArnAgain) {
  Bytes ct = Encrypt("prod", "orders", "an hour of use");
  for (int minute = 0; minute < 60; minute += 10) {
    clock_.Advance(seconds(600));
    ASSERT_EQ(Text(Decrypt(*svc_, "prod", ct)), "an hour of use");
  }
  auto before = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(before.ok());
  ASSERT_GT(before->last_success, 0);
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "NotFoundException").ok());
  clock_.Advance(seconds(300));
  Status s = Decrypt(*svc_, "prod", ct).status();
  ExpectUnavailable(s, "NotFoundException");
  const std::string until = "until " + FormatRfc3339(FromUnixSeconds(before->last_success));
  for (const std::string& hint : {s.hint(), svc_->KeyStatus(TestOp(), "acme", "prod")->hint}) {
    EXPECT_NE(hint.find(until), std::string::npos) << hint;
    EXPECT_NE(hint.find("it was deleted"), std::string::npos) << hint;
    EXPECT_NE(hint.find("cannot be recovered"), std::string::npos) << hint;
    EXPECT_EQ(hint.find("copy it again"), std::string::npos) << hint;
    EXPECT_EQ(hint.find("check the key ARN"), std::string::npos) << hint;
  }
  ASSERT_TRUE(peer_->ClearFaults().ok());
}

TEST_F(RevocationTest, AnOutageIsDegradedRetryableAndDoesNotHammerTheKms) {
  Bytes ct = Encrypt("prod", "orders", "x");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "ServiceUnavailable").ok());
  clock_.Advance(seconds(300));
  auto s = Decrypt(*svc_, "prod", ct).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(s.message().starts_with("the customer main key's KMS cannot be reached: "))
      << s.message();
  EXPECT_GE(s.retry_after_seconds(), 1);
  int calls = DecryptCalls();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Decrypt(*svc_, "prod", ct).status().code(), StatusCode::kUnavailable);
  }
  EXPECT_EQ(DecryptCalls(), calls);  // inside the backoff: failed fast, no KMS call

  // The API: 503 with Retry-After, for a request the router handles.
  Router router(svc_.get());
  RouteRequest req{"POST",
                   "/v1/workspaces/acme/environments/prod/encrypt",
                   "application/json",
                   AppBearer(*svc_),
                   "127.0.0.1",
                   ""};
  RouteMatch m = router.Match(req);
  ASSERT_TRUE(m.status.ok());
  RouteResponse res = router.Handle(m, R"({"plaintext":"eA=="})");
  // Encrypt under the current DK also needs the EK: same answer.
  EXPECT_EQ(res.status, 503) << res.body;
  EXPECT_GE(res.retry_after, 1);
  EXPECT_NE(res.body.find("retry_after_seconds"), std::string::npos);

  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "degraded");
  EXPECT_TRUE(st->retryable);
  EXPECT_GT(st->next_retry, 0);
  EXPECT_EQ(CountEvents(event::kCmkOutageDetected), 1u);
  EXPECT_EQ(CountEvents(event::kCmkRevocationDetected), 0u);

  ASSERT_TRUE(peer_->ClearFaults().ok());
  clock_.Advance(seconds(61));
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "x");
  EXPECT_EQ(CountEvents(event::kCmkRestored), 1u);
}

TEST_F(RevocationTest, ThrottlingIsAnOutageNotARevocation) {
  Bytes ct = Encrypt("prod", "orders", "x");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "ThrottlingException").ok());
  clock_.Advance(seconds(300));
  EXPECT_EQ(Decrypt(*svc_, "prod", ct).status().code(), StatusCode::kUnavailable);
  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "degraded");
  EXPECT_EQ(st->provider_code, "ThrottlingException");
}

TEST_F(RevocationTest, GracePeriodIsOffByDefaultAndBridgesAnOutageWhenSet) {
  Bytes ct = Encrypt("prod", "orders", "x");
  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->grace_period_seconds, 0);
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "KMSInternalException").ok());
  clock_.Advance(seconds(300));
  EXPECT_EQ(Decrypt(*svc_, "prod", ct).status().code(), StatusCode::kUnavailable);

  ASSERT_TRUE(peer_->ClearFaults().ok());
  clock_.Advance(seconds(61));
  ASSERT_EQ(Text(Decrypt(*svc_, "prod", ct)), "x");
  EnvironmentSettings set;
  set.grace_period_seconds = 3600;
  ASSERT_TRUE(svc_->UpdateEnvironmentSettings(TestOp(), "acme", "prod", set, {}).ok());
  ASSERT_EQ(Text(Decrypt(*svc_, "prod", ct)), "x");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "KMSInternalException").ok());
  clock_.Advance(seconds(300));
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "x");  // outage within grace: served
  clock_.Advance(seconds(3600));
  EXPECT_EQ(Decrypt(*svc_, "prod", ct).status().code(), StatusCode::kUnavailable);
}

TEST_F(RevocationTest, RevokingOneEnvironmentsCmkLeavesTheOtherEnvironmentReadable) {
  Bytes prod = Encrypt("prod", "orders", "p");
  Bytes dev = Encrypt("dev", "orders", "d");
  Revoke();
  clock_.Advance(seconds(300));
  EXPECT_FALSE(Decrypt(*svc_, "prod", prod).ok());
  EXPECT_EQ(Text(Decrypt(*svc_, "dev", dev)), "d");
  auto st = svc_->KeyStatus(TestOp(), "acme", "dev");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "healthy");
  Restore();
}

// Through a real ekmd HTTP server: an outage is 503 with a Retry-After header (JSON and
// streamed routes), a refusal is 409 without one.
TEST_F(RevocationTest, OverHttpAnOutageIs503WithRetryAfterAndARefusalIs409) {
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.threads = 2;
  HttpServer server(svc_.get(), h);
  ASSERT_TRUE(server.Start().ok());
  const std::string bearer = AppBearer(*svc_);
  Encrypt("prod", "default", "warm");
  ASSERT_TRUE(peer_->ArmFault("TrentService.Decrypt", "ServiceUnavailable").ok());
  clock_.Advance(seconds(300));
  std::string res =
      PostEncrypt(server.port(), bearer, "application/json", R"({"plaintext":"eA=="})");
  EXPECT_EQ(res.substr(0, 12), "HTTP/1.1 503") << res;
  EXPECT_NE(res.find("Retry-After: "), std::string::npos) << res;
  EXPECT_NE(res.find("\"retry_after_seconds\""), std::string::npos) << res;
  res = PostEncrypt(server.port(), bearer, "application/octet-stream", "x");
  EXPECT_EQ(res.substr(0, 12), "HTTP/1.1 503") << res;
  EXPECT_NE(res.find("Retry-After: "), std::string::npos) << res;

  ASSERT_TRUE(peer_->ClearFaults().ok());
  Revoke();
  clock_.Advance(seconds(61));
  res = PostEncrypt(server.port(), bearer, "application/json", R"({"plaintext":"eA=="})");
  EXPECT_EQ(res.substr(0, 12), "HTTP/1.1 409") << res;
  EXPECT_EQ(res.find("Retry-After"), std::string::npos) << res;
  EXPECT_NE(res.find("the customer main key is unavailable"), std::string::npos) << res;
  server.Stop(std::chrono::seconds(2));
  Restore();
}

// ---- the seed sentences ----

TEST_F(SeedAccessRestriction,
       IfKeyAccessIsRestrictedEncryptedDataWillBeAvailableForAShortTimeDueToCaching) {
  Bytes ct = Encrypt("prod", "orders", "cached");
  Revoke();
  // Restricted, yet still readable from the cache for the TTL …
  int at = 0;
  for (int step : {0, 60, 120, 119}) {
    clock_.Advance(seconds(step));
    at += step;
    EXPECT_EQ(Text(Decrypt(*svc_, "prod", ct)), "cached") << "at +" << at << " s";
  }
  // … and only for a short time.
  clock_.Advance(seconds(1));
  ExpectUnavailable(Decrypt(*svc_, "prod", ct).status(), "AccessDenied");
  Restore();
}

TEST_F(SeedAccessRestriction, TheCurrentTimeToLiveForTheKeyCacheIsFiveMinutes) {
  EXPECT_EQ(EkmOptions{}.key_cache_ttl, seconds(300));
  auto st = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->key_cache_ttl_seconds, 300);
  EXPECT_EQ(svc_->KeyCacheStatistics(TestOp())->ttl_seconds, 300);
  Bytes ct = Encrypt("prod", "orders", "x");
  Revoke();
  clock_.Advance(seconds(5 * 60) - std::chrono::nanoseconds(1));
  EXPECT_TRUE(Decrypt(*svc_, "prod", ct).ok());
  clock_.Advance(std::chrono::nanoseconds(1));
  EXPECT_FALSE(Decrypt(*svc_, "prod", ct).ok());
  Restore();
}

TEST_F(SeedRevocationAndDeletion,
       WhenAKeyIsDeletedOrRevokedEncryptedDataWillBeUnavailableToAllUsersInTheWorkspace) {
  Bytes orders = Encrypt("prod", "orders", "o");
  Bytes invoices = Encrypt("prod", "invoices", "i");
  Bytes dflt = Encrypt("prod", "default", "d");
  Revoke();
  clock_.Advance(seconds(300));
  // Every scope, every data-plane operation, on this node …
  for (const Bytes* ct : {&orders, &invoices, &dflt}) {
    ExpectUnavailable(Decrypt(*svc_, "prod", *ct).status(), "AccessDenied");
  }
  Bytes out;
  ExpectUnavailable(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes("n"), &out),
                    "AccessDenied");
  ExpectUnavailable(svc_->Encrypt(TestOp(), "acme", "prod", "brand-new-scope", AsBytes("n"), &out),
                    "AccessDenied");
  ExpectUnavailable(svc_->NewEncryptStream(TestOp(), "acme", "prod", "orders", false).status(),
                    "AccessDenied");
  auto dec = svc_->NewDecryptStream(TestOp(), "acme", "prod");
  if (dec.ok()) {
    Bytes plain;
    ExpectUnavailable((*dec)->Update(orders, &plain), "AccessDenied");
  } else {
    ExpectUnavailable(dec.status(), "AccessDenied");
  }
  // … for every caller through the API (409, not retryable, naming the refusal) …
  Router router(svc_.get());
  RouteRequest req{"POST",
                   "/v1/workspaces/acme/environments/prod/encrypt",
                   "application/json",
                   AppBearer(*svc_),
                   "127.0.0.1",
                   ""};
  RouteMatch m = router.Match(req);
  ASSERT_TRUE(m.status.ok());
  RouteResponse res = router.Handle(m, R"({"plaintext":"eA==","scope":"orders"})");
  EXPECT_EQ(res.status, 409) << res.body;
  EXPECT_EQ(res.retry_after, 0);
  EXPECT_NE(res.body.find("the customer main key is unavailable"), std::string::npos) << res.body;
  // … and in another process on the same data (another node, or `ekm` in local mode), which
  // also sees the stored status.
  auto other = Open(/*via_proxy=*/true);
  ASSERT_NE(other, nullptr);
  auto st = other->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "unavailable");
  ExpectUnavailable(Decrypt(*other, "prod", orders).status(), "AccessDenied");
  // Nothing stored was touched: restoring access brings everything back.
  Restore();
  clock_.Advance(seconds(61));
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", orders)), "o");
  EXPECT_EQ(Text(Decrypt(*svc_, "prod", invoices)), "i");
  EXPECT_EQ(Text(Decrypt(*other, "prod", dflt)), "d");
}

// A stream in progress checks its data key as it goes, as every single message does: while the
// CMK answers it runs across TTLs (revalidated through the hierarchy), once the CMK refuses it
// stops within one TTL with the CMK's error, and a shredded environment stops it at once.
TEST_F(RevocationTest, StreamsInProgressStopWithTheCmkErrorWithinTheTtl) {
  Bytes plain(300000);
  for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i * 7);
  auto encoder = svc_->NewEncryptStream(TestOp(), "acme", "prod", "files", /*text=*/false);
  ASSERT_TRUE(encoder.ok()) << encoder.status().ToString();
  Bytes ct;
  ASSERT_TRUE((*encoder)->Update(plain, &ct).ok());
  ASSERT_TRUE((*encoder)->Finish(&ct).ok());
  const ByteView all(ct);

  // The CMK answers: a stream goes on across two TTLs.
  auto across = svc_->NewDecryptStream(TestOp(), "acme", "prod");
  ASSERT_TRUE(across.ok());
  Bytes back;
  ASSERT_TRUE((*across)->Update(all.first(100000), &back).ok());
  clock_.Advance(seconds(301));
  ASSERT_TRUE((*across)->Update(all.subspan(100000, 100000), &back).ok());
  clock_.Advance(seconds(301));
  Status s = (*across)->Update(all.subspan(200000), &back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE((*across)->Finish(&back).ok());
  EXPECT_EQ(back, plain);

  // Revoked while a decrypt and an encrypt are in progress.
  auto decrypting = svc_->NewDecryptStream(TestOp(), "acme", "prod");
  auto encrypting = svc_->NewEncryptStream(TestOp(), "acme", "prod", "files", false);
  ASSERT_TRUE(decrypting.ok() && encrypting.ok());
  Bytes out, sealed;
  ASSERT_TRUE((*decrypting)->Update(all.first(100000), &out).ok());
  ASSERT_TRUE((*encrypting)->Update(ByteView(plain).first(100000), &sealed).ok());
  Revoke();
  clock_.Advance(seconds(299));  // within the TTL: still readable, as every message is
  ASSERT_TRUE((*decrypting)->Update(all.subspan(100000, 50000), &out).ok());
  clock_.Advance(seconds(1));
  ExpectUnavailable((*decrypting)->Update(all.subspan(150000), &out), "AccessDenied");
  ExpectUnavailable((*encrypting)->Update(ByteView(plain).subspan(100000), &sealed),
                    "AccessDenied");
  ExpectUnavailable((*encrypting)->Finish(&sealed), "AccessDenied");

  // The platform-keyed environment next door: shredded while a stream of it runs.
  Bytes dev_ct;
  {
    auto e = svc_->NewEncryptStream(TestOp(), "acme", "dev", "files", false);
    ASSERT_TRUE(e.ok());
    ASSERT_TRUE((*e)->Update(plain, &dev_ct).ok() && (*e)->Finish(&dev_ct).ok());
  }
  auto dev = svc_->NewDecryptStream(TestOp(), "acme", "dev");
  ASSERT_TRUE(dev.ok());
  Bytes dev_out;
  ASSERT_TRUE((*dev)->Update(ByteView(dev_ct).first(100000), &dev_out).ok());
  auto confirmation = svc_->RequestShred(TestOp(), "acme", "dev");
  ASSERT_TRUE(confirmation.ok()) << confirmation.status().ToString();
  ASSERT_TRUE(svc_->ShredEnvironment(TestOp(), "acme", "dev", confirmation->token, "dev").ok());
  Status after = (*dev)->Update(ByteView(dev_ct).subspan(100000), &dev_out);
  EXPECT_FALSE(after.ok());
  EXPECT_NE(after.message().find("shredded"), std::string::npos) << after.ToString();
}

}  // namespace
}  // namespace ekm
