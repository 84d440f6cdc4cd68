// The repack over a real SQLite store and real keys: two CMKs are two platform root keys
// under two provider names, so a test can switch the CMK and make the old one refuse.
#include "ekm/repack/repacker.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <utility>

#include "ekm/base/random.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/fake_key_provider.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/temp_dir.h"

#if defined(__SANITIZE_ADDRESS__)
#define EKM_REPACK_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EKM_REPACK_TEST_SANITIZED 1
#endif
#endif

namespace ekm {
namespace {

// Each CMK is a fake provider of its own name (testing/fake_key_provider.h).
using testing::FakeKeyProvider;

class RepackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"cmk-a", "cmk-b", "cmk-c"}) {
      std::string path = dir_.path() + "/" + name + ".key";
      auto cmk = FakeKeyProvider::Create(name, path);
      cmks_[name] = cmk.get();
      providers_.Register(std::move(cmk));
    }
    auto s = OpenSqliteStore(dir_.path() + "/ekm.db", testing::TestStoreBinding());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
    keys_ =
        std::make_unique<KeyHierarchy>(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
    auto ek = keys_->NewEnvironmentKey("acme", "prod", CmkRef{"cmk-a", "root"}, 1);
    ASSERT_TRUE(ek.ok());
    auto env = store_->CreateEnvironment("acme", "prod", *ek, 1);
    ASSERT_TRUE(env.ok());
    env_id_ = env->id;
    RepackOptions o;
    o.batch_size = 1000;
    repacker_ = std::make_unique<Repacker>(store_.get(), keys_.get(), &clock_, o);
  }

  EnvironmentRecord Env() {
    auto env = store_->GetEnvironment("acme", "prod");
    EXPECT_TRUE(env.ok());
    return *env;
  }

  // A new current EK under `cmk` (what "Update key" stores).
  void ChangeCmk(const std::string& cmk) {
    EnvironmentRecord env = Env();
    auto ek =
        keys_->NewEnvironmentKey("acme", "prod", CmkRef{cmk, "root"}, env.current_ek_version + 1);
    ASSERT_TRUE(ek.ok()) << ek.status().ToString();
    ek->environment_id = env.id;
    ASSERT_TRUE(store_->AddEnvironmentKey(*ek).ok());
    keys_->ForgetEnvironment("acme", "prod");
  }

  // `n` real DKs (scopes s<first>…) wrapped under the current EK, in one transaction; returns
  // their bytes by scope so the test can check they never change.
  std::map<std::string, Bytes> SeedDataKeys(int first, int n) {
    EnvironmentRecord env = Env();
    auto ek = keys_->EnvironmentKey(env, env.current_ek_version);
    EXPECT_TRUE(ek.ok()) << ek.status().ToString();
    std::vector<DataKeyRecord> recs;
    std::map<std::string, Bytes> bytes;
    for (int i = first; i < first + n; ++i) {
      auto dk = RandomSecret(32);
      EXPECT_TRUE(dk.ok());
      DataKeyRecord r;
      r.environment_id = env.id;
      r.scope = std::string("s").append(std::to_string(i));  // not "s" + …: GCC 12 -Wrestrict
      r.version = 1;
      r.ek_version = env.current_ek_version;
      auto w =
          WrapKey(**ek, *dk, DataKeyWrapAad("acme", "prod", r.scope, 1, env.current_ek_version));
      EXPECT_TRUE(w.ok());
      r.wrapped = *w;
      auto revealed = dk->RevealForCrypto();
      bytes[r.scope] = Bytes(revealed.begin(), revealed.end());
      recs.push_back(std::move(r));
    }
    EXPECT_TRUE(store_->InsertDataKeys(recs).ok());
    return bytes;
  }

  // Every DK unwraps (through a fresh key hierarchy) to the bytes it had.
  void ExpectAllReadable(const std::map<std::string, Bytes>& bytes) {
    KeyHierarchy fresh(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
    EnvironmentRecord env = Env();
    size_t checked = 0;
    for (const auto& [scope, want] : bytes) {
      auto dk = fresh.DataKeyVersion(env, scope, 1);
      ASSERT_TRUE(dk.ok()) << scope << ": " << dk.status().ToString();
      auto got = (*dk)->key->RevealForCrypto();
      ASSERT_EQ(Bytes(got.begin(), got.end()), want) << scope;
      ++checked;
    }
    EXPECT_EQ(checked, bytes.size());
  }

  std::map<uint32_t, Store::EkInventoryRow> Inventory() {
    auto inv = store_->EnvironmentKeyInventory(env_id_);
    EXPECT_TRUE(inv.ok());
    std::map<uint32_t, Store::EkInventoryRow> out;
    for (auto& r : *inv) out[r.version] = r;
    return out;
  }

  std::vector<std::string> EventTypes() {
    LifecycleEventFilter f;
    f.workspace = "acme";
    auto events = store_->ListLifecycleEvents(f);
    EXPECT_TRUE(events.ok());
    std::vector<std::string> out;
    for (const auto& e : *events) out.push_back(e.type);
    return out;
  }

  testing::TempDir dir_;
  FakeClock clock_;
  ProviderRegistry providers_;
  std::map<std::string, FakeKeyProvider*> cmks_;
  StorePtr store_;
  std::unique_ptr<KeyHierarchy> keys_;
  std::unique_ptr<Repacker> repacker_;
  int64_t env_id_ = 0;
};

