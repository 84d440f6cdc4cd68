// The key cache's lifecycle rules: single flight, LRU bound, wipe on evict,
// refusals never cached, a DK lives and dies with its EK entry, a re-unwrap refreshes DKs,
// CMK health (healthy / degraded / unavailable) with backoff and the grace period.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "ekm/events/lifecycle_event.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/fake_key_provider.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

using std::chrono::seconds;

using testing::FakeKeyProvider;
using Mode = FakeKeyProvider::Answer;

// The fake CMK, whose refusal advice is its own: what its KMS calls the fix, not the key
// cache's words.
class AdvisingProvider : public FakeKeyProvider {
 public:
  using FakeKeyProvider::FakeKeyProvider;
  std::string RefusalAdvice(const Status& refusal, int64_t last_success) const override {
    return "restore the key policy (" + refusal.provider_code() + ", worked until " +
           std::to_string(last_success) + ")";
  }
};

class KeyCacheLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(dir_.path() + "/root.key").ok());
    auto p = PlatformKeyProvider::Open(dir_.path() + "/root.key");
    ASSERT_TRUE(p.ok());
    auto sw = std::make_unique<AdvisingProvider>("platform", std::move(*p));
    provider_ = sw.get();
    providers_.Register(std::move(sw));
    auto s = OpenSqliteStore(dir_.path() + "/ekm.db", testing::TestStoreBinding());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
    Reset(KeyHierarchyOptions{});
    for (const char* name : {"prod", "dev"}) {
      auto ek = keys_->NewEnvironmentKey("acme", name, CmkRef{"platform", "root"}, 1);
      ASSERT_TRUE(ek.ok());
      ASSERT_TRUE(store_->CreateEnvironment("acme", name, *ek, 1).ok());
    }
  }

  void Reset(KeyHierarchyOptions options) {
    keys_ = std::make_unique<KeyHierarchy>(store_.get(), &providers_, &clock_, options);
  }

  EnvironmentRecord Env(const char* name = "prod") {
    auto env = keys_->GetEnvironment("acme", name);
    EXPECT_TRUE(env.ok());
    return *env;
  }

  std::vector<std::string> Events(std::string_view type) {
    LifecycleEventFilter f;
    f.workspace = "acme";
    f.type = std::string(type);
    auto events = store_->ListLifecycleEvents(f);
    EXPECT_TRUE(events.ok());
    std::vector<std::string> out;
    for (const auto& e : *events) out.push_back(e.environment);
    return out;
  }

  testing::TempDir dir_;
  FakeClock clock_;
  ProviderRegistry providers_;
  AdvisingProvider* provider_ = nullptr;
  StorePtr store_;
  std::unique_ptr<KeyHierarchy> keys_;
};

TEST_F(KeyCacheLifecycleTest, ConcurrentMissesMakeOneProviderCall) {
  EnvironmentRecord env = Env();
  provider_->CloseGate();
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      if (keys_->EnvironmentKey(env, 1).ok()) ++ok;
    });
  }
  // The first caller is inside the provider; let the others pile up behind it, then open.
  provider_->WaitUntilHeld(1);
  std::this_thread::yield();
  provider_->OpenGate();
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, kThreads);
  // Threads that arrived after the flight ended were served from the cache: one call in all.
  EXPECT_EQ(provider_->unwraps, 1);
  EXPECT_EQ(keys_->counters().provider_ok, 1u);
}

