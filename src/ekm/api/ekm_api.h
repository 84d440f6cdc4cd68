// EkmApi: API v1 (docs/api.md) as one C++ interface, one method per operation, each given the
// caller (CallContext). The service implements it in process (service/ekm_service.h, behind the
// authorizing service), the HTTP client over the wire (client/ekm_client.h), and the CLI runs
// every command against an EkmApi&, so local and server mode are the same code. The operation
// table (operations.h) maps each route to one of these methods.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/call_context.h"
#include "ekm/api/types.h"
#include "ekm/audit/audit_log.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// Stream input. `read` fills `buf` with up to `capacity` bytes, 0 at end of input. When the
// input is a regular file, `mapped` holds all of it as mapped memory, and the service seals
// straight from the page cache: copying 256 MiB in with read(2) took half of `ekm encrypt`.
struct StreamSource {
  std::function<StatusOr<size_t>(uint8_t* buf, size_t capacity)> read;
  std::optional<ByteView> mapped;
  // Called with each prefix of `mapped` that has been used, so the mapping's pages can leave
  // the process's memory (a stream is encrypted in bounded memory, mapped or not).
  std::function<void(size_t used)> release;
};
// Stream output, called with each piece as it is made.
using StreamSink = std::function<Status(ByteView)>;

class EkmApi {
 public:
  virtual ~EkmApi() = default;

  // Whether the store answers a trivial query (GET /readyz; the probe names no caller).
  virtual Status CheckStore() = 0;

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
  // Data plane, streams of any size in bounded memory: reads `source` to its end and writes
  // the output to `sink` as it is made (EncryptStream in the stream form, binary or `text`).
  virtual Status EncryptStream(const CallContext& ctx, std::string_view workspace,
                               std::string_view environment, std::string_view scope, bool text,
                               const StreamSource& source, const StreamSink& sink) = 0;
  virtual Status DecryptStream(const CallContext& ctx, std::string_view workspace,
                               std::string_view environment, const StreamSource& source,
                               const StreamSink& sink) = 0;

  // Data plane, whole messages. Encrypt appends a single-form binary envelope to `out`.
  virtual Status Encrypt(const CallContext& ctx, std::string_view workspace,
                         std::string_view environment, std::string_view scope, ByteView plaintext,
                         Bytes* out) = 0;
  // Accepts either form, binary or text; appends the plaintext to `out`. An envelope of another
  // workspace or environment is refused with InvalidArgument naming both.
  virtual Status Decrypt(const CallContext& ctx, std::string_view workspace,
                         std::string_view environment, ByteView envelope, Bytes* out) = 0;
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
  // Runs the environment's repack now: a repack waiting to retry after an error is tried again
  // at once, a pending one begins. Where a background runner repacks (ekmd) it is woken and the
  // status answered at once (follow it with GetRepackStatus); without one (local mode) the
  // repack runs in the caller's thread until it finishes. Nothing to repack: the status as is.
  virtual StatusOr<RepackStatus> RerunRepack(const CallContext& ctx, std::string_view workspace,
                                             std::string_view environment) = 0;
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
  // The environment's scopes, by name, each with its current DK version and messages reserved.
  virtual StatusOr<ScopeList> ListScopes(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment) = 0;

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
  // The environment's key history, oldest first: every "Update key" validation (passed,
  // failed, dry runs), every CMK change (the first customer key, replacements, emergency ones,
  // refused ones) and uploaded key material imported or deleted, as lifecycle events. Pages like
  // ListEvents: the events after `after_id`, at most `limit` (1 to 1000).
  virtual StatusOr<std::vector<LifecycleEventInfo>> KeyHistory(const CallContext& ctx,
                                                               std::string_view workspace,
                                                               std::string_view environment,
                                                               int64_t after_id, size_t limit) = 0;

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
  // The calling token (GET /v1/token); nullopt for the local operator, who has none.
  virtual StatusOr<std::optional<ApiTokenInfo>> WhoAmI(const CallContext& ctx) = 0;
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
  // The audit signing key's public half, to verify checkpoints and exports with.
  virtual StatusOr<AuditPublicKeyInfo> GetAuditPublicKey(const CallContext& ctx) = 0;
};

}  // namespace ekm