TEST_F(RepackTest, RewrapsEveryDataKeyInBatchesAndDestroysTheOldEnvironmentKey) {
  auto bytes = SeedDataKeys(0, 2500);
  ChangeCmk("cmk-b");
  std::vector<uint64_t> progress;
  auto done = repacker_->Run("acme", "prod", nullptr, [&](const Store::RepackJobRecord& j) {
    progress.push_back(j.done);
    EXPECT_EQ(j.total, 2500u);
  });
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_TRUE(*done);
  // Three batches of at most 1000, then the finish.
  EXPECT_EQ(progress, (std::vector<uint64_t>{1000, 2000, 2500, 2500}));
  auto inv = Inventory();
  EXPECT_EQ(inv[1].data_keys, 0u);
  EXPECT_TRUE(inv[1].destroyed_at.has_value());
  EXPECT_EQ(inv[2].data_keys, 2500u);
  EXPECT_FALSE(inv[2].destroyed_at.has_value());
  auto ek1 = store_->GetEnvironmentKey(env_id_, 1);
  ASSERT_TRUE(ek1.ok());
  EXPECT_TRUE(ek1->wrapped.empty()) << "the old EK's wrapping is wiped";
  // The old CMK is no longer needed.
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  ExpectAllReadable(bytes);
  auto job = store_->GetLatestRepackJob(env_id_);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->state, "finished");
  EXPECT_EQ((*job)->done, 2500u);
  auto types = EventTypes();
  EXPECT_EQ(std::count(types.begin(), types.end(), std::string(event::kRepackStarted)), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), std::string(event::kRepackFinished)), 1);
  // 40 %, 80 %: progress events at most every 10 %, never per DK.
  EXPECT_LE(std::count(types.begin(), types.end(), std::string(event::kRepackProgress)), 3);
  // Nothing left to do: a second run changes nothing.
  auto again = repacker_->Run("acme", "prod", nullptr, nullptr);
  ASSERT_TRUE(again.ok());
  auto job2 = store_->GetLatestRepackJob(env_id_);
  EXPECT_EQ((*job2)->id, (*job)->id);
}

