#include "ekm/keys/key_hierarchy.h"

#include <atomic>

#include "ekm/base/random.h"
#include "ekm/crypto/key_wrap.h"

namespace ekm {

namespace {

constexpr size_t kKeySize = 32;

std::string EnvKey(std::string_view ws, std::string_view env) {
  std::string k(ws);
  k += '/';
  k += env;
  return k;
}

std::string EkKey(int64_t env_id, uint32_t version) {
  return std::to_string(env_id) + "/" + std::to_string(version);
}

std::string DkKey(int64_t env_id, std::string_view scope, uint32_t version) {
  std::string k = std::to_string(env_id);
  k += '/';
  k += scope;
  k += '#';
  k += std::to_string(version);
  return k;
}

std::string CurrentDkKey(int64_t env_id, std::string_view scope) {
  std::string k = std::to_string(env_id);
  k += '/';
  k += scope;
  return k;
}

}  // namespace

EncryptionContext EnvironmentKeyContext(std::string_view workspace, std::string_view environment,
                                        uint32_t version) {
  return EncryptionContext{{std::string(kEkContextWorkspace), std::string(workspace)},
                           {std::string(kEkContextEnvironment), std::string(environment)},
                           {std::string(kEkContextEkVersion), std::to_string(version)}};
}

Bytes DataKeyWrapAad(std::string_view workspace, std::string_view environment,
                     std::string_view scope, uint32_t dk_version, uint32_t ek_version) {
  static constexpr std::string_view kLabel = "ekm dk wrap v1";
  Bytes aad(kLabel.begin(), kLabel.end());
  aad.push_back(0);
  Append(aad, EncodeEncryptionContext({{"workspace", std::string(workspace)},
                                       {"environment", std::string(environment)},
                                       {"scope", std::string(scope)},
                                       {"dk-version", std::to_string(dk_version)},
                                       {"ek-version", std::to_string(ek_version)}}));
  return aad;
}

KeyHierarchy::KeyHierarchy(Store* store, ProviderRegistry* providers, Clock* clock,
                           KeyHierarchyOptions options)
    : store_(store),
      providers_(providers),
      clock_(clock),
      options_(options),
      envs_(options.max_cached_keys),
      eks_(options.max_cached_keys),
      dks_(options.max_cached_keys),
      current_dks_(options.max_cached_keys) {}

StatusOr<EnvironmentKeyRecord> KeyHierarchy::NewEnvironmentKey(std::string_view workspace,
                                                               std::string_view environment,
                                                               const CmkRef& cmk,
                                                               uint32_t version) {
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(cmk.provider));
  EKM_ASSIGN_OR_RETURN(SecretBytes ek, RandomSecret(kKeySize));
  EKM_ASSIGN_OR_RETURN(Bytes wrapped,
                       provider->Wrap(cmk.key_id, ek, EnvironmentKeyContext(workspace, environment, version)));
  EnvironmentKeyRecord rec;
  rec.version = version;
  rec.cmk_provider = cmk.provider;
  rec.cmk_key_id = cmk.key_id;
  rec.wrapped = std::move(wrapped);
  rec.created_at = ToUnixSeconds(clock_->Now());
  return rec;
}

StatusOr<EnvironmentKeyRecord> KeyHierarchy::NewVerifiedEnvironmentKey(
    std::string_view workspace, std::string_view environment, const CmkRef& cmk,
    uint32_t version, std::string* failed_step) {
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(cmk.provider));
  EKM_ASSIGN_OR_RETURN(SecretBytes ek, RandomSecret(kKeySize));
  EncryptionContext context = EnvironmentKeyContext(workspace, environment, version);
  auto wrapped = provider->Wrap(cmk.key_id, ek, context);
  if (!wrapped.ok()) {
    *failed_step = kWrapStep;
    return wrapped.status();
  }
  auto back = provider->Unwrap(cmk.key_id, *wrapped, context);
  if (!back.ok()) {
    *failed_step = kUnwrapStep;
    return back.status();
  }
  if (!(*back == ek)) {
    *failed_step = kUnwrapStep;
    return DataLossError("the key provider returned a different key than it was given",
                         "the provider is misbehaving; do not use this key");
  }
  EnvironmentKeyRecord rec;
  rec.version = version;
  rec.cmk_provider = cmk.provider;
  rec.cmk_key_id = cmk.key_id;
  rec.wrapped = std::move(wrapped).value();
  rec.created_at = ToUnixSeconds(clock_->Now());
  return rec;
}

