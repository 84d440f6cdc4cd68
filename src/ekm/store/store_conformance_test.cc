// The Store contract (store/store.h), one suite run on each implementation: SQLite and
// PostgreSQL (a throwaway cluster, tests/peers/with_postgres.sh). What only one database has
// (SQLite's files, WAL and busy lock; its migrations from old schemas) is tested beside it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include "ekm/audit/audit_log.h"
#include "ekm/store/postgres/postgres_store.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/store/store.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/store_records.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_postgres.h"

namespace ekm {
namespace {

using testing::Dk;
using testing::Ek;
using testing::Event;
using testing::WholeChain;

enum class Backend { kSqlite, kPostgres };

class StoreConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      auto db = testing::TestPostgresDatabase::Create();
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      postgres_.emplace(std::move(*db));
    }
    auto s = Reopen(testing::TestStoreBinding());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override { store_.reset(); }

  // Another Store on the same database, as another process (or ekmd replica) opens it.
  StatusOr<StorePtr> Reopen(StoreBinding binding) {
    if (GetParam() == Backend::kSqlite)
      return OpenSqliteStore(dir_.path() + "/ekm.db", std::move(binding));
    PostgresStoreOptions options;
    options.url = postgres_->url();
    options.create_if_empty = true;
    return OpenPostgresStore(options, std::move(binding));
  }

  testing::TempDir dir_;
  std::optional<testing::TestPostgresDatabase> postgres_;
  StorePtr store_;
};

TEST_P(StoreConformanceTest, WorkspacesAndEnvironments) {
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
TEST_P(StoreConformanceTest, ShredConfirmationsAreSingleUseAndPerEnvironment) {
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

TEST_P(StoreConformanceTest, NewEnvironmentKeyVersionsAndKeyValidations) {
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

TEST_P(StoreConformanceTest, DataKeysAndReservations) {
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

// A repack batch moves DKs only to the environment's current EK (the check that stands for a
// foreign key on PostgreSQL), and only DKs still under the EK they were listed under.
TEST_P(StoreConformanceTest, RepackBatchesMoveOnlyToTheCurrentEnvironmentKey) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "a", 1, 1)).ok());
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "b", 1, 1)).ok());
  EnvironmentKeyRecord v2 = Ek(2);
  v2.environment_id = env->id;
  ASSERT_TRUE(store_->AddEnvironmentKey(v2).ok());
  bool created = false;
  auto job = store_->BeginRepackJob(env->id, 2, 10, &created);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  std::vector<DataKeyRecord> rows;
  ASSERT_TRUE(store_->ListDataKeysToRepack(env->id, 2, "", 0, 10, &rows).ok());
  ASSERT_EQ(rows.size(), 2u);
  for (uint32_t wrong : {1u, 3u}) {  // an older EK, an EK that does not exist
    auto moved = store_->CommitRepackBatch(job->id, env->id, wrong, {{&rows[0], Bytes(61, 5)}}, 20);
    EXPECT_EQ(moved.status().code(), StatusCode::kFailedPrecondition) << wrong;
  }
  auto a = store_->GetDataKey(env->id, "a", 1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ek_version, 1u);
  auto moved = store_->CommitRepackBatch(job->id, env->id, 2,
                                         {{&rows[0], Bytes(61, 5)}, {&rows[1], Bytes(61, 6)}}, 30);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, 2u);
  // Listed under v1 and committed again: already under v2, so not moved twice.
  moved = store_->CommitRepackBatch(job->id, env->id, 2, {{&rows[0], Bytes(61, 7)}}, 40);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 0u);
  a = store_->GetDataKey(env->id, "a", 1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ek_version, 2u);
  EXPECT_EQ(a->wrapped, Bytes(61, 5));
}

// The repack lists DKs in (scope, version) order from a position, so each batch starts where
// the last ended; a DK created under the new EK meanwhile is not listed.
TEST_P(StoreConformanceTest, DataKeysToRepackAreListedInKeyOrderFromAPosition) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  for (const char* scope : {"b", "a", "c"}) {
    for (uint32_t v = 1; v <= 2; ++v)
      ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, scope, v, 1)).ok());
  }
  EnvironmentKeyRecord v2 = Ek(2);
  v2.environment_id = env->id;
  ASSERT_TRUE(store_->AddEnvironmentKey(v2).ok());
  DataKeyRecord fresh = Dk(env->id, "a", 3, 2);
  fresh.ek_version = 2;
  ASSERT_TRUE(store_->InsertDataKey(fresh).ok());
  std::vector<std::string> seen;
  std::string after_scope;
  uint32_t after_version = 0;
  for (;;) {
    std::vector<DataKeyRecord> rows;
    ASSERT_TRUE(
        store_->ListDataKeysToRepack(env->id, 2, after_scope, after_version, 4, &rows).ok());
    if (rows.empty()) break;
    EXPECT_LE(rows.size(), 4u);
    for (const auto& r : rows) seen.push_back(r.scope + std::to_string(r.version));
    after_scope = rows.back().scope;
    after_version = rows.back().version;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a1", "a2", "b1", "b2", "c1", "c2"}));
}

