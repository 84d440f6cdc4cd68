#include "ekm/audit/audit_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <functional>

#include "ekm/base/encoding.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

LifecycleEventRecord Rec(std::string ws, std::string env, std::string type, int64_t at_ms,
                         std::string detail = "{}", std::string actor = "cli:alice") {
  LifecycleEventRecord r;
  r.at_ms = at_ms;
  r.workspace = std::move(ws);
  r.environment = std::move(env);
  r.type = std::move(type);
  r.actor = std::move(actor);
  r.detail = std::move(detail);
  return r;
}

// A chain of n records of workspace "acme", ids 1..n.
std::vector<LifecycleEventRecord> Chain(int n) {
  std::vector<LifecycleEventRecord> out;
  Bytes head;
  for (int i = 1; i <= n; ++i) {
    LifecycleEventRecord r =
        Rec("acme", "prod", "key.validated", 1000 * i, "{\"n\":" + std::to_string(i) + "}");
    r.id = i;
    ChainAuditRecord(r, i - 1, head);
    head = r.hash;
    out.push_back(r);
  }
  return out;
}

// The golden vector of docs/format.md ("Audit records"), computed by an independent
// implementation of the spec (Python hashlib).
TEST(AuditRecord, GoldenVector) {
  LifecycleEventRecord r =
      Rec("acme", "prod", "key.set", 1700000000000, R"({"provider":"aws-kms"})");
  ChainAuditRecord(r, 0, {});
  EXPECT_EQ(HexEncode(AuditRecordEncoding(r)),
            "00000010656b6d2d61756469742d7265636f7264010000000461636d65000000000000000100000"
            "18bcfe568000000000461636d650000000470726f64000000076b65792e73657400000009636c693a"
            "616c696365000000167b2270726f7669646572223a226177732d6b6d73227d00000000000000000000"
            "00000000000000000000000000000000000000000000");
  EXPECT_EQ(HexEncode(r.hash), "e01713baf3774eafc21da646f07d6780d6050786861622811fb119d40113f0a9");
  LifecycleEventRecord r2 =
      Rec("acme", "", "workspace.created", 1700000001000, "{}", "token:0123456789abcdef");
  ChainAuditRecord(r2, 1, r.hash);
  EXPECT_EQ(r2.seq, 2);
  EXPECT_EQ(HexEncode(r2.hash), "f82876274b9fcd1a4297b9d9fa77bf1f1bc3f8980baad3a9f9e9ec975848d4ed");
}

TEST(AuditRecord, EveryFieldIsHashed) {
  LifecycleEventRecord base = Chain(2)[1];
  std::vector<std::function<void(LifecycleEventRecord&)>> edits = {
      [](auto& r) { r.chain = "other"; },
      [](auto& r) { r.seq = 3; },
      [](auto& r) { r.at_ms += 1; },
      [](auto& r) { r.workspace = "acmf"; },
      [](auto& r) { r.environment = "dev"; },
      [](auto& r) { r.type = "key.set"; },
      [](auto& r) { r.actor = "cli:mallory"; },
      [](auto& r) { r.detail = "{\"n\":3}"; },
      [](auto& r) { r.prev_hash[0] ^= 1; },
      // Moving bytes between adjacent fields changes the encoding (length prefixes).
      [](auto& r) {
        r.workspace = "acmep";
        r.environment = "rod";
      },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    LifecycleEventRecord r = base;
    edits[i](r);
    EXPECT_NE(AuditRecordHash(r), base.hash) << "edit " << i;
  }
}

TEST(AuditRecord, ExportRoundTrip) {
  LifecycleEventRecord r = Chain(1)[0];
  auto parsed = ParseAuditRecordExportJson(nlohmann::json::parse(AuditRecordExportJson(r).dump()));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->hash, r.hash);
  EXPECT_EQ(AuditRecordHash(*parsed), r.hash);
  EXPECT_FALSE(ParseAuditRecordExportJson(nlohmann::json{{"v", 2}}).ok());
  EXPECT_FALSE(ParseAuditRecordExportJson(nlohmann::json::array()).ok());
}

TEST(AuditVerify, IntactChainsPass) {
  auto records = Chain(5);
  // A second chain interleaved (the platform chain).
  LifecycleEventRecord p = Rec("", "", "workspace.created", 10);
  p.id = 6;
  ChainAuditRecord(p, 0, {});
  records.push_back(p);
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_EQ(r.records, 6u);
  EXPECT_EQ(r.chains, 2u);
  EXPECT_TRUE(VerifyAuditLog({}, {}, nullptr).ok());
}

TEST(AuditVerify, EditIsCaughtAndNamed) {
  auto records = Chain(5);
  records[2].detail = "{\"n\":33}";
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("record seq 3 (id 3"), std::string::npos) << r.problems[0];
  EXPECT_NE(r.problems[0].find("edited"), std::string::npos);
}

TEST(AuditVerify, EditWithRecomputedHashBreaksTheNextLink) {
  auto records = Chain(5);
  records[2].detail = "{\"n\":33}";
  records[2].hash = AuditRecordHash(records[2]);
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("record seq 4"), std::string::npos) << r.problems[0];
  EXPECT_NE(r.problems[0].find("does not link"), std::string::npos);
}

TEST(AuditVerify, DeletionIsCaught) {
  auto records = Chain(5);
  records.erase(records.begin() + 1);
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("seq 2 before it are missing"), std::string::npos) << r.problems[0];
  // The first record removed.
  records = Chain(3);
  records.erase(records.begin());
  r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("missing"), std::string::npos);
}

