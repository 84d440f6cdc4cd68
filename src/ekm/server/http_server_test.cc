#include "ekm/server/http_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "ekm/base/random.h"
#include "ekm/client/ekm_client.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

// Over HTTP the caller is the client's token; the context only fills the parameter.
const CallContext kClientCtx;

// Sends raw bytes to the server and returns everything it answers until it closes.
std::string RawRequest(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = write(fd, request.data() + off, request.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::string Post(int port, const std::string& path, const std::string& body,
                 const std::string& content_type = "application/json",
                 const std::string& token = "") {
  return RawRequest(port,
                    "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                        (content_type.empty() ? "" : "Content-Type: " + content_type + "\r\n") +
                        (token.empty() ? "" : "Authorization: Bearer " + token + "\r\n") +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

int StatusOf(const std::string& response) {
  return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0;
}

nlohmann::json BodyOf(const std::string& response) {
  auto pos = response.find("\r\n\r\n");
  return nlohmann::json::parse(response.substr(pos + 4), nullptr, false);
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EkmOptions o;
    o.data_dir = dir_.path() + "/data";
    ASSERT_TRUE(EkmService::Initialize(o).ok());
    auto svc = EkmService::Open(o);
    ASSERT_TRUE(svc.ok());
    svc_ = std::move(*svc);
    HttpServerOptions h;
    h.listen = "127.0.0.1:0";
    h.threads = 2;
    h.max_body_size = 64 * 1024;
    server_ = std::make_unique<HttpServer>(svc_.get(), h);
    ASSERT_TRUE(server_->Start().ok());
    port_ = server_->port();
    // Every route but /healthz needs a token: the admin makes the workspace, the app uses it.
    auto boot = svc_->EnsureBootstrapAdminToken(TestOp(), std::nullopt);
    ASSERT_TRUE(boot.ok() && boot->created);
    admin_token_ = Text(boot->token);
    auto a = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), admin_token_);
    ASSERT_TRUE(a.ok());
    admin_ = std::move(*a);
    ASSERT_TRUE(admin_->CreateWorkspace(kClientCtx, "acme").ok());
    ASSERT_TRUE(admin_->CreateEnvironment(kClientCtx, "acme", "prod").ok());
    auto app = svc_->CreateApiToken(TestOp(), ApiTokenRequest{"app", "acme", {}, "test", {}});
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_token_ = Text(app->token);
    auto c = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), app_token_);
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
  }
  static std::string Text(const SecretBytes& s) {
    auto r = s.RevealForCrypto();
    return std::string(r.begin(), r.end());
  }
  void TearDown() override { server_->Stop(std::chrono::seconds(2)); }

  Bytes StreamThrough(bool encrypt, ByteView input, bool text, Status* status,
                      std::string_view env = "prod") {
    size_t off = 0;
    Bytes out;
    StreamSource source;
    source.read = [&](uint8_t* buf, size_t cap) -> StatusOr<size_t> {
      size_t n = std::min(cap, input.size() - off);
      if (n > 0) std::memcpy(buf, input.data() + off, n);
      off += n;
      return n;
    };
    StreamSink sink = [&](ByteView d) -> Status {
      Append(out, d);
      return Status::Ok();
    };
    *status = encrypt ? client_->EncryptStream(kClientCtx, "acme", env, "files", text, source, sink)
                      : client_->DecryptStream(kClientCtx, "acme", env, source, sink);
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<EkmService> svc_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<EkmClient> client_;  // the app token: the data plane
  std::unique_ptr<EkmClient> admin_;   // the bootstrap admin token
  std::string admin_token_, app_token_;
  int port_ = 0;
};

TEST_F(HttpServerTest, AdminRoutesThroughTheClient) {
  auto ws = admin_->ListWorkspaces(kClientCtx);
  ASSERT_TRUE(ws.ok());
  ASSERT_EQ(ws->size(), 1u);
  EXPECT_EQ((*ws)[0].name, "acme");
  EXPECT_GT((*ws)[0].created_at, 0);
  auto envs = admin_->ListEnvironments(kClientCtx, "acme");
  ASSERT_TRUE(envs.ok());
  EXPECT_EQ((*envs)[0].cmk_provider, "platform");
  auto dup = admin_->CreateWorkspace(kClientCtx, "acme");
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists);
  auto missing = admin_->ListEnvironments(kClientCtx, "nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().hint().find("ekm workspace create nope"), std::string::npos);
  EXPECT_EQ(*admin_->Health(), "ok");
}

// The rotation schedule run through the API (`ekm key rotate --due` against a server): the
// admin's, and the events name its token.
TEST_F(HttpServerTest, TheAdminRunsTheDueRotations) {
  auto none = admin_->RunScheduledRotations(kClientCtx);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->rotated.empty());  // no schedule: nothing is due
  EnvironmentSettings set;
  set.ek_rotation_period_seconds = 3600;
  auto owner = svc_->CreateApiToken(TestOp(), ApiTokenRequest{"owner", "acme", {}, "o", {}});
  ASSERT_TRUE(owner.ok());
  auto oc = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), Text(owner->token));
  ASSERT_TRUE(oc.ok());
  ASSERT_TRUE((*oc)->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", set, {}).ok());
  EXPECT_EQ((*oc)->RunScheduledRotations(kClientCtx).status().code(),
            StatusCode::kPermissionDenied);
  // Nothing is an hour old yet: a schedule alone rotates nothing.
  EXPECT_TRUE(admin_->RunScheduledRotations(kClientCtx)->rotated.empty());
  EventQuery q;
  q.workspace = "acme";
  q.type = "token.permission_denied";
  auto denied = svc_->ListEvents(TestOp(), q);
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->size(), 1u);
}

