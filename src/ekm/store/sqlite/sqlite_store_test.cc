#include "ekm/store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
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
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

EnvironmentKeyRecord Ek(uint32_t version = 1) {
  return EnvironmentKeyRecord{0, version, "platform", "root", Bytes(70, 0xab), 100};
}

DataKeyRecord Dk(int64_t env, std::string scope, uint32_t version, uint8_t fill) {
  return DataKeyRecord{env, std::move(scope), version, 1, Bytes(61, fill), 100, 0};
}

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

TEST_F(SqliteStoreTest, WorkspacesAndEnvironments) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 10).ok());
  ASSERT_TRUE(store_->CreateWorkspace("globex", 11).ok());
  auto dup = store_->CreateWorkspace("acme", 12);
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(dup.status().message().find("\"acme\" already exists"), std::string::npos);
  auto missing = store_->GetWorkspace("nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().hint().find("ekm workspace create nope"), std::string::npos);
  auto list = store_->ListWorkspaces();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "acme");

  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 20);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->workspace, "acme");
  EXPECT_EQ(env->current_ek_version, 1u);
  EXPECT_EQ(store_->CreateEnvironment("acme", "prod", Ek(), 21).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->CreateEnvironment("nope", "prod", Ek(), 21).status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(store_->CreateEnvironment("globex", "prod", Ek(), 22).ok());
  auto got = store_->GetEnvironment("acme", "prod");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id, env->id);
  auto ek = store_->GetEnvironmentKey(env->id, 1);
  ASSERT_TRUE(ek.ok());
  EXPECT_EQ(ek->wrapped, Bytes(70, 0xab));
  EXPECT_EQ(ek->cmk_provider, "platform");
  EXPECT_EQ(store_->GetEnvironment("acme", "dev").status().code(), StatusCode::kNotFound);
  auto envs = store_->ListEnvironments("acme");
  ASSERT_TRUE(envs.ok());
  EXPECT_EQ(envs->size(), 1u);
  EXPECT_EQ(store_->ListEnvironments("nope").status().code(), StatusCode::kNotFound);
}

// A shred confirmation is taken once, only for its environment; putting one deletes the
// expired.
TEST_F(SqliteStoreTest, ShredConfirmationsAreSingleUseAndPerEnvironment) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto prod = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  auto dev = store_->CreateEnvironment("acme", "dev", Ek(), 1);
  ASSERT_TRUE(prod.ok() && dev.ok());
  const Bytes a(32, 0xaa), b(32, 0xbb);
  ASSERT_TRUE(store_->PutShredConfirmation(a, prod->id, 100, 10).ok());
  auto other = store_->TakeShredConfirmation(a, dev->id);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->found);
  EXPECT_FALSE(other->taken);
  auto taken = store_->TakeShredConfirmation(a, prod->id);
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->taken);
  EXPECT_EQ(taken->expires_at, 100);
  EXPECT_FALSE(store_->TakeShredConfirmation(a, prod->id)->found);  // single use
  // An expired confirmation is deleted by the next put.
  ASSERT_TRUE(store_->PutShredConfirmation(a, prod->id, 100, 10).ok());
  ASSERT_TRUE(store_->PutShredConfirmation(b, dev->id, 300, 200).ok());
  EXPECT_FALSE(store_->TakeShredConfirmation(a, prod->id)->found);
  EXPECT_TRUE(store_->TakeShredConfirmation(b, dev->id)->taken);
}

