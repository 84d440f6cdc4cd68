// KeyHierarchy: CMK (in a provider) -> EK versions (wrapped by the CMK) -> DK versions per scope
// (wrapped by an EK). It finds, creates, unwraps and caches keys; it never sees data.
//
// Cache rule: an unwrapped EK is cached for the TTL (the environment's, else the deployment's)
// from its last successful unwrap by the provider. A cached DK holds its EK entry and is valid
// exactly while that entry is: a re-unwrap of the EK refreshes every DK under it, a refusal
// by the CMK invalidates them all at once, and when the CMK stops answering, every key below it
// is gone within one TTL. Concurrent misses on one EK make one provider call (single flight);
// a refusal is never cached as success. The CMK's health (keys/cmk_health.h) decides when the
// provider is asked again after a failure, and whether an outage may be bridged by the
// environment's grace period (never a refusal).
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ekm/base/background_loop.h"
#include "ekm/base/bulkhead.h"
#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/sharded_counter.h"
#include "ekm/base/status.h"
#include "ekm/keys/cmk_health.h"
#include "ekm/keys/data_path_memo.h"
#include "ekm/keys/key_cache.h"
#include "ekm/keys/nonce_sequence.h"
#include "ekm/provider/key_provider.h"
#include "ekm/store/store.h"

namespace ekm {

// The encryption context keys of every EK wrap (kEkContextWorkspace, …): provider/key_provider.h.

struct KeyHierarchyOptions {
  std::chrono::seconds ttl{300};
  // At most 2^32: a message's index within its DK version is the nonce's 4-byte counter.
  uint64_t max_messages_per_dk = uint64_t{1} << 32;
  uint32_t nonce_lease_size = 1u << 20;
  size_t max_cached_keys = 100000;
  CmkHealthOptions health{};  // backoff of provider attempts after a failure
  // Calls in flight at once to one provider that calls out (KeyProvider::CallsOut); the next
  // one fails at once with 503 + Retry-After, never counted against the CMK's health: a slow
  // KMS holds this many threads, not the whole pool. 0: no limit.
  int max_calls_per_provider = 16;
};

// One unwrapped EK version, as cached. Every DK unwrapped under it shares it: its validity is
// theirs.
struct EnvironmentKeyEntry {
  SecretBytes key;
  int64_t environment_id = 0;
  uint32_t version = 0;
  CmkRef cmk;
  // Monotonic nanoseconds: last successful unwrap by the CMK + the environment's TTL. 0 once
  // the CMK refused.
  std::atomic<int64_t> valid_until_ns{0};

  bool ValidAt(std::chrono::steady_clock::time_point now) const {
    return now.time_since_epoch().count() < valid_until_ns.load(std::memory_order_acquire);
  }
};

// One unwrapped DK version, as cached.
struct DataKeyHandle {
  int64_t environment_id = 0;
  std::string scope;
  uint32_t version = 0;
  uint32_t ek_version = 0;  // the EK that wraps it
  std::shared_ptr<const SecretBytes> key;
  std::shared_ptr<EnvironmentKeyEntry> ek;  // the cached EK entry it was unwrapped under

  // Usable without asking anyone: the EK entry it hangs off is valid.
  bool ValidAt(std::chrono::steady_clock::time_point now) const { return ek->ValidAt(now); }

  // The nonce lease in use, read without a lock. Refilled under lease_mu; every lease taken
  // stays in `leases` until the handle goes, so a reader never holds a freed one (at most
  // max_messages_per_dk / nonce_lease_size of them: 4096 of ~32 bytes by default).
  std::atomic<NonceSequence*> lease{nullptr};
  std::mutex lease_mu;
  std::vector<std::unique_ptr<NonceSequence>> leases;
};

class KeyHierarchy {
 public:
  KeyHierarchy(Store* store, ProviderRegistry* providers, Clock* clock,
               KeyHierarchyOptions options);