TEST_F(KeyCacheLifecycleTest, ConcurrentMissesShareARefusalAndItIsNotCached) {
  EnvironmentRecord env = Env();
  provider_->answer = Mode::kRefuse;
  std::vector<std::thread> threads;
  std::atomic<int> refused{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto s = keys_->EnvironmentKey(env, 1).status();
      if (s.code() == StatusCode::kFailedPrecondition) ++refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(refused, 4);
  // Access restored: after the backoff the next attempt succeeds; nothing stale was cached.
  provider_->answer = Mode::kOk;
  clock_.Advance(seconds(61));
  EXPECT_TRUE(keys_->EnvironmentKey(env, 1).ok());
}

TEST_F(KeyCacheLifecycleTest, LruBoundEvictsAndWipesUnusedKeys) {
  KeyHierarchyOptions o;
  o.max_cached_keys = 2;
  Reset(o);
  EnvironmentRecord env = Env();
  std::weak_ptr<DataKeyHandle> first;
  {
    auto dk = keys_->CurrentDataKey(env, "a");
    ASSERT_TRUE(dk.ok());
    first = *dk;
  }
  ASSERT_TRUE(keys_->CurrentDataKey(env, "b").ok());
  ASSERT_TRUE(keys_->CurrentDataKey(env, "c").ok());
  EXPECT_LE(keys_->counters().dk_entries, 2u);
  // Evicted from both caches and held by no request: freed, so its SecretBytes were wiped.
  EXPECT_TRUE(first.expired());
}

TEST_F(KeyCacheLifecycleTest, ADataKeyDiesWithItsEnvironmentKey) {
  EnvironmentRecord env = Env();
  auto dk = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(dk.ok());
  std::weak_ptr<EnvironmentKeyEntry> ek = (*dk)->ek;
  EXPECT_TRUE((*dk)->ValidAt(clock_.Monotonic()));
  clock_.Advance(seconds(299));
  EXPECT_TRUE((*dk)->ValidAt(clock_.Monotonic()));
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(1));
  // Past the EK's TTL the DK is invalid too, and asking for it finds the refusal.
  EXPECT_FALSE((*dk)->ValidAt(clock_.Monotonic()));
  auto s = keys_->DataKeyVersion(env, "orders", 1).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(s.message().starts_with("the customer main key is unavailable: ")) << s.message();
  EXPECT_NE(s.message().find("AccessDeniedException"), std::string::npos);
  EXPECT_NE(s.hint().find("restore the key policy (AccessDeniedException, worked until "),
            std::string::npos)
      << s.hint();
  EXPECT_EQ(s.provider_code(), "AccessDeniedException");
  EXPECT_EQ(keys_->counters().dk_entries, 0u);  // dropped at once
  dk = StatusOr<std::shared_ptr<DataKeyHandle>>(InternalError("released"));
  EXPECT_TRUE(ek.expired());  // nothing holds the EK: wiped
}

TEST_F(KeyCacheLifecycleTest, AReUnwrapOfTheEnvironmentKeyRefreshesItsDataKeys) {
  EnvironmentRecord env = Env();
  auto dk = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(dk.ok());
  int unwraps = provider_->unwraps;
  clock_.Advance(seconds(300));
  EXPECT_FALSE((*dk)->ValidAt(clock_.Monotonic()));
  auto again = keys_->DataKeyVersion(env, "orders", 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *dk);  // the same cached DK: no DK re-unwrap
  EXPECT_EQ(provider_->unwraps, unwraps + 1);
  EXPECT_TRUE((*dk)->ValidAt(clock_.Monotonic()));  // extended for another TTL
  auto current = keys_->CurrentDataKey(env, "orders");
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(*current, *dk);
  EXPECT_EQ(provider_->unwraps, unwraps + 1);
}

TEST_F(KeyCacheLifecycleTest, PerEnvironmentTtlOverridesTheDeployment) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(store_->SetEnvironmentSetting(env.id, "key_cache_ttl_seconds", 60).ok());
  keys_->ForgetEnvironmentSettings(env.id);
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(59));
  EXPECT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  clock_.Advance(seconds(1));
  EXPECT_EQ(keys_->CurrentDataKey(env, "orders").status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(KeyCacheLifecycleTest, RevocationMakesTheEnvironmentUnavailableOnceAndRestores) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(300));
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(keys_->CurrentDataKey(env, "orders").ok());
  // Inside the backoff nobody asks the KMS again.
  EXPECT_EQ(keys_->counters().provider_refused, 1u);
  CmkHealthSnapshot h = keys_->health().Get(env.id);
  EXPECT_EQ(h.state, CmkState::kUnavailable);
  EXPECT_EQ(h.provider_code, "AccessDeniedException");
  EXPECT_EQ(Events(event::kCmkRevocationDetected).size(), 1u);
  // Persisted, so another process sees it.
  auto row = store_->GetEnvironmentKeyStatus(env.id);
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_EQ((*row)->state, "unavailable");

  provider_->answer = Mode::kOk;
  clock_.Advance(seconds(61));
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());
  EXPECT_EQ(keys_->health().Get(env.id).state, CmkState::kHealthy);
  EXPECT_EQ(Events(event::kCmkRestored).size(), 1u);
}

