#include "ekm/keys/key_hierarchy.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "ekm/base/endian.h"
#include "ekm/crypto/aes_gcm.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/fake_key_provider.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

using testing::FakeKeyProvider;

class KeyHierarchyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto counting = FakeKeyProvider::Create("platform", dir_.path() + "/root.key");
    provider_ = counting.get();
    providers_.Register(std::move(counting));
    auto s = OpenSqliteStore(dir_.path() + "/ekm.db", testing::TestStoreBinding());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
    Reset(KeyHierarchyOptions{});
    auto ek = keys_->NewEnvironmentKey("acme", "prod", CmkRef{"platform", "root"}, 1);
    ASSERT_TRUE(ek.ok());
    ASSERT_TRUE(store_->CreateEnvironment("acme", "prod", *ek, 1).ok());
  }

  void Reset(KeyHierarchyOptions options) {
    keys_ = std::make_unique<KeyHierarchy>(store_.get(), &providers_, &clock_, options);
  }

  EnvironmentRecord Env() {
    auto env = keys_->GetEnvironment("acme", "prod");
    EXPECT_TRUE(env.ok());
    return *env;
  }

  testing::TempDir dir_;
  FakeClock clock_;
  ProviderRegistry providers_;
  FakeKeyProvider* provider_ = nullptr;
  StorePtr store_;
  std::unique_ptr<KeyHierarchy> keys_;
};

TEST_F(KeyHierarchyTest, FirstUseCreatesDkThenServesFromCache) {
  EnvironmentRecord env = Env();
  auto a = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ((*a)->version, 1u);
  int unwraps = provider_->unwraps;
  auto b = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(*(*a)->key == *(*b)->key);
  EXPECT_EQ(provider_->unwraps, unwraps);  // no provider call on a hit
  auto other = keys_->CurrentDataKey(env, "payments");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*(*a)->key == *(*other)->key);
  EXPECT_EQ(provider_->unwraps, unwraps);  // same EK, still cached
}

TEST_F(KeyHierarchyTest, EverythingBelowTheCmkExpiresWithinOneTtl) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = FakeKeyProvider::Answer::kRefuse;  // the customer revokes access
  clock_.Advance(std::chrono::seconds(299));
  EXPECT_TRUE(keys_->CurrentDataKey(env, "orders").ok());  // still cached
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());
  clock_.Advance(std::chrono::seconds(1));
  auto s = keys_->CurrentDataKey(env, "orders").status();
  // The customer's refusal, not the API caller's: never a 401/403.
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("customer main key"), std::string::npos);
  EXPECT_FALSE(keys_->DataKeyVersion(env, "orders", 1).ok());
  provider_->answer = FakeKeyProvider::Answer::kOk;  // access restored: nothing was lost
  clock_.Advance(std::chrono::seconds(61));          // the next attempt waits for the backoff
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());
}

TEST_F(KeyHierarchyTest, ANewEnvironmentKeyMovesEveryScopeOnToIt) {
  EnvironmentRecord env = Env();
  auto before = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ((*before)->ek_version, 1u);
  // "Update key": EK v2 under (here) the same provider becomes current.
  std::string step;
  auto ek2 = keys_->NewVerifiedEnvironmentKey("acme", "prod", CmkRef{"platform", "root"}, 2, &step);
  ASSERT_TRUE(ek2.ok()) << ek2.status().ToString();
  ek2->environment_id = env.id;
  ASSERT_TRUE(store_->AddEnvironmentKey(*ek2).ok());
  keys_->ForgetEnvironment("acme", "prod");
  EnvironmentRecord env2 = Env();
  ASSERT_EQ(env2.current_ek_version, 2u);
  // The cached current DK is under EK v1: the scope gets DK v2 under EK v2.
  auto after = keys_->CurrentDataKey(env2, "orders");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)->version, 2u);
  EXPECT_EQ((*after)->ek_version, 2u);
  EXPECT_EQ(store_->GetDataKey(env.id, "orders", 2)->ek_version, 2u);
  // A new process (no cache) agrees, and the old version still decrypts.
  Reset(KeyHierarchyOptions{});
  auto fresh = keys_->CurrentDataKey(Env(), "orders");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ((*fresh)->version, 2u);
  EXPECT_TRUE(keys_->DataKeyVersion(Env(), "orders", 1).ok());
}

TEST_F(KeyHierarchyTest, NoncesAreUniqueAcrossLeasesAndThreads) {
  Reset(KeyHierarchyOptions{std::chrono::seconds(300), 1u << 20, 64});
  EnvironmentRecord env = Env();
  auto dk = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(dk.ok());
  std::mutex mu;
  std::set<std::array<uint8_t, 12>> seen;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        std::array<uint8_t, 12> n;
        if (!keys_->NextNonce(**dk, n).ok()) ++failures;
        std::lock_guard<std::mutex> lock(mu);
        seen.insert(n);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(seen.size(), 2000u);
  auto rec = store_->GetDataKey(env.id, "orders", 1);
  ASSERT_TRUE(rec.ok());
  EXPECT_GE(rec->messages_reserved, 2000u);
}