TEST_F(HttpServerTest, JsonEncryptDecrypt) {
  Bytes ct;
  ASSERT_TRUE(client_->Encrypt(kClientCtx, "acme", "prod", "orders", AsBytes("hello"), &ct).ok());
  EXPECT_EQ(AsChars(ByteView(ct).first(3)), "EKM");  // the binary single form, as in process
  for (const Bytes& form : {ct, ToBytes(EnvelopeToText(ct))}) {
    Bytes pt;
    Status s = client_->Decrypt(kClientCtx, "acme", "prod", form, &pt);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(AsChars(pt), "hello");
  }
  Bytes bad = ct;
  bad[bad.size() - 3] ^= 1;
  Bytes pt;
  EXPECT_EQ(client_->Decrypt(kClientCtx, "acme", "prod", bad, &pt).code(), StatusCode::kDataLoss);
}

TEST_F(HttpServerTest, BatchesThroughTheClientGiveEachItemItsOwnResult) {
  std::vector<BatchEncryptItem> items(2);
  items[0].scope = "orders";
  items[0].plaintext = ToBytes("one");
  items[1].scope = "bad scope!";
  items[1].plaintext = ToBytes("two");
  auto sealed = client_->EncryptBatch(kClientCtx, "acme", "prod", items);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  ASSERT_EQ(sealed->size(), 2u);
  ASSERT_TRUE((*sealed)[0].ok());
  EXPECT_EQ((*sealed)[1].status().code(), StatusCode::kInvalidArgument);

  Bytes tampered = *(*sealed)[0];
  tampered.back() ^= 1;
  auto opened = client_->DecryptBatch(kClientCtx, "acme", "prod", {*(*sealed)[0], tampered});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ASSERT_EQ(opened->size(), 2u);
  ASSERT_TRUE((*opened)[0].ok());
  EXPECT_EQ(AsChars(*(*opened)[0]), "one");
  EXPECT_EQ((*opened)[1].status().code(), StatusCode::kDataLoss);
}

TEST_F(HttpServerTest, TheCallingTokenAndTheAuditKeyThroughTheClient) {
  auto me = client_->WhoAmI(kClientCtx);
  ASSERT_TRUE(me.ok()) << me.status().ToString();
  ASSERT_TRUE(me->has_value());
  EXPECT_EQ((*me)->role, "app");
  EXPECT_EQ((*me)->workspace, "acme");
  auto key = admin_->GetAuditPublicKey(kClientCtx);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->algorithm, "Ed25519");
  EXPECT_EQ(key->public_key_pem, svc_->AuditSigningPublicKey().pem());
}

TEST_F(HttpServerTest, StreamsOfAnySize) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{1} << 20, size_t{5} << 20}) {
    for (bool text : {false, true}) {
      Bytes plain(size);
      ASSERT_TRUE(RandomBytes(plain).ok());
      Status s;
      Bytes ct = StreamThrough(true, plain, text, &s);
      ASSERT_TRUE(s.ok()) << s.ToString();
      Bytes back = StreamThrough(false, ct, false, &s);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(back, plain) << size << " " << text;
    }
  }
}

