// EkmService: the one facade over the key hierarchy that both the `ekm` CLI (local mode) and
// `ekmd` (every API route) call. It owns the store, the providers and the key cache.
//
// Flow of an encrypt: workspace/environment -> current DK of the scope (cache, else unwrap the
// EK through the CMK's provider, then the DK under the EK; a scope's first use creates its DK)
// -> nonce from the DK's nonce lease -> envelope. The provider is called only on a cache miss.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/call_context.h"
#include "ekm/audit/audit_log.h"
#include "ekm/auth/token.h"
#include "ekm/base/bytes.h"
#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/envelope/envelope.h"
#include "ekm/provider/key_provider.h"
#include "ekm/store/store.h"

namespace ekm {

inline constexpr std::string_view kDefaultScope = "default";

// The AWS KMS provider (provider/aws/). Credentials, region and endpoints come from the
// environment as the AWS SDKs read them (AWS_ACCESS_KEY_ID…, AWS_PROFILE, AWS_ROLE_ARN +
// AWS_WEB_IDENTITY_TOKEN_FILE, instance metadata; AWS_ENDPOINT_URL_KMS / _STS).
struct AwsProviderOptions {
  bool enabled = true;
  // The platform's own principal, the IAM role (or user) ARN that calls KMS, which the key
  // policy statement names. Empty: asked of STS GetCallerIdentity when first needed.
  std::string principal_arn;
  // PEM CA bundle to trust for KMS/STS instead of the system store (a private CA in front of a
  // VPC endpoint; tests).
  std::string ca_file;
  std::chrono::milliseconds call_timeout{5000};    // one HTTP exchange with KMS
  std::chrono::milliseconds call_deadline{15000};  // all retries of one call
  // Where AWS_* settings are read from; empty: the process environment. Tests inject theirs.
  std::function<std::optional<std::string>(std::string_view)> env;
};

struct EkmOptions {
  std::string data_dir;       // holds ekm.db and, by default, root.key
  std::string root_key_file;  // the platform provider's root key; default <data_dir>/root.key
  // How long unwrapped EKs and DKs may be used without asking the provider again.
  std::chrono::seconds key_cache_ttl{300};
  // Bound on AES-GCM messages per DK version; past it the scope's DK rotates by itself.
  uint64_t max_messages_per_dk = uint64_t{1} << 32;
  // Nonces reserved from the store at a time (see keys/nonce_sequence.h).
  uint32_t nonce_lease_size = 1u << 20;
  Clock* clock = &Clock::Real();
  AwsProviderOptions aws;
  // Bound on cached keys (EKs, DKs and their current-version index each); least recently used
  // first out, wiped when evicted.
  size_t key_cache_max_entries = 100000;

  // A customer CMK may be replaced by another once per this period per environment (the
  // environment setting replacement_period_seconds overrides it); an emergency replacement
  // by an owner bypasses it. The deployment's choice (ekmd --key-replacement-period: 0, the
  // rule off, or at least kMinReplacementPeriod); a period running when it is shortened still
  // ends as it would have.
  std::chrono::seconds replacement_period{24 * 3600};
  // DKs re-wrapped per repack transaction.
  size_t repack_batch_size = 1000;
};

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

inline constexpr std::string_view kScheduleActor = "system:schedule";

// API tokens (auth/token.h, docs/api.md "Authentication and roles").
inline constexpr std::chrono::seconds kDefaultApiTokenLifetime{90 * 86400};
inline constexpr std::chrono::seconds kMaxApiTokenLifetime{366 * 86400};
// A node trusts a token record it read this long; a revocation made on another node takes
// effect here within it (on the node that revoked, at once).
inline constexpr std::chrono::seconds kApiTokenCacheTtl{5};

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

// The bootstrap admin token of a data directory (ekm init, ekmd's first start).
struct BootstrapAdminToken {
  bool created = false;  // false: an admin token existed already; nothing changed
  SecretBytes token;     // set when it was generated here (not given)
  std::string id;
};
inline constexpr std::chrono::seconds kShredConfirmationTtl{120};

class EkmService {
 public:
  virtual ~EkmService() = default;