TEST_F(KeyHierarchyTest, MessageBoundRotatesTheDataKey) {
  Reset(KeyHierarchyOptions{std::chrono::seconds(300), 8, 4});
  EnvironmentRecord env = Env();
  auto dk = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(dk.ok());
  std::array<uint8_t, 12> n;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(keys_->NextNonce(**dk, n).ok());
  EXPECT_EQ(keys_->NextNonce(**dk, n).code(), StatusCode::kResourceExhausted);
  auto v2 = keys_->RotateDataKey(env, "orders", 1);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ((*v2)->version, 2u);
  EXPECT_TRUE(keys_->NextNonce(**v2, n).ok());
  auto cur = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(cur.ok());
  EXPECT_EQ((*cur)->version, 2u);
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());  // old version still decrypts
}

TEST_F(KeyHierarchyTest, ConcurrentFirstUseAgreesOnOneKey) {
  EnvironmentRecord env = Env();
  std::vector<std::shared_ptr<DataKeyHandle>> got(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      // Separate hierarchies act like separate processes sharing the store.
      KeyHierarchy k(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
      auto e = k.GetEnvironment("acme", "prod");
      ASSERT_TRUE(e.ok());
      auto dk = k.CurrentDataKey(*e, "shared");
      ASSERT_TRUE(dk.ok()) << dk.status().ToString();
      got[t] = *dk;
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 1; t < 8; ++t) EXPECT_TRUE(*got[0]->key == *got[t]->key);
}

TEST_F(KeyHierarchyTest, UnknownVersionIsNamed) {
  EnvironmentRecord env = Env();
  auto s = keys_->DataKeyVersion(env, "orders", 9).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find("v9"), std::string::npos);
}

// Nonces are unique by construction, not by chance: the last four bytes are the message's
// index in its DK version, reserved atomically in the store, so no two leases, threads or
// processes ever share them (the CLI leases 16 messages at a time: up to 2^28 leases per DK,
// too many for random prefixes alone). The random prefix still separates the indexes a store
// restored from a backup hands out again.
TEST_F(KeyHierarchyTest, NoncesCarryTheReservedMessageIndexAcrossProcessesAndLeases) {
  KeyHierarchyOptions cli;
  cli.nonce_lease_size = 16;
  KeyHierarchy p1(store_.get(), &providers_, &clock_, cli);  // two processes on one store
  KeyHierarchy p2(store_.get(), &providers_, &clock_, cli);
  auto e1 = p1.GetEnvironment("acme", "prod");
  auto e2 = p2.GetEnvironment("acme", "prod");
  ASSERT_TRUE(e1.ok() && e2.ok());
  auto dk1 = p1.CurrentDataKey(*e1, "orders");
  auto dk2 = p2.CurrentDataKey(*e2, "orders");
  ASSERT_TRUE(dk1.ok() && dk2.ok());
  ASSERT_EQ((*dk1)->version, (*dk2)->version);
  std::set<uint32_t> indexes;
  std::set<std::array<uint8_t, 12>> nonces;
  constexpr int kEach = 40 * 16 + 5;  // 41 leases each, interleaved
  for (int i = 0; i < kEach; ++i) {
    for (auto* dk : {&*dk1, &*dk2}) {
      auto& p = dk == &*dk1 ? p1 : p2;
      std::array<uint8_t, 12> n;
      ASSERT_TRUE(p.NextNonce(**dk, n).ok());
      nonces.insert(n);
      indexes.insert(LoadBigEndian32(n.data() + 8));
    }
  }
  // Every message index once, from 0 up, whatever the prefixes are.
  ASSERT_EQ(indexes.size(), 2u * kEach);
  EXPECT_EQ(*indexes.begin(), 0u);
  auto rec = store_->GetDataKey(e1->id, "orders", (*dk1)->version);
  ASSERT_TRUE(rec.ok());
  for (uint32_t i : indexes) EXPECT_LT(i, rec->messages_reserved);
  EXPECT_EQ(nonces.size(), 2u * kEach);

  // A store restored from a backup hands the same indexes out again: the prefix differs.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() + "/ekm.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "UPDATE data_keys SET messages_reserved = 0", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  KeyHierarchy restored(store_.get(), &providers_, &clock_, cli);
  auto dk3 = restored.CurrentDataKey(*restored.GetEnvironment("acme", "prod"), "orders");
  ASSERT_TRUE(dk3.ok());
  for (int i = 0; i < 64; ++i) {
    std::array<uint8_t, 12> n;
    ASSERT_TRUE(restored.NextNonce(**dk3, n).ok());
    EXPECT_EQ(LoadBigEndian32(n.data() + 8), static_cast<uint32_t>(i)) << "re-issued index";
    EXPECT_TRUE(nonces.insert(n).second) << "a nonce repeated after the restore";
  }
}