TEST_F(RepackTest, SeveralOldEnvironmentKeysAllMoveToTheCurrentOne) {
  auto bytes = SeedDataKeys(0, 1200);
  ChangeCmk("cmk-b");
  auto more = SeedDataKeys(5000, 700);
  bytes.insert(more.begin(), more.end());
  ChangeCmk("cmk-c");
  auto done = repacker_->Run("acme", "prod", nullptr, nullptr);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  auto inv = Inventory();
  EXPECT_TRUE(inv[1].destroyed_at.has_value());
  EXPECT_TRUE(inv[2].destroyed_at.has_value());
  EXPECT_EQ(inv[3].data_keys, 1900u);
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  cmks_["cmk-b"]->answer = FakeKeyProvider::Answer::kRefuse;
  ExpectAllReadable(bytes);
}

TEST_F(RepackTest, AnOldCmkThatRefusesMakesTheJobWaitWithTheReasonUntilItIsBack) {
  auto bytes = SeedDataKeys(0, 10);
  ChangeCmk("cmk-b");
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  clock_.Advance(std::chrono::seconds(301));  // past the key cache TTL of the unwrapped old EK
  auto done = repacker_->Run("acme", "prod", nullptr, nullptr, std::chrono::seconds(4));
  ASSERT_FALSE(done.ok());
  EXPECT_NE(done.status().message().find("previous customer main key must stay available until "
                                         "the repack completes"),
            std::string::npos)
      << done.status().ToString();
  auto job = store_->GetLatestRepackJob(env_id_);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->state, "waiting");
  EXPECT_NE((*job)->last_error.find("must stay available"), std::string::npos);
  ASSERT_TRUE((*job)->retry_at_ms.has_value());
  EXPECT_FALSE(Inventory()[1].destroyed_at.has_value()) << "nothing is destroyed while waiting";
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kOk;
  done = repacker_->Run("acme", "prod", nullptr, nullptr);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  job = store_->GetLatestRepackJob(env_id_);
  EXPECT_EQ((*job)->state, "finished");
  EXPECT_TRUE((*job)->last_error.empty());
  ExpectAllReadable(bytes);
}

TEST_F(RepackTest, StoppedBetweenBatchesItResumesWhereItWas) {
  auto bytes = SeedDataKeys(0, 4000);
  ChangeCmk("cmk-b");
  int batches = 0;
  // Asked to stop after two batches, it stops after three: the third was committing (on the
  // second thread) when the stop was asked, and a batch is one transaction either way.
  auto done = repacker_->Run(
      "acme", "prod", [&] { return batches == 2; },
      [&](const Store::RepackJobRecord&) { ++batches; });
  ASSERT_TRUE(done.ok());
  EXPECT_FALSE(*done);
  EXPECT_EQ(batches, 3);
  auto job = store_->GetLatestRepackJob(env_id_);
  EXPECT_EQ((*job)->state, "running");
  EXPECT_EQ((*job)->done, 3000u);
  EXPECT_EQ(Inventory()[1].data_keys, 1000u);
  ExpectAllReadable(bytes);  // readable halfway too
  // A new Repacker (a restarted process) resumes the same job.
  Repacker again(store_.get(), keys_.get(), &clock_, RepackOptions{});
  done = again.Run("acme", "prod", nullptr, nullptr);
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done);
  auto resumed = store_->GetLatestRepackJob(env_id_);
  EXPECT_EQ((*resumed)->id, (*job)->id);
  EXPECT_EQ((*resumed)->done, 4000u);
  EXPECT_EQ((*resumed)->total, 4000u);
  ExpectAllReadable(bytes);
}

TEST_F(RepackTest, AReplacementDuringTheRepackMovesItsTargetOn) {
  auto bytes = SeedDataKeys(0, 2500);
  ChangeCmk("cmk-b");
  bool replaced = false;
  auto done = repacker_->Run("acme", "prod", nullptr, [&](const Store::RepackJobRecord&) {
    if (!replaced) {
      replaced = true;
      ChangeCmk("cmk-c");
    }
  });
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  auto inv = Inventory();
  EXPECT_TRUE(inv[1].destroyed_at.has_value());
  EXPECT_TRUE(inv[2].destroyed_at.has_value());
  EXPECT_EQ(inv[3].data_keys, 2500u);
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  cmks_["cmk-b"]->answer = FakeKeyProvider::Answer::kRefuse;
  ExpectAllReadable(bytes);
}