  // Creates the data directory, the root key, the audit signing key and the store if the store
  // does not exist yet; with a store there, creates nothing (Open checks its keys).
  static Status Initialize(const EkmOptions& options);
  // Opens an initialized data directory; FailedPrecondition with "run `ekm init`" otherwise.
  // Refused, before anything is written, when the root key file or the audit signing key file
  // is missing, is not a regular file owned by the user ekm runs as with mode 0600, or is not
  // the store's own (the store records the root key's fingerprint and the audit key's id).
  static StatusOr<std::unique_ptr<EkmService>> Open(const EkmOptions& options);
  // The data directory's store alone, opened with its root key as Open does: for tools and
  // tests that read or change the store beside a service.
  static StatusOr<StorePtr> OpenStore(const EkmOptions& options);

  // Admin plane.
  virtual StatusOr<WorkspaceInfo> CreateWorkspace(const CallContext& ctx,
                                                  std::string_view name) = 0;
  virtual StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces(const CallContext& ctx) = 0;
  virtual StatusOr<EnvironmentInfo> CreateEnvironment(const CallContext& ctx,
                                                      std::string_view workspace,
                                                      std::string_view name) = 0;
  virtual StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(const CallContext& ctx,
                                                                  std::string_view workspace) = 0;

  // Customer main keys. SetCustomerKey is "Update key": validates the key id, proves a wrap
  // and unwrap round trip with the environment's encryption context, reads the key's metadata
  // where the provider permits, and only then makes it the environment's CMK (a new EK version
  // wrapped under it). On failure nothing changes; the validation is recorded either way.
  virtual StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view provider,
                                                 std::string_view key_id) = 0;
  virtual StatusOr<CustomerKeyInfo> ShowCustomerKey(const CallContext& ctx,
                                                    std::string_view workspace,
                                                    std::string_view environment) = 0;
  virtual StatusOr<KeyPolicyAdvice> KeyPolicy(const CallContext& ctx, std::string_view workspace,
                                              std::string_view environment) = 0;
  // The policy doctor: a whole key policy as pasted, checked for the platform principal and
  // this workspace. Returns the report as JSON (policy/policy_doctor.h).
  virtual StatusOr<std::string> CheckKeyPolicy(const CallContext& ctx, std::string_view workspace,
                                               std::string_view policy_text) = 0;

  // Data plane, whole messages. Encrypt appends a single-form binary envelope to `out`.
  virtual Status Encrypt(const CallContext& ctx, std::string_view workspace,
                         std::string_view environment, std::string_view scope, ByteView plaintext,
                         Bytes* out) = 0;
  // Accepts either form, binary or text; appends the plaintext to `out`. An envelope of another
  // workspace or environment is refused with InvalidArgument naming both.
  virtual Status Decrypt(const CallContext& ctx, std::string_view workspace,
                         std::string_view environment, ByteView envelope, Bytes* out) = 0;