void KeyHierarchy::ForgetEnvironment(std::string_view workspace, std::string_view environment) {
  envs_.Erase(EnvKey(workspace, environment));
}

StatusOr<EnvironmentRecord> KeyHierarchy::GetEnvironment(std::string_view workspace,
                                                         std::string_view environment) {
  std::string key = EnvKey(workspace, environment);
  auto now = clock_->Monotonic();
  if (auto hit = envs_.Get(key, now)) return *hit;
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord rec, store_->GetEnvironment(workspace, environment));
  envs_.Put(key, std::make_shared<EnvironmentRecord>(rec), now + options_.ttl);
  return rec;
}

StatusOr<std::shared_ptr<KeyHierarchy::CachedEk>> KeyHierarchy::GetEk(const EnvironmentRecord& env,
                                                                      uint32_t version) {
  std::string key = EkKey(env.id, version);
  auto now = clock_->Monotonic();
  if (auto hit = eks_.Get(key, now)) return hit;
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord rec, store_->GetEnvironmentKey(env.id, version));
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(rec.cmk_provider));
  auto unwrapped =
      provider->Unwrap(rec.cmk_key_id, rec.wrapped, EnvironmentKeyContext(env.workspace, env.name, version));
  if (!unwrapped.ok()) {
    Status s = unwrapped.status().WithContext(
        "the customer main key (" + rec.cmk_provider + " " + rec.cmk_key_id +
        ") could not unwrap environment key v" + std::to_string(version) + " of " +
        env.workspace + "/" + env.name);
    // A refusal by the customer's KMS (or of the platform's own credentials there) is not the
    // API caller's authentication or permission: never answer it as 401/403.
    if (s.code() == StatusCode::kPermissionDenied) {
      return FailedPreconditionError(s.message(), s.hint());
    }
    // The platform's own credentials for the KMS: an outage of the platform, not a revocation.
    if (s.code() == StatusCode::kUnauthenticated) return UnavailableError(s.message(), s.hint());
    return s;
  }
  auto entry = std::make_shared<CachedEk>();
  entry->key = std::move(unwrapped).value();
  entry->key.LockInMemory();
  // The TTL runs from the provider's answer, not from the request that asked.
  entry->expires_at = clock_->Monotonic() + options_.ttl;
  eks_.Put(key, entry, entry->expires_at);
  return entry;
}