TEST_F(RepackTest, TheBatchUpdateIsGuardedByTheEnvironmentKeyItWasReadUnder) {
  SeedDataKeys(0, 3);
  ChangeCmk("cmk-b");
  bool created = false;
  auto job = store_->BeginRepackJob(env_id_, 2, 1000, &created);
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(created);
  EXPECT_EQ(job->total, 3u);
  std::vector<DataKeyRecord> rows;
  ASSERT_TRUE(store_->ListDataKeysToRepack(env_id_, 2, "", 0, 10, &rows).ok());
  ASSERT_EQ(rows.size(), 3u);
  DataKeyRecord stale = rows[0];
  stale.ek_version = 7;  // as if another repacker had moved it already
  std::vector<Store::RepackedDataKey> batch = {{&stale, Bytes(61, 1)}, {&rows[1], rows[1].wrapped}};
  auto moved = store_->CommitRepackBatch(job->id, env_id_, 2, batch, 2000);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 1u);
  // A batch for an EK that is no longer current changes nothing.
  ChangeCmk("cmk-c");
  moved = store_->CommitRepackBatch(job->id, env_id_, 2, {{&rows[2], rows[2].wrapped}}, 3000);
  EXPECT_EQ(moved.status().code(), StatusCode::kFailedPrecondition);
  auto finished = store_->FinishRepackJob(job->id, env_id_, 3, 4000);
  EXPECT_EQ(finished.status().code(), StatusCode::kFailedPrecondition)
      << "DKs are still under older EKs";
}