TEST_F(HttpServerTest, StreamErrorsBeforeAndAfterOutput) {
  Bytes plain(300000);
  ASSERT_TRUE(RandomBytes(plain).ok());
  Status s;
  Bytes ct = StreamThrough(true, plain, false, &s);
  ASSERT_TRUE(s.ok());
  // Before any output: the wrong environment is a normal 4xx error.
  ASSERT_TRUE(admin_->CreateEnvironment(kClientCtx, "acme", "dev").ok());
  StreamThrough(false, ct, false, &s, "dev");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("belongs to workspace"), std::string::npos);
  // After output began: truncation is reported through the trailer.
  Bytes truncated(ct.begin(), ct.end() - 100);
  StreamThrough(false, truncated, false, &s);
  EXPECT_FALSE(s.ok());
  // Unknown environment, and garbage.
  StreamThrough(true, plain, false, &s, "nope");
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  StreamThrough(false, AsBytes("garbage in"), false, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST_F(HttpServerTest, BadInputIsA4xxWithTheErrorShape) {
  struct Case {
    std::string method, path, body, content_type;
    int status;
    std::string message;
  };
  const std::string enc = "/v1/workspaces/acme/environments/prod/encrypt";
  std::vector<Case> cases = {
      {"POST", "/v1/workspaces", "{\"name\": ", "application/json", 400, "not valid JSON"},
      {"POST", "/v1/workspaces", "[1]", "application/json", 400, "must be a JSON object"},
      {"POST", "/v1/workspaces", "{\"name\": 7}", "application/json", 400, "must be a string"},
      {"POST", "/v1/workspaces", "{}", "application/json", 400, "\"name\" is missing"},
      {"POST", "/v1/workspaces", "{\"name\": \"Bad Name\"}", "application/json", 400, "position 1"},
      {"POST", "/v1/workspaces", "", "application/json", 400, "empty"},
      {"POST", enc, "{\"plaintext\": \"***\"}", "application/json", 400, "base64"},
      {"POST", enc, "{\"plaintext\": \"aGk=\", \"scope\": \"a b\"}", "application/json", 400,
       "scope"},
      {"POST", enc, "hello", "text/html", 415, "Content-Type"},
      {"POST", "/v1/workspaces/acme/environments/prod/decrypt", "{\"ciphertext\": \"nope\"}",
       "application/json", 400, "not an ekm ciphertext"},
      {"POST", "/v1/workspaces/acme/environments/prod/decrypt", "{\"ciphertext\": \"ekm1:!!\"}",
       "application/json", 400, "invalid character"},
      {"GET", "/v1/nothing", "", "", 404, "no such API route"},
      {"DELETE", "/v1/workspaces", "", "", 405, "not allowed"},
      {"POST", "/v1/workspaces/nope/environments", "{\"name\": \"x\"}", "application/json", 404,
       "does not exist"},
      {"POST", "/v1/workspaces/acme/environments/prod/encrypt", std::string(70 * 1024, 'x'),
       "application/json", 413, "larger than the limit"},
  };
  for (const auto& c : cases) {
    // The data plane is the app's; the rest here is the admin's.
    const std::string& token =
        c.path.find("/environments/prod/") != std::string::npos ? app_token_ : admin_token_;
    std::string response =
        c.method == "POST" ? Post(port_, c.path, c.body, c.content_type, token)
                           : RawRequest(port_, c.method + " " + c.path +
                                                   " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                                   "Authorization: Bearer " +
                                                   token + "\r\n\r\n");
    EXPECT_EQ(StatusOf(response), c.status)
        << c.method << " " << c.path << " " << c.body.substr(0, 40) << "\n"
        << response.substr(0, 300);
    auto j = BodyOf(response);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << response.substr(0, 300);
    EXPECT_TRUE(j["error"]["code"].is_string());
    EXPECT_NE(j["error"]["message"].get<std::string>().find(c.message), std::string::npos)
        << j.dump();
  }
  std::string r405 = RawRequest(port_, "DELETE /v1/workspaces HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(r405.find("Allow: GET, POST"), std::string::npos);
  std::string garbage = RawRequest(port_, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(StatusOf(garbage), 400);
}

TEST_F(HttpServerTest, MissingOrBadTokensAre401WithWwwAuthenticateAndWrongRolesAre403) {
  const std::string path = "/v1/workspaces";
  auto get = [&](const std::string& header) {
    return RawRequest(
        port_, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + "\r\n");
  };
  std::string forged = admin_token_;
  forged.back() = forged.back() == 'A' ? 'Q' : 'A';
  std::string unknown = admin_token_;
  unknown[5] = unknown[5] == 'a' ? 'b' : 'a';
  for (const std::string& header :
       {std::string(), std::string("Authorization: Bearer nonsense\r\n"),
        std::string("Authorization: Basic dXNlcjpwYXNz\r\n"),
        "Authorization: Bearer " + forged + "\r\n", "Authorization: Bearer " + unknown + "\r\n"}) {
    std::string r = get(header);
    EXPECT_EQ(StatusOf(r), 401) << header;
    EXPECT_NE(r.find("WWW-Authenticate: Bearer"), std::string::npos);
    EXPECT_EQ(BodyOf(r)["error"]["code"], "unauthenticated");
    EXPECT_NE(BodyOf(r)["error"]["hint"].get<std::string>().find("EKM_TOKEN"), std::string::npos);
    EXPECT_EQ(r.find(admin_token_.substr(21)), std::string::npos);
  }
  // A wrong secret and an unknown id read the same.
  EXPECT_EQ(BodyOf(get("Authorization: Bearer " + forged + "\r\n")),
            BodyOf(get("Authorization: Bearer " + unknown + "\r\n")));
  // The app may not list workspaces: 403 naming the roles needed.
  std::string r = get("Authorization: Bearer " + app_token_ + "\r\n");
  EXPECT_EQ(StatusOf(r), 403);
  EXPECT_NE(BodyOf(r)["error"]["message"].get<std::string>().find("admin"), std::string::npos);
  // /healthz stays open.
  EXPECT_EQ(StatusOf(RawRequest(port_,
                                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: "
                                "close\r\n\r\n")),
            200);
}

TEST_F(HttpServerTest, TokenRoutesAndRevocationTakeEffectAtOnce) {
  ApiTokenRequest req;
  req.role = "owner";
  req.workspace = "acme";
  auto owner = admin_->CreateApiToken(kClientCtx, req);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  auto oc = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), Text(owner->token));
  ASSERT_TRUE(oc.ok());
  auto me = (*oc)->WhoAmI(kClientCtx);
  ASSERT_TRUE(me.ok()) << me.status().ToString();
  ASSERT_TRUE(me->has_value());
  EXPECT_EQ((*me)->role, "owner");
  EXPECT_EQ((*me)->workspace, "acme");
  // An owner may not mint admin tokens nor tokens of another workspace.
  ApiTokenRequest admin_req;
  admin_req.role = "admin";
  EXPECT_EQ((*oc)->CreateApiToken(kClientCtx, admin_req).status().code(),
            StatusCode::kPermissionDenied);
  ApiTokenRequest app_req;
  app_req.role = "app";
  app_req.workspace = "acme";
  auto app = (*oc)->CreateApiToken(kClientCtx, app_req);
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  auto list = (*oc)->ListApiTokens(kClientCtx, std::nullopt);
  ASSERT_TRUE(list.ok());
  for (const auto& t : *list) EXPECT_EQ(t.workspace, "acme");
  auto ac = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), Text(app->token));
  ASSERT_TRUE(ac.ok());
  Bytes ct;
  ASSERT_TRUE((*ac)->Encrypt(kClientCtx, "acme", "prod", "default", AsBytes("x"), &ct).ok());
  ASSERT_TRUE((*oc)->RevokeApiToken(kClientCtx, app->info.id).ok());
  Status refused = (*ac)->Encrypt(kClientCtx, "acme", "prod", "default", AsBytes("x"), &ct);
  EXPECT_EQ(refused.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(refused.message().find("revoked"), std::string::npos);
  // The events name the token.
  EventQuery q;
  q.workspace = "acme";
  q.type = "token.revoked";
  auto events = svc_->ListEvents(TestOp(), q);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].actor, "token:" + owner->info.id);
}