  // A fresh EK for `environment` wrapped under `cmk`, ready to store.
  StatusOr<EnvironmentKeyRecord> NewEnvironmentKey(std::string_view workspace,
                                                   std::string_view environment, const CmkRef& cmk,
                                                   uint32_t version);

  // Like NewEnvironmentKey, then unwraps the result again and checks it is the same key: the
  // "Update key" round trip, which proves the provider both encrypts and decrypts with this
  // context before anything is stored. Errors name the step that failed: kWrapStep or
  // kUnwrapStep in `failed_step`.
  StatusOr<EnvironmentKeyRecord> NewVerifiedEnvironmentKey(std::string_view workspace,
                                                           std::string_view environment,
                                                           const CmkRef& cmk, uint32_t version,
                                                           std::string* failed_step);
  static constexpr std::string_view kWrapStep = "wrap";
  static constexpr std::string_view kUnwrapStep = "unwrap";

  // Drops the cached environment record, after its current EK changed.
  void ForgetEnvironment(std::string_view workspace, std::string_view environment);

  // "Update key" (or a re-import) just proved the environment's CMK answers: the environment is
  // healthy again at once (restored), without waiting for the backoff of an earlier refusal.
  void OnCmkVerified(const EnvironmentRecord& env);

  // The environment's record (cached for the TTL).
  // `valid_until`, when given, is lowered to when the record read stops being trusted.
  StatusOr<EnvironmentRecord> GetEnvironment(
      std::string_view workspace, std::string_view environment,
      std::chrono::steady_clock::time_point* valid_until = nullptr);

  // The newest DK version of `scope`, created (wrapped under the current EK) on first use.
  // When the environment's current EK has changed since (a new CMK), the scope first gets a
  // new DK version under the current EK: data written after "Update key" always depends on
  // the new CMK, even in scopes that existed before.
  StatusOr<std::shared_ptr<DataKeyHandle>> CurrentDataKey(const EnvironmentRecord& env,
                                                          std::string_view scope);
  // A given DK version, for decryption. NotFound names scope and version.
  StatusOr<std::shared_ptr<DataKeyHandle>> DataKeyVersion(const EnvironmentRecord& env,
                                                          std::string_view scope, uint32_t version);

  // A unique nonce under `dk`, leasing from the store when the current lease is used up.
  // ResourceExhausted when the DK version has reached its message bound: rotate it.
  Status NextNonce(DataKeyHandle& dk, std::span<uint8_t, 12> out);
  // Refills `block` with a run of nonces under `dk` for one thread (leasing as NextNonce does).
  Status NextNonces(DataKeyHandle& dk, NonceBlock* block);
  static constexpr uint64_t kNonceBlockSize = 256;

  // Per-thread memos of data-path lookups (data_path_memo.h), and the hit they count.
  DataPathMemos& memos() { return memos_; }
  void CountMemoHit() { hits_.Add(); }

  // Creates DK version `after_version + 1` of the scope (or returns the one another process
  // created first).
  StatusOr<std::shared_ptr<DataKeyHandle>> RotateDataKey(const EnvironmentRecord& env,
                                                         std::string_view scope,
                                                         uint32_t after_version);

  // EK `version` of the environment, unwrapped (from the cache, else by its CMK's provider,
  // under the same rules as every other key: refusals are not cached). For the repack, which
  // re-wraps DKs from an older EK to the current one.
  StatusOr<std::shared_ptr<const SecretBytes>> EnvironmentKey(const EnvironmentRecord& env,
                                                              uint32_t version);

  // Provider calls and cache use since start.
  struct Counters {
    size_t entries = 0;  // cached EKs + DKs
    size_t ek_entries = 0;
    size_t dk_entries = 0;
    uint64_t hits = 0;    // a key served from the cache
    uint64_t misses = 0;  // a key that needed the store or the provider
    uint64_t provider_ok = 0;
    uint64_t provider_refused = 0;      // access removed, disabled, pending deletion, deleted
    uint64_t provider_unavailable = 0;  // unreachable, 5xx, throttled
    uint64_t provider_error = 0;        // anything else (corrupt blob, bad key id)
  };
  Counters counters() const;