// "ekm asks the KMS again within N s" in an error and the next retry `environment status` shows
// are one schedule: in this process, in another process on the same store (another node, `ekm`
// in local mode), which keeps to it instead of starting a backoff of its own, and after the
// backoff has grown.
TEST_F(KeyCacheLifecycleTest, TheErrorsNextAttemptIsTheStatusNextRetryInEveryProcess) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(300));
  // A revocation that lasts: each attempt at the next retry fails, and the wait grows.
  Status s;
  for (int i = 0; i < 8; ++i) {
    s = keys_->CurrentDataKey(env, "orders").status();
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
    clock_.Advance(keys_->health().Get(env.id).next_attempt - clock_.Monotonic());
  }
  const int calls = provider_->unwraps;
  s = keys_->CurrentDataKey(env, "orders").status();  // at the next retry: one more attempt
  EXPECT_EQ(provider_->unwraps, calls + 1);
  auto row = store_->GetEnvironmentKeyStatus(env.id);
  ASSERT_TRUE(row.ok() && row->has_value());
  const int64_t next_retry = (*row)->next_retry;
  const int64_t in = next_retry - ToUnixSeconds(clock_.Now());
  EXPECT_GE(in, 4) << "the backoff grows";
  EXPECT_LE(in, 60);
  const std::string said =
      "within " + std::to_string(in) + " s, at " + FormatRfc3339(FromUnixSeconds(next_retry));
  EXPECT_NE(s.hint().find(said), std::string::npos) << s.hint() << " / " << said;

  // Another process on the same store says the same and does not ask the KMS before then.
  KeyHierarchy other(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  auto other_env = other.GetEnvironment("acme", "prod");
  ASSERT_TRUE(other_env.ok());
  Status o = other.CurrentDataKey(*other_env, "orders").status();
  EXPECT_EQ(provider_->unwraps, calls + 1);
  EXPECT_NE(o.hint().find(said), std::string::npos) << o.hint();
  // A second later both count down to the same instant.
  clock_.Advance(seconds(1));
  const std::string later =
      "within " + std::to_string(in - 1) + " s, at " + FormatRfc3339(FromUnixSeconds(next_retry));
  EXPECT_NE(keys_->CurrentDataKey(env, "orders").status().hint().find(later), std::string::npos);
  EXPECT_NE(other.CurrentDataKey(*other_env, "orders").status().hint().find(later),
            std::string::npos);
  EXPECT_EQ(provider_->unwraps, calls + 1);
}

// At the next retry one process attempts and fails; the other, whose own wait also ended,
// re-reads the stored schedule first and keeps to the new one instead of asking the KMS again.
TEST_F(KeyCacheLifecycleTest, AProcessKeepsToANextRetryAnotherProcessSet) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(300));
  EXPECT_FALSE(keys_->CurrentDataKey(env, "orders").ok());
  const int64_t first = keys_->health().Get(env.id).next_retry;
  KeyHierarchy other(store_.get(), &providers_, &clock_, KeyHierarchyOptions{});
  auto other_env = other.GetEnvironment("acme", "prod");
  ASSERT_TRUE(other_env.ok());
  int calls = provider_->unwraps;
  EXPECT_FALSE(other.CurrentDataKey(*other_env, "orders").ok());
  EXPECT_EQ(provider_->unwraps, calls);  // inside the stored backoff: no attempt
  EXPECT_EQ(other.health().Get(env.id).next_retry, first);

  clock_.Advance(FromUnixSeconds(first) - clock_.Now());
  EXPECT_FALSE(other.CurrentDataKey(*other_env, "orders").ok());  // its attempt
  EXPECT_EQ(provider_->unwraps, calls + 1);
  const int64_t second = other.health().Get(env.id).next_retry;
  EXPECT_GT(second, first);
  Status s = keys_->CurrentDataKey(env, "orders").status();
  EXPECT_EQ(provider_->unwraps, calls + 1);  // this process read the new schedule first
  EXPECT_EQ(keys_->health().Get(env.id).next_retry, second);
  EXPECT_NE(s.hint().find("at " + FormatRfc3339(FromUnixSeconds(second))), std::string::npos)
      << s.hint();

  // Access restored: at the next retry the first process to try succeeds, and the other sees
  // healthy in the store instead of waiting out a backoff of its own.
  provider_->answer = Mode::kOk;
  clock_.Advance(FromUnixSeconds(second) - clock_.Now());
  EXPECT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  EXPECT_TRUE(other.CurrentDataKey(*other_env, "orders").ok());
}

