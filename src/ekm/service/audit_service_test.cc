// The audit log through EkmService: every recorded event is chained and verifies, per-minute
// data-plane usage counts (FakeClock), checkpoints of advanced chains, and the signing key.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "ekm/audit/audit_log.h"
#include "ekm/base/clock.h"
#include "ekm/base/non_blocking_scope.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

class AuditServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    options_.aws.enabled = false;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    auto s = EkmService::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    svc_ = std::move(*s);
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }
  std::vector<LifecycleEventRecord> Chain(const std::string& chain) {
    std::vector<LifecycleEventRecord> out;
    EXPECT_TRUE(svc_->ExportAudit(TestOp(), chain,
                                  [&](const LifecycleEventRecord& r) {
                                    out.push_back(r);
                                    return Status::Ok();
                                  })
                    .ok());
    return out;
  }
  // {"operation/outcome": count} over the data_plane.usage records of acme/prod.
  std::map<std::string, uint64_t> Usage() {
    EventQuery q;
    q.workspace = "acme";
    q.environment = "prod";
    q.type = "data_plane.usage";
    q.limit = 1000;
    auto recs = svc_->QueryAudit(TestOp(), q);
    EXPECT_TRUE(recs.ok());
    std::map<std::string, uint64_t> out;
    for (const auto& r : *recs) {
      EXPECT_EQ(r.environment, "prod");
      EXPECT_EQ(r.actor, "system:usage");
      const nlohmann::json detail = nlohmann::json::parse(r.detail);
      for (const auto& c : detail["counts"]) {
        out[c["operation"].get<std::string>() + "/" + c.value("outcome", "none")] +=
            c["count"].get<uint64_t>();
      }
    }
    return out;
  }
  testing::TempDir dir_;
  FakeClock clock_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
};

TEST_F(AuditServiceTest, SigningKeyIsCreatedAtInitAndNeverReplaced) {
  std::string path = options_.data_dir + "/audit-signing.key";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string id = svc_->AuditSigningPublicKey().key_id();
  svc_.reset();
  // Missing: the store's audit log is signed with it, so no new key is made (issue 12).
  ASSERT_EQ(::rename(path.c_str(), (path + ".saved").c_str()), 0);
  auto s = EkmService::Open(options_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("is missing"), std::string::npos) << s.status().ToString();
  EXPECT_NE(s.status().message().find(id), std::string::npos) << s.status().ToString();
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(::rename((path + ".saved").c_str(), path.c_str()), 0);
  s = EkmService::Open(options_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ((*s)->AuditSigningPublicKey().key_id(), id);
  s->reset();

  // A data directory from before the audit log (no key recorded, nothing signed yet) gets
  // its key on first use.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((options_.data_dir + "/ekm.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM store_meta WHERE name = 'audit_signing_key_id'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  s = EkmService::Open(options_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_NE((*s)->AuditSigningPublicKey().key_id(), id);
}

TEST_F(AuditServiceTest, WorkspaceCreationIsRecordedInBothChains) {
  auto ws = Chain("acme");
  ASSERT_GE(ws.size(), 2u);
  EXPECT_EQ(ws[0].type, "workspace.created");
  EXPECT_EQ(ws[1].type, "environment.created");
  auto platform = Chain("");
  ASSERT_EQ(platform.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(platform[0].detail)["workspace"], "acme");
  EXPECT_TRUE(VerifyAuditLog(ws, {}, nullptr).ok());
  EXPECT_EQ(svc_->ExportAudit(TestOp(), "nope", [](const auto&) { return Status::Ok(); }).code(),
            StatusCode::kNotFound);
}

// On an HTTP I/O thread the data plane runs inside a NonBlockingScope; work that would wait
// (a key not cached) is deferred and run again on the blocking pool. The deferred try counts
// nothing, a batch deferred halfway through counts none of its items, and a stream whose key
// lookup was deferred carries on with what it was given.
TEST_F(AuditServiceTest, WorkDeferredByANonBlockingScopeIsCountedOnceWhereItRuns) {
  Bytes streamed;
  {
    auto enc = svc_->NewEncryptStream(TestOp(), "acme", "prod", "s3", false);
    ASSERT_TRUE(enc.ok());
    ASSERT_TRUE((*enc)->Update(Bytes(100000, 7), &streamed).ok());
    ASSERT_TRUE((*enc)->Finish(&streamed).ok());
  }
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());
  auto opened = EkmService::Open(options_);  // another process: nothing cached
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EkmService& cold = **opened;
  Bytes ct;
  auto in_scope = [](auto&& work, bool* deferred) {
    NonBlockingScope scope;
    auto result = work();
    *deferred = scope.deferred();
    return result;
  };
  bool deferred = false;
  Status s = in_scope(
      [&] { return cold.Encrypt(TestOp(), "acme", "prod", "s1", AsBytes("a"), &ct); }, &deferred);
  EXPECT_TRUE(deferred);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  ASSERT_TRUE(cold.Encrypt(TestOp(), "acme", "prod", "s1", AsBytes("a"), &ct).ok());  // the pool
  ct.clear();
  s = in_scope([&] { return cold.Encrypt(TestOp(), "acme", "prod", "s1", AsBytes("b"), &ct); },
               &deferred);
  EXPECT_FALSE(deferred) << "a cached key needs no wait";
  EXPECT_TRUE(s.ok()) << s.ToString();

  std::vector<BatchEncryptItem> items = {{"s1", Bytes{1}}, {"s2", Bytes{2}}};  // s2: not cached
  auto batch =
      in_scope([&] { return cold.EncryptBatch(TestOp(), "acme", "prod", items); }, &deferred);
  EXPECT_TRUE(deferred);
  EXPECT_FALSE(batch.ok());
  batch = cold.EncryptBatch(TestOp(), "acme", "prod", items);
  ASSERT_TRUE(batch.ok() && (*batch)[0].ok() && (*batch)[1].ok());

  auto dec = cold.NewDecryptStream(TestOp(), "acme", "prod");
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  Bytes plain;
  s = in_scope([&] { return (*dec)->Update(streamed, &plain); }, &deferred);
  EXPECT_TRUE(deferred);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  ASSERT_TRUE((*dec)->Update({}, &plain).ok());  // the same step again, on the pool
  ASSERT_TRUE((*dec)->Finish(&plain).ok());
  EXPECT_EQ(plain, Bytes(100000, 7));
  dec->reset();

  ASSERT_TRUE(cold.FlushDataPlaneUsage().ok());
  auto usage = Usage();
  EXPECT_EQ(usage["encrypt/ok"], 1u + 1u + 1u + 2u);  // the stream, s1 twice, the batch
  EXPECT_EQ(usage["decrypt/ok"], 1u);
  EXPECT_EQ(usage.size(), 2u) << "no refused or failed try";
}