// Issue 12: an admin token never obtains a token that reads data. It creates the first owner
// of a workspace, not app (or key-manager, auditor) tokens, not a second owner while one is
// valid, and cannot revoke an owner token; the owner manages the rest.
TEST_F(HttpServerTest, TheAdminCreatesTheFirstOwnerAndNoTokenThatReadsData) {
  ApiTokenRequest app_req;
  app_req.role = "app";
  app_req.workspace = "acme";
  Status app = admin_->CreateApiToken(kClientCtx, app_req).status();
  EXPECT_EQ(app.code(), StatusCode::kPermissionDenied) << app.ToString();
  EXPECT_NE(app.message().find("created by its owner"), std::string::npos) << app.message();
  ApiTokenRequest owner_req;
  owner_req.role = "owner";
  owner_req.workspace = "acme";
  auto owner = admin_->CreateApiToken(kClientCtx, owner_req);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  Status second = admin_->CreateApiToken(kClientCtx, owner_req).status();
  EXPECT_EQ(second.code(), StatusCode::kPermissionDenied) << second.ToString();
  EXPECT_NE(second.message().find("has a valid owner token"), std::string::npos);
  Status revoke = admin_->RevokeApiToken(kClientCtx, owner->info.id).status();
  EXPECT_EQ(revoke.code(), StatusCode::kPermissionDenied) << revoke.ToString();
  // The owner makes the app token and may revoke owners, its own too; then the admin may
  // create an owner again (a recovery).
  auto oc = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), Text(owner->token));
  ASSERT_TRUE(oc.ok());
  ASSERT_TRUE((*oc)->CreateApiToken(kClientCtx, app_req).ok());
  ASSERT_TRUE((*oc)->RevokeApiToken(kClientCtx, owner->info.id).ok());
  EXPECT_TRUE(admin_->CreateApiToken(kClientCtx, owner_req).ok());
  // The refusals are recorded in the caller's (the platform's) audit chain.
  EventQuery q;
  q.workspace = "";
  q.type = "token.permission_denied";
  auto denied = svc_->QueryAudit(TestOp(), q);
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->size(), 3u);
}

// Issue 12: the replacement period guards the CMK replacements key-managers make: changing it
// (or resetting it) is the owner's, and it has a floor.
TEST_F(HttpServerTest, OnlyAnOwnerChangesTheReplacementPeriod) {
  auto client_as = [&](const char* role) {
    auto t = svc_->CreateApiToken(TestOp(), ApiTokenRequest{role, "acme", {}, "test", {}});
    EXPECT_TRUE(t.ok());
    auto c = EkmClient::Create("http://127.0.0.1:" + std::to_string(port_), Text(t->token));
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  };
  auto km = client_as("key-manager");
  auto owner = client_as("owner");
  EnvironmentSettings period;
  period.replacement_period_seconds = 0;
  Status s = km->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", period, {}).status();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("needs the role owner"), std::string::npos) << s.message();
  EXPECT_EQ(
      km->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", {}, {"replacement_period_seconds"})
          .status()
          .code(),
      StatusCode::kPermissionDenied);
  EnvironmentSettings ttl;
  ttl.key_cache_ttl_seconds = 60;
  EXPECT_TRUE(km->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", ttl, {}).ok());
  Status floor = owner->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", period, {}).status();
  EXPECT_EQ(floor.code(), StatusCode::kInvalidArgument) << floor.ToString();
  EXPECT_NE(floor.message().find("at least 3600 seconds"), std::string::npos);
  period.replacement_period_seconds = 7200;
  auto set = owner->UpdateEnvironmentSettings(kClientCtx, "acme", "prod", period, {});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->replacement_period_seconds, 7200);
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string many;
  for (int i = 0; i < 20; ++i) many += req;
  many += "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string response = RawRequest(port_, many);
  size_t count = 0;
  for (size_t pos = 0; (pos = response.find("HTTP/1.1 200", pos)) != std::string::npos; ++pos)
    ++count;
  EXPECT_EQ(count, 21u);
}

TEST_F(HttpServerTest, RefusesPlainHttpOnAPublicAddressByDefault) {
  HttpServerOptions h;
  h.listen = "0.0.0.0:0";
  HttpServer s(svc_.get(), h);
  Status st = s.Start();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.hint().find("--allow-insecure-listen"), std::string::npos);
  HttpServerOptions busy;
  busy.listen = "127.0.0.1:" + std::to_string(port_);
  HttpServer s2(svc_.get(), busy);
  Status st2 = s2.Start();
  EXPECT_FALSE(st2.ok());
  EXPECT_NE(st2.message().find("cannot listen"), std::string::npos);
}