TEST_F(SqliteStoreTest, NewEnvironmentKeyVersionsAndKeyValidations) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  EnvironmentKeyRecord v2{
      env->id, 2, "aws-kms", "arn:aws:kms:us-east-1:111122223333:key/k", Bytes(150, 0xcd), 5};
  ASSERT_TRUE(store_->AddEnvironmentKey(v2).ok());
  EXPECT_EQ(store_->GetEnvironment("acme", "prod")->current_ek_version, 2u);
  EXPECT_EQ(store_->GetEnvironmentKey(env->id, 2)->cmk_provider, "aws-kms");
  // A second writer that also read version 1 loses, and leaves nothing behind.
  EnvironmentKeyRecord stale = v2;
  stale.cmk_key_id = "arn:aws:kms:us-east-1:111122223333:key/other";
  auto lost = store_->AddEnvironmentKey(stale);
  EXPECT_EQ(lost.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetEnvironmentKey(env->id, 2)->cmk_key_id, v2.cmk_key_id);
  EnvironmentKeyRecord skip = v2;
  skip.version = 4;
  EXPECT_EQ(store_->AddEnvironmentKey(skip).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetEnvironmentKey(env->id, 4).status().code(), StatusCode::kNotFound);

  EXPECT_FALSE(store_->GetLatestKeyValidation(env->id)->has_value());
  KeyValidationRecord failed{env->id,
                             "aws-kms",
                             "arn:x",
                             10,
                             false,
                             "failed_precondition",
                             "AccessDeniedException",
                             "denied",
                             "fix the policy",
                             "[]"};
  KeyValidationRecord passed{env->id, "aws-kms", "arn:y", 11, true, "", "", "", "", "[]"};
  ASSERT_TRUE(store_->RecordKeyValidation(failed).ok());
  ASSERT_TRUE(store_->RecordKeyValidation(passed).ok());
  auto last = store_->GetLatestKeyValidation(env->id);
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_TRUE((*last)->ok);
  EXPECT_EQ((*last)->cmk_key_id, "arn:y");
}

TEST_F(SqliteStoreTest, DataKeysAndReservations) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  auto none = store_->GetLatestDataKey(env->id, "orders");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "orders", 1, 1)).ok());
  // A second insert of the same version returns the first one's row.
  auto second = store_->InsertDataKey(Dk(env->id, "orders", 1, 2));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->wrapped, Bytes(61, 1));
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "orders", 2, 3)).ok());
  auto latest = store_->GetLatestDataKey(env->id, "orders");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->version, 2u);
  EXPECT_EQ(store_->GetDataKey(env->id, "orders", 7).status().code(), StatusCode::kNotFound);

  auto r1 = store_->ReserveMessages(env->id, "orders", 1, 10, 25);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(*r1, 0u);
  auto r2 = store_->ReserveMessages(env->id, "orders", 1, 10, 25);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, 10u);
  EXPECT_EQ(store_->ReserveMessages(env->id, "orders", 1, 10, 25).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->ReserveMessages(env->id, "orders", 9, 1, 25).status().code(),
            StatusCode::kNotFound);
  // A data key must reference an existing environment key.
  DataKeyRecord orphan = Dk(env->id, "orders", 3, 4);
  orphan.ek_version = 9;
  EXPECT_FALSE(store_->InsertDataKey(orphan).ok());
}