TEST_F(AuditServiceTest, DataPlaneUseIsCountedPerMinuteNotPerRequest) {
  Bytes ct;
  for (int i = 0; i < 3; ++i) {
    ct.clear();
    ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "default", AsBytes("hi"), &ct).ok());
  }
  Bytes plain;
  ASSERT_TRUE(svc_->Decrypt(TestOp(), "acme", "prod", ct, &plain).ok());
  Bytes rewrapped;
  ASSERT_TRUE(svc_->Rewrap(TestOp(), "acme", "prod", ct, &rewrapped).ok());
  clock_.Advance(std::chrono::minutes(1));
  ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "default", AsBytes("hi"), &ct).ok());
  EXPECT_TRUE(Usage().empty());  // nothing until a flush
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());
  auto usage = Usage();
  EXPECT_EQ(usage["encrypt/ok"], 4u);
  EXPECT_EQ(usage["decrypt/ok"], 1u);
  EXPECT_EQ(usage["rewrap/ok"], 1u);  // its inner decrypt and encrypt are not counted again
  EXPECT_EQ(usage.size(), 3u);
  EventQuery q;
  q.workspace = "acme";
  q.type = "data_plane.usage";
  EXPECT_EQ(svc_->QueryAudit(TestOp(), q)->size(), 2u);  // one record per minute
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());
  EXPECT_EQ(svc_->QueryAudit(TestOp(), q)->size(), 2u);  // nothing new to flush
  EXPECT_TRUE(VerifyAuditLog(Chain("acme"), {}, nullptr).ok());
}