StatusOr<std::shared_ptr<const SecretBytes>> KeyHierarchy::EnvironmentKey(
    const EnvironmentRecord& env, uint32_t version) {
  EKM_ASSIGN_OR_RETURN(std::shared_ptr<CachedEk> ek, GetEk(env, version));
  // Shares ownership of the cache entry, so the key stays alive (and is wiped after) its use.
  return std::shared_ptr<const SecretBytes>(ek, &ek->key);
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::Unwrap(const EnvironmentRecord& env,
                                                              const DataKeyRecord& record) {
  EKM_ASSIGN_OR_RETURN(std::shared_ptr<CachedEk> ek, GetEk(env, record.ek_version));
  auto dk = UnwrapKey(ek->key, record.wrapped,
                      DataKeyWrapAad(env.workspace, env.name, record.scope, record.version,
                                     record.ek_version));
  if (!dk.ok()) {
    return dk.status().WithContext("data key v" + std::to_string(record.version) + " of scope \"" +
                                   record.scope + "\"");
  }
  auto handle = std::make_shared<DataKeyHandle>();
  handle->environment_id = env.id;
  handle->scope = record.scope;
  handle->version = record.version;
  handle->ek_version = record.ek_version;
  handle->key = std::make_shared<const SecretBytes>(std::move(dk).value());
  handle->expires_at = ek->expires_at;  // never outlives the EK's last unwrap
  dks_.Put(DkKey(env.id, record.scope, record.version), handle, handle->expires_at);
  return handle;
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::CreateDataKey(const EnvironmentRecord& env,
                                                                     std::string_view scope,
                                                                     uint32_t version) {
  EKM_ASSIGN_OR_RETURN(std::shared_ptr<CachedEk> ek, GetEk(env, env.current_ek_version));
  EKM_ASSIGN_OR_RETURN(SecretBytes dk, RandomSecret(kKeySize));
  DataKeyRecord rec;
  rec.environment_id = env.id;
  rec.scope = std::string(scope);
  rec.version = version;
  rec.ek_version = env.current_ek_version;
  EKM_ASSIGN_OR_RETURN(rec.wrapped,
                       WrapKey(ek->key, dk,
                               DataKeyWrapAad(env.workspace, env.name, scope, version,
                                              env.current_ek_version)));
  rec.created_at = ToUnixSeconds(clock_->Now());
  // Another thread or process may have created this version first: use whichever was stored.
  EKM_ASSIGN_OR_RETURN(DataKeyRecord stored, store_->InsertDataKey(rec));
  return Unwrap(env, stored);
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::CurrentDataKey(const EnvironmentRecord& env,
                                                                      std::string_view scope) {
  std::string key = CurrentDkKey(env.id, scope);
  auto now = clock_->Monotonic();
  if (auto hit = current_dks_.Get(key, now); hit && hit->ek_version == env.current_ek_version) {
    return hit;
  }
  EKM_ASSIGN_OR_RETURN(std::optional<DataKeyRecord> latest,
                       store_->GetLatestDataKey(env.id, scope));
  std::shared_ptr<DataKeyHandle> handle;
  if (latest.has_value() && latest->ek_version == env.current_ek_version) {
    EKM_ASSIGN_OR_RETURN(handle, Unwrap(env, *latest));
  } else if (latest.has_value()) {
    // Wrapped under an older EK (another CMK): move the scope on to a DK under the current one.
    EKM_ASSIGN_OR_RETURN(handle, CreateDataKey(env, scope, latest->version + 1));
  } else {
    EKM_ASSIGN_OR_RETURN(handle, CreateDataKey(env, scope, 1));
  }
  current_dks_.Put(key, handle, handle->expires_at);
  return handle;
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::DataKeyVersion(const EnvironmentRecord& env,
                                                                      std::string_view scope,
                                                                      uint32_t version) {
  auto now = clock_->Monotonic();
  if (auto hit = dks_.Get(DkKey(env.id, scope, version), now)) return hit;
  auto rec = store_->GetDataKey(env.id, scope, version);
  if (!rec.ok()) {
    if (rec.status().code() == StatusCode::kNotFound) {
      return NotFoundError("environment " + env.workspace + "/" + env.name +
                               " has no data key v" + std::to_string(version) + " for scope \"" +
                               std::string(scope) + "\"",
                           "the ciphertext was not produced by this environment, or its keys "
                           "were destroyed");
    }
    return rec.status();
  }
  return Unwrap(env, *rec);
}

Status KeyHierarchy::NextNonce(DataKeyHandle& dk, std::span<uint8_t, 12> out) {
  std::shared_ptr<NonceSequence> lease = std::atomic_load(&dk.lease);
  if (lease && lease->Next(out)) return Status::Ok();
  std::lock_guard<std::mutex> lock(dk.lease_mu);
  lease = std::atomic_load(&dk.lease);
  if (lease && lease->Next(out)) return Status::Ok();  // another thread refilled it
  auto reserved = store_->ReserveMessages(dk.environment_id, dk.scope, dk.version,
                                          options_.nonce_lease_size, options_.max_messages_per_dk);
  if (!reserved.ok()) return reserved.status();
  EKM_ASSIGN_OR_RETURN(uint64_t prefix, RandomUint64());
  lease = std::make_shared<NonceSequence>(prefix, options_.nonce_lease_size);
  std::atomic_store(&dk.lease, lease);
  if (!lease->Next(out)) return InternalError("a fresh nonce lease is empty");
  return Status::Ok();
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::RotateDataKey(const EnvironmentRecord& env,
                                                                     std::string_view scope,
                                                                     uint32_t after_version) {
  current_dks_.Erase(CurrentDkKey(env.id, scope));
  EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> handle,
                       CreateDataKey(env, scope, after_version + 1));
  current_dks_.Put(CurrentDkKey(env.id, scope), handle, handle->expires_at);
  return handle;
}

// ---- issue 4 part A: definitions below ----

// ---- end of part A ----
// ---- issue 4 part B: definitions below ----

// ---- end of part B ----
// ---- issue 4 part C: definitions below ----

// ---- end of part C ----
// ---- issue 4 part D: definitions below ----

void KeyHierarchy::PurgeEnvironment(const EnvironmentRecord& env) {
  envs_.Erase(EnvKey(env.workspace, env.name));
  // EK, DK and current-DK cache keys all start with "<environment id>/".
  const std::string prefix = std::to_string(env.id) + "/";
  eks_.ErasePrefix(prefix);
  dks_.ErasePrefix(prefix);
  current_dks_.ErasePrefix(prefix);
}

// ---- end of part D ----

}  // namespace ekm
