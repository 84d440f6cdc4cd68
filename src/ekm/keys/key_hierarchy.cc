#include "ekm/keys/key_hierarchy.h"

#include <atomic>
#include <cctype>

#include "ekm/base/non_blocking_scope.h"
#include "ekm/base/random.h"
#include "ekm/crypto/aes_gcm.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/metrics/metrics.h"

namespace ekm {

namespace {

// ekm_provider_calls_total: the provider's own error name when it gives one (bounded to a
// short identifier), else the status code's name.
template <typename T>
void CountCall(std::string_view provider, std::string_view operation, const StatusOr<T>& r) {
  if (r.ok()) {
    metrics::CountProviderCall(provider, operation, "ok");
    return;
  }
  const std::string code = r.status().provider_code();
  bool plain = !code.empty() && code.size() <= 64;
  for (char c : code) plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  metrics::CountProviderCall(provider, operation,
                             plain ? code : std::string(StatusCodeName(r.status().code())));
}

constexpr size_t kKeySize = 32;
using TimePoint = std::chrono::steady_clock::time_point;

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

// A message's index within its DK version is the nonce's 4-byte counter (NonceSequence): no
// more than 2^32 messages per DK version.
KeyHierarchyOptions WithinNonceSpace(KeyHierarchyOptions o) {
  o.max_messages_per_dk = std::min<uint64_t>(o.max_messages_per_dk, uint64_t{1} << 32);
  return o;
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
      options_(WithinNonceSpace(options)),
      provider_calls_(options.max_calls_per_provider),
      envs_(options.max_cached_keys, &memos_.generation()),
      eks_(options.max_cached_keys, &memos_.generation()),
      dks_(options.max_cached_keys, &memos_.generation()),
      current_dks_(options.max_cached_keys, &memos_.generation()),
      policies_(options.max_cached_keys, &memos_.generation()),
      health_(store, clock, options.health) {}

StatusOr<Bulkhead::Ticket> KeyHierarchy::ProviderCallPlace(const KeyProvider& provider) {
  if (!provider.CallsOut()) return Bulkhead::Ticket();
  Bulkhead::Ticket place = provider_calls_.TryEnter(provider.Name());
  if (place.held()) return place;
  return UnavailableError(
             std::to_string(provider_calls_.limit()) + " calls to key provider " +
                 std::string(provider.Name()) +
                 " are in flight already, the limit (ekmd --max-calls-per-provider): it is slow",
             "retry after 1 s (Retry-After); if it lasts, check the provider's service")
      .WithRetryAfter(1);
}

StatusOr<EnvironmentKeyRecord> KeyHierarchy::NewEnvironmentKey(std::string_view workspace,
                                                               std::string_view environment,
                                                               const CmkRef& cmk,
                                                               uint32_t version) {
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(cmk.provider));
  EKM_ASSIGN_OR_RETURN(Bulkhead::Ticket place, ProviderCallPlace(*provider));
  EKM_ASSIGN_OR_RETURN(SecretBytes ek, RandomSecret(kKeySize));
  auto wrap =
      provider->Wrap(cmk.key_id, ek, EnvironmentKeyContext(workspace, environment, version));
  CountCall(cmk.provider, "wrap", wrap);
  EKM_ASSIGN_OR_RETURN(Bytes wrapped, std::move(wrap));
  EnvironmentKeyRecord rec;
  rec.version = version;
  rec.cmk_provider = cmk.provider;
  rec.cmk_key_id = cmk.key_id;
  rec.wrapped = std::move(wrapped);
  rec.created_at = ToUnixSeconds(clock_->Now());
  return rec;
}

StatusOr<EnvironmentKeyRecord> KeyHierarchy::NewVerifiedEnvironmentKey(std::string_view workspace,
                                                                       std::string_view environment,
                                                                       const CmkRef& cmk,
                                                                       uint32_t version,
                                                                       std::string* failed_step) {
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(cmk.provider));
  EKM_ASSIGN_OR_RETURN(Bulkhead::Ticket place, ProviderCallPlace(*provider));
  EKM_ASSIGN_OR_RETURN(SecretBytes ek, RandomSecret(kKeySize));
  EncryptionContext context = EnvironmentKeyContext(workspace, environment, version);
  auto wrapped = provider->Wrap(cmk.key_id, ek, context);
  CountCall(cmk.provider, "wrap", wrapped);
  if (!wrapped.ok()) {
    *failed_step = kWrapStep;
    return wrapped.status();
  }
  auto back = provider->Unwrap(cmk.key_id, *wrapped, context);
  CountCall(cmk.provider, "unwrap", back);
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
  memos_.DropAll();
}

void KeyHierarchy::OnCmkVerified(const EnvironmentRecord& env) {
  health_.OnSuccess(env.id, env.workspace, env.name);
}

StatusOr<EnvironmentRecord> KeyHierarchy::GetEnvironment(std::string_view workspace,
                                                         std::string_view environment,
                                                         TimePoint* valid_until) {
  std::string key = EnvKey(workspace, environment);
  auto now = clock_->Monotonic();
  TimePoint expires = now + options_.ttl;
  if (auto hit = envs_.Get(key, now, &expires)) {
    if (valid_until != nullptr) *valid_until = std::min(*valid_until, expires);
    return *hit;
  }
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord rec, store_->GetEnvironment(workspace, environment));
  expires = now + options_.ttl;
  envs_.Put(key, std::make_shared<EnvironmentRecord>(rec), expires);
  if (valid_until != nullptr) *valid_until = std::min(*valid_until, expires);
  return rec;
}

