// The request and response types of API v1 (docs/api.md): what every front end (the REST router,
// the HTTP client, the CLI, the console) and the service exchange. Transport-free: the JSON of
// each lives in the router and the client (the wire format), never here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/provider/key_provider.h"

namespace ekm {

inline constexpr std::string_view kDefaultScope = "default";

struct WorkspaceInfo {
  std::string name;
  int64_t created_at = 0;
};

struct EnvironmentInfo {
  std::string workspace;
  std::string name;
  int64_t created_at = 0;
  std::string cmk_provider;
  std::string cmk_key_id;
  uint32_t ek_version = 0;
};

// One check of an "Update key" validation.
struct KeyCheck {
  std::string name;     // "key id", "encrypt", "decrypt", "describe", "rotation"
  std::string outcome;  // "passed", "failed", "skipped"
  std::string detail;
};

// The result of "Update key" (SetCustomerKey), and what `ekm key show` reports of the last one.
struct KeyValidation {
  std::string provider;
  std::string key_id;
  int64_t checked_at = 0;
  bool ok = false;
  std::vector<KeyCheck> checks;
  // When it failed: the error, with the troubleshooting advice as its hint.
  std::string error_code;     // StatusCode name
  std::string provider_code;  // e.g. "AccessDeniedException"
  std::string message;
  std::string hint;
};

// `ekm key show`: the environment's CMK as stored, what its provider says now, and the last
// validation.
struct CustomerKeyInfo {
  std::string workspace;
  std::string environment;
  std::string provider;
  std::string key_id;
  uint32_t ek_version = 0;
  std::optional<CmkDescription> description;  // live; absent when the provider did not answer
  std::string description_error;              // why it is absent
  std::optional<KeyValidation> last_validation;
};

// "Permission to access key": what to paste into the customer's key policy.
struct KeyPolicyAdvice {
  std::string principal_arn;   // the platform principal
  std::string statement;       // statement object(s), ready to paste into "Statement"
  std::string example_policy;  // a complete key policy for a new key
};

// Per-environment settings. Absent: the deployment's default (EkmOptions). Stored by name.
struct EnvironmentSettings {
  std::optional<int64_t> key_cache_ttl_seconds;       // EkmOptions::key_cache_ttl
  std::optional<int64_t> grace_period_seconds;        // serve cached keys in an outage; 0: off
  std::optional<int64_t> ek_rotation_period_seconds;  // scheduled EK rotation; absent: none
  std::optional<int64_t> dk_rotation_period_seconds;  // scheduled DK rotation; absent: none
  std::optional<int64_t> replacement_period_seconds;  // one CMK replacement per period (24 h)
};
inline constexpr std::string_view kSettingKeyCacheTtl = "key_cache_ttl_seconds";
inline constexpr std::string_view kSettingGracePeriod = "grace_period_seconds";
inline constexpr std::string_view kSettingEkRotationPeriod = "ek_rotation_period_seconds";
inline constexpr std::string_view kSettingDkRotationPeriod = "dk_rotation_period_seconds";
inline constexpr std::string_view kSettingReplacementPeriod = "replacement_period_seconds";
// The floor of replacement_period_seconds (and of ekmd --key-replacement-period but 0): a
// shorter one would all but switch the once-per-period rule off. Changing the setting is the
// owner's (ekmd checks the role), and a shorter period applies only once the period running
// since the last CMK change has ended; a longer one at once.
inline constexpr std::chrono::seconds kMinReplacementPeriod{3600};

// `ekm environment status`: how the environment's CMK answers (keys/cmk_health.h), as last
// seen by any node or local `ekm` (stored), and the cache settings in force.
struct EnvironmentKeyStatus {
  std::string workspace;
  std::string environment;
  std::string cmk_provider;
  std::string cmk_key_id;
  std::string state = "healthy";  // "healthy", "degraded" (KMS unreachable), "unavailable"
  int64_t since = 0;              // unix seconds; 0: never seen to change
  int64_t last_success = 0;       // last successful unwrap by the CMK; 0: none recorded
  // The last failure (empty while healthy and never failed). While `state` is healthy it is
  // history: `error_resolved_at` says when it ended, and its hint is no longer to be acted on.
  std::string error_code;     // StatusCode name
  std::string provider_code;  // e.g. "AccessDeniedException", "DisabledException"
  std::string message;
  std::string hint;
  int64_t error_resolved_at = 0;  // unix seconds; 0: the error is current (or there is none)
  int64_t next_retry = 0;         // unix seconds of the next provider attempt; 0: none scheduled
  bool retryable = false;  // degraded: an outage, retry later; unavailable: the customer acts
  int64_t key_cache_ttl_seconds = 0;  // in force for the environment
  int64_t grace_period_seconds = 0;   // 0: off
};

// `ekm cache stats` / GET /v1/key-cache: this process's key cache.
struct KeyCacheStats {
  uint64_t entries = 0;  // cached EKs + DKs
  uint64_t ek_entries = 0;
  uint64_t dk_entries = 0;
  uint64_t max_entries = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t provider_ok = 0;
  uint64_t provider_refused = 0;
  uint64_t provider_unavailable = 0;
  uint64_t provider_error = 0;
  int64_t ttl_seconds = 0;  // the deployment's TTL
  std::string node;         // which process's cache (its node name; empty: local mode)
};

// How a CMK change is made. An emergency replacement (suspected compromise of the current CMK)
// bypasses the replacement period; it needs a reason and is recorded as such. (The API issue
// adds the role check: only an `owner` may make one.)
struct KeyChangeOptions {
  bool emergency = false;
  std::string reason;
};

// One EK version of an environment in the repack inventory.
struct EkInventoryEntry {
  uint32_t ek_version = 0;
  std::string cmk_provider;
  std::string cmk_key_id;
  std::string state;  // "current", "old" (still wraps DKs or awaits the repack), "destroyed"
  uint64_t data_keys = 0;
  int64_t created_at = 0;
  std::optional<int64_t> destroyed_at;
};

// `ekm repack status`: the environment's newest repack and its key inventory.
struct RepackStatus {
  std::string workspace;
  std::string environment;
  // "none" (never needed), "pending" (needed, not begun), "running", "waiting" (an error;
  // retried by itself, see last_error), "finished".
  std::string state = "none";
  uint32_t target_ek_version = 0;
  uint64_t done = 0;
  uint64_t total = 0;
  double rate = 0;                    // DKs per second in the current run
  std::optional<double> eta_seconds;  // while running, when the rate is known
  std::optional<int64_t> started_at_ms;
  std::optional<int64_t> updated_at_ms;
  std::optional<int64_t> finished_at_ms;
  std::optional<int64_t> retry_at_ms;
  std::string last_error;
  std::vector<EkInventoryEntry> inventory;
};

// `ekm key import-params`: what the admin needs to wrap key material for one environment.
struct KeyImportParameters {
  std::string workspace;
  std::string environment;
  std::string wrapping_key_pem;  // RSA-4096 public key, SubjectPublicKeyInfo PEM
  std::string import_token;      // secret of the admin's until used; imports once
  int64_t expires_at = 0;        // unix seconds
  std::string algorithm;         // "RSAES_OAEP_SHA_256"
  size_t material_size = 32;
};

// `ekm key delete-material`: which material was destroyed.
struct KeyMaterialDeletion {
  std::string workspace;
  std::string environment;
  std::string key_id;
  int64_t deleted_at = 0;
  bool in_use = false;  // it was the environment's current CMK: its data becomes unavailable
};

// One EK or DK rotation.
struct RotationResult {
  std::string workspace;
  std::string environment;
  std::string kind;           // "ek" or "dk"
  std::string scope;          // DK rotations only
  uint32_t from_version = 0;  // 0: the scope had no DK yet
  uint32_t to_version = 0;
};

// What one run of the rotation schedule did.
struct ScheduledRotationReport {
  std::vector<RotationResult> rotated;
  std::vector<std::string> failures;  // "acme/prod: <error>", the rest went on
};

// One scope of an environment: its current DK version and how much of that version's message
// budget is used. `messages_reserved` counts the nonces handed out under it (processes reserve
// them in leases, so it bounds the messages sealed from above); past max_messages_per_dk the
// scope's DK rotates by itself.
struct ScopeInfo {
  std::string scope;
  uint32_t dk_version = 0;
  uint32_t ek_version = 0;  // the EK that wraps it
  int64_t created_at = 0;   // unix seconds, of the current version
  uint64_t messages_reserved = 0;
};

struct ScopeList {
  std::string workspace;
  std::string environment;
  uint64_t max_messages_per_dk = 0;  // the deployment's bound per DK version
  std::vector<ScopeInfo> scopes;     // by name
};

// A rewrapped ciphertext: the scope it belongs to and the DK version it is now under.
struct RewrapResult {
  std::string scope;
  uint32_t from_dk_version = 0;
  uint32_t dk_version = 0;
};

// Step one of a crypto-shred: a short-lived token bound to one environment.
struct ShredConfirmation {
  std::string workspace;
  std::string environment;
  std::string token;
  int64_t expires_at = 0;  // unix seconds
};

struct ShredResult {
  std::string workspace;
  std::string environment;
  int64_t shredded_at = 0;
  std::string actor;
  uint32_t ek_versions_destroyed = 0;
  uint32_t dk_versions_destroyed = 0;
};

// The workspace default CMK (absent: new environments start on the platform key).
struct WorkspaceDefaultKey {
  std::string workspace;
  bool set = false;
  std::string provider;  // "platform" when not set
  std::string key_id;    // "root" when not set
  int64_t set_at = 0;
  std::string actor;
};

struct EventQuery {
  std::string workspace;
  std::optional<std::string> environment;
  std::string type;
  int64_t since_ms = 0;
  int64_t until_ms = INT64_MAX;
  int64_t after_id = 0;
  size_t limit = 100;
};

struct LifecycleEventInfo {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string workspace;
  std::string environment;
  std::string type;
  std::string actor;
  std::string detail;  // JSON object text
};

// GenerateDataKey: a fresh data key for client-side encryption (AWS KMS GenerateDataKey's
// role). The wrapped form is an ordinary envelope of the key bytes, so Decrypt returns them.
inline constexpr size_t kMinDataKeyBytes = 16;
inline constexpr size_t kMaxDataKeyBytes = 64;
inline constexpr size_t kDefaultDataKeyBytes = 32;
struct GeneratedDataKey {
  SecretBytes plaintext;  // empty when the caller asked for the wrapped form only
  Bytes ciphertext;       // single-form binary envelope of the key bytes
  std::string scope;
};
// Batch encrypt/decrypt: at most this many items per call.
inline constexpr size_t kMaxBatchItems = 1000;
struct BatchEncryptItem {
  std::string scope;
  Bytes plaintext;
};

// API tokens (auth/token.h, docs/api.md "Authentication and roles").
inline constexpr std::chrono::seconds kDefaultApiTokenLifetime{90 * 86400};
inline constexpr std::chrono::seconds kMaxApiTokenLifetime{366 * 86400};

struct ApiTokenInfo {
  std::string id;
  std::string role;
  std::string workspace;  // empty for admin tokens
  std::vector<std::string> environments;
  std::string description;
  int64_t created_at = 0;
  std::string created_by;
  int64_t expires_at = 0;  // 0: never (the bootstrap admin token)
  int64_t revoked_at = 0;
};

struct ApiTokenRequest {
  std::string role;
  std::string workspace;                  // required unless role is admin (then empty)
  std::vector<std::string> environments;  // existing environments of the workspace
  std::string description;
  std::chrono::seconds expires_in{0};  // 0: kDefaultApiTokenLifetime; at most the maximum
};

struct NewApiToken {
  ApiTokenInfo info;
  SecretBytes token;  // the whole text, ekm_<id>_<secret>: shown once, never stored
};

// The audit signing key's public half, to verify checkpoints and exports with.
struct AuditPublicKeyInfo {
  std::string algorithm = "Ed25519";
  std::string key_id;
  std::string public_key_pem;  // SubjectPublicKeyInfo PEM
};

// The bootstrap admin token of a data directory (ekm init, ekmd's first start).
struct BootstrapAdminToken {
  bool created = false;  // false: an admin token existed already; nothing changed
  SecretBytes token;     // set when it was generated here (not given)
  std::string id;
};

}  // namespace ekm