TEST_F(SqliteStoreTest, ConcurrentWritersAgree) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  // Threads on one Store, and a second Store on the same file (as another process would be).
  auto other = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_TRUE(other.ok());
  std::vector<std::thread> threads;
  std::vector<Bytes> winners(8);
  std::atomic<uint64_t> reserved_sum{0};
  std::atomic<int> errors{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Store* s = t % 2 == 0 ? store_.get() : other->get();
      auto r = s->InsertDataKey(Dk(env->id, "shared", 1, static_cast<uint8_t>(t + 1)));
      if (!r.ok()) {
        ++errors;
        return;
      }
      winners[t] = r->wrapped;
      for (int i = 0; i < 50; ++i) {
        auto before = s->ReserveMessages(env->id, "shared", 1, 3, 1'000'000);
        if (!before.ok())
          ++errors;
        else
          reserved_sum += 3;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  for (int t = 1; t < 8; ++t) EXPECT_EQ(winners[t], winners[0]);
  auto dk = store_->GetDataKey(env->id, "shared", 1);
  ASSERT_TRUE(dk.ok());
  EXPECT_EQ(dk->messages_reserved, reserved_sum.load());
  EXPECT_EQ(dk->messages_reserved, 8u * 50 * 3);
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
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto s = OpenSqliteStore(path_, testing::TestStoreBinding());
      if (!s.ok()) _exit(3);
      for (int i = 0;; ++i) {
        std::string name = "env-" + std::to_string(round) + "-" + std::to_string(i);
        auto env = (*s)->CreateEnvironment("acme", name, Ek(), i);
        if (env.ok()) (void)(*s)->InsertDataKey(Dk(env->id, "orders", 1, 7));
      }
    }
    usleep(static_cast<useconds_t>(20000 + round * 15000));
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
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

TEST_F(SqliteStoreTest, LifecycleEventsAreListedOldestFirstByFilter) {
  auto rec = [](int64_t at, std::string env, std::string type) {
    LifecycleEventRecord r;
    r.at_ms = at;
    r.workspace = "acme";
    r.environment = std::move(env);
    r.type = std::move(type);
    r.actor = "cli:test";
    r.detail = "{}";
    return r;
  };
  ASSERT_TRUE(store_->RecordLifecycleEvent(rec(1000, "prod", "key.set")).ok());
  ASSERT_TRUE(store_->RecordLifecycleEvent(rec(2000, "dev", "key.set")).ok());
  ASSERT_TRUE(store_->RecordLifecycleEvent(rec(3000, "prod", "repack.started")).ok());
  LifecycleEventRecord other = rec(4000, "prod", "key.set");
  other.workspace = "other";
  ASSERT_TRUE(store_->RecordLifecycleEvent(other).ok());
  LifecycleEventFilter f;
  f.workspace = "acme";
  auto all = store_->ListLifecycleEvents(f);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].at_ms, 1000);
  EXPECT_EQ((*all)[2].type, "repack.started");
  f.environment = "prod";
  EXPECT_EQ(store_->ListLifecycleEvents(f)->size(), 2u);
  f.type = "key.set";
  EXPECT_EQ(store_->ListLifecycleEvents(f)->size(), 1u);
  f = LifecycleEventFilter{};
  f.workspace = "acme";
  f.since_ms = 2000;
  f.until_ms = 3000;
  auto window = store_->ListLifecycleEvents(f);
  ASSERT_EQ(window->size(), 1u);
  EXPECT_EQ((*window)[0].environment, "dev");
  f = LifecycleEventFilter{};
  f.workspace = "acme";
  f.after_id = (*all)[0].id;
  f.limit = 1;
  auto page = store_->ListLifecycleEvents(f);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].id, (*all)[1].id);
}

TEST_F(SqliteStoreTest, EnvironmentSettingsSetAndReset) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  EXPECT_TRUE(store_->GetEnvironmentSettings(env->id)->empty());
  ASSERT_TRUE(store_->SetEnvironmentSetting(env->id, "key_cache_ttl_seconds", 60).ok());
  ASSERT_TRUE(store_->SetEnvironmentSetting(env->id, "key_cache_ttl_seconds", 30).ok());
  ASSERT_TRUE(store_->SetEnvironmentSetting(env->id, "grace_period_seconds", 0).ok());
  auto got = store_->GetEnvironmentSettings(env->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->at("key_cache_ttl_seconds"), 30);
  EXPECT_EQ(got->at("grace_period_seconds"), 0);
  ASSERT_TRUE(store_->SetEnvironmentSetting(env->id, "key_cache_ttl_seconds", std::nullopt).ok());
  EXPECT_EQ(store_->GetEnvironmentSettings(env->id)->count("key_cache_ttl_seconds"), 0u);
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

TEST_F(SqliteStoreTest, ApiTokensRoundTripListByWorkspaceAndRevokeOnce) {
  Store::ApiTokenRecord t;
  t.id = "00112233445566aa";
  t.secret_sha256 = Bytes(32, 0x5a);
  t.role = "key-manager";
  t.workspace = "acme";
  t.environments = {"prod", "staging"};
  t.description = "ci";
  t.created_at = 100;
  t.created_by = "cli:alice";
  t.expires_at = 200;
  ASSERT_TRUE(store_->CreateApiToken(t).ok());
  EXPECT_EQ(store_->CreateApiToken(t).code(), StatusCode::kAlreadyExists);
  Store::ApiTokenRecord admin = t;
  admin.id = "00112233445566bb";
  admin.role = "admin";
  admin.workspace = "";
  admin.environments = {};
  ASSERT_TRUE(store_->CreateApiToken(admin).ok());

  auto got = store_->GetApiToken(t.id);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->secret_sha256, t.secret_sha256);
  EXPECT_EQ((*got)->environments, t.environments);
  EXPECT_EQ((*got)->expires_at, 200);
  EXPECT_FALSE(store_->GetApiToken("ffffffffffffffff")->has_value());

  EXPECT_EQ(store_->ListApiTokens(std::nullopt)->size(), 2u);
  EXPECT_EQ(store_->ListApiTokens("acme")->size(), 1u);
  EXPECT_EQ(store_->ListApiTokens("")->front().role, "admin");

  ASSERT_TRUE(store_->RevokeApiToken(t.id, 150).ok());
  ASSERT_TRUE(store_->RevokeApiToken(t.id, 170).ok());  // the first revocation time stays
  EXPECT_EQ((*store_->GetApiToken(t.id))->revoked_at, 150);
  EXPECT_EQ(store_->RevokeApiToken("ffffffffffffffff", 1).code(), StatusCode::kNotFound);
}