TEST_F(RepackTest, ARequestHoldingADataKeyRowFromBeforeItsBatchStillGetsTheKey) {
  auto bytes = SeedDataKeys(0, 5);
  ChangeCmk("cmk-b");
  EnvironmentRecord env = Env();
  auto stale = store_->GetDataKey(env.id, "s3", 1);  // read just before the batch commits
  ASSERT_TRUE(stale.ok());
  ASSERT_TRUE(repacker_->Run("acme", "prod", nullptr, nullptr).ok());
  KeyHierarchy fresh(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  Status cause = KeyHierarchy::DestroyedEnvironmentKeyError(env, stale->ek_version);
  auto dk = fresh.UnwrapAfterRepack(env, *stale, cause);
  ASSERT_TRUE(dk.ok()) << dk.status().ToString();
  auto got = (*dk)->key->RevealForCrypto();
  EXPECT_EQ(Bytes(got.begin(), got.end()), bytes["s3"]);
  EXPECT_EQ((*dk)->ek_version, 2u);
}

TEST_F(RepackTest, TheRunnerFindsInterruptedAndNewRepacksAndStopsCleanly) {
  auto bytes = SeedDataKeys(0, 1500);
  ChangeCmk("cmk-b");
  // Interrupted after one batch, as by a crash.
  int batches = 0;
  ASSERT_TRUE(repacker_
                  ->Run(
                      "acme", "prod", [&] { return batches == 1; },
                      [&](const Store::RepackJobRecord&) { ++batches; })
                  .ok());
  RepackRunner::Options o;
  o.scan_interval = std::chrono::milliseconds(50);
  RepackRunner runner(repacker_.get(), store_.get(), o);
  runner.Start();
  auto finished = [&] {
    for (int i = 0; i < 1000; ++i) {  // a bound for a broken runner, not a timing assertion
      auto job = store_->GetLatestRepackJob(env_id_);
      if (job.ok() && job->has_value() && (*job)->state == "finished" &&
          (*job)->target_ek_version == Env().current_ek_version) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(finished()) << "the runner resumes the interrupted repack";
  ChangeCmk("cmk-c");
  runner.Nudge();
  ASSERT_TRUE(finished()) << "and picks up a new one";
  runner.Stop();
  runner.Stop();  // idempotent
  auto inv = Inventory();
  EXPECT_TRUE(inv[2].destroyed_at.has_value());
  EXPECT_EQ(inv[3].data_keys, 1500u);
  ExpectAllReadable(bytes);
}

TEST_F(RepackTest, OneHundredThousandDataKeysAreRepacked) {
#ifdef EKM_REPACK_TEST_SANITIZED
  const int n = 20000;  // sanitizers slow crypto and SQLite ~10x
#else
  const int n = 100000;
#endif
  auto bytes = SeedDataKeys(0, n);
  ChangeCmk("cmk-b");
  auto t0 = std::chrono::steady_clock::now();
  auto done = repacker_->Run("acme", "prod", nullptr, nullptr);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  std::printf("repacked %d data keys in %.2f s (%.0f DKs/s)\n", n, seconds, n / seconds);
  auto inv = Inventory();
  EXPECT_EQ(inv[2].data_keys, static_cast<uint64_t>(n));
  EXPECT_TRUE(inv[1].destroyed_at.has_value());
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  ExpectAllReadable(bytes);
}

// Defect 1: a DK cached before a repack keeps the EK version it was unwrapped under; past its
// TTL it must be unwrapped again under the EK that wraps it now, not under the destroyed one.
class RepackThenTtlTest : public RepackTest {
 protected:
  // Three scopes' DKs, used (so cached) before the CMK change and its repack; returns their
  // bytes.
  std::map<std::string, Bytes> UseThenRepack() {
    std::map<std::string, Bytes> bytes;
    EnvironmentRecord env = Env();
    for (const char* scope : {"orders", "invoices", "users"}) {
      auto dk = keys_->CurrentDataKey(env, scope);
      EXPECT_TRUE(dk.ok()) << dk.status().ToString();
      auto again = keys_->DataKeyVersion(env, scope, 1);  // the decrypt path's cache too
      EXPECT_TRUE(again.ok()) << again.status().ToString();
      auto k = (*dk)->key->RevealForCrypto();
      bytes[scope] = Bytes(k.begin(), k.end());
    }
    ChangeCmk("cmk-b");
    auto done = repacker_->Run("acme", "prod", nullptr, nullptr);
    EXPECT_TRUE(done.ok() && *done) << done.status().ToString();
    EXPECT_TRUE(Inventory()[1].destroyed_at.has_value());
    // Within the TTL the cached handles still serve, as before the repack.
    for (const auto& [scope, want] : bytes)
      EXPECT_TRUE(keys_->DataKeyVersion(Env(), scope, 1).ok());
    return bytes;
  }
};

TEST_F(RepackThenTtlTest, TheFirstDecryptPastTheTtlUsesTheNewEnvironmentKey) {
  auto bytes = UseThenRepack();
  cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;  // the old CMK is no longer needed
  clock_.Advance(std::chrono::seconds(301));
  for (const auto& [scope, want] : bytes) {
    auto dk = keys_->DataKeyVersion(Env(), scope, 1);  // the first attempt, not a retry
    ASSERT_TRUE(dk.ok()) << scope << ": " << dk.status().ToString();
    auto got = (*dk)->key->RevealForCrypto();
    EXPECT_EQ(Bytes(got.begin(), got.end()), want) << scope;
    EXPECT_EQ((*dk)->ek_version, 2u);
  }
  // The encrypt path: each scope's current DK, also on the first attempt.
  for (const auto& [scope, want] : bytes) {
    auto dk = keys_->CurrentDataKey(Env(), scope);
    ASSERT_TRUE(dk.ok()) << scope << ": " << dk.status().ToString();
    EXPECT_EQ((*dk)->ek_version, 2u);
  }
}

TEST_F(RepackThenTtlTest, WithTheNewCmkRevokedTheErrorIsTheCmksRefusal) {
  auto bytes = UseThenRepack();
  cmks_["cmk-b"]->answer =
      FakeKeyProvider::Answer::kRefuse;  // the customer revokes the key that wraps everything now
  clock_.Advance(std::chrono::seconds(301));
  for (const auto& [scope, want] : bytes) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto dk = keys_->DataKeyVersion(Env(), scope, 1);
      ASSERT_FALSE(dk.ok()) << scope;
      const std::string text = dk.status().ToString();
      EXPECT_EQ(dk.status().code(), StatusCode::kFailedPrecondition) << text;
      EXPECT_NE(text.find("the customer main key is unavailable"), std::string::npos) << text;
      EXPECT_NE(text.find("cmk-b"), std::string::npos) << text;
      EXPECT_EQ(text.find("destroyed"), std::string::npos) << text;
      EXPECT_EQ(text.find("repack"), std::string::npos) << text;
    }
    auto current = keys_->CurrentDataKey(Env(), scope);
    ASSERT_FALSE(current.ok());
    EXPECT_NE(current.status().message().find("the customer main key is unavailable"),
              std::string::npos)
        << current.status().ToString();
  }
  // Access restored: everything is back, nothing was lost.
  cmks_["cmk-b"]->answer = FakeKeyProvider::Answer::kOk;
  clock_.Advance(std::chrono::seconds(61));  // past the backoff of the refusal
  for (const auto& [scope, want] : bytes) {
    auto dk = keys_->DataKeyVersion(Env(), scope, 1);
    ASSERT_TRUE(dk.ok()) << scope << ": " << dk.status().ToString();
    auto got = (*dk)->key->RevealForCrypto();
    EXPECT_EQ(Bytes(got.begin(), got.end()), want) << scope;
  }
}

// Defect 3: a DK is never created under an EK that is not current (the store checks it in
// the insert's transaction), and a request whose environment record is older than a rotation
// and a finished repack still gets a DK, under the newest EK.
TEST_F(RepackTest, ARequestWithAStaleEnvironmentCreatesItsDataKeyUnderTheNewestKey) {
  SeedDataKeys(0, 3);
  EnvironmentRecord stale = Env();  // read before the change below, as a request in flight
  ASSERT_TRUE(keys_->EnvironmentKey(stale, 1).ok());  // EK v1 cached and valid
  ChangeCmk("cmk-b");
  ASSERT_TRUE(repacker_->Run("acme", "prod", nullptr, nullptr).ok());
  ASSERT_TRUE(Inventory()[1].destroyed_at.has_value());
  // Straight to the store: refused, nothing stored.
  DataKeyRecord under_old;
  under_old.environment_id = env_id_;
  under_old.scope = "late";
  under_old.version = 1;
  under_old.ek_version = 1;
  under_old.wrapped = Bytes(61, 1);
  auto refused = store_->InsertDataKey(under_old);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition)
      << refused.status().ToString();
  EXPECT_EQ(store_->GetDataKey(env_id_, "late", 1).status().code(), StatusCode::kNotFound);
  // Through the hierarchy with the stale record: the scope's DK lands under EK v2.
  for (const char* scope : {"new-scope", "s1"}) {
    auto dk = keys_->CurrentDataKey(stale, scope);
    ASSERT_TRUE(dk.ok()) << scope << ": " << dk.status().ToString();
    EXPECT_EQ((*dk)->ek_version, 2u) << scope;
  }
  auto rotated = keys_->RotateDataKey(stale, "s2", 1);
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ((*rotated)->ek_version, 2u);
  EXPECT_EQ(Inventory()[1].data_keys, 0u) << "nothing under the destroyed EK";
}