  // The TTL and grace period in force for an environment (its settings, else the deployment's
  // TTL and no grace).
  struct EnvironmentCachePolicy {
    std::chrono::seconds ttl{300};
    std::chrono::seconds grace{0};
  };
  StatusOr<EnvironmentCachePolicy> CachePolicy(int64_t environment_id);
  // Drops the cached settings after a change (the next use reads them again).
  void ForgetEnvironmentSettings(int64_t environment_id);

  // The CMK health of every environment this process used.
  CmkHealth& health() { return health_; }

  // Drops (and so wipes, once no request holds them) every cached key whose EK is past its TTL
  // and grace period. ekmd calls it periodically; lookups drop expired keys anyway.
  size_t PurgeExpired();
  // Runs PurgeExpired every `interval` (real time) on a thread of its own until destruction.
  void StartPurging(std::chrono::milliseconds interval);
  ~KeyHierarchy();

  std::chrono::seconds default_ttl() const { return options_.ttl; }
  size_t max_cached_keys() const { return options_.max_cached_keys; }

  // After a failed unwrap of `stale` (read before a repack batch moved it to a newer EK, whose
  // old EK may since be destroyed): re-reads the DK and unwraps the stored row if it moved
  // (following further moves); otherwise the error of the EK that wraps it now: `cause`, or,
  // when that EK was destroyed, what that means (a shred, or a DK no one can unwrap). Never
  // "retry": a request gets its key whenever one exists.
  StatusOr<std::shared_ptr<DataKeyHandle>> UnwrapAfterRepack(const EnvironmentRecord& env,
                                                             const DataKeyRecord& stale,
                                                             const Status& cause);
  // Drops a cached EK (its wrapping was destroyed after a repack).
  void ForgetEnvironmentKey(int64_t environment_id, uint32_t version);
  // Drops which DK version is current for each scope of the environment (another process
  // rotated one): the next encryption reads the newest version from the store. The unwrapped
  // DKs stay cached (every version still decrypts).
  void ForgetCurrentDataKeys(int64_t environment_id);
  // The error for an EK whose wrapping was destroyed.
  static Status DestroyedEnvironmentKeyError(const EnvironmentRecord& env, uint32_t version);
  // How many times one request follows the environment's current EK moving on (a rotation or
  // CMK change while it runs) before it gives up with a retryable error.
  static constexpr int kMaxEkMoves = 8;

  // Drops every cached key and record of the environment on this node at once (crypto-shred).
  // Handles already held by in-flight requests are wiped when those requests finish.
  void PurgeEnvironment(const EnvironmentRecord& env);

  uint64_t cache_misses() const { return misses_.load(std::memory_order_relaxed); }

  // A place among the calls in flight to `provider` (--max-calls-per-provider), held for the
  // call's duration, or 503 + Retry-After when they are all taken; an empty ticket for a
  // provider that does not call out. Every call to a provider takes one: the data plane's
  // here, and the admin plane's (describe, the default key's probe) through this.
  StatusOr<Bulkhead::Ticket> ProviderCallPlace(const KeyProvider& provider);

 private:
  using CachedEk = EnvironmentKeyEntry;
  using EkPtr = std::shared_ptr<EnvironmentKeyEntry>;

  // One provider call in progress for one EK; concurrent misses wait for its result.
  struct Flight {
    std::mutex mu;
    std::condition_variable done_cv;
    bool done = false;
    StatusOr<EkPtr> result = InternalError("in flight");
  };