TEST_F(KeyHierarchyTest, TheMessageBoundNeverExceedsTheNonceCounter) {
  KeyHierarchyOptions o;
  o.max_messages_per_dk = uint64_t{1} << 40;  // asked for more than four bytes can count
  o.nonce_lease_size = 1u << 20;
  Reset(o);
  EnvironmentRecord env = Env();
  auto dk = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(dk.ok());
  // The store's counter stands just below 2^32 (as after four billion messages).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() + "/ekm.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE data_keys SET messages_reserved = 4294967296 - 1048575",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  std::array<uint8_t, 12> n;
  EXPECT_EQ(keys_->NextNonce(**dk, n).code(), StatusCode::kResourceExhausted)
      << "a lease past index 2^32 - 1 would wrap the counter";
}

// A thread that seals one message with `key`, then stays idle until destroyed (as a server's
// I/O threads do).
class IdleThread {
 public:
  explicit IdleThread(const SecretBytes& key)
      : thread_([this, &key] {
          Bytes iv(12), pt(64), ct(80);
          ok_ = AesGcmSeal(key, iv, {}, pt, ct.data()).ok();
          std::unique_lock<std::mutex> lock(mu_);
          sealed_ = true;
          cv_.notify_all();
          cv_.wait(lock, [&] { return release_; });
        }) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return sealed_; });
  }
  ~IdleThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      release_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool ok() const { return ok_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool sealed_ = false, release_ = false;
  std::atomic<bool> ok_{false};
  std::thread thread_;
};

// When the hierarchy drops keys (a revocation, a shred, the purge of expired keys), no thread's
// reused cipher context keeps their AES key schedule, including threads that sit idle.
TEST_F(KeyHierarchyTest, DroppedKeysLeaveNoThreadsCipherContext) {
  auto used_by_an_idle_thread = [&](const SecretBytes& key) {
    auto t = std::make_unique<IdleThread>(key);
    EXPECT_TRUE(t->ok());
    EXPECT_EQ(AesGcmContextsHolding(key), 1u);
    return t;
  };
  EnvironmentRecord env = Env();
  // A revocation.
  {
    auto dk = keys_->CurrentDataKey(env, "orders");
    ASSERT_TRUE(dk.ok());
    auto thread = used_by_an_idle_thread(*(*dk)->key);
    provider_->answer = FakeKeyProvider::Answer::kRefuse;
    clock_.Advance(std::chrono::seconds(300));
    ASSERT_FALSE(keys_->CurrentDataKey(env, "orders").ok());  // refused: keys dropped
    EXPECT_EQ(AesGcmContextsHolding(*(*dk)->key), 0u);
    provider_->answer = FakeKeyProvider::Answer::kOk;
    clock_.Advance(std::chrono::seconds(61));
  }
  // A shred.
  {
    auto dk = keys_->CurrentDataKey(env, "orders");
    ASSERT_TRUE(dk.ok()) << dk.status().ToString();
    auto thread = used_by_an_idle_thread(*(*dk)->key);
    keys_->PurgeEnvironment(env);
    EXPECT_EQ(AesGcmContextsHolding(*(*dk)->key), 0u);
  }
  // The periodic purge.
  {
    auto dk = keys_->CurrentDataKey(env, "orders");
    ASSERT_TRUE(dk.ok());
    auto thread = used_by_an_idle_thread(*(*dk)->key);
    clock_.Advance(std::chrono::seconds(301));
    keys_->PurgeExpired();
    EXPECT_EQ(AesGcmContextsHolding(*(*dk)->key), 0u);
  }
}

// A slow KMS holds at most max_calls_per_provider threads: past them a call fails at once with
// 503 + Retry-After, and that refusal is not the CMK's failure (its health stays healthy).
TEST_F(KeyHierarchyTest, CallsInFlightToOneProviderAreBounded) {
  KeyHierarchyOptions options;
  options.max_calls_per_provider = 1;
  Reset(options);
  auto ek = keys_->NewEnvironmentKey("acme", "dev", CmkRef{"platform", "root"}, 1);
  ASSERT_TRUE(ek.ok());
  ASSERT_TRUE(store_->CreateEnvironment("acme", "dev", *ek, 1).ok());
  auto dev = keys_->GetEnvironment("acme", "dev");
  ASSERT_TRUE(dev.ok());
  EnvironmentRecord prod = Env();
  provider_->CloseGate();
  std::thread slow([&] { EXPECT_TRUE(keys_->CurrentDataKey(prod, "a").ok()); });
  provider_->WaitUntilHeld(1);
  auto refused = keys_->CurrentDataKey(*dev, "a");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(refused.status().retry_after_seconds(), 1);
  EXPECT_NE(refused.status().message().find("calls to key provider platform are in flight"),
            std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(keys_->health().Get(dev->id).state, CmkState::kHealthy);
  provider_->OpenGate();
  slow.join();
  EXPECT_TRUE(keys_->CurrentDataKey(*dev, "a").ok());  // the place was given back
}

}  // namespace
}  // namespace ekm
