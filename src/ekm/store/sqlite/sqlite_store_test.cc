#include "ekm/store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "ekm/audit/audit_log.h"
#include "ekm/base/random.h"
#include "ekm/store/sql/migrations.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/store_records.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

using testing::Dk;
using testing::Ek;
using testing::Event;
using testing::WholeChain;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/ekm.db";
    auto s = OpenSqliteStore(path_, testing::TestStoreBinding());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  testing::TempDir dir_;
  std::string path_;
  StorePtr store_;
};

TEST_F(SqliteStoreTest, FileIsPrivateAndInWalMode) {
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "wal");
  sqlite3_finalize(s);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_migrations", -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), Migrations().back().version);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, ReopenIsIdempotentAndNewerSchemaIsRefused) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  store_.reset();
  auto again = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->GetWorkspace("acme").ok());
  again->reset();
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 'future', 0)", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto future = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(future.status().hint().find("upgrade"), std::string::npos);
}

TEST_F(SqliteStoreTest, GarbageFileIsRefused) {
  std::string bad = dir_.path() + "/bad.db";
  FILE* f = fopen(bad.c_str(), "w");
  fputs("this is not a database, just some text that is long enough to look like a header....", f);
  fclose(f);
  EXPECT_FALSE(OpenSqliteStore(bad, testing::TestStoreBinding()).ok());
}

// A write that waits out the busy timeout (5 s) behind another process's write lock: retryable
// `unavailable` in ekm's words, naming the store and what to do, never SQLite's "database is
// locked" (which ekmd would pass on to its client); and the same write goes through once the
// lock is released.
TEST_F(SqliteStoreTest, AWriteLockHeldElsewhereIsUnavailableInEkmsWords) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "orders", 1, 1)).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  Status busy = store_->ReserveMessages(env->id, "orders", 1, 10, 100).status();
  EXPECT_EQ(busy.code(), StatusCode::kUnavailable) << busy.ToString();
  EXPECT_NE(busy.message().find("the store " + path_ + " is busy"), std::string::npos)
      << busy.ToString();
  EXPECT_EQ(busy.ToString().find("locked"), std::string::npos) << busy.ToString();
  EXPECT_NE(busy.hint().find("retry"), std::string::npos) << busy.ToString();
  EXPECT_EQ(busy.retry_after_seconds(), 1);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  auto after = store_->ReserveMessages(env->id, "orders", 1, 10, 100);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*after, 0u);  // the refused reservation took nothing
}

// Every process that opens the store binds its audit signing key with PutStoreMetaOnce. Once the
// value is there that is a read: it never waits for (or fails behind) another process's write
// lock, so read-only commands run beside a busy writer (a CI run saw `ekm key rotate` fail
// "storing the store's metadata: ... busy" while ekmd and four other processes wrote).
TEST_F(SqliteStoreTest, StoreMetaAlreadyBoundIsReadWithoutTheWriteLock) {
  auto first = store_->PutStoreMetaOnce("probe", "one");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto again = store_->PutStoreMetaOnce("probe", "two");
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, "one");  // the first value stays bound
}

