#include "ekm/service/ekm_service.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <thread>

#include "ekm/base/random.h"
#include "ekm/server/routes.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

class EkmServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path() + "/data";
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    Reopen();
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "globex").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "globex", "prod").ok());
  }
  void Reopen() {
    svc_.reset();
    auto s = EkmService::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    svc_ = std::move(*s);
  }
  Bytes Encrypt(std::string_view ws, std::string_view env, std::string_view scope,
                std::string_view plain) {
    Bytes out;
    Status s = svc_->Encrypt(TestOp(), ws, env, scope, AsBytes(plain), &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

TEST_F(EkmServiceTest, OpenRefusesAnUninitializedDirectory) {
  EkmOptions o;
  o.data_dir = dir_.path() + "/nothing-here";
  auto s = EkmService::Open(o).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.hint().find("init"), std::string::npos);
}

TEST_F(EkmServiceTest, AdminPlane) {
  auto ws = svc_->ListWorkspaces(TestOp());
  ASSERT_TRUE(ws.ok());
  ASSERT_EQ(ws->size(), 2u);
  auto envs = svc_->ListEnvironments(TestOp(), "acme");
  ASSERT_TRUE(envs.ok());
  ASSERT_EQ(envs->size(), 2u);
  EXPECT_EQ((*envs)[0].cmk_provider, "platform");
  EXPECT_EQ(svc_->CreateWorkspace(TestOp(), "acme").status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(svc_->CreateEnvironment(TestOp(), "acme", "prod").status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(svc_->CreateEnvironment(TestOp(), "nope", "prod").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(svc_->CreateWorkspace(TestOp(), "Bad Name").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->ListEnvironments(TestOp(), "nope").status().code(), StatusCode::kNotFound);
}

TEST_F(EkmServiceTest, RoundTripAndRestart) {
  Bytes ct = Encrypt("acme", "prod", "orders", "hello");
  Bytes empty = Encrypt("acme", "prod", "orders", "");
  Reopen();  // a restart: nothing cached
  Bytes out;
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", ct, &out).ok());
  EXPECT_EQ(AsChars(out), "hello");
  out.clear();
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", empty, &out).ok());
  EXPECT_TRUE(out.empty());
  std::string text = EnvelopeToText(ct);
  out.clear();
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", AsBytes(text), &out).ok());
  EXPECT_EQ(AsChars(out), "hello");
}

TEST_F(EkmServiceTest, WrongWorkspaceOrEnvironmentIsRefusedClearly) {
  Bytes ct = Encrypt("acme", "prod", "orders", "secret");
  Bytes out;
  Status s = svc_->Decrypt(TestOp(), "globex", "prod", ct, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("belongs to workspace \"acme\""), std::string::npos);
  s = svc_->Decrypt(TestOp(), "acme", "dev", ct, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(svc_->Decrypt(TestOp(), "acme", "staging", ct, &out).code(), StatusCode::kNotFound);
}

TEST_F(EkmServiceTest, MovedCiphertextFailsAuthentication) {
  // Re-label an acme/prod ciphertext as globex/prod (and as another scope): the header is the
  // associated data, so the tag fails even where a key for the new label exists.
  Encrypt("globex", "prod", "orders", "x");  // globex/prod/orders v1 exists
  Encrypt("acme", "prod", "payments", "x");
  Bytes ct = Encrypt("acme", "prod", "orders", "secret");
  auto parsed = ParseHeader(ct);
  ASSERT_TRUE(parsed.ok());
  for (auto relabel : {std::pair<std::string, std::string>{"globex", "orders"},
                       std::pair<std::string, std::string>{"acme", "payments"}}) {
    EnvelopeHeader h = parsed->header;
    h.context.workspace = relabel.first;
    h.context.scope = relabel.second;
    Bytes moved = SerializeHeader(h);
    moved.insert(moved.end(), ct.begin() + static_cast<ptrdiff_t>(parsed->size), ct.end());
    Bytes out;
    Status s = svc_->Decrypt(TestOp(), relabel.first, "prod", moved, &out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_TRUE(out.empty());
  }
}

TEST_F(EkmServiceTest, EveryFlippedByteFails) {
  Bytes ct = Encrypt("acme", "prod", "orders", "attack at dawn");
  for (size_t i = 0; i < ct.size(); ++i) {
    Bytes bad = ct;
    bad[i] ^= 0x01;
    Bytes out;
    EXPECT_FALSE(svc_->Decrypt(TestOp(), "acme", "prod", bad, &out).ok()) << "byte " << i;
  }
}

TEST_F(EkmServiceTest, StreamsRoundTripInBothEncodings) {
  for (bool text : {false, true}) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{65536}, size_t{200000}}) {
      Bytes plain(size);
      ASSERT_TRUE(RandomBytes(plain).ok());
      auto enc = svc_->NewEncryptStream(TestOp(), "acme", "prod", "files", text);
      ASSERT_TRUE(enc.ok()) << enc.status().ToString();
      Bytes ct;
      for (size_t off = 0; off < size; off += 7777) {
        ASSERT_TRUE(
            (*enc)
                ->Update(ByteView(plain).subspan(off, std::min<size_t>(7777, size - off)), &ct)
                .ok());
      }
      ASSERT_TRUE((*enc)->Finish(&ct).ok());
      Bytes out;
      Status s = svc_->Decrypt(TestOp(), "acme", "prod", ct, &out);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(out, plain) << "size " << size << " text " << text;
    }
  }
}

TEST_F(EkmServiceTest, DataKeyRotatesAtItsMessageBound) {
  options_.max_messages_per_dk = 4;
  options_.nonce_lease_size = 2;
  Reopen();
  std::vector<Bytes> cts;
  for (int i = 0; i < 10; ++i) cts.push_back(Encrypt("acme", "prod", "orders", std::to_string(i)));
  auto last = ParseHeader(cts.back());
  ASSERT_TRUE(last.ok());
  EXPECT_GE(last->header.context.dk_version, 3u);
  for (int i = 0; i < 10; ++i) {
    Bytes out;
    ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", cts[i], &out).ok());
    EXPECT_EQ(AsChars(out), std::to_string(i));
  }
}

// Threads encrypting under one scope each take their own runs of nonces (data-path memos):
// every nonce is still used once, across lease refills, and everything decrypts.
TEST_F(EkmServiceTest, ConcurrentEncryptsNeverRepeatANonce) {
  options_.nonce_lease_size = 1000;  // many refills, and runs cut short by them
  Reopen();
  constexpr int kThreads = 4, kEach = 1500;
  std::vector<std::vector<Bytes>> cts(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Bytes out;
        std::string text = std::to_string(t) + ":" + std::to_string(i);
        if (svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes(text), &out).ok()) {
          cts[static_cast<size_t>(t)].push_back(std::move(out));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> nonces;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(cts[static_cast<size_t>(t)].size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) {
      const Bytes& ct = cts[static_cast<size_t>(t)][static_cast<size_t>(i)];
      auto h = ParseHeader(ct);
      ASSERT_TRUE(h.ok());
      nonces.insert(std::to_string(h->header.context.dk_version) + "/" +
                    std::string(h->header.nonce.begin(), h->header.nonce.end()));
      Bytes out;
      ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", ct, &out).ok());
      EXPECT_EQ(AsChars(out), std::to_string(t) + ":" + std::to_string(i));
    }
  }
  EXPECT_EQ(nonces.size(), static_cast<size_t>(kThreads * kEach));
}

// A thread's memo of an environment ends with the environment: a shred refuses the next
// message at once, on the thread that had just used the key.
TEST_F(EkmServiceTest, MemoizedKeysEndWithAShred) {
  Bytes ct = Encrypt("acme", "dev", "orders", "a");
  Encrypt("acme", "dev", "orders", "b");  // served from this thread's memo
  auto token = svc_->RequestShred(TestOp(), "acme", "dev");
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  ASSERT_TRUE(svc_->ShredEnvironment(TestOp(), "acme", "dev", token->token, "dev").ok());
  Bytes out;
  EXPECT_EQ(svc_->Encrypt(TestOp(), "acme", "dev", "orders", AsBytes("c"), &out).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(svc_->Decrypt(TestOp(), "acme", "dev", ct, &out).code(),
            StatusCode::kFailedPrecondition);
}

Bytes AsBytesCopy(std::string_view s) { return Bytes(s.begin(), s.end()); }

TEST_F(EkmServiceTest, GetWorkspaceAndEnvironmentSayWhichPartIsMissing) {
  auto w = svc_->GetWorkspace(TestOp(), "acme");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->name, "acme");
  auto e = svc_->GetEnvironment(TestOp(), "acme", "prod");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->cmk_provider, "platform");
  EXPECT_EQ(e->ek_version, 1u);
  EXPECT_EQ(svc_->GetWorkspace(TestOp(), "nope").status().code(), StatusCode::kNotFound);
  auto missing_ws = svc_->GetEnvironment(TestOp(), "nope", "prod").status();
  EXPECT_EQ(missing_ws.code(), StatusCode::kNotFound);
  EXPECT_NE(missing_ws.message().find("workspace"), std::string::npos) << missing_ws.ToString();
  EXPECT_EQ(svc_->GetEnvironment(TestOp(), "acme", "nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(svc_->GetWorkspace(TestOp(), "Bad Name").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EkmServiceTest, GeneratedDataKeyDecryptsToItsPlaintext) {
  auto k = svc_->GenerateDataKey(TestOp(), "acme", "prod", "blobs", 32, true);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  ASSERT_EQ(k->plaintext.size(), 32u);
  Bytes back;
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", k->ciphertext, &back).ok());
  EXPECT_TRUE(SecretBytes(back) == k->plaintext);
  // Bound to its environment like any ciphertext.
  Bytes other;
  EXPECT_FALSE(svc_->Decrypt(TestOp(), "acme", "dev", k->ciphertext, &other).ok());
  // Two keys differ; the wrapped-only form has no plaintext.
  auto k2 = svc_->GenerateDataKey(TestOp(), "acme", "prod", "blobs", 16, false);
  ASSERT_TRUE(k2.ok());
  EXPECT_TRUE(k2->plaintext.empty());
  Bytes back2;
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", k2->ciphertext, &back2).ok());
  EXPECT_EQ(back2.size(), 16u);
  for (size_t bad : {size_t{0}, size_t{15}, size_t{65}}) {
    EXPECT_EQ(svc_->GenerateDataKey(TestOp(), "acme", "prod", "blobs", bad, true).status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST_F(EkmServiceTest, BatchesAnswerEachItemInOrder) {
  std::vector<BatchEncryptItem> items = {{"orders", AsBytesCopy("one")},
                                         {"bad scope!", AsBytesCopy("two")},
                                         {"default", AsBytesCopy("three")}};
  auto enc = svc_->EncryptBatch(TestOp(), "acme", "prod", items);
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  ASSERT_EQ(enc->size(), 3u);
  EXPECT_TRUE((*enc)[0].ok());
  EXPECT_EQ((*enc)[1].status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE((*enc)[2].ok());
  Bytes tampered = *(*enc)[0];
  tampered.back() ^= 1;
  auto dec = svc_->DecryptBatch(TestOp(), "acme", "prod", {*(*enc)[2], tampered, *(*enc)[0]});
  ASSERT_TRUE(dec.ok());
  ASSERT_EQ(dec->size(), 3u);
  EXPECT_EQ(AsChars(*(*dec)[0]), "three");
  EXPECT_FALSE((*dec)[1].ok());
  EXPECT_EQ(AsChars(*(*dec)[2]), "one");
  // The whole request fails only for what concerns every item.
  EXPECT_EQ(svc_->EncryptBatch(TestOp(), "acme", "nope", items).status().code(),
            StatusCode::kNotFound);
  std::vector<Bytes> too_many(kMaxBatchItems + 1, Bytes{1});
  auto big = svc_->DecryptBatch(TestOp(), "acme", "prod", too_many).status();
  EXPECT_EQ(big.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.message().find("1000"), std::string::npos);
  EXPECT_EQ(svc_->DecryptBatch(TestOp(), "acme", "prod", {}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(EkmServiceTest, ValidateCustomerKeyChangesNothing) {
  auto before = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(before.ok());
  auto v = svc_->ValidateCustomerKey(TestOp(), "acme", "prod", "platform", "root");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok);
  ASSERT_FALSE(v->checks.empty());
  EXPECT_EQ(v->checks.back().name, "store");
  EXPECT_EQ(v->checks.back().outcome, "skipped");
  auto after = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->ek_version, before->ek_version);
  EXPECT_FALSE(after->last_validation.has_value());  // a dry run is not the last validation
  // A key id the provider refuses is a failed check in the answer, not an error.
  auto bad = svc_->ValidateCustomerKey(TestOp(), "acme", "prod", "platform", "not-root");
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  EXPECT_FALSE(bad->ok);
  EXPECT_FALSE(bad->error_code.empty());
  // What is not about the key stays an error.
  EXPECT_EQ(svc_->ValidateCustomerKey(TestOp(), "acme", "nope", "platform", "root").status().code(),
            StatusCode::kNotFound);
}

// docs/api.md: the platform's own AWS credentials missing is 409 failed_precondition (the
// operator must configure them; retrying changes nothing); a credential endpoint out of reach
// is an outage, 503. No AWS call is made: every endpoint is a closed loopback port.
TEST_F(EkmServiceTest, MissingAwsCredentialsAre409AndAnUnreachableCredentialEndpoint503) {
  const std::string arn =
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  auto with_env = [&](std::map<std::string, std::string> env) {
    env["HOME"] = dir_.path();
    env["AWS_REGION"] = "us-east-1";
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9";  // nothing listens
    options_.aws.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    options_.aws.call_timeout = std::chrono::milliseconds(1000);
    options_.aws.call_deadline = std::chrono::milliseconds(2000);
    Reopen();
  };
  auto token = [&] {
    auto t = svc_->CreateApiToken(TestOp(), ApiTokenRequest{"key-manager", "acme", {}, "test", {}});
    EXPECT_TRUE(t.ok());
    auto text = t->token.RevealForCrypto();
    return "Bearer " + std::string(text.begin(), text.end());
  };
  auto put_key = [&] {
    Router router(svc_.get());
    RouteRequest req{"PUT",
                     "/v1/workspaces/acme/environments/prod/key",
                     "application/json",
                     token(),
                     "127.0.0.1",
                     ""};
    RouteMatch m = router.Match(req);
    EXPECT_TRUE(m.status.ok()) << m.status.ToString();
    return router.Handle(m, R"({"aws_kms_arn":")" + arn + R"("})");
  };

  with_env({{"AWS_EC2_METADATA_DISABLED", "true"}});
  auto v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", arn);
  EXPECT_EQ(v.status().code(), StatusCode::kFailedPrecondition) << v.status().ToString();
  EXPECT_NE(v.status().message().find("no AWS credentials found"), std::string::npos);
  EXPECT_NE(v.status().hint().find("platform operator"), std::string::npos) << v.status().hint();
  EXPECT_EQ(v.status().retry_after_seconds(), 0);
  RouteResponse res = put_key();
  EXPECT_EQ(res.status, 409) << res.body;
  EXPECT_EQ(res.retry_after, 0);
  EXPECT_NE(res.body.find("\"failed_precondition\""), std::string::npos) << res.body;
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->provider,
            "platform");  // nothing changed

  // ECS container credentials configured, their endpoint unreachable: an outage.
  with_env({{"AWS_EC2_METADATA_DISABLED", "true"},
            {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/credentials"}});
  v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", arn);
  EXPECT_EQ(v.status().code(), StatusCode::kUnavailable) << v.status().ToString();
  EXPECT_EQ(put_key().status, 503);

  // The instance metadata service out of reach: maybe an outage on EC2, so retryable.
  with_env({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"}});
  v = svc_->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", arn);
  EXPECT_EQ(v.status().code(), StatusCode::kUnavailable) << v.status().ToString();
  EXPECT_NE(v.status().hint().find("AWS_EC2_METADATA_DISABLED=true"), std::string::npos);
  EXPECT_EQ(put_key().status, 503);
}

}  // namespace
}  // namespace ekm