StatusOr<KeyHierarchy::EkPtr> KeyHierarchy::GetEk(const EnvironmentRecord& env, uint32_t version) {
  std::string key = EkKey(env.id, version);
  auto now = clock_->Monotonic();
  EkPtr cached = eks_.Get(key, now);  // entries never expire by time: validity decides
  if (cached && cached->ValidAt(now)) return cached;
  return FetchEk(env, version, std::move(cached));
}

StatusOr<KeyHierarchy::EkPtr> KeyHierarchy::FetchEk(const EnvironmentRecord& env, uint32_t version,
                                                    EkPtr stale) {
  // Both the provider call and waiting for another thread's: never on an HTTP I/O thread.
  EKM_RETURN_IF_ERROR(MayBlock("the customer main key's provider"));
  std::string key = EkKey(env.id, version);
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(flights_mu_);
    auto [it, inserted] = flights_.try_emplace(key);
    if (inserted) it->second = std::make_shared<Flight>();
    flight = it->second;
    leader = inserted;
  }
  if (!leader) {
    std::unique_lock<std::mutex> lock(flight->mu);
    flight->done_cv.wait(lock, [&] { return flight->done; });
    return flight->result;
  }
  // A flight that ended between this thread's cache miss and its taking the lead has put its
  // key already (it puts before it lands): look again, or that miss makes a second KMS call.
  StatusOr<EkPtr> result = InternalError("unset");
  // (An extended stale entry counts: it is the same key, valid again.)
  if (EkPtr landed = eks_.Get(key, clock_->Monotonic());
      landed && landed->ValidAt(clock_->Monotonic())) {
    result = std::move(landed);
  } else {
    result = UnwrapEk(env, version, std::move(stale));
  }
  {
    std::lock_guard<std::mutex> lock(flights_mu_);
    flights_.erase(key);
  }
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    flight->result = result;
    flight->done = true;
  }
  flight->done_cv.notify_all();
  return result;
}