TEST_F(SqliteStoreTest, KillDashNineNeverLeavesHalfAHierarchy) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  store_.reset();
  for (int round = 0; round < 5; ++round) {
    // The child says when its first environment is stored, and is killed some time after:
    // mid-operation on a slow machine (or under a sanitizer) too, never before it started.
    int started[2];
    ASSERT_EQ(pipe(started), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(started[0]);
      auto s = OpenSqliteStore(path_, testing::TestStoreBinding());
      if (!s.ok()) _exit(3);
      for (int i = 0;; ++i) {
        std::string name = "env-" + std::to_string(round) + "-" + std::to_string(i);
        auto env = (*s)->CreateEnvironment("acme", name, Ek(), i);
        if (env.ok()) (void)(*s)->InsertDataKey(Dk(env->id, "orders", 1, 7));
        if (env.ok() && started[1] >= 0) {
          (void)!write(started[1], "x", 1);
          close(started[1]);
          started[1] = -1;
        }
      }
    }
    close(started[1]);
    pollfd wait_for{started[0], POLLIN, 0};
    const int ready = poll(&wait_for, 1, 60000);
    close(started[0]);
    if (ready == 1) usleep(static_cast<useconds_t>(5000 + round * 15000));
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    ASSERT_EQ(ready, 1) << "the child stored nothing in 60 s";
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  }
  auto s = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto envs = (*s)->ListEnvironments("acme");
  ASSERT_TRUE(envs.ok());
  EXPECT_GT(envs->size(), 0u);
  for (const auto& e : *envs) {
    EXPECT_TRUE((*s)->GetEnvironmentKey(e.id, e.current_ek_version).ok()) << e.name;
  }
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "ok");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// Several settings change in one transaction: when one cannot be stored, none is.
TEST_F(SqliteStoreTest, EnvironmentSettingsChangeAllOrNothing) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(store_->SetEnvironmentSetting(env->id, "grace_period_seconds", 5).ok());
  // A failure on the second change, as a full disk or a lost connection would make it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER refuse_ttl BEFORE INSERT ON environment_settings WHEN "
                         "NEW.name = 'key_cache_ttl_seconds' BEGIN SELECT RAISE(ABORT, 'no'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Status s = store_->SetEnvironmentSettings(
      env->id, {{"grace_period_seconds", std::nullopt}, {"key_cache_ttl_seconds", 60}});
  EXPECT_FALSE(s.ok());
  auto got = store_->GetEnvironmentSettings(env->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->at("grace_period_seconds"), 5) << "the first change was kept alone";
  EXPECT_EQ(got->count("key_cache_ttl_seconds"), 0u);
}

// A database with lifecycle events from before migration 10 gets them chained, in order.
TEST(SqliteStoreMigration, LifecycleEventsBecomeAChainedAuditLog) {
  testing::TempDir dir;
  std::string path = dir.path() + "/ekm.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string sql =
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
      "applied_at INTEGER NOT NULL);";
  for (const Migration& m : Migrations()) {
    if (m.version >= 10) break;
    sql += std::string(m.sql);
    sql += "INSERT INTO schema_migrations VALUES (" + std::to_string(m.version) + ", 'x', 0);";
  }
  sql +=
      "INSERT INTO lifecycle_events (id, at_ms, workspace, environment, type, actor, detail) "
      "VALUES (1, 10, 'acme', 'prod', 'key.set', 'cli:a', '{}'), (2, 20, 'beta', '', 'x', "
      "'cli:a', '{}'), (3, 30, 'acme', 'prod', 'ek.rotated', 'cli:a', '{\"v\":2}');";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto store = OpenSqliteStore(path, testing::TestStoreBinding());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto acme = WholeChain(**store, "acme");
  ASSERT_EQ(acme.size(), 2u);
  EXPECT_EQ(acme[0].id, 1);
  EXPECT_EQ(acme[1].id, 3);
  EXPECT_EQ(acme[1].seq, 2);
  EXPECT_TRUE(VerifyAuditLog(acme, {}, nullptr).ok());
  // New events continue the moved chain.
  ASSERT_TRUE((*store)->RecordLifecycleEvent(Event("acme", "later", 40)).ok());
  acme = WholeChain(**store, "acme");
  ASSERT_EQ(acme.size(), 3u);
  EXPECT_EQ(acme[2].seq, 3);
  EXPECT_TRUE(VerifyAuditLog(acme, {}, nullptr).ok());
}

Bytes Random(size_t n) {
  Bytes b(n);
  EXPECT_TRUE(RandomBytes(b).ok());
  return b;
}

// The files of the database at `path` (db, -wal, -shm, -journal) that hold `needle`.
std::vector<std::string> FilesHolding(const std::string& path, ByteView needle) {
  std::vector<std::string> out;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    std::string name = entry.path().string();
    if (name.rfind(path, 0) != 0) continue;
    std::ifstream in(name, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string_view hay(data);
    if (hay.find(std::string_view(reinterpret_cast<const char*>(needle.data()), needle.size())) !=
        std::string_view::npos) {
      out.push_back(entry.path().filename().string());
    }
  }
  return out;
}