  StatusOr<EkPtr> GetEk(const EnvironmentRecord& env, uint32_t version);
  // The slow path of GetEk: one provider call per EK at a time. `stale` is the expired entry,
  // if one is still cached (refreshed in place on success, served in an outage within grace).
  StatusOr<EkPtr> FetchEk(const EnvironmentRecord& env, uint32_t version, EkPtr stale);
  StatusOr<EkPtr> UnwrapEk(const EnvironmentRecord& env, uint32_t version, EkPtr stale);
  // The error every operation gets while the CMK is unavailable or unreachable, with the next
  // attempt `environment status` shows.
  Status CmkError(const CmkHealthSnapshot& snap) const;
  // The same without a schedule (a retired CMK's): `retry_after` is the degraded Retry-After;
  // a refusal's hint is already its provider's advice (KeyProvider::RefusalAdvice).
  static Status CmkErrorFor(CmkState state, const Status& cause, int64_t retry_after);
  // After a refusal: every cached key of the environment under that CMK is dropped at once.
  void Invalidate(int64_t environment_id, const CmkRef& cmk);
  // A cached DK that is no longer valid: refresh its EK (no DK re-unwrap), or unwrap the stored
  // row again under the EK that wraps it now (a repack may have moved it), or fail with that
  // EK's error.
  StatusOr<std::shared_ptr<DataKeyHandle>> Revalidate(const EnvironmentRecord& env,
                                                      std::shared_ptr<DataKeyHandle> dk);
  StatusOr<std::shared_ptr<DataKeyHandle>> Unwrap(const EnvironmentRecord& env,
                                                  const DataKeyRecord& record);
  // Unwraps `record` under its EK `ek` (already fetched) and caches the handle.
  StatusOr<std::shared_ptr<DataKeyHandle>> UnwrapUnder(const EnvironmentRecord& env,
                                                       const DataKeyRecord& record, EkPtr ek);
  // DK `version` of the scope, wrapped under env.current_ek_version. Fails (FailedPrecondition
  // from the store, or the EK's error) when that EK is no longer current: callers then read the
  // environment again (EnvironmentMovedOn) and retry.
  StatusOr<std::shared_ptr<DataKeyHandle>> CreateDataKey(const EnvironmentRecord& env,
                                                         std::string_view scope, uint32_t version);
  // Re-reads the environment: true (and *env, the cached record updated) when its current EK
  // is no longer env->current_ek_version.
  bool EnvironmentMovedOn(EnvironmentRecord* env);
  // The retryable error after kMaxEkMoves moves of the current EK during one request.
  static Status KeptMovingError(const EnvironmentRecord& env, const Status& last);
  // The error of a DK that stays under an EK that failed: `cause` unless that EK was destroyed.
  Status UnwrapFailure(const EnvironmentRecord& env, const DataKeyRecord& rec, const Status& cause);

  Store* store_;
  ProviderRegistry* providers_;
  Clock* clock_;
  KeyHierarchyOptions options_;
  Bulkhead provider_calls_;  // by provider name: KeyHierarchyOptions::max_calls_per_provider
  // First: the caches below bump its generation, and memos hold DKs until it goes.
  DataPathMemos memos_;
  KeyCache<EnvironmentRecord> envs_;
  KeyCache<CachedEk> eks_;       // by environment/version; validity: the entry's valid_until_ns
  KeyCache<DataKeyHandle> dks_;  // by environment/scope/version
  KeyCache<DataKeyHandle> current_dks_;        // by environment/scope: the newest version
  KeyCache<EnvironmentCachePolicy> policies_;  // by environment id, for the deployment TTL
  CmkHealth health_;
  std::mutex flights_mu_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
  ShardedCounter hits_;  // every data-path lookup adds to it: no shared cache line
  std::atomic<uint64_t> misses_{0};
  BackgroundLoop purger_;
  std::atomic<uint64_t> provider_ok_{0}, provider_refused_{0}, provider_unavailable_{0},
      provider_error_{0};
};

// The encryption context of EK `version` of an environment, sent with every wrap and unwrap.
EncryptionContext EnvironmentKeyContext(std::string_view workspace, std::string_view environment,
                                        uint32_t version);

// Associated data of a DK wrapped under an EK.
Bytes DataKeyWrapAad(std::string_view workspace, std::string_view environment,
                     std::string_view scope, uint32_t dk_version, uint32_t ek_version);

}  // namespace ekm