StatusOr<KeyHierarchy::EkPtr> KeyHierarchy::UnwrapEk(const EnvironmentRecord& env, uint32_t version,
                                                     EkPtr stale) {
  EKM_ASSIGN_OR_RETURN(EnvironmentCachePolicy policy, CachePolicy(env.id));
  // An outage bridged by the grace period: the expired entry is served (never after a
  // refusal, which drops it).
  auto in_grace = [&] {
    if (!stale || policy.grace.count() <= 0) return false;
    int64_t until = stale->valid_until_ns.load(std::memory_order_acquire);
    if (until == 0) return false;
    return clock_->Monotonic().time_since_epoch().count() <
           until + std::chrono::duration_cast<std::chrono::nanoseconds>(policy.grace).count();
  };
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord rec, store_->GetEnvironmentKey(env.id, version));
  if (rec.wrapped.empty()) return DestroyedEnvironmentKeyError(env, version);
  // The environment's health is its current CMK's. An older EK under a retired CMK (before a
  // replacement) fails on its own, without touching the status of the environment's keys.
  bool tracked = version == env.current_ek_version;
  if (!tracked) {
    auto current = store_->GetEnvironmentKey(env.id, env.current_ek_version);
    tracked = current.ok() && current->cmk_provider == rec.cmk_provider &&
              current->cmk_key_id == rec.cmk_key_id;
  }
  const CmkRef cmk{rec.cmk_provider, rec.cmk_key_id};
  if (tracked && !health_.MayAttempt(env.id)) {
    CmkHealthSnapshot snap = health_.Get(env.id);
    if (snap.state == CmkState::kDegraded && in_grace()) return stale;
    return CmkError(snap);
  }
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(rec.cmk_provider));
  // Refused before the call, and so not the CMK's failure: its health stays as it was.
  EKM_ASSIGN_OR_RETURN(Bulkhead::Ticket place, ProviderCallPlace(*provider));
  auto unwrapped = provider->Unwrap(rec.cmk_key_id, rec.wrapped,
                                    EnvironmentKeyContext(env.workspace, env.name, version));
  if (!unwrapped.ok() && BlockingDeferred()) return unwrapped.status();  // nothing happened
  CountCall(rec.cmk_provider, "unwrap", unwrapped);
  if (!unwrapped.ok()) {
    Status s = unwrapped.status().WithContext(
        "the customer main key (" + rec.cmk_provider + " " + rec.cmk_key_id +
        ") could not unwrap environment key v" + std::to_string(version) + " of " + env.workspace +
        "/" + env.name);
    // A refusal by the customer's KMS (or of the platform's own credentials there) is not the
    // API caller's authentication or permission: never answer it as 401/403.
    if (s.code() == StatusCode::kPermissionDenied) s = s.WithCode(StatusCode::kFailedPrecondition);
    // The platform's own credentials for the KMS: an outage of the platform, not a revocation.
    if (s.code() == StatusCode::kUnauthenticated) s = s.WithCode(StatusCode::kUnavailable);
    switch (ClassifyProviderStatus(s)) {
      case ProviderOutcome::kRefused:
        provider_refused_.fetch_add(1, std::memory_order_relaxed);
        Invalidate(env.id, cmk);
        // What the customer does about it is the provider's to say (its KMS, its words).
        s = s.WithHint(provider->RefusalAdvice(s, tracked ? health_.Get(env.id).last_success : 0));
        if (!tracked) return CmkErrorFor(CmkState::kUnavailable, s, 0);
        health_.OnFailure(env.id, env.workspace, env.name, s);
        return CmkError(health_.Get(env.id));
      case ProviderOutcome::kUnreachable: {
        provider_unavailable_.fetch_add(1, std::memory_order_relaxed);
        if (in_grace()) {
          if (tracked) health_.OnFailure(env.id, env.workspace, env.name, s);
          return stale;
        }
        if (!tracked) return CmkErrorFor(CmkState::kDegraded, s, 1);
        health_.OnFailure(env.id, env.workspace, env.name, s);
        return CmkError(health_.Get(env.id));
      }
      default:
        provider_error_.fetch_add(1, std::memory_order_relaxed);
        return s;
    }
  }
  provider_ok_.fetch_add(1, std::memory_order_relaxed);
  if (tracked) health_.OnSuccess(env.id, env.workspace, env.name);
  // The TTL runs from the provider's answer, not from the request that asked.
  const int64_t valid_until = (clock_->Monotonic() + policy.ttl).time_since_epoch().count();
  if (stale && stale->valid_until_ns.load(std::memory_order_acquire) != 0 &&
      stale->key == *unwrapped) {
    // Same key: extending this entry extends every DK under it (no DK re-unwraps).
    stale->valid_until_ns.store(valid_until, std::memory_order_release);
    return stale;
  }
  auto entry = std::make_shared<CachedEk>();
  entry->key = std::move(unwrapped).value();
  entry->key.LockInMemory();
  entry->environment_id = env.id;
  entry->version = version;
  entry->cmk = cmk;
  entry->valid_until_ns.store(valid_until, std::memory_order_release);
  eks_.Put(EkKey(env.id, version), entry, TimePoint::max());
  return entry;
}