// Calls that were in flight when the first failure set the schedule fail after it: they do not
// move the next attempt an error has already named.
TEST_F(KeyCacheLifecycleTest, FailuresInFlightDoNotMoveTheSchedule) {
  EnvironmentRecord env = Env();
  const Status refused = PermissionDeniedError("AWS KMS Decrypt on k failed: AccessDeniedException")
                             .WithProviderCode("AccessDeniedException");
  keys_->health().OnFailure(env.id, "acme", "prod", refused);
  const CmkHealthSnapshot first = keys_->health().Get(env.id);
  for (int i = 0; i < 5; ++i) keys_->health().OnFailure(env.id, "acme", "prod", refused);
  EXPECT_EQ(keys_->health().Get(env.id).next_retry, first.next_retry);
  EXPECT_EQ(keys_->health().Get(env.id).next_attempt, first.next_attempt);
  // A failure after the next attempt schedules the one after it.
  clock_.Advance(first.next_attempt - clock_.Monotonic());
  keys_->health().OnFailure(env.id, "acme", "prod", refused);
  EXPECT_GT(keys_->health().Get(env.id).next_retry, first.next_retry);
}

TEST_F(KeyCacheLifecycleTest, AnOutageIsDegradedWithRetryAfterAndBackoff) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kUnreachable;
  clock_.Advance(seconds(300));
  Status s = keys_->CurrentDataKey(env, "orders").status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(s.message().starts_with("the customer main key's KMS cannot be reached: "))
      << s.message();
  EXPECT_GE(s.retry_after_seconds(), 1);
  EXPECT_LE(s.retry_after_seconds(), 61);
  int calls = provider_->unwraps;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(keys_->DataKeyVersion(env, "orders", 1).status().code(), StatusCode::kUnavailable);
  }
  EXPECT_EQ(provider_->unwraps, calls);  // served by the backoff, not the KMS
  EXPECT_EQ(keys_->health().Get(env.id).state, CmkState::kDegraded);
  EXPECT_EQ(Events(event::kCmkOutageDetected).size(), 1u);
  EXPECT_TRUE(Events(event::kCmkRevocationDetected).empty());
  clock_.Advance(seconds(61));
  EXPECT_FALSE(keys_->DataKeyVersion(env, "orders", 1).ok());
  EXPECT_EQ(provider_->unwraps, calls + 1);  // one retry after the backoff
  provider_->answer = Mode::kOk;
  clock_.Advance(seconds(61));
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());
  EXPECT_EQ(keys_->health().Get(env.id).state, CmkState::kHealthy);
}

TEST_F(KeyCacheLifecycleTest, GracePeriodBridgesAnOutageButNeverARefusal) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(store_->SetEnvironmentSetting(env.id, "grace_period_seconds", 600).ok());
  keys_->ForgetEnvironmentSettings(env.id);
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kUnreachable;
  clock_.Advance(seconds(300));
  EXPECT_TRUE(keys_->CurrentDataKey(env, "orders").ok());  // outage: within grace
  clock_.Advance(seconds(599));
  EXPECT_TRUE(keys_->DataKeyVersion(env, "orders", 1).ok());
  clock_.Advance(seconds(1));
  EXPECT_EQ(keys_->DataKeyVersion(env, "orders", 1).status().code(), StatusCode::kUnavailable);

  // A refusal ends it at once, grace or not.
  provider_->answer = Mode::kOk;
  clock_.Advance(seconds(61));
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(300));
  EXPECT_EQ(keys_->CurrentDataKey(env, "orders").status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(KeyCacheLifecycleTest, WithoutAGracePeriodAnOutageEndsServiceAtTheTtl) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  provider_->answer = Mode::kUnreachable;
  clock_.Advance(seconds(299));
  EXPECT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  clock_.Advance(seconds(1));
  EXPECT_EQ(keys_->CurrentDataKey(env, "orders").status().code(), StatusCode::kUnavailable);
}

TEST_F(KeyCacheLifecycleTest, ARevokedEnvironmentLeavesTheOthersAlone) {
  EnvironmentRecord prod = Env("prod");
  EnvironmentRecord dev = Env("dev");
  ASSERT_TRUE(keys_->CurrentDataKey(prod, "orders").ok());
  ASSERT_TRUE(keys_->CurrentDataKey(dev, "orders").ok());
  provider_->answer = Mode::kRefuse;
  clock_.Advance(seconds(300));
  EXPECT_FALSE(keys_->CurrentDataKey(prod, "orders").ok());
  EXPECT_EQ(keys_->health().Get(dev.id).state, CmkState::kHealthy);
}

TEST_F(KeyCacheLifecycleTest, PurgeDropsExpiredKeys) {
  EnvironmentRecord env = Env();
  ASSERT_TRUE(keys_->CurrentDataKey(env, "orders").ok());
  EXPECT_EQ(keys_->PurgeExpired(), 0u);
  clock_.Advance(seconds(300));
  EXPECT_GE(keys_->PurgeExpired(), 2u);  // the EK and the DK
  EXPECT_EQ(keys_->counters().entries, 0u);
}

}  // namespace
}  // namespace ekm