// Shredding, the end of a repack, deleting imported material and replacing import parameters
// destroy key material: no copy may stay in the database files (old pages in the WAL, freed
// space in the main file), while the store is open, as a copy of the files would find them.
TEST_F(SqliteStoreTest, DestroyedKeyMaterialLeavesNoCopyInTheDatabaseFiles) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  EnvironmentKeyRecord shred_ek = Ek();
  shred_ek.wrapped = Random(70);
  auto shredded = store_->CreateEnvironment("acme", "shredded", shred_ek, 1);
  ASSERT_TRUE(shredded.ok()) << shredded.status().ToString();
  DataKeyRecord dk = Dk(shredded->id, "orders", 1, 0);
  dk.wrapped = Random(61);
  ASSERT_TRUE(store_->InsertDataKey(dk).ok());

  // An environment whose repack finishes: its old EK v1 is destroyed.
  EnvironmentKeyRecord old_ek = Ek();
  old_ek.wrapped = Random(70);
  auto repacked = store_->CreateEnvironment("acme", "repacked", old_ek, 1);
  ASSERT_TRUE(repacked.ok());
  EnvironmentKeyRecord new_ek{repacked->id, 2, "platform", "root", Random(70), 2};
  ASSERT_TRUE(store_->AddEnvironmentKey(new_ek).ok());

  // Imported material deleted, material of a refused import removed, import parameters
  // replaced (the old sealed wrapping private key, over a page: overflow pages).
  Store::KeyMaterialRecord deleted{repacked->id, "imported:aa", Random(120), 1, 0};
  Store::KeyMaterialRecord removed{repacked->id, "imported:bb", Random(120), 1, 0};
  ASSERT_TRUE(store_->PutKeyMaterial(deleted).ok());
  ASSERT_TRUE(store_->PutKeyMaterial(removed).ok());
  Store::ImportParamsRecord params{repacked->id, Random(32), "pem", Random(2400), 1, 100, 0};
  ASSERT_TRUE(store_->PutImportParams(params).ok());
  // A spent import token: its wrapping private key has no use left.
  Store::ImportParamsRecord spent{shredded->id, Random(32), "pem", Random(2400), 1, 100, 0};
  ASSERT_TRUE(store_->PutImportParams(spent).ok());

  const std::vector<std::pair<std::string, Bytes>> destroyed = {
      {"shredded EK", shred_ek.wrapped},
      {"shredded DK", dk.wrapped},
      {"EK destroyed by the repack", old_ek.wrapped},
      {"deleted material", deleted.sealed_material},
      {"removed material", removed.sealed_material},
      {"replaced import private key", params.sealed_private_key},
      {"spent import private key", spent.sealed_private_key}};
  for (const auto& [what, bytes] : destroyed) {
    ASSERT_FALSE(FilesHolding(path_, bytes).empty()) << what << ": the test cannot see it";
  }

  ASSERT_TRUE(store_->SpendImportToken(shredded->id, spent.token_sha256, 4).ok());
  ASSERT_TRUE(store_->ShredEnvironment(shredded->id, 5, "cli:test").ok());
  bool created = false;
  auto job = store_->BeginRepackJob(repacked->id, 2, 5000, &created);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  auto finished = store_->FinishRepackJob(job->id, repacked->id, 2, 6000);
  ASSERT_TRUE(finished.ok()) << finished.status().ToString();
  EXPECT_EQ(*finished, std::vector<uint32_t>{1});
  ASSERT_TRUE(store_->DeleteKeyMaterial(repacked->id, "imported:aa", 7).ok());
  ASSERT_TRUE(store_->RemoveKeyMaterialRow(repacked->id, "imported:bb").ok());
  Store::ImportParamsRecord replaced = params;
  replaced.token_sha256 = Random(32);
  replaced.sealed_private_key = Random(2400);
  ASSERT_TRUE(store_->PutImportParams(replaced).ok());

  for (const auto& [what, bytes] : destroyed) {
    std::vector<std::string> files = FilesHolding(path_, bytes);
    EXPECT_TRUE(files.empty()) << what << " is still in " << files.front();
  }
  // What is still live is still there.
  EXPECT_FALSE(FilesHolding(path_, new_ek.wrapped).empty());
}

void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
}

void ExpectModified(const Status& s, const std::string& what) {
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find(what), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("the store was modified outside ekm"), std::string::npos)
      << s.ToString();
}