StatusOr<std::shared_ptr<const SecretBytes>> KeyHierarchy::EnvironmentKey(
    const EnvironmentRecord& env, uint32_t version) {
  EKM_ASSIGN_OR_RETURN(EkPtr ek, GetEk(env, version));
  // Shares ownership of the cache entry, so the key stays alive (and is wiped after) its use.
  return std::shared_ptr<const SecretBytes>(ek, &ek->key);
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::Unwrap(const EnvironmentRecord& env,
                                                              const DataKeyRecord& record) {
  auto got = GetEk(env, record.ek_version);
  if (!got.ok()) return UnwrapAfterRepack(env, record, got.status());
  return UnwrapUnder(env, record, std::move(got).value());
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::UnwrapUnder(const EnvironmentRecord& env,
                                                                   const DataKeyRecord& record,
                                                                   EkPtr ek) {
  auto dk = UnwrapKey(
      ek->key, record.wrapped,
      DataKeyWrapAad(env.workspace, env.name, record.scope, record.version, record.ek_version));
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
  handle->ek = std::move(ek);  // valid exactly while its EK entry is
  dks_.Put(DkKey(env.id, record.scope, record.version), handle, TimePoint::max());
  return handle;
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::CreateDataKey(const EnvironmentRecord& env,
                                                                     std::string_view scope,
                                                                     uint32_t version) {
  EKM_ASSIGN_OR_RETURN(EkPtr ek, GetEk(env, env.current_ek_version));
  EKM_ASSIGN_OR_RETURN(SecretBytes dk, RandomSecret(kKeySize));
  DataKeyRecord rec;
  rec.environment_id = env.id;
  rec.scope = std::string(scope);
  rec.version = version;
  rec.ek_version = env.current_ek_version;
  EKM_ASSIGN_OR_RETURN(rec.wrapped, WrapKey(ek->key, dk,
                                            DataKeyWrapAad(env.workspace, env.name, scope, version,
                                                           env.current_ek_version)));
  rec.created_at = ToUnixSeconds(clock_->Now());
  // Another thread or process may have created this version first: use whichever was stored.
  // The store refuses a DK under an EK that is no longer current (see Store::InsertDataKey).
  EKM_ASSIGN_OR_RETURN(DataKeyRecord stored, store_->InsertDataKey(rec));
  return Unwrap(env, stored);
}

bool KeyHierarchy::EnvironmentMovedOn(EnvironmentRecord* env) {
  auto fresh = store_->GetEnvironment(env->workspace, env->name);
  if (!fresh.ok() || fresh->id != env->id || fresh->current_ek_version == env->current_ek_version) {
    return false;
  }
  *env = std::move(fresh).value();
  // Later requests start from the fresh record too (the put bumps the memos' generation).
  envs_.Put(EnvKey(env->workspace, env->name), std::make_shared<EnvironmentRecord>(*env),
            clock_->Monotonic() + options_.ttl);
  return true;
}

Status KeyHierarchy::KeptMovingError(const EnvironmentRecord& env, const Status& last) {
  return UnavailableError("the environment key of " + env.workspace + "/" + env.name + " changed " +
                              std::to_string(kMaxEkMoves) +
                              " times while this request ran (last: " + last.message() + ")",
                          "rotations are running back to back: retry in a second")
      .WithRetryAfter(1);
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::CurrentDataKey(const EnvironmentRecord& env,
                                                                      std::string_view scope) {
  std::string key = CurrentDkKey(env.id, scope);
  auto now = clock_->Monotonic();
  if (auto hit = current_dks_.Get(key, now); hit && hit->ek_version == env.current_ek_version) {
    if (hit->ValidAt(now)) {
      hits_.Add();
      return hit;
    }
    EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> fresh, Revalidate(env, hit));
    if (fresh != hit) current_dks_.Put(key, fresh, TimePoint::max());
    return fresh;
  }
  EKM_RETURN_IF_ERROR(MayBlock("a key cache miss"));  // counted once, where it is served
  misses_.fetch_add(1, std::memory_order_relaxed);
  // `env` may be older than the store (a rotation or CMK change since it was read, here or in
  // another process): when the current EK moved on, decide again from the fresh record.
  EnvironmentRecord now_env = env;
  for (int moves = 0;; ++moves) {
    EKM_ASSIGN_OR_RETURN(std::optional<DataKeyRecord> latest,
                         store_->GetLatestDataKey(now_env.id, scope));
    StatusOr<std::shared_ptr<DataKeyHandle>> handle = InternalError("unset");
    if (latest.has_value() && latest->ek_version == now_env.current_ek_version) {
      handle = Unwrap(now_env, *latest);
    } else {
      // None yet, or wrapped under an older EK (another CMK, or before a rotation): move the
      // scope on to a DK under the current one.
      handle = CreateDataKey(now_env, scope, latest.has_value() ? latest->version + 1 : 1);
    }
    if (handle.ok()) {
      current_dks_.Put(key, *handle, TimePoint::max());
      return handle;
    }
    if (!EnvironmentMovedOn(&now_env)) return handle.status();
    if (moves + 1 >= kMaxEkMoves) return KeptMovingError(now_env, handle.status());
  }
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::DataKeyVersion(const EnvironmentRecord& env,
                                                                      std::string_view scope,
                                                                      uint32_t version) {
  auto now = clock_->Monotonic();
  if (auto hit = dks_.Get(DkKey(env.id, scope, version), now)) {
    if (hit->ValidAt(now)) {
      hits_.Add();
      return hit;
    }
    return Revalidate(env, std::move(hit));
  }
  EKM_RETURN_IF_ERROR(MayBlock("a key cache miss"));  // counted once, where it is served
  misses_.fetch_add(1, std::memory_order_relaxed);
  auto rec = store_->GetDataKey(env.id, scope, version);
  if (!rec.ok()) {
    if (rec.status().code() == StatusCode::kNotFound) {
      return NotFoundError("environment " + env.workspace + "/" + env.name + " has no data key v" +
                               std::to_string(version) + " for scope \"" + std::string(scope) +
                               "\"",
                           "the ciphertext was not produced by this environment, or its keys "
                           "were destroyed");
    }
    return rec.status();
  }
  return Unwrap(env, *rec);
}

Status KeyHierarchy::NextNonce(DataKeyHandle& dk, std::span<uint8_t, 12> out) {
  NonceSequence* lease = dk.lease.load(std::memory_order_acquire);
  if (lease != nullptr && lease->Next(out)) return Status::Ok();
  // Before the lock: its holder may be waiting for the store.
  EKM_RETURN_IF_ERROR(MayBlock("a nonce lease from the store"));
  std::lock_guard<std::mutex> lock(dk.lease_mu);
  lease = dk.lease.load(std::memory_order_acquire);
  if (lease != nullptr && lease->Next(out)) return Status::Ok();  // another thread refilled it
  auto reserved = store_->ReserveMessages(dk.environment_id, dk.scope, dk.version,
                                          options_.nonce_lease_size, options_.max_messages_per_dk);
  if (!reserved.ok()) return reserved.status();
  // The lease is messages [*reserved, *reserved + size) of the DK version, reserved atomically
  // in the store: their indexes go into the nonces, so no two leases share a nonce. The random
  // prefix covers a store restored from a backup, which hands out indexes again.
  EKM_ASSIGN_OR_RETURN(uint64_t prefix, RandomUint64());
  dk.leases.push_back(std::make_unique<NonceSequence>(prefix, options_.nonce_lease_size,
                                                      static_cast<uint32_t>(*reserved)));
  lease = dk.leases.back().get();
  dk.lease.store(lease, std::memory_order_release);
  if (!lease->Next(out)) return InternalError("a fresh nonce lease is empty");
  return Status::Ok();
}

Status KeyHierarchy::NextNonces(DataKeyHandle& dk, NonceBlock* block) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    NonceSequence* lease = dk.lease.load(std::memory_order_acquire);
    if (lease != nullptr && lease->Take(kNonceBlockSize, &block->next, &block->end)) {
      block->sequence = lease;
      return Status::Ok();
    }
    // Used up: NextNonce leases afresh (or finds another thread did) and gives one nonce,
    // which is wasted here; the next Take draws from the new lease.
    std::array<uint8_t, 12> unused;
    EKM_RETURN_IF_ERROR(NextNonce(dk, unused));
  }
  return InternalError("a fresh nonce lease is empty");
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::RotateDataKey(const EnvironmentRecord& env,
                                                                     std::string_view scope,
                                                                     uint32_t after_version) {
  current_dks_.Erase(CurrentDkKey(env.id, scope));
  EnvironmentRecord now_env = env;
  for (int moves = 0;; ++moves) {
    auto handle = CreateDataKey(now_env, scope, after_version + 1);
    if (handle.ok()) {
      current_dks_.Put(CurrentDkKey(env.id, scope), *handle, TimePoint::max());
      return handle;
    }
    // The current EK moved on since `env` was read: wrap the new version under the newest.
    if (!EnvironmentMovedOn(&now_env)) return handle.status();
    if (moves + 1 >= kMaxEkMoves) return KeptMovingError(now_env, handle.status());
  }
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::Revalidate(
    const EnvironmentRecord& env, std::shared_ptr<DataKeyHandle> dk) {
  EKM_RETURN_IF_ERROR(MayBlock("a key cache miss"));  // counted once, where it is served
  misses_.fetch_add(1, std::memory_order_relaxed);
  auto ek = GetEk(env, dk->ek_version);
  if (ek.ok() && *ek == dk->ek) return dk;  // its EK entry was refreshed (or served in grace)
  // A new EK entry (the old one was dropped), or the EK the handle was unwrapped under failed:
  // a repack may have moved the DK to a newer EK since, and destroyed the old one. The stored
  // row says which EK wraps the DK now, and that EK's answer (its CMK's refusal, say) stands.
  EKM_ASSIGN_OR_RETURN(DataKeyRecord rec, store_->GetDataKey(env.id, dk->scope, dk->version));
  if (!ek.ok() && rec.ek_version == dk->ek_version) return UnwrapFailure(env, rec, ek.status());
  if (ek.ok() && rec.ek_version == dk->ek_version) return UnwrapUnder(env, rec, *ek);
  return Unwrap(env, rec);
}

StatusOr<KeyHierarchy::EnvironmentCachePolicy> KeyHierarchy::CachePolicy(int64_t environment_id) {
  std::string key = std::to_string(environment_id);
  auto now = clock_->Monotonic();
  if (auto hit = policies_.Get(key, now)) return *hit;
  EKM_ASSIGN_OR_RETURN(auto settings, store_->GetEnvironmentSettings(environment_id));
  EnvironmentCachePolicy p;
  p.ttl = options_.ttl;
  // Names as in service/ekm_service.h (kSettingKeyCacheTtl, kSettingGracePeriod).
  if (auto it = settings.find("key_cache_ttl_seconds"); it != settings.end() && it->second > 0) {
    p.ttl = std::chrono::seconds(it->second);
  }
  if (auto it = settings.find("grace_period_seconds"); it != settings.end() && it->second > 0) {
    p.grace = std::chrono::seconds(it->second);
  }
  // Re-read within the deployment TTL, so another node's change arrives in time.
  policies_.Put(key, std::make_shared<EnvironmentCachePolicy>(p), now + options_.ttl);
  return p;
}

void KeyHierarchy::ForgetEnvironmentSettings(int64_t environment_id) {
  policies_.Erase(std::to_string(environment_id));
}

Status KeyHierarchy::CmkError(const CmkHealthSnapshot& snap) const {
  // The same instant `environment status` shows as the next retry (cmk_health.h).
  const auto now = clock_->Now();
  const int64_t retry_after = NextAttemptInSeconds(snap, now);
  Status s =
      CmkErrorFor(snap.state, snap.last_error.WithProviderCode(snap.provider_code), retry_after);
  if (snap.state != CmkState::kUnavailable || snap.next_retry == 0) return s;
  return s.WithHint(s.hint() + " (ekm tries the key again within " + std::to_string(retry_after) +
                    " s, at " + FormatRfc3339(FromUnixSeconds(snap.next_retry)) +
                    ": the next retry `ekm environment status` shows)");
}

Status KeyHierarchy::CmkErrorFor(CmkState state, const Status& cause, int64_t retry_after) {
  if (state == CmkState::kUnavailable) {
    // The schedule is CmkError's to add: this says only what to do (the provider's advice).
    return FailedPreconditionError(
               "the customer main key is unavailable: " + cause.message(),
               cause.hint().empty() ? "restore the platform's access to the key" : cause.hint())
        .WithProviderCode(cause.provider_code());
  }
  return UnavailableError("the customer main key's KMS cannot be reached: " + cause.message(),
                          "a temporary outage of the KMS: retry after " +
                              std::to_string(retry_after) +
                              " s; cached keys keep serving within the key cache TTL")
      .WithRetryAfter(retry_after)
      .WithProviderCode(cause.provider_code());
}

void KeyHierarchy::Invalidate(int64_t environment_id, const CmkRef& cmk) {
  eks_.EraseIf([&](const CachedEk& e) {
    if (e.environment_id != environment_id || !(e.cmk == cmk)) return false;
    // DKs still held by a request see it at once.
    const_cast<CachedEk&>(e).valid_until_ns.store(0, std::memory_order_release);
    return true;
  });
  auto of_env = [&](const DataKeyHandle& dk) {
    return dk.environment_id == environment_id && dk.ek->cmk == cmk;
  };
  dks_.EraseIf(of_env);
  current_dks_.EraseIf(of_env);
  memos_.DropAll();    // no thread's memo keeps a revoked key in memory
  AesGcmForgetKeys();  // nor its cipher contexts
}

size_t KeyHierarchy::PurgeExpired() {
  const int64_t now = clock_->Monotonic().time_since_epoch().count();
  // Past TTL plus the longest grace an environment may have (settings are capped at 7 days
  // in the service; the cached policy says the exact one).
  auto dead = [&](const CachedEk& e) {
    auto policy = policies_.Get(std::to_string(e.environment_id), clock_->Monotonic());
    int64_t grace =
        policy ? std::chrono::duration_cast<std::chrono::nanoseconds>(policy->grace).count() : 0;
    return now >= e.valid_until_ns.load(std::memory_order_acquire) + grace;
  };
  size_t n = 0;
  n += dks_.EraseIf([&](const DataKeyHandle& dk) { return dead(*dk.ek); });
  n += current_dks_.EraseIf([&](const DataKeyHandle& dk) { return dead(*dk.ek); });
  n += eks_.EraseIf(dead);
  memos_.DropAll();    // idle threads' memos too: expired and evicted keys go now
  AesGcmForgetKeys();  // and their cipher contexts' key schedules
  return n;
}

void KeyHierarchy::StartPurging(std::chrono::milliseconds interval) {
  purger_.StartEvery(interval, [this] { PurgeExpired(); });
}

// Stopped before any member goes: the purge reads the caches.
KeyHierarchy::~KeyHierarchy() { purger_.Stop(); }

KeyHierarchy::Counters KeyHierarchy::counters() const {
  Counters c;
  c.ek_entries = eks_.size();
  c.dk_entries = dks_.size();
  c.entries = c.ek_entries + c.dk_entries;
  c.hits = hits_.Value();
  c.misses = misses_.load(std::memory_order_relaxed);
  c.provider_ok = provider_ok_.load(std::memory_order_relaxed);
  c.provider_refused = provider_refused_.load(std::memory_order_relaxed);
  c.provider_unavailable = provider_unavailable_.load(std::memory_order_relaxed);
  c.provider_error = provider_error_.load(std::memory_order_relaxed);
  return c;
}

StatusOr<std::shared_ptr<DataKeyHandle>> KeyHierarchy::UnwrapAfterRepack(
    const EnvironmentRecord& env, const DataKeyRecord& stale, const Status& cause) {
  DataKeyRecord rec = stale;
  Status last = cause;
  // Each pass follows one move of the row (repacks back to back); a row that stays put ends it.
  for (int moves = 0; moves < kMaxEkMoves; ++moves) {
    auto fresh = store_->GetDataKey(env.id, rec.scope, rec.version);
    if (!fresh.ok()) return last;
    if (fresh->ek_version == rec.ek_version) return UnwrapFailure(env, *fresh, last);
    rec = std::move(fresh).value();
    auto ek = GetEk(env, rec.ek_version);
    if (ek.ok()) return UnwrapUnder(env, rec, std::move(ek).value());
    last = ek.status();
  }
  return KeptMovingError(env, last);
}

Status KeyHierarchy::UnwrapFailure(const EnvironmentRecord& env, const DataKeyRecord& rec,
                                   const Status& cause) {
  // An EK that exists answers for itself (its CMK's refusal, an outage…).
  auto ek = store_->GetEnvironmentKey(env.id, rec.ek_version);
  if (!ek.ok() || !ek->wrapped.empty()) return cause;
  const std::string what = "data key v" + std::to_string(rec.version) + " of scope \"" + rec.scope +
                           "\" of " + env.workspace + "/" + env.name;
  if (rec.wrapped.empty()) {
    return FailedPreconditionError(what +
                                       " was destroyed with the environment's keys "
                                       "(crypto-shredded)",
                                   "its data can never be read");
  }
  // Never a state ekm creates (the store refuses a DK under an EK that is not current), but a
  // store written by an older ekm may hold one: say what it is, not "retry".
  return InternalError(
      what + " is wrapped under environment key v" + std::to_string(rec.ek_version) +
          ", whose wrapping was destroyed: it cannot be unwrapped, and data encrypted under it "
          "cannot be decrypted",
      "an inconsistency left in the store by concurrent rotations of an older ekm; the "
      "repack inventory (`ekm repack status`) counts such data keys under destroyed "
      "environment keys; report it to the platform operator");
}

void KeyHierarchy::ForgetCurrentDataKeys(int64_t environment_id) {
  current_dks_.ErasePrefix(std::to_string(environment_id) + "/");
  memos_.DropAll();
}

void KeyHierarchy::ForgetEnvironmentKey(int64_t environment_id, uint32_t version) {
  eks_.Erase(EkKey(environment_id, version));
  memos_.DropAll();
  AesGcmForgetKeys();  // no thread's cipher context keeps the destroyed EK's key schedule
}

Status KeyHierarchy::DestroyedEnvironmentKeyError(const EnvironmentRecord& env, uint32_t version) {
  return FailedPreconditionError(
      "environment key v" + std::to_string(version) + " of " + env.workspace + "/" + env.name +
          " was destroyed (a repack moved its data keys to a newer environment key, or the "
          "environment was crypto-shredded)",
      "nothing can be unwrapped under it any more");
}

void KeyHierarchy::PurgeEnvironment(const EnvironmentRecord& env) {
  envs_.Erase(EnvKey(env.workspace, env.name));
  // EK, DK and current-DK cache keys all start with "<environment id>/".
  const std::string prefix = std::to_string(env.id) + "/";
  eks_.ErasePrefix(prefix);
  dks_.ErasePrefix(prefix);
  current_dks_.ErasePrefix(prefix);
  memos_.DropAll();
  AesGcmForgetKeys();
}

}  // namespace ekm