// A store written by an older ekm may hold a DK under a destroyed EK. The repack moves every
// other DK and finishes (never "waiting" on it, never blaming the CMK), and says what it is.
TEST_F(RepackTest, ADataKeyLeftUnderADestroyedKeyNeitherStallsTheRepackNorBlamesTheCmk) {
  auto bytes = SeedDataKeys(0, 5);
  ChangeCmk("cmk-b");
  ASSERT_TRUE(repacker_->Run("acme", "prod", nullptr, nullptr).ok());  // EK v1 destroyed
  {
    // The old defect, by hand: one DK row pointing at the destroyed EK v1.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() + "/ekm.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE data_keys SET ek_version = 1 WHERE scope = 's0'", nullptr,
                           nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto more = SeedDataKeys(100, 1200);
  ChangeCmk("cmk-c");
  auto done = repacker_->Run("acme", "prod", nullptr, nullptr, std::chrono::seconds(4));
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_TRUE(*done);
  auto job = store_->GetLatestRepackJob(env_id_);
  ASSERT_TRUE(job.ok() && job->has_value());
  EXPECT_EQ((*job)->state, "finished");
  auto inv = Inventory();
  EXPECT_TRUE(inv[2].destroyed_at.has_value());
  EXPECT_EQ(inv[3].data_keys, 1204u);
  EXPECT_EQ(inv[1].data_keys, 1u);
  LifecycleEventFilter f;
  f.workspace = "acme";
  f.type = std::string(event::kRepackFinished);
  auto events = store_->ListLifecycleEvents(f);
  ASSERT_TRUE(events.ok() && !events->empty());
  EXPECT_NE(events->back().detail.find("\"unrecoverable_data_keys\":1"), std::string::npos)
      << events->back().detail;
  // Its decrypt says what it is: not "retry", not the CMK.
  KeyHierarchy fresh(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  auto lost = fresh.DataKeyVersion(Env(), "s0", 1);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), StatusCode::kInternal) << lost.status().ToString();
  EXPECT_NE(lost.status().message().find("cannot be unwrapped"), std::string::npos);
  EXPECT_EQ(lost.status().ToString().find("retry"), std::string::npos);
  bytes.erase("s0");
  bytes.insert(more.begin(), more.end());
  ExpectAllReadable(bytes);
}