TEST(AuditVerify, ReorderIsCaught) {
  auto records = Chain(5);
  std::swap(records[1], records[2]);
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("record seq 3"), std::string::npos) << r.problems[0];
  // Swapping the seq numbers too (renumbered) breaks hashes.
  records = Chain(5);
  std::swap(records[1], records[2]);
  std::swap(records[1].seq, records[2].seq);
  r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("edited"), std::string::npos) << r.problems[0];
}

// A log rewritten from its first record names every record: the report lists the first
// problems and counts the rest.
TEST(AuditVerify, ProblemsBeyondTheListedOnesAreCounted) {
  auto records = Chain(static_cast<int>(AuditLogVerifier::kMaxListedProblems) + 50);
  for (auto& r : records) r.detail = "{\"n\":0}";
  AuditVerifyReport r = VerifyAuditLog(records, {}, nullptr);
  ASSERT_EQ(r.problems.size(), AuditLogVerifier::kMaxListedProblems + 1);
  EXPECT_NE(r.problems[0].find("record seq 1 (id 1"), std::string::npos) << r.problems[0];
  EXPECT_EQ(r.problems.back(), "... and 50 more problem(s) not listed");
  EXPECT_EQ(r.records, AuditLogVerifier::kMaxListedProblems + 50);
}

class AuditSignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(AuditSigner::CreateKeyFile(dir_.path() + "/audit-signing.key").ok());
    auto s = AuditSigner::Load(dir_.path() + "/audit-signing.key");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    signer_ = std::move(*s);
  }
  AuditCheckpoint Checkpoint(const std::vector<LifecycleEventRecord>& records, size_t n) {
    AuditCheckpoint c{"acme", records[n - 1].seq, records[n - 1].hash, 12345, "", {}};
    EXPECT_TRUE(signer_->Sign(c).ok());
    return c;
  }
  testing::TempDir dir_;
  std::unique_ptr<AuditSigner> signer_;
};

TEST_F(AuditSignerTest, KeyFileIsPrivatePkcs8AndReloads) {
  std::string path = dir_.path() + "/audit-signing.key";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = AuditSigner::Load(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->public_key().key_id(), signer_->public_key().key_id());
  EXPECT_EQ(signer_->public_key().key_id().size(), 16u);
  EXPECT_EQ(AuditSigner::CreateKeyFile(path).code(), StatusCode::kAlreadyExists);
  ::chmod(path.c_str(), 0644);
  EXPECT_EQ(AuditSigner::Load(path).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(AuditSigner::Load(dir_.path() + "/missing").status().code(), StatusCode::kNotFound);
}

TEST_F(AuditSignerTest, CheckpointSignatureVerifiesFromPemAndJson) {
  auto records = Chain(3);
  AuditCheckpoint c = Checkpoint(records, 3);
  auto pub = AuditPublicKey::FromPem(signer_->public_key().pem());
  ASSERT_TRUE(pub.ok());
  auto parsed = ParseAuditCheckpointJson(nlohmann::json::parse(AuditCheckpointJson(c).dump()));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(pub->Verify(*parsed));
  AuditVerifyReport r = VerifyAuditLog(records, {*parsed}, &*pub);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_EQ(r.checkpoints, 1u);
  EXPECT_FALSE(AuditPublicKey::FromPem("not a key").ok());
}

TEST_F(AuditSignerTest, ForgedCheckpointIsCaught) {
  auto records = Chain(3);
  AuditCheckpoint c = Checkpoint(records, 3);
  c.seq = 2;  // altered after signing
  AuditVerifyReport r = VerifyAuditLog(records, {c}, &signer_->public_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("invalid signature"), std::string::npos) << r.problems[0];
  // Signed by another key.
  testing::TempDir other;
  ASSERT_TRUE(AuditSigner::CreateKeyFile(other.path() + "/k").ok());
  auto mallory = AuditSigner::Load(other.path() + "/k");
  ASSERT_TRUE(mallory.ok());
  AuditCheckpoint f{"acme", 3, records[2].hash, 1, "", {}};
  ASSERT_TRUE((*mallory)->Sign(f).ok());
  r = VerifyAuditLog(records, {f}, &signer_->public_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("signed by key"), std::string::npos) << r.problems[0];
}

TEST_F(AuditSignerTest, TruncatedTailIsCaughtAgainstAKeptCheckpoint) {
  auto records = Chain(5);
  AuditCheckpoint kept = Checkpoint(records, 5);
  records.resize(3);  // the tail cut off: still a valid chain on its own
  EXPECT_TRUE(VerifyAuditLog(records, {}, nullptr).ok());
  AuditVerifyReport r = VerifyAuditLog(records, {kept}, &signer_->public_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("records end at seq 3"), std::string::npos) << r.problems[0];
}

TEST_F(AuditSignerTest, RewrittenHistoryIsCaughtAgainstAKeptCheckpoint) {
  auto records = Chain(5);
  AuditCheckpoint kept = Checkpoint(records, 4);
  // History rewritten from seq 2 on, every hash recomputed: self-consistent again.
  records[1].detail = "{\"n\":22}";
  for (size_t i = 1; i < records.size(); ++i) {
    ChainAuditRecord(records[i], records[i - 1].seq, records[i - 1].hash);
  }
  EXPECT_TRUE(VerifyAuditLog(records, {}, nullptr).ok());
  AuditVerifyReport r = VerifyAuditLog(records, {kept}, &signer_->public_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].find("history rewritten"), std::string::npos) << r.problems[0];
}

}  // namespace
}  // namespace ekm