// issue 12: the admin creates a workspace's owner token only while it has no valid one; the
// check and the insert are one statement.
TEST_F(SqliteStoreTest, AnOwnerTokenIsCreatedOnlyWhileNoOwnerTokenIsValid) {
  Store::ApiTokenRecord owner;
  owner.id = "00112233445566a1";
  owner.secret_sha256 = Bytes(32, 0x11);
  owner.role = "owner";
  owner.workspace = "acme";
  owner.created_at = 100;
  owner.expires_at = 200;
  ASSERT_TRUE(store_->CreateOwnerTokenUnlessOneIsValid(owner, 100).ok());  // the first owner
  Store::ApiTokenRecord second = owner;
  second.id = "00112233445566a2";
  EXPECT_EQ(store_->CreateOwnerTokenUnlessOneIsValid(second, 150).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store_->GetApiToken(second.id)->has_value());
  // Another workspace's owner does not count.
  Store::ApiTokenRecord globex = second;
  globex.workspace = "globex";
  ASSERT_TRUE(store_->CreateOwnerTokenUnlessOneIsValid(globex, 150).ok());
  // Once the first has expired (at 200) or been revoked, one can be created again.
  second.id = "00112233445566a3";
  second.expires_at = 1000;
  ASSERT_TRUE(store_->CreateOwnerTokenUnlessOneIsValid(second, 200).ok());
  second.id = "00112233445566a4";
  EXPECT_EQ(store_->CreateOwnerTokenUnlessOneIsValid(second, 201).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->RevokeApiToken("00112233445566a3", 201).ok());
  ASSERT_TRUE(store_->CreateOwnerTokenUnlessOneIsValid(second, 201).ok());
  EXPECT_EQ((*store_->GetApiToken(second.id))->role, "owner");
}

LifecycleEventRecord Event(std::string ws, std::string type, int64_t at) {
  LifecycleEventRecord r;
  r.at_ms = at;
  r.workspace = std::move(ws);
  r.type = std::move(type);
  r.actor = "cli:test";
  r.detail = "{}";
  return r;
}

std::vector<LifecycleEventRecord> WholeChain(Store& store, const std::string& chain) {
  LifecycleEventFilter f;
  f.workspace = chain;
  f.limit = 100000;
  return *store.ListLifecycleEvents(f);
}

TEST_F(SqliteStoreTest, EventsAreChainedPerWorkspace) {
  ASSERT_TRUE(store_->RecordLifecycleEvent(Event("acme", "a", 1)).ok());
  ASSERT_TRUE(store_->RecordLifecycleEvent(Event("", "workspace.created", 2)).ok());
  ASSERT_TRUE(store_->RecordLifecycleEvent(Event("acme", "b", 3)).ok());
  auto acme = WholeChain(*store_, "acme");
  ASSERT_EQ(acme.size(), 2u);
  EXPECT_EQ(acme[0].seq, 1);
  EXPECT_EQ(acme[1].seq, 2);
  EXPECT_EQ(acme[0].prev_hash, Bytes(32, 0));
  EXPECT_EQ(acme[1].prev_hash, acme[0].hash);
  EXPECT_EQ(AuditRecordHash(acme[1]), acme[1].hash);
  auto platform = WholeChain(*store_, "");
  ASSERT_EQ(platform.size(), 1u);
  EXPECT_EQ(platform[0].seq, 1);
  EXPECT_TRUE(VerifyAuditLog(acme, {}, nullptr).ok());
  auto head = store_->GetAuditChainHead("acme");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->seq, 2);
  EXPECT_EQ(head->hash, acme[1].hash);
  auto heads = store_->ListAuditChainHeads();
  ASSERT_TRUE(heads.ok());
  ASSERT_EQ(heads->size(), 2u);
  EXPECT_EQ((*heads)[1].checkpointed_seq, 0);
  ASSERT_TRUE(store_->PutAuditCheckpoint({0, "acme", 2, acme[1].hash, 5, "k", Bytes(64, 1)}).ok());
  EXPECT_EQ((*store_->ListAuditChainHeads())[1].checkpointed_seq, 2);
  EXPECT_EQ(store_->ListAuditCheckpoints("acme")->size(), 1u);
}