// Whoever writes to the database behind the store cannot point an environment at an EK or a
// CMK of their choosing: each edited row is refused when read, and is fine again once put back.
TEST_F(SqliteStoreTest, RowsEditedBehindTheStoreAreRefused) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto prod = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  auto dev = store_->CreateEnvironment("acme", "dev", Ek(), 1);
  ASSERT_TRUE(prod.ok() && dev.ok());
  ASSERT_TRUE(store_->AddEnvironmentKey({prod->id, 2, "platform", "root", Bytes(70, 2), 2}).ok());
  ASSERT_TRUE(
      store_->SetWorkspaceDefaultKey({prod->workspace_id, "aws-kms", "arn:k", 3, "a"}).ok());
  const std::string ek2 =
      " FROM environment_keys WHERE environment_id = " + std::to_string(prod->id) +
      " AND version = 2";

  for (std::string edit :
       {"UPDATE environment_keys SET cmk_key_id = 'arn:aws:kms:us-east-1:999999999999:key/x'",
        "UPDATE environment_keys SET cmk_provider = 'aws-kms'",
        "UPDATE environment_keys SET wrapped = X'00'"}) {
    Sql(path_, "CREATE TABLE saved AS SELECT *" + ek2 + "; " + edit +
                   " WHERE environment_id = " + std::to_string(prod->id) + " AND version = 2");
    ExpectModified(store_->GetEnvironmentKey(prod->id, 2).status(),
                   "environment key v2 of acme/prod");
    ExpectModified(store_->EnvironmentKeyInventory(prod->id).status(), "acme/prod");
    Sql(path_,
        "DELETE" + ek2 + "; INSERT INTO environment_keys SELECT * FROM saved; DROP TABLE saved");
    EXPECT_TRUE(store_->GetEnvironmentKey(prod->id, 2).ok()) << edit;
  }
  // Another environment's EK row (and MAC) moved in: the MAC names its environment.
  Sql(path_, "CREATE TABLE saved AS SELECT *" + ek2 + "; DELETE" + ek2 +
                 "; INSERT INTO environment_keys SELECT " + std::to_string(prod->id) +
                 ", 2, cmk_provider, cmk_key_id, wrapped, created_at, destroyed_at, mac FROM "
                 "environment_keys WHERE environment_id = " +
                 std::to_string(dev->id));
  ExpectModified(store_->GetEnvironmentKey(prod->id, 2).status(),
                 "environment key v2 of acme/prod");
  Sql(path_,
      "DELETE" + ek2 + "; INSERT INTO environment_keys SELECT * FROM saved; DROP TABLE saved");

  // prod needs a repack (EK v1 is not destroyed). With its pointer's MAC damaged, the
  // store-wide list of the repack runner leaves it out rather than fail for everyone.
  ASSERT_EQ(store_->ListEnvironmentsToRepack()->size(), 1u);
  const std::string prod_id = std::to_string(prod->id);
  Sql(path_,
      "CREATE TABLE saved_mac AS SELECT current_ek_mac FROM environments WHERE id = " + prod_id +
          "; UPDATE environments SET current_ek_mac = X'00' WHERE id = " + prod_id);
  auto to_repack = store_->ListEnvironmentsToRepack();
  ASSERT_TRUE(to_repack.ok()) << to_repack.status().ToString();
  EXPECT_TRUE(to_repack->empty());
  ExpectModified(store_->GetEnvironment("acme", "prod").status(), "acme/prod");
  Sql(path_,
      "UPDATE environments SET current_ek_mac = (SELECT current_ek_mac FROM saved_mac) "
      "WHERE id = " +
          prod_id + "; DROP TABLE saved_mac");
  EXPECT_EQ(store_->ListEnvironmentsToRepack()->size(), 1u);

  // The current-EK pointer moved back to v1, or given dev's pointer MAC.
  Sql(path_,
      "UPDATE environments SET current_ek_version = 1 WHERE id = " + std::to_string(prod->id));
  ExpectModified(store_->GetEnvironment("acme", "prod").status(),
                 "the current environment key (v1) of acme/prod");
  ExpectModified(store_->ListEnvironments("acme").status(), "acme/prod");
  EXPECT_EQ(store_->AddEnvironmentKey({prod->id, 2, "aws-kms", "arn:x", Bytes(9, 1), 4}).code(),
            StatusCode::kDataLoss);
  Sql(path_,
      "UPDATE environments SET current_ek_version = 2, current_ek_mac = (SELECT "
      "current_ek_mac FROM environments WHERE id = " +
          std::to_string(dev->id) + ") WHERE id = " + std::to_string(prod->id));
  ExpectModified(store_->GetEnvironment("acme", "prod").status(), "acme/prod");

  // The workspace default CMK.
  Sql(path_,
      "UPDATE workspace_default_keys SET cmk_key_id = 'arn:aws:kms:us-east-1:999999999999:key/x'");
  ExpectModified(store_->GetWorkspaceDefaultKey(prod->workspace_id).status(),
                 "the default customer main key of workspace acme");
  // Set through the store: a valid row again.
  ASSERT_TRUE(
      store_->SetWorkspaceDefaultKey({prod->workspace_id, "aws-kms", "arn:k", 3, "a"}).ok());
  EXPECT_TRUE(store_->GetWorkspaceDefaultKey(prod->workspace_id).ok());
}