  // Data plane, streams of any size in bounded memory.
  virtual StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(const CallContext& ctx,
                                                                      std::string_view workspace,
                                                                      std::string_view environment,
                                                                      std::string_view scope,
                                                                      bool text) = 0;
  virtual StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      const CallContext& ctx, std::string_view workspace, std::string_view environment) = 0;

  // The environment's own settings (only those set; the rest take the deployment defaults).
  virtual StatusOr<EnvironmentSettings> GetEnvironmentSettings(const CallContext& ctx,
                                                               std::string_view workspace,
                                                               std::string_view environment) = 0;
  // Changes the settings that are present in `set`; names in `reset` go back to the default.
  // Returns the settings after the change.
  virtual StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const EnvironmentSettings& set, const std::vector<std::string>& reset) = 0;

  // The environment's CMK health (stored, so the same on every node) and cache settings.
  virtual StatusOr<EnvironmentKeyStatus> KeyStatus(const CallContext& ctx,
                                                   std::string_view workspace,
                                                   std::string_view environment) = 0;
  // This process's key cache counters.
  virtual StatusOr<KeyCacheStats> KeyCacheStatistics(const CallContext& ctx) = 0;
  // Whether the store answers a trivial query (ekmd's GET /readyz).
  virtual Status CheckStore() = 0;
  // Drops (and wipes) every cached key past its TTL and grace; returns how many. ekmd calls it
  // periodically.
  virtual size_t PurgeExpiredKeys() = 0;
  // Purges expired keys every `interval` on a background thread, until the service is gone.
  virtual void StartPurgingExpiredKeys(std::chrono::milliseconds interval) = 0;

  // "Update key" with the replacement rules: a different customer CMK replaces the current
  // one at most once per replacement period (FailedPrecondition names the last change and the
  // next allowed time) unless options.emergency (with a reason). A change of CMK starts a
  // repack of the environment's DKs under the new EK.
  virtual StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view provider, std::string_view key_id,
                                                 const KeyChangeOptions& options) = 0;
  // The environment's repack progress and key inventory.
  virtual StatusOr<RepackStatus> GetRepackStatus(const CallContext& ctx, std::string_view workspace,
                                                 std::string_view environment) = 0;
  // Runs (or resumes) the environment's repack in this thread until it finishes; `progress`
  // is called after every batch. For local mode; ekmd runs repacks in the background.
  virtual StatusOr<RepackStatus> RunRepack(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) = 0;
  // ekmd: one background thread that resumes unfinished repacks and runs new ones promptly.
  virtual void StartRepackRunner() = 0;
  virtual void StopRepackRunner() = 0;

  // A new RSA-4096 wrapping key and import token for the environment (replacing earlier ones),
  // valid for `expires_in` (1 minute to 7 days).
  virtual StatusOr<KeyImportParameters> CreateKeyImportParameters(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      std::chrono::seconds expires_in) = 0;
  // Checks the token, unwraps the material (RSAES-OAEP-SHA256), stores it sealed under the
  // platform root and makes it the environment's CMK through "Update key" (SetCustomerKey). On
  // a refusal nothing new is left stored. Importing material deleted earlier restores access.
  virtual StatusOr<KeyValidation> ImportKeyMaterial(const CallContext& ctx,
                                                    std::string_view workspace,
                                                    std::string_view environment,
                                                    ByteView wrapped_material,
                                                    std::string_view import_token,
                                                    const KeyChangeOptions& change = {}) = 0;
  // Destroys imported material of the environment: `key_id`, or when empty the current CMK
  // (which must then be imported material). A revocation: once cached keys expire (the key
  // cache TTL), data under it is unavailable until the same material is imported again.
  virtual StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(const CallContext& ctx,
                                                          std::string_view workspace,
                                                          std::string_view environment,
                                                          std::string_view key_id) = 0;

  // A new EK version under the environment's current CMK; new DKs go under it (each scope
  // moves on at its next use) and every older EK and DK still decrypts. Event ek.rotated.
  virtual StatusOr<RotationResult> RotateEnvironmentKey(const CallContext& ctx,
                                                        std::string_view workspace,
                                                        std::string_view environment) = 0;
  // A new DK version of each scope in `scopes` (or of every scope that has one, when
  // `all_scopes`), under the current EK. Event dk.rotated per scope.
  virtual StatusOr<std::vector<RotationResult>> RotateDataKeys(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<std::string>& scopes, bool all_scopes) = 0;
  // Rotates what the environments' ek/dk_rotation_period_seconds settings say is due: every
  // current EK older than its period, every scope whose newest DK is older than its period.
  // Nothing without a schedule. Events name the caller (ekmd calls as kScheduleActor).
  virtual StatusOr<ScheduledRotationReport> RunScheduledRotations(const CallContext& ctx) = 0;

  // Re-encrypts a whole envelope (either form, binary or text) under the newest DK version of
  // its own scope, without returning the plaintext; appends the new envelope to `out` in the
  // input's form (single or stream, binary or text).
  virtual StatusOr<RewrapResult> Rewrap(const CallContext& ctx, std::string_view workspace,
                                        std::string_view environment, ByteView envelope,
                                        Bytes* out) = 0;

  // Crypto-shredding, in two steps: a token bound to the environment (valid
  // kShredConfirmationTtl on this node), then the shred with that token and the environment's
  // name typed again. Afterwards nothing of the environment can ever be decrypted.
  virtual StatusOr<ShredConfirmation> RequestShred(const CallContext& ctx,
                                                   std::string_view workspace,
                                                   std::string_view environment) = 0;
  virtual StatusOr<ShredResult> ShredEnvironment(const CallContext& ctx, std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view token,
                                                 std::string_view confirm_environment) = 0;

  // The workspace default CMK, validated with a wrap/unwrap round trip under the workspace's
  // encryption context before it is stored. Applies to environments created afterwards only.
  virtual StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(const CallContext& ctx,
                                                               std::string_view workspace,
                                                               std::string_view provider,
                                                               std::string_view key_id) = 0;
  virtual StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(const CallContext& ctx,
                                                               std::string_view workspace) = 0;
  virtual StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                                 std::string_view workspace) = 0;

  // Lifecycle events, oldest first.
  virtual StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const CallContext& ctx,
                                                               const EventQuery& query) = 0;

  // API tokens. Create records token.created, revoke token.revoked, as the caller (ctx.actor), in
  // the token's workspace's audit chain ("" for admin tokens) with the caller's role
  // (ctx.caller's; "operator" for the local operator), and when the admin did it in the platform
  // chain too. Who may create or revoke what is the authorizing service's (authorizing_service.h).
  // An admin's owner token for a workspace that has a valid owner token is PermissionDenied
  // (checked and stored atomically); one for a workspace whose owner tokens all expired or were
  // revoked is recorded as a recovery.
  virtual StatusOr<NewApiToken> CreateApiToken(const CallContext& ctx,
                                               const ApiTokenRequest& request) = 0;
  // Every token (nullopt) or those of one workspace; never a secret.
  virtual StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(
      const CallContext& ctx, std::optional<std::string> workspace) = 0;
  virtual StatusOr<ApiTokenInfo> GetApiToken(const CallContext& ctx, std::string_view id) = 0;
  virtual StatusOr<ApiTokenInfo> RevokeApiToken(const CallContext& ctx, std::string_view id) = 0;
  // The caller of a request, from its bearer token text (may be empty: no token). Unauthenticated
  // when missing, malformed, unknown, wrong secret (one message for these two), revoked or
  // expired; each failure is recorded as token.auth_failed with the reason, `route`,
  // `remote_address` and the token id when parseable (never the secret). Reads the store at
  // most once per kApiTokenCacheTtl per token.
  virtual StatusOr<auth::Principal> Authenticate(std::string_view token_text,
                                                 std::string_view route,
                                                 std::string_view remote_address) = 0;
  // Records token.permission_denied for a refused request, in the caller's workspace.
  virtual void RecordPermissionDenied(const auth::Principal& principal, std::string_view route,
                                      std::string_view workspace, std::string_view environment,
                                      std::string_view remote_address, const Status& why) = 0;
  // Makes sure an admin token exists: when one does, nothing changes; otherwise stores `given`
  // (a token text, e.g. from --bootstrap-token-file) or a new one, without expiry.
  virtual StatusOr<BootstrapAdminToken> EnsureBootstrapAdminToken(
      const CallContext& ctx, std::optional<std::string_view> given) = 0;
  virtual StatusOr<WorkspaceInfo> GetWorkspace(const CallContext& ctx,
                                               std::string_view workspace) = 0;
  virtual StatusOr<EnvironmentInfo> GetEnvironment(const CallContext& ctx,
                                                   std::string_view workspace,
                                                   std::string_view environment) = 0;
  // The checks of "Update key" (SetCustomerKey) for a key, without changing anything: for
  // checking a key before switching. A replacement the period would refuse is reported as a
  // "warning" check, not a failure. Recorded like every validation (event key.validated or
  // key.validation_failed, detail "dry_run": true). The result's `ok` says whether the checks
  // passed; a failed check is an OK StatusOr with ok=false and the error fields filled.
  virtual StatusOr<KeyValidation> ValidateCustomerKey(const CallContext& ctx,
                                                      std::string_view workspace,
                                                      std::string_view environment,
                                                      std::string_view provider,
                                                      std::string_view key_id) = 0;
  // A random key of `size` bytes (kMinDataKeyBytes..kMaxDataKeyBytes) sealed like any other
  // plaintext of `scope`; `with_plaintext` false leaves GeneratedDataKey::plaintext empty. The
  // data-plane entry point of generate-data-key (one use of the scope).
  virtual StatusOr<GeneratedDataKey> GenerateDataKey(const CallContext& ctx,
                                                     std::string_view workspace,
                                                     std::string_view environment,
                                                     std::string_view scope, size_t size,
                                                     bool with_plaintext) = 0;
  // Batch forms: each item's own result, in order (at most kMaxBatchItems, else
  // InvalidArgument before any item). Each item is one use of the data plane: they call Encrypt
  // and Decrypt. An outage of the CMK's provider (Unavailable, DeadlineExceeded) fails the
  // whole batch, as it concerns every item.
  virtual StatusOr<std::vector<StatusOr<Bytes>>> EncryptBatch(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<BatchEncryptItem>& items) = 0;
  virtual StatusOr<std::vector<StatusOr<Bytes>>> DecryptBatch(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<Bytes>& envelopes) = 0;

  // The audit log (audit/audit_log.h, docs/audit.md).
  // Records of one chain (query.workspace; "" = the platform chain), oldest first, filtered.
  virtual StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const CallContext& ctx,
                                                                 const EventQuery& query) = 0;
  // Every record of the chain, oldest first, page by page into `sink` (an export).
  virtual Status ExportAudit(const CallContext& ctx, std::string_view chain,
                             const std::function<Status(const LifecycleEventRecord&)>& sink) = 0;
  // Signs and stores a checkpoint of the chain's head now (FailedPrecondition when the chain
  // is empty).
  virtual StatusOr<AuditCheckpoint> CreateAuditCheckpoint(const CallContext& ctx,
                                                          std::string_view chain) = 0;
  virtual StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(const CallContext& ctx,
                                                                      std::string_view chain) = 0;
  // The audit signing key's public half (SubjectPublicKeyInfo PEM) and key id.
  virtual const AuditPublicKey& AuditSigningPublicKey() = 0;
  // A checkpoint for every chain that advanced since its newest one; returns how many.
  virtual StatusOr<size_t> CheckpointAdvancedChains() = 0;
  // Appends the data-plane usage counted so far as data_plane.usage records.
  virtual Status FlushDataPlaneUsage() = 0;
  // ekmd: a thread that flushes usage every `usage_interval` and checkpoints advanced chains
  // every `checkpoint_interval`; StopAuditTasks (and the destructor) flushes and checkpoints
  // once more. Without it (local mode) the destructor flushes the usage.
  virtual void StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                               std::chrono::milliseconds usage_interval) = 0;
  virtual void StopAuditTasks() = 0;
};

// The service on the dependencies it is given: what EkmService::Open (the composition root of
// a data directory, data_directory.cc) builds, and what a test builds from fakes.
std::unique_ptr<EkmService> NewEkmService(EkmOptions options, StorePtr store,
                                          std::unique_ptr<ProviderRegistry> providers,
                                          std::unique_ptr<AuditSigner> audit_signer);

}  // namespace ekm