// Several threads, and a second store on the same file (a second ekmd replica), append to one
// chain at once: the chain stays one line, 1..N, every link intact.
TEST_F(SqliteStoreTest, ConcurrentAppendsNeverForkAChain) {
  auto second = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_TRUE(second.ok());
  constexpr int kThreads = 4, kEach = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    Store* s = t % 2 == 0 ? store_.get() : second->get();
    threads.emplace_back([s, t, &failures] {
      // Appended, not `"t" + std::to_string(t)`: GCC 12 at -O2/-O3 reports a false -Wrestrict
      // in libstdc++'s insert for a one-character literal prefix (GCC bug 105651).
      const std::string environment = std::string("t").append(std::to_string(t));
      for (int i = 0; i < kEach; ++i) {
        if (!s->RecordLifecycleEvent(Event("acme", environment, i)).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto chain = WholeChain(*store_, "acme");
  ASSERT_EQ(chain.size(), static_cast<size_t>(kThreads * kEach));
  for (size_t i = 0; i < chain.size(); ++i) EXPECT_EQ(chain[i].seq, static_cast<int64_t>(i + 1));
  AuditVerifyReport r = VerifyAuditLog(chain, {}, nullptr);
  EXPECT_TRUE(r.ok()) << r.problems[0];
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

// A store records its root key's fingerprint when it is created and never opens with another
// root key (before anything is written).
TEST_F(SqliteStoreTest, AnotherRootKeyIsRefused) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  ASSERT_TRUE(store_->CreateEnvironment("acme", "prod", Ek(), 1).ok());
  store_.reset();
  StoreBinding other = testing::TestStoreBinding();
  other.root_key_fingerprint = Bytes(16, 0x77);
  other.root_key_source = "the root key in /elsewhere/root.key";
  auto refused = OpenSqliteStore(path_, std::move(other));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find(
                "the root key in /elsewhere/root.key (store fingerprint 7777"),
            std::string::npos)
      << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("is not the root key of this store"),
            std::string::npos);
  EXPECT_NE(refused.status().hint().find("--root-key-file"), std::string::npos);
  auto again = OpenSqliteStore(path_, testing::TestStoreBinding());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->GetEnvironment("acme", "prod").ok());
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

// Destroying EKs (the end of a repack, a shred) keeps every row valid.
TEST_F(SqliteStoreTest, DestroyedEnvironmentKeysStayValidRows) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(store_->AddEnvironmentKey({env->id, 2, "platform", "root", Bytes(70, 2), 2}).ok());
  bool created = false;
  auto job = store_->BeginRepackJob(env->id, 2, 1000, &created);
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(store_->FinishRepackJob(job->id, env->id, 2, 2000).ok());
  auto v1 = store_->GetEnvironmentKey(env->id, 1);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_TRUE(v1->wrapped.empty());
  ASSERT_TRUE(store_->ShredEnvironment(env->id, 3, "cli:test").ok());
  auto inventory = store_->EnvironmentKeyInventory(env->id);
  ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
  EXPECT_EQ(inventory->size(), 2u);
  EXPECT_TRUE(store_->GetEnvironmentKey(env->id, 2)->wrapped.empty());
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
  ASSERT_TRUE(store_->ListDataKeysToRepack(env->id, 2, 10, &rows).ok());
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
  ASSERT_TRUE(store_->ListDataKeysToRepack(env->id, 3, 10, &rows).ok());
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