// A store from before the MACs (schema 10, or 11): the upgrade vouches for every EK row with
// the binding's check and MACs the rows; a row the check refuses stops the upgrade, and
// nothing of it is kept.
TEST(SqliteStoreMigration, RowsFromBeforeTheMacsAreBoundAtTheUpgrade) {
  testing::TempDir dir;
  std::string path = dir.path() + "/ekm.db";
  std::string sql =
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
      "applied_at INTEGER NOT NULL);";
  for (const Migration& m : Migrations()) {
    if (m.version >= kStoreIntegrityMigration) break;
    sql += std::string(m.sql);
    sql += "INSERT INTO schema_migrations VALUES (" + std::to_string(m.version) + ", 'x', 0);";
  }
  sql +=
      "INSERT INTO workspaces VALUES (1, 'acme', 0);"
      "INSERT INTO environments VALUES (1, 1, 'prod', 0, 2), (2, 1, 'dev', 0, 1);"
      "INSERT INTO environment_keys (environment_id, version, cmk_provider, cmk_key_id, wrapped, "
      "created_at) VALUES (1, 1, 'platform', 'root', X'01', 0), (1, 2, 'aws-kms', 'arn:k', X'02', "
      "0), (2, 1, 'platform', 'root', X'03', 0);"
      "INSERT INTO workspace_default_keys VALUES (1, 'aws-kms', 'arn:k', 0, 'cli:a');";
  Sql(path, sql);

  StoreBinding refusing = testing::TestStoreBinding();
  refusing.check_legacy_ek = [](const EnvironmentKeyRecord& ek) {
    return ek.wrapped == Bytes{3} ? FailedPreconditionError("it was wrapped under another root key")
                                  : Status::Ok();
  };
  auto refused = OpenSqliteStore(path, std::move(refusing));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find(
                "environment key v1 of acme/dev: it was wrapped under another root key"),
            std::string::npos)
      << refused.status().ToString();

  std::vector<std::string> vouched;
  StoreBinding accepting = testing::TestStoreBinding();
  accepting.check_legacy_ek = [&](const EnvironmentKeyRecord& ek) {
    vouched.push_back(ek.cmk_provider);
    return Status::Ok();
  };
  auto store = OpenSqliteStore(path, std::move(accepting));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(vouched.size(), 3u);
  auto prod = (*store)->GetEnvironment("acme", "prod");
  ASSERT_TRUE(prod.ok()) << prod.status().ToString();
  EXPECT_EQ(prod->current_ek_version, 2u);
  EXPECT_EQ((*store)->GetEnvironmentKey(1, 2)->cmk_key_id, "arn:k");
  EXPECT_TRUE((*store)->GetEnvironmentKey(2, 1).ok());
  EXPECT_EQ((*(*store)->GetWorkspaceDefaultKey(1))->cmk_key_id, "arn:k");
  // Rewritten once (VACUUM), so nothing destroyed before the upgrade stays in free pages.
  EXPECT_EQ((*store)->GetStoreMeta("free_pages_wiped")->value_or(""), "1");
  store->reset();
  // Bound: from now on a row added behind the store is refused, and the root key is checked.
  Sql(path,
      "INSERT INTO environment_keys (environment_id, version, cmk_provider, cmk_key_id, "
      "wrapped, created_at) VALUES (2, 2, 'aws-kms', 'arn:evil', X'04', 0)");
  store = OpenSqliteStore(path, testing::TestStoreBinding());
  ASSERT_TRUE(store.ok());
  ExpectModified((*store)->GetEnvironmentKey(2, 2).status(), "environment key v2 of acme/dev");
}