TEST_P(StoreConformanceTest, ConcurrentWritersAgree) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  // Threads on one Store, and a second Store on the same file (as another process would be).
  auto other = Reopen(testing::TestStoreBinding());
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
        if (!before.ok()) {
          ADD_FAILURE() << before.status().ToString();
          ++errors;
        } else {
          reserved_sum += 3;
        }
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

TEST_P(StoreConformanceTest, LifecycleEventsAreListedOldestFirstByFilter) {
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

TEST_P(StoreConformanceTest, EnvironmentSettingsSetAndReset) {
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

TEST_P(StoreConformanceTest, ApiTokensRoundTripListByWorkspaceAndRevokeOnce) {
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
TEST_P(StoreConformanceTest, AnOwnerTokenIsCreatedOnlyWhileNoOwnerTokenIsValid) {
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

TEST_P(StoreConformanceTest, EventsAreChainedPerWorkspace) {
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
TEST_P(StoreConformanceTest, ConcurrentAppendsNeverForkAChain) {
  auto second = Reopen(testing::TestStoreBinding());
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

// An export pages through a chain by id (`after`) while two stores (two replicas) append to it:
// no page may skip a record, so the pages read back to back are the chain 1..N without a gap.
// (A chain's appends serialize, and each reads the head the one before committed, so a record
// is never visible before every smaller id of its chain.)
TEST_P(StoreConformanceTest, PagingByIdNeverSkipsARecordAppendedConcurrently) {
  auto second = Reopen(testing::TestStoreBinding());
  ASSERT_TRUE(second.ok());
  constexpr int kEach = 60;
  std::atomic<int> writers_left{2};
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (Store* s : {store_.get(), second->get()}) {
    writers.emplace_back([s, &writers_left, &failures] {
      for (int i = 0; i < kEach; ++i) {
        if (!s->RecordLifecycleEvent(Event("acme", "append", i)).ok()) ++failures;
      }
      --writers_left;
    });
  }
  std::vector<LifecycleEventRecord> paged;
  LifecycleEventFilter f;
  f.workspace = "acme";
  f.limit = 7;
  for (bool last_pass = false;;) {
    bool done = writers_left.load() == 0;  // read before the page: one more pass sees the rest
    auto page = store_->ListLifecycleEvents(f);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    for (auto& r : *page) paged.push_back(r);
    if (!page->empty()) f.after_id = page->back().id;
    if (page->empty() && (last_pass || done)) {
      if (last_pass) break;
      last_pass = true;
    }
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(paged.size(), static_cast<size_t>(2 * kEach));
  for (size_t i = 0; i < paged.size(); ++i) {
    EXPECT_EQ(paged[i].seq, static_cast<int64_t>(i + 1)) << "a page skipped or repeated a record";
  }
  EXPECT_TRUE(VerifyAuditLog(paged, {}, nullptr).ok());
}

// A store records its root key's fingerprint when it is created and never opens with another
// root key (before anything is written).
TEST_P(StoreConformanceTest, AnotherRootKeyIsRefused) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  ASSERT_TRUE(store_->CreateEnvironment("acme", "prod", Ek(), 1).ok());
  store_.reset();
  StoreBinding other = testing::TestStoreBinding();
  other.root_key_fingerprint = Bytes(16, 0x77);
  other.root_key_source = "the root key in /elsewhere/root.key";
  auto refused = Reopen(std::move(other));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find(
                "the root key in /elsewhere/root.key (store fingerprint 7777"),
            std::string::npos)
      << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("is not the root key of this store"),
            std::string::npos);
  EXPECT_NE(refused.status().hint().find("--root-key-file"), std::string::npos);
  auto again = Reopen(testing::TestStoreBinding());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->GetEnvironment("acme", "prod").ok());
}

// Destroying EKs (the end of a repack, a shred) keeps every row valid.
TEST_P(StoreConformanceTest, DestroyedEnvironmentKeysStayValidRows) {
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
// A body's store calls commit together, or none of them (a nested method's own transaction is
// a savepoint of it); a failure of the body rolls back what it did.
TEST_P(StoreConformanceTest, InTransactionIsAllOrNothing) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  Status failed = store_->InTransaction([&]() -> Status {
    EKM_RETURN_IF_ERROR(store_->CreateEnvironment("acme", "prod", Ek(), 1).status());
    EKM_RETURN_IF_ERROR(store_->RecordLifecycleEvent(Event("acme", "x", 1)));
    return FailedPreconditionError("refused after two writes");
  });
  EXPECT_EQ(failed.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetEnvironment("acme", "prod").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(WholeChain(*store_, "acme").empty());

  Status ok = store_->InTransaction([&]() -> Status {
    EKM_RETURN_IF_ERROR(store_->CreateEnvironment("acme", "prod", Ek(), 1).status());
    // A failing inner call whose error the body handles: only that call is undone.
    EXPECT_EQ(store_->CreateEnvironment("acme", "prod", Ek(), 1).status().code(),
              StatusCode::kAlreadyExists);
    return store_->RecordLifecycleEvent(Event("acme", "x", 1));
  });
  ASSERT_TRUE(ok.ok()) << ok.ToString();
  EXPECT_TRUE(store_->GetEnvironment("acme", "prod").ok());
  EXPECT_EQ(WholeChain(*store_, "acme").size(), 1u);
}

// Transactions of two processes on one store, each reading then writing what the other reads:
// both commit, one after the other, and neither loses the other's write (PostgreSQL retries a
// serialization failure from the body's start).
TEST_P(StoreConformanceTest, ConcurrentTransactionsSerialize) {
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 1);
  ASSERT_TRUE(env.ok());
  auto other = Reopen(testing::TestStoreBinding());
  ASSERT_TRUE(other.ok());
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    Store* s = t % 2 == 0 ? store_.get() : other->get();
    threads.emplace_back([s, &env, &errors] {
      for (int i = 0; i < 10; ++i) {
        Status st = s->InTransaction([&]() -> Status {
          EKM_ASSIGN_OR_RETURN(auto settings, s->GetEnvironmentSettings(env->id));
          int64_t n = settings.count("counter") ? settings.at("counter") : 0;
          return s->SetEnvironmentSetting(env->id, "counter", n + 1);
        });
        if (!st.ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(store_->GetEnvironmentSettings(env->id)->at("counter"), 40);
}

TEST_P(StoreConformanceTest, ClusterNoticesAreReadInOrderByEveryProcess) {
  auto other = Reopen(testing::TestStoreBinding());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*store_->LatestClusterNoticeSeq(), 0);
  Store::ClusterNotice n;
  n.at = 1000;
  n.kind = "environment_shredded";
  n.workspace = "acme";
  n.environment = "prod";
  ASSERT_TRUE(store_->PostClusterNotice(n).ok());
  n.kind = "token_revoked";
  n.workspace = n.environment = "";
  n.token_id = "0123456789abcdef";
  ASSERT_TRUE((*other)->PostClusterNotice(n).ok());
  auto all = (*other)->ListClusterNotices(0, 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].kind, "environment_shredded");
  EXPECT_EQ((*all)[0].environment, "prod");
  EXPECT_EQ((*all)[1].token_id, "0123456789abcdef");
  EXPECT_LT((*all)[0].seq, (*all)[1].seq);
  EXPECT_EQ(*store_->LatestClusterNoticeSeq(), (*all)[1].seq);
  EXPECT_EQ(store_->ListClusterNotices((*all)[0].seq, 10)->size(), 1u);
  // A day later the old ones go.
  n.at = 1000 + 86400 + 1;
  ASSERT_TRUE(store_->PostClusterNotice(n).ok());
  EXPECT_EQ(store_->ListClusterNotices(0, 10)->size(), 1u);
}

TEST_P(StoreConformanceTest, ALeaseHasOneHolderUntilItExpiresOrIsReleased) {
  auto other = Reopen(testing::TestStoreBinding());
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(*store_->TakeLease("repack/1", "a", 1000, 2000));
  EXPECT_FALSE(*(*other)->TakeLease("repack/1", "b", 1500, 2500)) << "held by a until 2000";
  EXPECT_TRUE(*(*other)->TakeLease("repack/2", "b", 1500, 2500)) << "another job";
  EXPECT_TRUE(*store_->TakeLease("repack/1", "a", 1900, 3000)) << "renewed by its holder";
  EXPECT_FALSE(*(*other)->TakeLease("repack/1", "b", 2500, 3500)) << "renewed until 3000";
  EXPECT_TRUE(*(*other)->TakeLease("repack/1", "b", 3000, 4000)) << "expired: taken over";
  EXPECT_FALSE(*store_->TakeLease("repack/1", "a", 3100, 4100)) << "a lost it";
  ASSERT_TRUE(store_->ReleaseLease("repack/1", "a").ok());  // not a's: nothing happens
  EXPECT_FALSE(*store_->TakeLease("repack/1", "a", 3200, 4200));
  ASSERT_TRUE((*other)->ReleaseLease("repack/1", "b").ok());
  EXPECT_TRUE(*store_->TakeLease("repack/1", "a", 3300, 4300)) << "released: free at once";
}

// On PostgreSQL a DK's reference to its EK is checked per statement by triggers (migration 15)
// instead of a foreign key, for one row or many; the repack's update checks its target EK
// itself (RepackBatchesMoveOnlyToTheCurrentEnvironmentKey and the repacker's tests).
TEST_P(StoreConformanceTest, ADataKeyNeverNamesAMissingEnvironmentKey) {
  if (GetParam() != Backend::kPostgres) GTEST_SKIP() << "SQLite keeps the foreign key";
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  auto env = store_->CreateEnvironment("acme", "prod", Ek(), 2);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  ASSERT_TRUE(store_->InsertDataKey(Dk(env->id, "orders", 1, 7)).ok());
  ASSERT_TRUE(store_->InsertDataKeys({Dk(env->id, "a", 1, 8), Dk(env->id, "b", 1, 9)}).ok());
  const std::string id = std::to_string(env->id);
  EXPECT_FALSE(postgres_
                   ->Exec("INSERT INTO data_keys (environment_id, scope, version, ek_version, "
                          "wrapped, created_at) VALUES (" +
                          id + ", 'x', 1, 1, '\\x00', 0), (" + id + ", 'y', 1, 9, '\\x00', 0)")
                   .ok());
  EXPECT_FALSE(postgres_->Exec("DELETE FROM environment_keys").ok());
  EXPECT_FALSE(postgres_->Exec("UPDATE environment_keys SET version = 5").ok());
  // What names an existing EK passes, as before.
  EXPECT_TRUE(postgres_
                  ->Exec("INSERT INTO data_keys (environment_id, scope, version, ek_version, "
                         "wrapped, created_at) VALUES (" +
                         id + ", 'x', 1, 1, '\\x00', 0)")
                  .ok());
  EXPECT_TRUE(postgres_
                  ->Exec("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = "
                         "'data_keys'::regclass AND contype = 'f') THEN RAISE EXCEPTION 'the "
                         "row-by-row foreign key is still there'; END IF; END $$")
                  .ok());
  auto dks = store_->ListLatestDataKeys(env->id);
  ASSERT_TRUE(dks.ok()) << dks.status().ToString();
  EXPECT_EQ(dks->size(), 4u);
}

// A replica or `ekm` pointed at a database that is not ekm's (a wrong URL) must refuse it and
// leave it as it was: no table created.
TEST_P(StoreConformanceTest, AStoreThatMayNotCreateLeavesAForeignDatabaseUntouched) {
  if (GetParam() != Backend::kPostgres) GTEST_SKIP() << "SQLite creates its file by design";
  auto foreign = testing::TestPostgresDatabase::Create();
  ASSERT_TRUE(foreign.ok()) << foreign.status().ToString();
  PostgresStoreOptions options;
  options.url = foreign->url();
  options.create_if_empty = false;
  auto opened = OpenPostgresStore(options, testing::TestStoreBinding());
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("is not initialized"), std::string::npos)
      << opened.status().ToString();
  EXPECT_TRUE(foreign
                  ->Exec("DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.tables WHERE "
                         "table_schema = current_schema()) THEN RAISE EXCEPTION 'a table was "
                         "created'; END IF; END $$")
                  .ok());
}

// The database restarts (an upgrade, a failover) while the store's connections sit idle in its
// pool: the first call afterwards notices the closed connections and opens new ones, instead of
// failing once on each stale connection.
TEST_P(StoreConformanceTest, TheFirstCallAfterTheDatabaseRestartsSucceeds) {
  if (GetParam() != Backend::kPostgres) GTEST_SKIP() << "a PostgreSQL server restart";
  const char* ctl = std::getenv("EKM_TEST_POSTGRES_CTL");
  ASSERT_NE(ctl, nullptr) << "run through tests/peers/with_postgres.sh";
  ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
  // Several connections in the pool, all idle.
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([this] {
      for (int j = 0; j < 20; ++j) ASSERT_TRUE(store_->ListWorkspaces().ok());
    });
  }
  for (auto& t : readers) t.join();
  ASSERT_EQ(std::system((std::string(ctl) + " stop >/dev/null").c_str()), 0);
  ASSERT_EQ(std::system((std::string(ctl) + " start >/dev/null").c_str()), 0);
  for (int i = 0; i < 8; ++i) {
    auto ws = store_->GetWorkspace("acme");
    ASSERT_TRUE(ws.ok()) << "call " << i << " after the restart: " << ws.status().ToString();
  }
  ASSERT_TRUE(store_->RecordLifecycleEvent(Event("acme", "after.restart", 2)).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformanceTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
                         });

}  // namespace
}  // namespace ekm
