#include "ekm/store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "ekm/audit/audit_log.h"
#include "ekm/store/sqlite/migrations.h"
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
    auto s = OpenSqliteStore(path_);
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
  EXPECT_EQ(sqlite3_column_int(s, 0), SqliteMigrations().back().version);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, ReopenIsIdempotentAndNewerSchemaIsRefused) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  store_.reset();
  auto again = OpenSqliteStore(path_);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->GetWorkspace("acme").ok());
  again->reset();
  sqlite3* db;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 'future', 0)", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto future = OpenSqliteStore(path_);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(future.status().hint().find("upgrade"), std::string::npos);
}

TEST_F(SqliteStoreTest, GarbageFileIsRefused) {
  std::string bad = dir_.path() + "/bad.db";
  FILE* f = fopen(bad.c_str(), "w");
  fputs("this is not a database, just some text that is long enough to look like a header....",
        f);
  fclose(f);
  EXPECT_FALSE(OpenSqliteStore(bad).ok());
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

TEST_F(SqliteStoreTest, NewEnvironmentKeyVersionsAndKeyValidations) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  EnvironmentKeyRecord v2{env->id, 2, "aws-kms", "arn:aws:kms:us-east-1:111122223333:key/k",
                          Bytes(150, 0xcd), 5};
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
  KeyValidationRecord failed{env->id, "aws-kms", "arn:x", 10, false, "failed_precondition",
                             "AccessDeniedException", "denied", "fix the policy", "[]"};
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
  auto other = OpenSqliteStore(path_);
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
        if (!before.ok()) ++errors;
        else reserved_sum += 3;
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

TEST_F(SqliteStoreTest, KillDashNineNeverLeavesHalfAHierarchy) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  store_.reset();
  for (int round = 0; round < 5; ++round) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto s = OpenSqliteStore(path_);
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
  auto s = OpenSqliteStore(path_);
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

// --- issue5-A ---
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

// --- issue5-B ---
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
  auto second = OpenSqliteStore(path_);
  ASSERT_TRUE(second.ok());
  constexpr int kThreads = 4, kEach = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    Store* s = t % 2 == 0 ? store_.get() : second->get();
    threads.emplace_back([s, t, &failures] {
      for (int i = 0; i < kEach; ++i) {
        if (!s->RecordLifecycleEvent(Event("acme", "t" + std::to_string(t), i)).ok()) {
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
  for (const Migration& m : SqliteMigrations()) {
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
  auto store = OpenSqliteStore(path);
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

}  // namespace
}  // namespace ekm