TEST_F(HttpServerTest, StopWaitsForAnInFlightStream) {
  Bytes plain(8 << 20);
  ASSERT_TRUE(RandomBytes(plain).ok());
  Status s;
  std::thread t([&] { StreamThrough(true, plain, false, &s); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  server_->Stop(std::chrono::seconds(5));
  t.join();
  // Either the stream finished before Stop, or it completed during the grace period.
  EXPECT_TRUE(s.ok()) << s.ToString();
}

std::string Get(int port, const std::string& path, const std::string& headers = "") {
  return RawRequest(
      port, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + "\r\n");
}

TEST_F(HttpServerTest, RequestIdIsEchoedOrGenerated) {
  std::string r = Get(port_, "/healthz", "X-Request-Id: abc.DEF_1-2\r\n");
  EXPECT_NE(r.find("X-Request-Id: abc.DEF_1-2\r\n"), std::string::npos) << r;
  r = Get(port_, "/healthz", "X-Request-Id: no spaces allowed\r\n");
  EXPECT_EQ(r.find("no spaces"), std::string::npos) << r;
  auto at = r.find("X-Request-Id: ");
  ASSERT_NE(at, std::string::npos) << r;
  EXPECT_EQ(r.find("\r\n", at) - at - 14, 24u);  // 12 random bytes in hex
  r = Get(port_, "/nowhere", "X-Request-Id: " + std::string(65, 'a') + "\r\n");
  EXPECT_EQ(StatusOf(r), 404);
  EXPECT_EQ(r.find(std::string(65, 'a')), std::string::npos);
}

// Accepts one connection on 127.0.0.1, answers `response` to the first request and returns
// the request's header as it came.
class OneShotPeer {
 public:
  explicit OneShotPeer(std::string response) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 1);
    header_ = std::async(std::launch::async, [this, response] {
      int c = accept(fd_, nullptr, nullptr);
      std::string got;
      char buf[4096];
      ssize_t n;
      while (got.find("\r\n\r\n") == std::string::npos && (n = read(c, buf, sizeof(buf))) > 0) {
        got.append(buf, static_cast<size_t>(n));
      }
      (void)!write(c, response.data(), response.size());
      close(c);
      return got;
    });
  }
  ~OneShotPeer() { close(fd_); }
  int port() const { return port_; }
  std::string header() { return header_.get(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::future<std::string> header_;
};

TEST(EkmClientTest, SendsTheCallersRequestId) {
  OneShotPeer peer(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
      "Connection: close\r\n\r\n{\"workspaces\":[]}");
  auto client = EkmClient::Create("http://127.0.0.1:" + std::to_string(peer.port()), "t");
  ASSERT_TRUE(client.ok());
  CallContext ctx;
  ctx.request_id = "caller.req-42";
  auto list = (*client)->ListWorkspaces(ctx);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_NE(peer.header().find("\r\nX-Request-Id: caller.req-42\r\n"), std::string::npos);
}

TEST_F(HttpServerTest, ListsPageWithACursor) {
  for (const char* ws : {"b-ws", "c-ws", "d-ws"}) {
    ASSERT_TRUE(admin_->CreateWorkspace(kClientCtx, ws).ok());
  }
  const std::string auth = "Authorization: Bearer " + admin_token_ + "\r\n";
  // acme, b-ws, c-ws, d-ws: two pages of two, in name order.
  std::string r = Get(port_, "/v1/workspaces?limit=2", auth);
  ASSERT_EQ(StatusOf(r), 200) << r;
  auto page = BodyOf(r);
  ASSERT_EQ(page["workspaces"].size(), 2u);
  EXPECT_EQ(page["workspaces"][1]["name"], "b-ws");
  ASSERT_EQ(page["next_after"], "b-ws");
  r = Get(port_, "/v1/workspaces?limit=2&after=b-ws", auth);
  ASSERT_EQ(StatusOf(r), 200) << r;
  page = BodyOf(r);
  ASSERT_EQ(page["workspaces"].size(), 2u);
  EXPECT_EQ(page["workspaces"][0]["name"], "c-ws");
  EXPECT_FALSE(page.contains("next_after")) << page.dump();  // the last page
  // Without limit: the whole list, as before paging existed.
  r = Get(port_, "/v1/workspaces", auth);
  EXPECT_EQ(BodyOf(r)["workspaces"].size(), 4u);
  EXPECT_FALSE(BodyOf(r).contains("next_after"));
  // Tokens page in creation order by id (the admin's and the app's, at least).
  r = Get(port_, "/v1/tokens?limit=1", auth);
  ASSERT_EQ(StatusOf(r), 200) << r;
  page = BodyOf(r);
  ASSERT_EQ(page["tokens"].size(), 1u);
  const std::string cursor = page["next_after"];
  EXPECT_EQ(cursor, page["tokens"][0]["id"]);
  r = Get(port_, "/v1/tokens?limit=1&after=" + cursor, auth);
  ASSERT_EQ(StatusOf(r), 200) << r;
  EXPECT_NE(BodyOf(r)["tokens"][0]["id"], cursor);
  // Bad paging is a 400 naming the fix.
  r = Get(port_, "/v1/workspaces?limit=0", auth);
  EXPECT_EQ(StatusOf(r), 400) << r;
  EXPECT_NE(r.find("limit must be a whole number from 1 to 1000"), std::string::npos) << r;
  r = Get(port_, "/v1/workspaces?after=nothing-like-it", auth);
  EXPECT_EQ(StatusOf(r), 400) << r;
  EXPECT_NE(r.find("names nothing in this list"), std::string::npos) << r;
  r = Get(port_, "/v1/workspaces/acme/environments?page=2", auth);
  EXPECT_EQ(StatusOf(r), 400) << r;
  EXPECT_NE(r.find("use limit, after"), std::string::npos) << r;
}

TEST_F(HttpServerTest, ReadyzAndMetrics) {
  std::string r = Get(port_, "/readyz");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_EQ(BodyOf(r)["status"], "ready");
  ExportServiceMetrics(svc_.get());
  Bytes ct;
  ASSERT_TRUE(client_->Encrypt(kClientCtx, "acme", "prod", "s", AsBytes("hi"), &ct).ok());
  // Admin-only (ekmd --metrics-unauthenticated opens it).
  EXPECT_EQ(StatusOf(Get(port_, "/metrics")), 401);
  r = Get(port_, "/metrics", "Authorization: Bearer " + app_token_ + "\r\n");
  EXPECT_EQ(StatusOf(r), 403);
  r = Get(port_, "/metrics", "Authorization: Bearer " + admin_token_ + "\r\n");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(
      r.find(
          "ekm_http_requests_total{route=\"environment.create\",method=\"POST\",status=\"201\"} "),
      std::string::npos)
      << r;
  EXPECT_NE(r.find("ekm_http_request_duration_seconds_count{route=\"data.encrypt\"} "),
            std::string::npos);
  EXPECT_NE(r.find("ekm_key_cache_misses_total "), std::string::npos);
  EXPECT_NE(
      r.find("ekm_provider_calls_total{provider=\"platform\",operation=\"wrap\",result=\"ok\"}"),
      std::string::npos);
  EXPECT_EQ(r.find("acme"), std::string::npos);
  EXPECT_EQ(r.find("prod"), std::string::npos);
}

TEST_F(HttpServerTest, RateLimitAnswers429WithRetryAfterPerToken) {
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.rate_limit = 0.5;
  h.rate_limit_burst = 2;
  HttpServer s(svc_.get(), h);
  ASSERT_TRUE(s.Start().ok());
  auto other = svc_->CreateApiToken(TestOp(), ApiTokenRequest{"admin", "", {}, "second", {}});
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  const std::string a = "Authorization: Bearer " + admin_token_ + "\r\n";
  const std::string b = "Authorization: Bearer " + Text(other->token) + "\r\n";
  EXPECT_EQ(StatusOf(Get(s.port(), "/v1/workspaces", a)), 200);
  EXPECT_EQ(StatusOf(Get(s.port(), "/v1/workspaces", a)), 200);
  std::string r = Get(s.port(), "/v1/workspaces", a);
  EXPECT_EQ(StatusOf(r), 429) << r;
  EXPECT_NE(r.find("Retry-After: 2\r\n"), std::string::npos) << r;
  EXPECT_EQ(BodyOf(r)["error"]["code"], "resource_exhausted");
  EXPECT_EQ(StatusOf(Get(s.port(), "/v1/workspaces", b)), 200);  // its own bucket
  EXPECT_EQ(StatusOf(Get(s.port(), "/healthz", a)), 200);        // probes are never limited
  // A forged token with a's public id does not spend a's bucket: it is keyed by address.
}

TEST_F(HttpServerTest, FailedAuthenticationsAreLimitedPerAddressBeforeTheTokenIsChecked) {
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.auth_failure_limit = 0.05;  // a burst of 3
  HttpServer s(svc_.get(), h);
  ASSERT_TRUE(s.Start().ok());
  const std::string bad =
      "Authorization: Bearer ekm_00000000000000aa_" + std::string(43, 'x') + "\r\n";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(StatusOf(Get(s.port(), "/v1/workspaces", bad)), 401);
  std::string r = Get(s.port(), "/v1/workspaces", bad);
  EXPECT_EQ(StatusOf(r), 429) << r;
  EXPECT_NE(r.find("Retry-After: "), std::string::npos) << r;
  // The address is refused before its token is checked, good token or not, until it refills.
  EXPECT_EQ(
      StatusOf(Get(s.port(), "/v1/workspaces", "Authorization: Bearer " + admin_token_ + "\r\n")),
      429);
  EXPECT_EQ(StatusOf(Get(s.port(), "/healthz")), 429);
}

TEST_F(HttpServerTest, TlsStartErrorsAreClear) {
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.tls_cert_file = dir_.path() + "/missing.pem";
  h.tls_key_file = dir_.path() + "/missing.key";
  HttpServer s(svc_.get(), h);
  Status st = s.Start();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("cannot read --tls-cert"), std::string::npos) << st.ToString();
  HttpServerOptions only_key;
  only_key.listen = "127.0.0.1:0";
  only_key.tls_key_file = "x.key";
  HttpServer s2(svc_.get(), only_key);
  EXPECT_NE(s2.Start().message().find("needs both --tls-cert and --tls-key"), std::string::npos);
}

// Sends `request` and keeps the connection open for writing (a client still sending): returns
// what the server answers within `wait` or until it closes.
std::string RawRequestKeepOpen(int port, const std::string& request,
                               std::chrono::seconds wait = std::chrono::seconds(10)) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    timeval tv{static_cast<time_t>(wait.count()), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < request.size()) {
      ssize_t n = write(fd, request.data() + off, request.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

size_t Responses(const std::string& raw) {
  size_t n = 0;
  for (size_t at = raw.find("HTTP/1."); at != std::string::npos; at = raw.find("HTTP/1.", at + 1)) {
    ++n;
  }
  return n;
}

TEST_F(HttpServerTest, NumbersOutOfRangeAre400NamingWhereTheyAre) {
  const std::string enc = "/v1/workspaces/acme/environments/prod/encrypt";
  struct Case {
    std::string path, body, token, where;
  };
  for (const Case& c : std::vector<Case>{
           {"/v1/workspaces", "{\"name\": 1e309}", admin_token_, "line 1, column 10"},
           {"/v1/workspaces", "{\n \"name\":\n  -1e999}", admin_token_, "line 3, column 3"},
           {enc, "{\"plaintext\": 1e309}", app_token_, "line 1, column 15"},
           {enc, "{\"plaintext\": \"aGk=\", \"n\": 1e309}", app_token_, "line 1, column 28"},
       }) {
    std::string response = Post(port_, c.path, c.body, "application/json", c.token);
    ASSERT_EQ(StatusOf(response), 400) << c.body << "\n" << response;
    auto j = BodyOf(response);
    std::string message = j["error"]["message"];
    EXPECT_EQ(j["error"]["code"], "invalid_argument");
    EXPECT_NE(message.find(c.where), std::string::npos) << message;
    EXPECT_NE(message.find("out of range"), std::string::npos) << message;
  }
}

TEST_F(HttpServerTest, OnlyASingleChunkedTransferEncodingIsReadAndNothingIsSmuggled) {
  const std::string smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::string te : {"xchunked", "chunked, identity", "identity"}) {
    std::string response = RawRequestKeepOpen(
        port_,
        "POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
            admin_token_ + "\r\nTransfer-Encoding: " + te + "\r\n\r\n" + smuggled);
    EXPECT_EQ(StatusOf(response), 400) << te << "\n" << response;
    EXPECT_NE(response.find("Transfer-Encoding"), std::string::npos) << response;
    // One answer, then the connection closed: the body never ran as a request.
    EXPECT_EQ(Responses(response), 1u) << te << "\n" << response;
  }
  // Chunked alone still works, on a kept-alive connection.
  std::string body = "{\"name\": \"chunky\"}";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  std::string ok =
      RawRequest(port_,
                 "POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Authorization: Bearer " +
                     admin_token_ + "\r\nTransfer-Encoding: chunked\r\n\r\n" + size + "\r\n" +
                     body + "\r\n0\r\n\r\n" + smuggled);
  EXPECT_EQ(StatusOf(ok), 201) << ok;
  EXPECT_EQ(Responses(ok), 2u) << ok;
}

TEST_F(HttpServerTest, AChunkLargerThanTheBodyLimitIs413AtOnce) {
  // The client goes on sending (its connection stays open): the answer must not wait for the
  // chunk's bytes, nor for the read timeout (30 s here; the client waits 10 s).
  std::string response = RawRequestKeepOpen(
      port_,
      "POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Authorization: Bearer " +
          admin_token_ +
          "\r\nTransfer-Encoding: chunked\r\n\r\n"
          "ffffffffffffffff\r\n{\"na");
  EXPECT_EQ(StatusOf(response), 413) << response;
  EXPECT_NE(response.find("larger than the limit"), std::string::npos) << response;
}

TEST_F(HttpServerTest, AStreamThatFailsAfterOutputIsCutUnlessTheClientReadsTheTrailer) {
  Bytes plain(300000);
  ASSERT_TRUE(RandomBytes(plain).ok());
  Status s;
  Bytes ct = StreamThrough(true, plain, false, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  // Cut at a segment boundary: three whole segments of 64 KiB + 16 B tag after the header.
  const size_t header = ct.size() - plain.size() - 5 * 16;
  const std::string cut(reinterpret_cast<const char*>(ct.data()), header + 3 * (65536 + 16));
  auto decrypt = [&](const std::string& extra) {
    return RawRequest(port_,
                      "POST /v1/workspaces/acme/environments/prod/decrypt HTTP/1.1\r\n"
                      "Host: x\r\nContent-Type: application/octet-stream\r\n"
                      "Authorization: Bearer " +
                          app_token_ + "\r\nContent-Length: " + std::to_string(cut.size()) +
                          "\r\n" + extra + "\r\n" + cut);
  };
  // A generic client: 200 and output, but no last chunk: the body never ends cleanly.
  std::string generic = decrypt("");
  EXPECT_EQ(StatusOf(generic), 200);
  EXPECT_GT(generic.size(), 2u * 65536);  // the third segment waits to know it is not the last
  EXPECT_EQ(generic.find("Ekm-Result:"), std::string::npos);
  EXPECT_EQ(generic.find("Ekm-Error:"), std::string::npos);
  EXPECT_FALSE(generic.ends_with("\r\n\r\n")) << generic.substr(generic.size() - 40);
  // A client that reads the trailer gets the error there, after a clean last chunk.
  std::string reader = decrypt("Ekm-Accept-Trailer: Ekm-Error\r\n");
  EXPECT_EQ(StatusOf(reader), 200);
  auto trailer = reader.find("\r\n0\r\nEkm-Error: ");
  ASSERT_NE(trailer, std::string::npos);
  EXPECT_NE(reader.find("data_loss", trailer), std::string::npos);
  EXPECT_TRUE(reader.ends_with("\r\n\r\n"));
  // ekm's own client announces it, and reports the precise error.
  Bytes cut_bytes(cut.begin(), cut.end());
  StreamThrough(false, cut_bytes, false, &s);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.ToString();
}

// One I/O thread: while import-params runs (held in its RSA key generation by the test hook),
// that thread answers another request. On the I/O thread, the other request would wait for it.
TEST_F(HttpServerTest, ImportParamsRunsOffTheIoThreads) {
  auto km = svc_->CreateApiToken(TestOp(), ApiTokenRequest{"key-manager", "acme", {}, "test", {}});
  ASSERT_TRUE(km.ok()) << km.status().ToString();
  const std::string km_token = Text(km->token);
  std::promise<void> entered;
  std::future<void> entered_future = entered.get_future();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> waited_out{false};
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.threads = 1;
  h.blocking_call_hook = [&](std::string_view route) {
    if (route != "key.import_params") return;
    entered.set_value();
    // A bound for the failure case only.
    if (released.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      waited_out = true;
    }
  };
  HttpServer server(svc_.get(), h);
  ASSERT_TRUE(server.Start().ok());
  std::string imported;
  std::thread import([&] {
    imported = Post(server.port(), "/v1/workspaces/acme/environments/prod/key/import-params", "{}",
                    "application/json", km_token);
  });
  ASSERT_EQ(entered_future.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  std::string health = RawRequest(server.port(),
                                  "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\n\r\n");
  EXPECT_FALSE(waited_out) << "the other request waited for import-params";
  EXPECT_EQ(StatusOf(health), 200) << health;
  release.set_value();
  import.join();
  EXPECT_EQ(StatusOf(imported), 200) << imported;
  server.Stop(std::chrono::seconds(2));
}

// A tenant whose work waits (held here in the test hook, as a slow KMS holds it) takes at most
// its bulkhead's places on the blocking pool: with one I/O thread, another environment's cached
// data plane, /healthz and /readyz are answered meanwhile; the slow environment's next request
// queues, and the one after is refused at once with 503 and Retry-After.
TEST_F(HttpServerTest, ASlowEnvironmentHoldsOnlyItsBulkhead) {
  ASSERT_TRUE(admin_->CreateEnvironment(kClientCtx, "acme", "dev").ok());
  std::mutex mu;
  std::condition_variable cv;
  int held = 0;
  bool release = false;
  std::atomic<bool> armed{false};  // after dev's first encrypt
  HttpServerOptions h;
  h.listen = "127.0.0.1:0";
  h.threads = 1;
  h.max_blocking_per_environment = 1;
  h.max_queued_per_environment = 1;
  h.blocking_call_hook = [&](std::string_view route) {
    if (route != "data.encrypt" || !armed) return;
    std::unique_lock<std::mutex> lock(mu);
    ++held;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return release; });  // bound: failure only
  };
  HttpServer server(svc_.get(), h);
  ASSERT_TRUE(server.Start().ok());
  const std::string body = R"({"plaintext": "aGk=", "scope": "new-SCOPE"})";
  auto encrypt = [&](const std::string& env, const std::string& scope) {
    std::string b = body;
    b.replace(b.find("SCOPE"), 5, scope);
    return Post(server.port(), "/v1/workspaces/acme/environments/" + env + "/encrypt", b,
                "application/json", app_token_);
  };
  // dev's key cached: its encrypts never leave the I/O thread.
  ASSERT_EQ(StatusOf(Post(server.port(), "/v1/workspaces/acme/environments/dev/encrypt",
                          R"({"plaintext": "aGk="})", "application/json", app_token_)),
            200);
  armed = true;
  std::string first, second;
  std::thread slow1([&] { first = encrypt("prod", "a"); });  // a new scope: a DK to store
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return held == 1; }));
  }
  std::thread slow2([&] { second = encrypt("prod", "b"); });  // queued: the one place is taken
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::string refused = encrypt("prod", "c");
  EXPECT_EQ(StatusOf(refused), 503) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_NE(refused.find("environment acme/prod has 1 requests waiting"), std::string::npos)
      << refused;
  std::string warm = Post(server.port(), "/v1/workspaces/acme/environments/dev/encrypt",
                          R"({"plaintext": "aGk="})", "application/json", app_token_);
  EXPECT_EQ(StatusOf(warm), 200) << warm;
  EXPECT_EQ(StatusOf(RawRequest(server.port(),
                                "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                "Connection: close\r\n\r\n")),
            200);
  EXPECT_EQ(StatusOf(RawRequest(server.port(),
                                "GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                "Connection: close\r\n\r\n")),
            200);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(held, 1) << "the queued request waits without a thread";
    release = true;
  }
  cv.notify_all();
  slow1.join();
  slow2.join();
  EXPECT_EQ(StatusOf(first), 200) << first;
  EXPECT_EQ(StatusOf(second), 200) << second;
  server.Stop(std::chrono::seconds(2));
}

}  // namespace
}  // namespace ekm
