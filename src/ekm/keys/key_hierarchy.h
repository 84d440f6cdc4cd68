// KeyHierarchy: CMK (in a provider) -> EK versions (wrapped by the CMK) -> DK versions per scope
// (wrapped by an EK). It finds, creates, unwraps and caches keys; it never sees data.
//
// Cache rule: an unwrapped EK is cached for the TTL from its last successful unwrap by the
// provider; every DK unwrapped under it expires no later than that EK entry, so when the CMK
// stops answering, every key below it is gone within one TTL.
// Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/keys/key_cache.h"
#include "ekm/keys/nonce_sequence.h"
#include "ekm/provider/key_provider.h"
#include "ekm/store/store.h"

namespace ekm {

// Encryption context keys sent with every EK wrap (the AWS key policy statement pins
// kEkContextWorkspace).
inline constexpr std::string_view kEkContextWorkspace = "ekm:workspace";
inline constexpr std::string_view kEkContextEnvironment = "ekm:environment";
inline constexpr std::string_view kEkContextEkVersion = "ekm:ek-version";

struct KeyHierarchyOptions {
  std::chrono::seconds ttl{300};
  uint64_t max_messages_per_dk = uint64_t{1} << 32;
  uint32_t nonce_lease_size = 1u << 20;
  size_t max_cached_keys = 100000;
};

// One unwrapped DK version, as cached.
struct DataKeyHandle {
  int64_t environment_id = 0;
  std::string scope;
  uint32_t version = 0;
  uint32_t ek_version = 0;  // the EK that wraps it
  std::shared_ptr<const SecretBytes> key;
  std::chrono::steady_clock::time_point expires_at;

  std::mutex lease_mu;
  std::shared_ptr<NonceSequence> lease;  // atomic_load/atomic_store; refilled under lease_mu
};

class KeyHierarchy {
 public:
  KeyHierarchy(Store* store, ProviderRegistry* providers, Clock* clock,
               KeyHierarchyOptions options);

  // A fresh EK for `environment` wrapped under `cmk`, ready to store.
  StatusOr<EnvironmentKeyRecord> NewEnvironmentKey(std::string_view workspace,
                                                   std::string_view environment,
                                                   const CmkRef& cmk, uint32_t version);

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

  // The environment's record (cached for the TTL).
  StatusOr<EnvironmentRecord> GetEnvironment(std::string_view workspace,
                                             std::string_view environment);

  // The newest DK version of `scope`, created (wrapped under the current EK) on first use.
  // When the environment's current EK has changed since (a new CMK), the scope first gets a
  // new DK version under the current EK: data written after "Update key" always depends on
  // the new CMK, even in scopes that existed before.
  StatusOr<std::shared_ptr<DataKeyHandle>> CurrentDataKey(const EnvironmentRecord& env,
                                                          std::string_view scope);
  // A given DK version, for decryption. NotFound names scope and version.
  StatusOr<std::shared_ptr<DataKeyHandle>> DataKeyVersion(const EnvironmentRecord& env,
                                                          std::string_view scope,
                                                          uint32_t version);

  // A unique nonce under `dk`, leasing from the store when the current lease is used up.
  // ResourceExhausted when the DK version has reached its message bound: rotate it.
  Status NextNonce(DataKeyHandle& dk, std::span<uint8_t, 12> out);

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

  // ---- issue 4 part A: public methods below ----

  // ---- end of part A ----
  // ---- issue 4 part B: public methods below ----

  // ---- end of part B ----
  // ---- issue 4 part C: public methods below ----

  // ---- end of part C ----
  // ---- issue 4 part D: public methods below ----
  // Drops every cached key and record of the environment on this node at once (crypto-shred).
  // Handles already held by in-flight requests are wiped when those requests finish.
  void PurgeEnvironment(const EnvironmentRecord& env);

  // ---- end of part D ----

  uint64_t cache_hits() const { return dks_.hits() + eks_.hits(); }
  uint64_t cache_misses() const { return dks_.misses() + eks_.misses(); }

 private:
  struct CachedEk {
    SecretBytes key;
    std::chrono::steady_clock::time_point expires_at;
  };

  StatusOr<std::shared_ptr<CachedEk>> GetEk(const EnvironmentRecord& env, uint32_t version);
  StatusOr<std::shared_ptr<DataKeyHandle>> Unwrap(const EnvironmentRecord& env,
                                                  const DataKeyRecord& record);
  StatusOr<std::shared_ptr<DataKeyHandle>> CreateDataKey(const EnvironmentRecord& env,
                                                         std::string_view scope,
                                                         uint32_t version);

  Store* store_;
  ProviderRegistry* providers_;
  Clock* clock_;
  KeyHierarchyOptions options_;
  KeyCache<EnvironmentRecord> envs_;
  KeyCache<CachedEk> eks_;
  KeyCache<DataKeyHandle> dks_;         // by environment/scope/version
  KeyCache<DataKeyHandle> current_dks_;  // by environment/scope: the newest version
};

// The encryption context of EK `version` of an environment, sent with every wrap and unwrap.
EncryptionContext EnvironmentKeyContext(std::string_view workspace, std::string_view environment,
                                        uint32_t version);

// Associated data of a DK wrapped under an EK.
Bytes DataKeyWrapAad(std::string_view workspace, std::string_view environment,
                     std::string_view scope, uint32_t dk_version, uint32_t ek_version);

}  // namespace ekm