// A DK is only ever stored under the environment's current EK: the check is inside the
// insert's write transaction, serialised with the repack's finishing transaction, so no DK
// lands under an EK that a repack destroys. A DK under a destroyed EK (a store written before
// the check) is never listed for a repack, which would wait on it forever.
TEST_F(SqliteStoreTest, DataKeysAreOnlyStoredUnderTheCurrentEnvironmentKey) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "orders", 1, 1)).ok());
  EnvironmentKeyRecord v2{env->id, 2, "platform", "root", Bytes(70, 0xcd), 5};
  ASSERT_TRUE(store_->AddEnvironmentKey(v2).ok());
  // A writer that read the environment before the rotation: refused, nothing stored.
  auto stale = store_->InsertDataKey(Dk(env->id, "payments", 1, 2));
  EXPECT_EQ(stale.status().code(), StatusCode::kFailedPrecondition) << stale.status().ToString();
  EXPECT_NE(stale.status().message().find("not the environment's current key (v2 is)"),
            std::string::npos)
      << stale.status().ToString();
  EXPECT_EQ(store_->GetDataKey(env->id, "payments", 1).status().code(), StatusCode::kNotFound);
  std::vector<DataKeyRecord> bulk = {Dk(env->id, "bulk", 1, 3)};
  EXPECT_EQ(store_->InsertDataKeys(bulk).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetDataKey(env->id, "bulk", 1).status().code(), StatusCode::kNotFound);
  // An existing version is returned whatever EK the writer used (concurrent creators agree).
  auto existing = store_->InsertDataKey(Dk(env->id, "orders", 1, 9));
  ASSERT_TRUE(existing.ok());
  EXPECT_EQ(existing->wrapped, Bytes(61, 1));
  DataKeyRecord current = Dk(env->id, "payments", 1, 2);
  current.ek_version = 2;
  ASSERT_TRUE(store_->InsertDataKey(current).ok());

  // The repack of "orders" to v2, then v1 destroyed.
  bool created = false;
  auto job = store_->BeginRepackJob(env->id, 2, 1000, &created);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->total, 1u);
  std::vector<DataKeyRecord> rows;
  ASSERT_TRUE(store_->ListDataKeysToRepack(env->id, 2, "", 0, 10, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_TRUE(
      store_->CommitRepackBatch(job->id, env->id, 2, {{&rows[0], Bytes(61, 7)}}, 2000).ok());
  auto destroyed = store_->FinishRepackJob(job->id, env->id, 2, 3000);
  ASSERT_TRUE(destroyed.ok()) << destroyed.status().ToString();
  EXPECT_EQ(*destroyed, std::vector<uint32_t>{1});
  EXPECT_EQ(store_->InsertDataKey(Dk(env->id, "late", 1, 4)).status().code(),
            StatusCode::kFailedPrecondition)
      << "never under the destroyed EK";

  // A row left under the destroyed EK by an older ekm (written by hand here), and a newer EK:
  // the repack lists and counts only what it can move.
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE data_keys SET ek_version = 1 WHERE scope = 'payments'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EnvironmentKeyRecord v3{env->id, 3, "platform", "root", Bytes(70, 0xce), 6};
  ASSERT_TRUE(store_->AddEnvironmentKey(v3).ok());
  job = store_->BeginRepackJob(env->id, 3, 4000, &created);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->total, 1u) << "orders (under v2) only";
  ASSERT_TRUE(store_->ListDataKeysToRepack(env->id, 3, "", 0, 10, &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].scope, "orders");
  ASSERT_TRUE(
      store_->CommitRepackBatch(job->id, env->id, 3, {{&rows[0], Bytes(61, 8)}}, 5000).ok());
  destroyed = store_->FinishRepackJob(job->id, env->id, 3, 6000);
  ASSERT_TRUE(destroyed.ok()) << destroyed.status().ToString();
  EXPECT_EQ(*destroyed, std::vector<uint32_t>{2});
  auto inv = store_->EnvironmentKeyInventory(env->id);
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ((*inv)[0].data_keys, 1u) << "the row under destroyed v1 is still counted";

  // A repacker that read v2 as current before the job above finished (and v3 was made) must
  // not begin a job for v2: it would stay "running" for ever (CI caught this in the race test).
  auto stale_job = store_->BeginRepackJob(env->id, 2, 7000, &created);
  EXPECT_EQ(stale_job.status().code(), StatusCode::kFailedPrecondition)
      << stale_job.status().ToString();
  auto latest = store_->GetLatestRepackJob(env->id);
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->state, "finished");
  EXPECT_EQ((*latest)->target_ek_version, 3u);
}

}  // namespace
}  // namespace ekm
