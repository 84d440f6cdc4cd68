// EkmServiceImpl, the service behind EkmService, shared by its files: one per capability
// (workspaces.cc, customer_key.cc, data_plane.cc, environment_settings.cc, repack_jobs.cc,
// key_import.cc, rotation.cc, shred.cc, default_key.cc, api_token.cc, audit_service.cc) and
// ekm_service_impl.cc for what they share. Internal to service/: nothing outside includes it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ekm/audit/usage_counter.h"
#include "ekm/base/background_loop.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/key_provider.h"
#include "ekm/repack/repacker.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

class EkmServiceImpl : public EkmService {
 public:
  EkmServiceImpl(EkmOptions options, StorePtr store, std::unique_ptr<ProviderRegistry> providers,
                 std::unique_ptr<AuditSigner> audit_signer)
      : audit_signer_(std::move(audit_signer)),
        options_(std::move(options)),
        store_(std::move(store)),
        providers_(std::move(providers)),
        keys_(store_.get(), providers_.get(), options_.clock, HierarchyOptions(options_)),
        lease_holder_(LeaseHolder(options_.node_name)) {}
  ~EkmServiceImpl() override;

  // Workspaces and environments (workspaces.cc).
  StatusOr<WorkspaceInfo> CreateWorkspace(const CallContext& ctx, std::string_view name) override;
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces(const CallContext& ctx) override;
  StatusOr<EnvironmentInfo> CreateEnvironment(const CallContext& ctx, std::string_view workspace,
                                              std::string_view name) override;
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(const CallContext& ctx,
                                                          std::string_view workspace) override;
  StatusOr<WorkspaceInfo> GetWorkspace(const CallContext& ctx, std::string_view workspace) override;
  StatusOr<EnvironmentInfo> GetEnvironment(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;

  // Customer main keys: "Update key", its checks, the replacement period, key policies
  // (customer_key.cc).
  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment,
                                         std::string_view provider_name, std::string_view key_id,
                                         const KeyChangeOptions& options) override;
  StatusOr<KeyValidation> ValidateCustomerKey(const CallContext& ctx, std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider_name,
                                              std::string_view key_id) override;
  StatusOr<CustomerKeyInfo> ShowCustomerKey(const CallContext& ctx, std::string_view workspace,
                                            std::string_view environment) override;
  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment,
                                         std::string_view provider_name,
                                         std::string_view key_id) override;
  StatusOr<KeyPolicyAdvice> KeyPolicy(const CallContext& ctx, std::string_view workspace,
                                      std::string_view environment) override;
  StatusOr<std::string> CheckKeyPolicy(const CallContext& ctx, std::string_view workspace,
                                       std::string_view policy_text) override;

  // The data plane: encrypt, decrypt, streams, batches, rewrap, data keys (data_plane.cc).
  Status Encrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 std::string_view scope, ByteView plaintext, Bytes* out) override;
  Status Decrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 ByteView envelope, Bytes* out) override;
  StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(const CallContext& ctx,
                                                              std::string_view workspace,
                                                              std::string_view environment,
                                                              std::string_view scope,
                                                              bool text) override;
  StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      const CallContext& ctx, std::string_view workspace, std::string_view environment) override;
  StatusOr<RewrapResult> Rewrap(const CallContext& ctx, std::string_view workspace,
                                std::string_view environment, ByteView envelope,
                                Bytes* out) override;
  StatusOr<GeneratedDataKey> GenerateDataKey(const CallContext& ctx, std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override;
  StatusOr<std::vector<StatusOr<Bytes>>> EncryptBatch(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<BatchEncryptItem>& items) override;
  StatusOr<std::vector<StatusOr<Bytes>>> DecryptBatch(const CallContext& ctx,
                                                      std::string_view workspace,
                                                      std::string_view environment,
                                                      const std::vector<Bytes>& envelopes) override;

  // Environment settings, CMK status, the key cache (environment_settings.cc).
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment) override;
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const EnvironmentSettings& set, const std::vector<std::string>& reset) override;
  StatusOr<EnvironmentKeyStatus> KeyStatus(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;
  Status CheckStore() override;
  StatusOr<KeyCacheStats> KeyCacheStatistics(const CallContext& ctx) override;
  void StartPurgingExpiredKeys(std::chrono::milliseconds interval) override;
  size_t PurgeExpiredKeys() override { return keys_.PurgeExpired(); }

  // Repacks after a CMK change (repack_jobs.cc).
  StatusOr<ScopeList> ListScopes(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment) override;
  StatusOr<std::vector<LifecycleEventInfo>> KeyHistory(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       int64_t after_id, size_t limit) override;
  StatusOr<RepackStatus> GetRepackStatus(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment) override;
  StatusOr<RepackStatus> RerunRepack(const CallContext& ctx, std::string_view workspace,
                                     std::string_view environment) override;
  StatusOr<RepackStatus> RunRepack(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) override;
  void StartRepackRunner() override;
  void StopRepackRunner() override;

  // Imported key material (key_import.cc).
  StatusOr<KeyImportParameters> CreateKeyImportParameters(const CallContext& ctx,
                                                          std::string_view workspace,
                                                          std::string_view environment,
                                                          std::chrono::seconds expires_in) override;
  StatusOr<KeyValidation> ImportKeyMaterial(const CallContext& ctx, std::string_view workspace,
                                            std::string_view environment, ByteView wrapped_material,
                                            std::string_view import_token,
                                            const KeyChangeOptions& change) override;
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(const CallContext& ctx,
                                                  std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view key_id) override;

  // EK and DK rotations, on demand and scheduled (rotation.cc).
  StatusOr<RotationResult> RotateEnvironmentKey(const CallContext& ctx, std::string_view workspace,
                                                std::string_view environment) override;
  StatusOr<std::vector<RotationResult>> RotateDataKeys(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override;
  StatusOr<ScheduledRotationReport> RunScheduledRotations(const CallContext& ctx) override;

  // Crypto-shredding (shred.cc).
  StatusOr<ShredConfirmation> RequestShred(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;
  StatusOr<ShredResult> ShredEnvironment(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view token,
                                         std::string_view confirm_environment) override;

  // The workspace default CMK (default_key.cc).
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view provider_name,
                                                       std::string_view key_id) override;
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace) override;
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                         std::string_view workspace) override;

  // API tokens and authentication (api_token.cc).
  StatusOr<NewApiToken> CreateApiToken(const CallContext& ctx, const ApiTokenRequest& req) override;
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(const CallContext& ctx,
                                                    std::optional<std::string> workspace) override;
  StatusOr<ApiTokenInfo> GetApiToken(const CallContext& ctx, std::string_view id) override;
  StatusOr<ApiTokenInfo> RevokeApiToken(const CallContext& ctx, std::string_view id) override;
  StatusOr<auth::Principal> Authenticate(std::string_view text, std::string_view route,
                                         std::string_view remote) override;
  void RecordPermissionDenied(const auth::Principal& p, std::string_view route,
                              std::string_view workspace, std::string_view environment,
                              std::string_view remote, const Status& why) override;
  StatusOr<BootstrapAdminToken> EnsureBootstrapAdminToken(
      const CallContext& ctx, std::optional<std::string_view> given) override;

  // Lifecycle events and the audit log (audit_service.cc).
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const CallContext& ctx,
                                                       const EventQuery& q) override;
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const CallContext& ctx,
                                                         const EventQuery& q) override;
  Status ExportAudit(const CallContext& ctx, std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override;
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(const CallContext& ctx,
                                                  std::string_view chain) override;
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(const CallContext& ctx,
                                                              std::string_view chain) override;
  const AuditPublicKey& AuditSigningPublicKey() override { return audit_signer_->public_key(); }
  StatusOr<size_t> CheckpointAdvancedChains() override;
  Status FlushDataPlaneUsage() override;
  void StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                       std::chrono::milliseconds usage_interval) override;
  void StopAuditTasks() override;
  StatusOr<size_t> ApplyClusterNotices() override;
  void StartFollowingCluster(std::chrono::milliseconds interval) override;

 private:
  enum class UsageCount { kHere, kByCaller };
  // One "Update key" run (SetCustomerKey; with `validate_only` the same checks and nothing
  // changed, ValidateCustomerKey): what its checks read and leave for the next.
  struct KeyUpdate {
    KeyUpdate(const CallContext& c, std::string_view w, std::string_view e, std::string_view p,
              std::string_view k, const KeyChangeOptions& o, bool validate)
        : ctx(c),
          workspace(w),
          environment(e),
          provider_name(p),
          key_id(k),
          options(o),
          validate_only(validate) {}
    const CallContext& ctx;
    std::string_view workspace, environment, provider_name, key_id;
    const KeyChangeOptions& options;
    bool validate_only;
    KeyProvider* provider = nullptr;
    EnvironmentRecord env;
    EnvironmentKeyRecord current;            // the environment's EK now, and so its CMK
    bool unchanged = false;                  // the key asked for is that CMK already
    std::optional<EnvironmentKeyRecord> ek;  // the next EK, wrapped under the new key
    std::string failed_as;                   // a check's name for its failure, if not its own
    KeyValidation v;
    // The replacement period refused the change: the key.replacement_refused event's detail.
    std::optional<nlohmann::json> refused_replacement;
    // Set when the caller runs the update inside its own store transaction (an import): the
    // outcome (validation record, refusal event) is then recorded by the caller after that
    // transaction, which a refusal rolls back (RecordOutcome).
    bool outcome_recorded_by_caller = false;
  };
  // A check of "Update key": each adds its outcome to `v.checks`; the first failure ends the
  // run and is the answer.
  struct KeyCheck {
    std::string_view name;
    Status (EkmServiceImpl::*run)(KeyUpdate&);
  };
  // The data key a stream in progress uses, as last found usable.
  struct StreamKey {
    std::string workspace, environment, scope;
    uint32_t version = 0;  // 0: not known yet (a decrypt before its header)
    std::shared_ptr<DataKeyHandle> dk;
    uint64_t generation = 0;  // of the key caches when `dk` was found
    std::chrono::steady_clock::time_point valid_until{};
  };
  // Shared by the capabilities (ekm_service_impl.cc).
  // The environment as stored now (not the cached record): its names checked first (a 400), then
  // a clear NotFound.
  StatusOr<EnvironmentRecord> StoredEnvironment(std::string_view workspace,
                                                std::string_view environment);
  // A provider's refusal during "Update key" is about the customer's key, not about the API
  // caller: AccessDenied becomes a failed precondition (the key policy), not a 403, and the
  // platform's own credential trouble is named as such.
  static Status CustomerKeyError(std::string_view workspace, std::string_view environment,
                                 std::string_view check, const Status& cause);
  static std::string Join(const std::vector<std::string>& parts, std::string_view sep);
  // Records a lifecycle event; a failure to record is logged (the change itself happened).
  void RecordEvent(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                   std::string_view type, const nlohmann::json& detail);
  // The same inside a store transaction (Store::InTransaction) with the change it records: a
  // failure fails the transaction, so the change and its audit record commit together or not.
  Status RecordEventInTransaction(const CallContext& ctx, std::string_view workspace,
                                  std::string_view environment, std::string_view type,
                                  const nlohmann::json& detail);
  // `valid_until`, when given, receives when what this read from caches stops being trusted
  // (for the data-path memos).
  StatusOr<EnvironmentRecord> Environment(
      std::string_view workspace, std::string_view environment,
      std::chrono::steady_clock::time_point* valid_until = nullptr);
  static EnvironmentInfo Info(const EnvironmentRecord& r, const EnvironmentKeyRecord& ek);
  static KeyHierarchyOptions HierarchyOptions(const EkmOptions& o);

  // Workspaces and environments (workspaces.cc).
  // Before a new environment's first EK: its name may belong to a shredded environment, and
  // the workspace may have a default CMK.
  Status PrepareNewEnvironment(std::string_view workspace, std::string_view name, CmkRef* cmk);
  StatusOr<EnvironmentKeyRecord> NewFirstEnvironmentKey(std::string_view workspace,
                                                        std::string_view name, const CmkRef& cmk);

  // Customer main keys: "Update key", its checks, the replacement period, key policies
  // (customer_key.cc).
  Status UpdateKey(KeyUpdate& u);
  // The provider's own check of the key id's shape, before any call.
  Status CheckKeyId(KeyUpdate& u);
  // A replacement inside the replacement period is refused before any provider call (a
  // warning when only validating).
  Status CheckPeriod(KeyUpdate& u);
  // A fresh EK wrapped under the key with the next EK version's context, unwrapped again and
  // compared: the failure names the step (encrypt or decrypt) that failed.
  Status CheckRoundTrip(KeyUpdate& u);
  // What the provider says of the key (its own rules: key type, usage, state) and of its
  // automatic rotation.
  Status CheckDescription(KeyUpdate& u);
  // The new EK becomes current (with its change row and event), unless only validating or the
  // key is the CMK already.
  Status StoreKey(KeyUpdate& u);
  // A dry run (ValidateCustomerKey) is recorded as an event only: `key show`'s last
  // validation stays the last real "Update key".
  void RecordValidation(const CallContext& ctx, std::string_view workspace,
                        std::string_view environment, const KeyValidation& v, bool dry_run = false);
  // What an "Update key" run leaves in the audit log: the refusal by the replacement period, if
  // any, then the validation.
  void RecordOutcome(const KeyUpdate& u);
  static KeyValidation FromRecord(const KeyValidationRecord& r);
  // The platform principal the AWS key policy must name: configured, or asked of the AWS
  // provider (STS GetCallerIdentity).
  StatusOr<std::string> PlatformPrincipalArn();
  static Status CheckKeyChangeOptions(const KeyChangeOptions& o);
  // The period in force: the environment's setting (never below the floor, whatever an older
  // version stored), else the deployment default.
  std::chrono::seconds ReplacementPeriod(const EnvironmentRecord& env);
  StatusOr<int64_t> StoredReplacementRunningUntil(const EnvironmentRecord& env);
  // Before the period changes: adds to `changes` the end of the running period under the period
  // in force now (unless an earlier record ends later), to be written with the new period.
  Status KeepRunningReplacementPeriod(const EnvironmentRecord& env, Store::SettingChanges* changes);
  // When a replacement (not an emergency) is allowed again: the last CMK change plus the period
  // in force, and never before the running period's kept end. 0: no CMK change yet.
  StatusOr<int64_t> NextReplacementAllowedAt(const EnvironmentRecord& env,
                                             Store::CmkChangeRecord* last_change = nullptr);
  // A replacement (from one customer CMK to another) is allowed once per replacement period,
  // counted from the environment's last CMK change; the first customer key is not one.
  // A refusal sets `*refused_detail` (the key.replacement_refused event's detail).
  Status CheckReplacementPeriod(const EnvironmentRecord& env, const EnvironmentKeyRecord& current,
                                std::string_view provider, std::string_view key_id,
                                const KeyChangeOptions& options,
                                std::optional<nlohmann::json>* refused_detail);
  // In one store transaction: the replacement period checked again (a change made meanwhile by
  // another request or replica counts), the new EK with the CMK change row, the running
  // period's end and the event; then wakes the repack runner.
  Status StoreCmkChange(const CallContext& ctx, const EnvironmentRecord& env,
                        const EnvironmentKeyRecord& current, const EnvironmentKeyRecord& rec,
                        const KeyChangeOptions& options);
  // Appended to the "store" check of a CMK change.
  std::string RepackStartedNote(const EnvironmentRecord& env);

  // The data plane: encrypt, decrypt, streams, batches, rewrap, data keys (data_plane.cc).
  // The data plane's operations, counted as their own use (kHere) or not (kByCaller: a rewrap or
  // generate-data-key, which counts itself once, is made of them).
  Status EncryptMessage(std::string_view workspace, std::string_view environment,
                        std::string_view scope, ByteView plaintext, Bytes* out, UsageCount usage);
  Status DecryptMessage(std::string_view workspace, std::string_view environment, ByteView envelope,
                        Bytes* out, UsageCount usage);
  StatusOr<std::unique_ptr<EnvelopeEncoder>> OpenEncryptStream(std::string_view workspace,
                                                               std::string_view environment,
                                                               std::string_view scope, bool text,
                                                               UsageCount usage);
  StatusOr<std::unique_ptr<EnvelopeDecoder>> OpenDecryptStream(std::string_view workspace,
                                                               std::string_view environment,
                                                               UsageCount usage);
  // Keeps what the full data path looked up as this thread's memo (see Encrypt).
  void Remember(uint64_t generation, std::chrono::steady_clock::time_point valid_until,
                std::string_view workspace, std::string_view environment, std::string_view scope,
                uint32_t version, const EnvironmentRecord& env, std::shared_ptr<DataKeyHandle> dk);
  // Decrypt of a whole single-form envelope: this thread's memo, else the full data path.
  Status DecryptSingle(std::string_view workspace, std::string_view environment,
                       const ParsedHeader& parsed, ByteView whole, Bytes* out, UsageCount usage);
  // The DK an envelope names, once its header is known to belong to `env`.
  StatusOr<std::shared_ptr<DataKeyHandle>> DataKeyFor(const EnvironmentRecord& env,
                                                      const EnvelopeContext& c);
  // Whether a stream may go on using its data key: the cheap check of every request's memo
  // (nothing cached changed, the DK's EK entry is within its TTL), else the full lookup every
  // single message takes: the environment (not shredded) and the DK through the hierarchy,
  // which asks the CMK again once the TTL has passed and fails with the CMK's error when it
  // refuses (revoked, deleted material).
  Status CheckStreamKey(StreamKey& k);
  // Rewrap; `counted_env` and `counted_scope` receive what the use is counted under once known.
  StatusOr<RewrapResult> RewrapUncounted(std::string_view workspace, std::string_view environment,
                                         ByteView envelope, Bytes* out,
                                         std::optional<EnvironmentRecord>* counted_env,
                                         std::string* counted_scope);
  // Decrypts `envelope` (binary, its header `parsed`) and encrypts it again in the same form
  // under the newest DK of its scope, appending to `rewrapped`; the plaintext passes through
  // one piece at a time and is wiped after each use.
  Status Reencrypt(std::string_view workspace, std::string_view environment,
                   const ParsedHeader& parsed, ByteView envelope, Bytes* rewrapped);
  // The CMK's provider out of reach concerns every item: the whole batch answers it, so the
  // caller retries the batch (Retry-After) instead of sorting out items.
  static bool IsOutage(const Status& s);
  static Status CheckBatchSize(size_t n);
  // The data plane's one line per operation, with its outcome (`result`): cheap, in memory,
  // flushed as data_plane.usage records.
  void CountUsage(const EnvironmentRecord& env, std::string_view scope, std::string_view op,
                  const Status& result);

  // Environment settings, CMK status, the key cache (environment_settings.cc).
  static EnvironmentSettings SettingsFromMap(const std::map<std::string, int64_t>& m);
  // After a settings change: the parts that cache settings drop them here.
  void OnEnvironmentSettingsChanged(const EnvironmentRecord& env);

  // Repacks after a CMK change (repack_jobs.cc).
  static void FillFromJob(const Store::RepackJobRecord& job, RepackStatus* st);
  Repacker& repacker();

  // EK and DK rotations, on demand and scheduled (rotation.cc).
  // A provider's refusal while wrapping a new EK: about the customer's key (or the platform's
  // own AWS credentials, which the operator must fix), never a 401/403 of the API caller.
  static Status ProviderRefusal(const Status& s);
  StatusOr<RotationResult> RotateEk(const CallContext& ctx, EnvironmentRecord env);
  StatusOr<RotationResult> RotateDk(const CallContext& ctx, const EnvironmentRecord& env,
                                    const std::string& scope);

  // Crypto-shredding (shred.cc).
  // Step two of a shred: takes the confirmation from the store (single use), or says why not.
  Status TakeShredConfirmation(const EnvironmentRecord& env, std::string_view token);
  // FailedPrecondition when the environment was crypto-shredded. `cached`: a per-node answer
  // up to one key cache TTL old is good enough (the data-plane path).
  // `valid_until`, when given, is lowered to when the status used here stops being trusted.
  Status RefuseIfShredded(const EnvironmentRecord& env, bool cached,
                          std::chrono::steady_clock::time_point* valid_until = nullptr);
  static Status ShreddedError(std::string_view workspace, std::string_view environment, int64_t at);

  // The workspace default CMK (default_key.cc).
  static WorkspaceDefaultKey DefaultKeyInfo(
      const std::string& workspace, const std::optional<Store::WorkspaceDefaultKeyRecord>& rec);

  // API tokens and authentication (api_token.cc).
  static ApiTokenInfo TokenInfo(const Store::ApiTokenRecord& r);
  StatusOr<Store::ApiTokenRecord> StoredToken(std::string_view id);
  // `presented`: a token given by the operator (bootstrap file); else a new one is generated.
  // `requested_by`: the caller's role (ekmd); nullopt: the operator (local mode, bootstrap).
  StatusOr<NewApiToken> StoreNewToken(const CallContext& ctx, auth::Role role,
                                      const std::string& workspace,
                                      const std::vector<std::string>& environments,
                                      const std::string& description, int64_t now,
                                      int64_t expires_at,
                                      std::optional<auth::PresentedToken> presented,
                                      std::optional<auth::Role> requested_by = std::nullopt);
  // token.created / token.revoked in the token's workspace's chain ("" for admin tokens), with
  // the caller's role ("operator" in local mode); what the admin does to a workspace's tokens
  // also in the platform chain, where admin actions are recorded.
  void RecordTokenEvent(const CallContext& ctx, const std::string& workspace, std::string_view type,
                        nlohmann::json d, std::string_view role_field,
                        std::optional<auth::Role> requested_by);
  // The token's record, from the cache when read less than kApiTokenCacheTtl ago.
  StatusOr<std::optional<Store::ApiTokenRecord>> CachedToken(const std::string& id);

  // Lifecycle events and the audit log (audit_service.cc).
  // The one query of the lifecycle/audit rows, behind both GET …/events and GET …/audit
  // (`noun` names a row in their errors); the caller has checked the chain.
  StatusOr<std::vector<LifecycleEventRecord>> QueryRecords(const EventQuery& q,
                                                           std::string_view noun);
  // A chain: "" (the platform's) or an existing workspace's.
  Status CheckChain(std::string_view chain);
  StatusOr<AuditCheckpoint> SignCheckpoint(const Store::AuditChainHead& head);

  // Leases of background jobs (store.h): this process's holder name, node name + a random
  // suffix (two processes of one node are two holders); empty without a node name.
  static std::string LeaseHolder(const std::string& node_name);
  // Takes or renews the job's lease for `duration`: true when this process may run the job
  // (always, without a holder name).
  bool HoldJobLease(std::string_view job, std::chrono::milliseconds duration);
  // Posts a cluster notice of this kind (best effort: logged when the store refuses).
  static constexpr std::string_view kNoticeEnvironmentChanged = "environment_changed";
  static constexpr std::string_view kNoticeEnvironmentShredded = "environment_shredded";
  static constexpr std::string_view kNoticeTokenRevoked = "token_revoked";
  static constexpr std::string_view kNoticeDataKeysRotated = "data_keys_rotated";
  void PostNotice(std::string_view kind, const EnvironmentRecord* env,
                  std::string_view token_id = {});

  // Where the end of the replacement period running since the last CMK change is kept (unix
  // seconds), as it stood when it began or when the period was last changed: a period shortened
  // since (the setting, or ekmd's default) applies only after it. Not a setting: no route reads
  // or writes it.
  static constexpr std::string_view kReplacementRunningUntil = "replacement_running_until";
  std::once_flag repacker_once_;
  std::unique_ptr<Repacker> repacker_;
  std::mutex repack_mu_;
  std::unique_ptr<RepackRunner> repack_runner_;
  struct CachedTokenRecord {
    Store::ApiTokenRecord record;
    std::chrono::steady_clock::time_point read_at;
  };
  static constexpr size_t kMaxCachedTokens = 10000;
  std::mutex token_mu_;
  std::unordered_map<std::string, CachedTokenRecord> token_cache_;
  std::unique_ptr<AuditSigner> audit_signer_;
  // Shared with the streams it counts (which may end after a call returned).
  std::shared_ptr<UsageCounter> usage_ = std::make_shared<UsageCounter>();
  BackgroundLoop audit_tasks_;
  EkmOptions options_;
  StorePtr store_;
  std::unique_ptr<ProviderRegistry> providers_;
  KeyHierarchy keys_;
  // After keys_: its changes move the data-path memos' generation too.
  KeyCache<std::optional<Store::EnvironmentShredRecord>> shred_status_{100000,
                                                                       &keys_.memos().generation()};
  // Cluster notices (cluster_notices.cc): where this process has read up to.
  std::mutex notices_mu_;
  bool notices_started_ = false;
  int64_t notices_seen_up_to_ = 0;
  std::set<int64_t> notices_applied_;
  const std::string lease_holder_;
  // Last: stopped before what it uses goes.
  BackgroundLoop cluster_follower_;
};

}  // namespace ekm
