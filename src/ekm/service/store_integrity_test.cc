// The store's integrity through EkmService (issue 12): someone who can write to the database
// but does not hold the root key must not be able to make ekm wrap data keys under an EK they
// know. The attack, as it would be done: the attacker has an AWS KMS key of their own that the
// platform's principal may use (here moto's "main" key), encrypts an EK of their choosing
// under it with the victim environment's encryption context, writes it into the store as the
// environment's EK (a new version with the current-EK pointer moved to it, or over the
// current row), and waits for new data. ekm must refuse the environment instead, naming it,
// and wrap nothing under that EK.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <map>

#include "ekm/base/encoding.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

using testing::MotoPeer;

class StoreIntegrityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto peer = MotoPeer::Start({.tls = true});
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = std::move(*peer).release();
  }
  static void TearDownTestSuite() {
    delete peer_;
    peer_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(peer_, nullptr);
    options_.data_dir = dir_.path() + "/data";
    const auto& u = peer_->setup()["users"]["ekm-platform"];
    std::map<std::string, std::string> env = {{"AWS_ACCESS_KEY_ID", u["access_key_id"]},
                                              {"AWS_SECRET_ACCESS_KEY", u["secret_access_key"]},
                                              {"AWS_ENDPOINT_URL", peer_->endpoint()},
                                              {"AWS_REGION", "us-east-1"},
                                              {"AWS_EC2_METADATA_DISABLED", "true"},
                                              {"HOME", dir_.path()}};
    options_.aws.env = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    options_.aws.ca_file = peer_->ca_file();
    options_.aws.principal_arn = u["arn"];
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    Reopen();
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    Bytes ct;
    ASSERT_TRUE(svc_->Encrypt(TestOp(), "acme", "prod", "orders", AsBytes("before"), &ct).ok());
    before_ = ct;
  }

  // A fresh process on the data directory: nothing cached.
  void Reopen() {
    svc_.reset();
    auto s = EkmService::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    svc_ = std::move(*s);
  }

  // What the attacker stores: an EK they chose, encrypted by their AWS KMS key under the
  // encryption context ekm sends for EK `version` of acme/prod.
  Bytes AttackerWrappedEk(uint32_t version) {
    std::string out;
    Status s = peer_->RunBoto3(
        "import base64\n"
        "r = client('kms').encrypt(KeyId='" +
            Arn() + "', Plaintext=bytes.fromhex('" + HexEncode(known_ek_.RevealForCrypto()) +
            "'), EncryptionContext={'ekm:workspace': 'acme', 'ekm:environment': 'prod', "
            "'ekm:ek-version': '" +
            std::to_string(version) +
            "'})\n"
            "print(base64.b16encode(r['CiphertextBlob']).decode())\n",
        &out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    auto blob = HexDecode(out.substr(out.rfind('\n') + 1));
    EXPECT_TRUE(blob.ok()) << out;
    return blob.ok() ? *blob : Bytes();
  }
  static std::string Arn() { return peer_->setup()["keys"]["main"]["arn"]; }

  void Sql(const std::string& sql, std::vector<std::string>* rows = nullptr) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((options_.data_dir + "/ekm.db").c_str(), &db), SQLITE_OK);
    auto collect = [](void* out, int n, char** values, char**) {
      if (out != nullptr) {
        for (int i = 0; i < n; ++i) {
          static_cast<std::vector<std::string>*>(out)->push_back(values[i] ? values[i] : "");
        }
      }
      return 0;
    };
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), collect, rows, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  // New data in a new scope: refused, naming the environment and the cause, and no data key
  // was stored for it; had one been stored, it must not open under the attacker's EK.
  void ExpectNoDataKeyUnderTheAttackersEk(uint32_t ek_version) {
    Bytes ct;
    Status s = svc_->Encrypt(TestOp(), "acme", "prod", "after", AsBytes("new secret"), &ct);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_NE(s.message().find("acme/prod"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("the store was modified outside ekm"), std::string::npos)
        << s.ToString();
    std::vector<std::string> rows;
    Sql("SELECT hex(wrapped), version FROM data_keys WHERE scope = 'after'", &rows);
    EXPECT_TRUE(rows.empty()) << "a data key was stored under the edited EK";
    if (rows.size() == 2) {
      auto wrapped = HexDecode(rows[0]);
      ASSERT_TRUE(wrapped.ok());
      auto dk = UnwrapKey(known_ek_, *wrapped,
                          DataKeyWrapAad("acme", "prod", "after", std::stoul(rows[1]), ek_version));
      EXPECT_FALSE(dk.ok()) << "the attacker can unwrap the new data key";
    }
    // Old data is refused too: nothing of the environment is used until the store is restored.
    Bytes pt;
    EXPECT_EQ(svc_->Decrypt(TestOp(), "acme", "prod", before_, &pt).code(), StatusCode::kDataLoss);
  }

  static MotoPeer* peer_;
  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
  Bytes before_;
  SecretBytes known_ek_{Bytes(32, 0x41)};
};

MotoPeer* StoreIntegrityTest::peer_ = nullptr;

TEST_F(StoreIntegrityTest, ANewEkVersionPointedToBehindEkmIsRefused) {
  Bytes blob = AttackerWrappedEk(2);
  svc_.reset();
  Sql("INSERT INTO environment_keys (environment_id, version, cmk_provider, cmk_key_id, wrapped, "
      "created_at) VALUES ((SELECT id FROM environments WHERE name = 'prod'), 2, 'aws-kms', '" +
      Arn() + "', X'" + HexEncode(blob) +
      "', 0); UPDATE environments SET current_ek_version = 2 "
      "WHERE name = 'prod'");
  Reopen();
  ExpectNoDataKeyUnderTheAttackersEk(2);
}

TEST_F(StoreIntegrityTest, TheCurrentEkRowRewrittenBehindEkmIsRefused) {
  Bytes blob = AttackerWrappedEk(1);
  svc_.reset();
  Sql("UPDATE environment_keys SET cmk_provider = 'aws-kms', cmk_key_id = '" + Arn() +
      "', wrapped = X'" + HexEncode(blob) +
      "' WHERE version = 1 AND environment_id = (SELECT id "
      "FROM environments WHERE name = 'prod')");
  Reopen();
  ExpectNoDataKeyUnderTheAttackersEk(1);
}

// The workspace default CMK decides the first EK of every new environment: set behind ekm to
// the attacker's key, no environment is created under it.
TEST_F(StoreIntegrityTest, AWorkspaceDefaultKeySetBehindEkmIsRefused) {
  svc_.reset();
  Sql("INSERT INTO workspace_default_keys (workspace_id, cmk_provider, cmk_key_id, set_at, actor) "
      "VALUES ((SELECT id FROM workspaces WHERE name = 'acme'), 'aws-kms', '" +
      Arn() + "', 0, 'cli:mallory')");
  Reopen();
  auto env = svc_->CreateEnvironment(TestOp(), "acme", "staging");
  EXPECT_EQ(env.status().code(), StatusCode::kDataLoss) << env.status().ToString();
  EXPECT_NE(env.status().message().find("workspace acme"), std::string::npos);
  EXPECT_NE(env.status().message().find("the store was modified outside ekm"), std::string::npos);
  std::vector<std::string> rows;
  Sql("SELECT name FROM environments WHERE name = 'staging'", &rows);
  EXPECT_TRUE(rows.empty());
}

}  // namespace
}  // namespace ekm