// Two repackers at once (ekmd's runner and `ekm repack run`): the other one finishes first and
// destroys the old EK, and the customer then revokes the old CMK (no longer needed). The one
// that lost the race starts over from the store and finishes, never waiting on the old CMK.
TEST_F(RepackTest, ARepackThatLostTheRaceToAnotherFinishesWithoutBlamingTheOldCmk) {
  auto bytes = SeedDataKeys(0, 2500);
  ChangeCmk("cmk-b");
  KeyHierarchy mine_keys(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  Repacker mine(store_.get(), &mine_keys, &clock_, RepackOptions{});
  KeyHierarchy other_keys(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  Repacker other(store_.get(), &other_keys, &clock_, RepackOptions{});
  bool ran_other = false;
  // Our repacker has listed its first batch and now asks the old CMK for EK v1.
  cmks_["cmk-a"]->before_unwrap = [&] {
    ran_other = true;
    auto finished = other.Run("acme", "prod", nullptr, nullptr);
    EXPECT_TRUE(finished.ok() && *finished) << finished.status().ToString();
    cmks_["cmk-a"]->answer = FakeKeyProvider::Answer::kRefuse;
  };
  auto done = mine.Run("acme", "prod", nullptr, nullptr, std::chrono::seconds(4));
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_TRUE(*done);
  EXPECT_TRUE(ran_other);
  auto job = store_->GetLatestRepackJob(env_id_);
  EXPECT_EQ((*job)->state, "finished");
  EXPECT_TRUE((*job)->last_error.empty()) << (*job)->last_error;
  ExpectAllReadable(bytes);
}

}  // namespace
}  // namespace ekm