// Issue 12: failed operations are not usage. A ciphertext that does not authenticate, or that
// belongs elsewhere, is a decrypt failed, never a decrypt; streams count when they end, and one
// dropped before its end is failed; every data-plane route counts its own operation.
TEST_F(AuditServiceTest, UsageCountsEachOutcomeApart) {
  Bytes ct;
  ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes("hello"), &ct).ok());
  Bytes tampered = ct;
  tampered.back() ^= 1;
  Bytes plain;
  EXPECT_EQ(svc_->Decrypt(TestOp(), "acme", "prod", tampered, &plain).code(),
            StatusCode::kDataLoss);
  ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
  Bytes dev_ct;
  ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "dev", "orders", AsBytes("dev"), &dev_ct).ok());
  EXPECT_EQ(svc_->Decrypt(TestOp(), "acme", "prod", dev_ct, &plain).code(),
            StatusCode::kInvalidArgument);
  // Garbage names no scope: nothing to count it under (its 400 is in the access log).
  EXPECT_FALSE(svc_->Decrypt(TestOp(), "acme", "prod", AsBytes("not an envelope"), &plain).ok());
  // Streams: one that ends, one dropped halfway, one that does not authenticate.
  auto enc = svc_->NewEncryptStream(TestOp(), "acme", "prod", "files", false);
  ASSERT_TRUE(enc.ok());
  Bytes stream_ct;
  ASSERT_TRUE((*enc)->Update(Bytes(200000, 7), &stream_ct).ok());
  ASSERT_TRUE((*enc)->Finish(&stream_ct).ok());
  enc->reset();
  {
    auto dec = svc_->NewDecryptStream(TestOp(), "acme", "prod");
    ASSERT_TRUE(dec.ok());
    ASSERT_TRUE((*dec)->Update(stream_ct, &plain).ok());
    ASSERT_TRUE((*dec)->Finish(&plain).ok());
  }
  {
    auto dropped = svc_->NewDecryptStream(TestOp(), "acme", "prod");
    ASSERT_TRUE(dropped.ok());
    ASSERT_TRUE((*dropped)->Update(ByteView(stream_ct).first(100000), &plain).ok());
  }  // gone without Finish: a client that went away
  {
    Bytes bad = stream_ct;
    bad[bad.size() / 2] ^= 1;
    auto dec = svc_->NewDecryptStream(TestOp(), "acme", "prod");
    ASSERT_TRUE(dec.ok());
    Status s = (*dec)->Update(bad, &plain);
    if (s.ok()) s = (*dec)->Finish(&plain);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  }
  // generate-data-key is its own operation; batch items count one by one.
  ASSERT_TRUE(svc_->GenerateDataKey(TestOp(), "acme", "prod", "blobs", 32, false).ok());
  auto batch = svc_->DecryptBatch(TestOp(), "acme", "prod", {ct, tampered, ct});
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());
  auto usage = Usage();
  EXPECT_EQ(usage["encrypt/ok"], 2u);      // the message and the stream
  EXPECT_EQ(usage["decrypt/ok"], 3u);      // the stream that ended, two batch items
  EXPECT_EQ(usage["decrypt/failed"], 5u);  // tampered, dev's, dropped, tampered stream, item
  EXPECT_EQ(usage["generate_data_key/ok"], 1u);
  EXPECT_EQ(usage.count("decrypt/refused"), 0u);
  EXPECT_EQ(usage.size(), 4u) << "no other operation or outcome";
}

// Records written before outcomes were counted ({"scope","operation","count"}) keep verifying
// beside the new ones: the detail is hashed as the exact stored text.
TEST_F(AuditServiceTest, UsageRecordsWithoutOutcomesStillVerify) {
  {
    auto store = EkmService::OpenStore(options_);
    ASSERT_TRUE(store.ok());
    LifecycleEventRecord old;
    old.at_ms = ToUnixSeconds(clock_.Now()) * 1000;
    old.workspace = "acme";
    old.environment = "prod";
    old.type = "data_plane.usage";
    old.actor = "system:usage";
    old.detail = R"({"counts":[{"count":3,"operation":"decrypt","scope":"default"}],)"
                 R"("minute":"2026-11-24T10:00:00Z"})";
    ASSERT_TRUE((*store)->RecordLifecycleEvent(old).ok());
  }
  Bytes ct;
  ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "default", AsBytes("x"), &ct).ok());
  ASSERT_TRUE(svc_->FlushDataPlaneUsage().ok());
  auto usage = Usage();
  EXPECT_EQ(usage["decrypt/none"], 3u);
  EXPECT_EQ(usage["encrypt/ok"], 1u);
  AuditVerifyReport r = VerifyAuditLog(Chain("acme"), {}, nullptr);
  EXPECT_TRUE(r.ok()) << r.problems[0];
}

TEST_F(AuditServiceTest, CheckpointsOfAdvancedChainsVerify) {
  auto made = svc_->CheckpointAdvancedChains();
  ASSERT_TRUE(made.ok());
  EXPECT_EQ(*made, 2u);  // acme and the platform chain
  EXPECT_EQ(*svc_->CheckpointAdvancedChains(), 0u);
  ASSERT_TRUE(svc_->RotateEnvironmentKey(TestOp(), "acme", "prod").ok());
  EXPECT_EQ(*svc_->CheckpointAdvancedChains(), 1u);
  auto cps = svc_->ListAuditCheckpoints(TestOp(), "acme");
  ASSERT_TRUE(cps.ok());
  ASSERT_EQ(cps->size(), 2u);
  auto records = Chain("acme");
  EXPECT_EQ(cps->back().seq, records.back().seq);
  AuditVerifyReport r = VerifyAuditLog(records, *cps, &svc_->AuditSigningPublicKey());
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_EQ(r.checkpoints, 2u);
  auto on_demand = svc_->CreateAuditCheckpoint(TestOp(), "");
  ASSERT_TRUE(on_demand.ok());
  EXPECT_EQ(on_demand->chain, "");
  EXPECT_EQ(svc_->CreateAuditCheckpoint(TestOp(), "nope").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace ekm
