#include "ekm/service/authorizing_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "ekm/api/operations.h"
#include "ekm/auth/authorization.h"

namespace ekm {

namespace {

// A malformed or unknown token id (as opposed to a store that cannot answer).
bool IsUnknownToken(const Status& s) {
  return s.code() == StatusCode::kNotFound || s.code() == StatusCode::kInvalidArgument;
}

// The chain's route: a workspace's, or the platform's ("").
RouteId ChainRoute(std::string_view chain, RouteId workspace_route, RouteId platform_route) {
  return chain.empty() ? platform_route : workspace_route;
}

class AuthorizingService final : public EkmService {
 public:
  explicit AuthorizingService(EkmService* inner) : inner_(inner) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(const CallContext& ctx, std::string_view name) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kCreateWorkspace, "", ""));
    return inner_->CreateWorkspace(ctx, name);
  }
  StatusOr<EnvironmentInfo> CreateEnvironment(const CallContext& ctx, std::string_view workspace,
                                              std::string_view name) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kCreateEnvironment, workspace, ""));
    return inner_->CreateEnvironment(ctx, workspace, name);
  }
  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view provider,
                                         std::string_view key_id) override {
    return SetCustomerKey(ctx, workspace, environment, provider, key_id, KeyChangeOptions{});
  }
  StatusOr<CustomerKeyInfo> ShowCustomerKey(const CallContext& ctx, std::string_view workspace,
                                            std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kShowKey, workspace, environment));
    return inner_->ShowCustomerKey(ctx, workspace, environment);
  }
  StatusOr<KeyPolicyAdvice> KeyPolicy(const CallContext& ctx, std::string_view workspace,
                                      std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kKeyPolicy, workspace, environment));
    return inner_->KeyPolicy(ctx, workspace, environment);
  }
  StatusOr<std::string> CheckKeyPolicy(const CallContext& ctx, std::string_view workspace,
                                       std::string_view policy_text) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kCheckPolicy, workspace, ""));
    return inner_->CheckKeyPolicy(ctx, workspace, policy_text);
  }
  Status Encrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 std::string_view scope, ByteView plaintext, Bytes* out) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kEncrypt, workspace, environment));
    return inner_->Encrypt(ctx, workspace, environment, scope, plaintext, out);
  }
  Status Decrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 ByteView envelope, Bytes* out) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kDecrypt, workspace, environment));
    return inner_->Decrypt(ctx, workspace, environment, envelope, out);
  }
  StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(const CallContext& ctx,
                                                              std::string_view workspace,
                                                              std::string_view environment,
                                                              std::string_view scope,
                                                              bool text) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kEncrypt, workspace, environment));
    return inner_->NewEncryptStream(ctx, workspace, environment, scope, text);
  }
  StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      const CallContext& ctx, std::string_view workspace, std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kDecrypt, workspace, environment));
    return inner_->NewDecryptStream(ctx, workspace, environment);
  }
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGetSettings, workspace, environment));
    return inner_->GetEnvironmentSettings(ctx, workspace, environment);
  }
  StatusOr<EnvironmentKeyStatus> KeyStatus(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kEnvironmentStatus, workspace, environment));
    return inner_->KeyStatus(ctx, workspace, environment);
  }
  Status CheckStore() override { return inner_->CheckStore(); }
  size_t PurgeExpiredKeys() override { return inner_->PurgeExpiredKeys(); }
  void StartPurgingExpiredKeys(std::chrono::milliseconds interval) override {
    inner_->StartPurgingExpiredKeys(interval);
  }
  StatusOr<RepackStatus> GetRepackStatus(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRepackStatus, workspace, environment));
    return inner_->GetRepackStatus(ctx, workspace, environment);
  }
  StatusOr<ScopeList> ListScopes(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kListScopes, workspace, environment));
    return inner_->ListScopes(ctx, workspace, environment);
  }
  StatusOr<std::vector<LifecycleEventInfo>> KeyHistory(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       int64_t after_id, size_t limit) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kKeyHistory, workspace, environment));
    return inner_->KeyHistory(ctx, workspace, environment, after_id, limit);
  }
  StatusOr<RepackStatus> RerunRepack(const CallContext& ctx, std::string_view workspace,
                                     std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRerunRepack, workspace, environment));
    return inner_->RerunRepack(ctx, workspace, environment);
  }

  StatusOr<RepackStatus> RunRepack(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) override {
    EKM_RETURN_IF_ERROR(OperatorOnly(ctx, "a repack in the foreground (ekmd runs repacks itself)"));
    return inner_->RunRepack(ctx, workspace, environment, progress);
  }
  void StartRepackRunner() override { inner_->StartRepackRunner(); }
  void StopRepackRunner() override { inner_->StopRepackRunner(); }
  StatusOr<KeyImportParameters> CreateKeyImportParameters(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      std::chrono::seconds expires_in) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kImportParams, workspace, environment));
    return inner_->CreateKeyImportParameters(ctx, workspace, environment, expires_in);
  }
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(const CallContext& ctx,
                                                  std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view key_id) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kDeleteKeyMaterial, workspace, environment));
    return inner_->DeleteKeyMaterial(ctx, workspace, environment, key_id);
  }
  StatusOr<RotationResult> RotateEnvironmentKey(const CallContext& ctx, std::string_view workspace,
                                                std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRotateEnvironmentKey, workspace, environment));
    return inner_->RotateEnvironmentKey(ctx, workspace, environment);
  }
  StatusOr<std::vector<RotationResult>> RotateDataKeys(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRotateDataKeys, workspace, environment));
    return inner_->RotateDataKeys(ctx, workspace, environment, scopes, all_scopes);
  }
  StatusOr<ScheduledRotationReport> RunScheduledRotations(const CallContext& ctx) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRunDueRotations, "", ""));
    return inner_->RunScheduledRotations(ctx);
  }
  StatusOr<RewrapResult> Rewrap(const CallContext& ctx, std::string_view workspace,
                                std::string_view environment, ByteView envelope,
                                Bytes* out) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRewrap, workspace, environment));
    return inner_->Rewrap(ctx, workspace, environment, envelope, out);
  }
  StatusOr<ShredConfirmation> RequestShred(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kShred, workspace, environment));
    return inner_->RequestShred(ctx, workspace, environment);
  }
  StatusOr<ShredResult> ShredEnvironment(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view token,
                                         std::string_view confirm_environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kShred, workspace, environment));
    return inner_->ShredEnvironment(ctx, workspace, environment, token, confirm_environment);
  }
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kSetDefaultKey, workspace, ""));
    return inner_->SetWorkspaceDefaultKey(ctx, workspace, provider, key_id);
  }
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGetDefaultKey, workspace, ""));
    return inner_->GetWorkspaceDefaultKey(ctx, workspace);
  }
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                         std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kResetDefaultKey, workspace, ""));
    return inner_->ResetWorkspaceDefaultKey(ctx, workspace);
  }
  StatusOr<auth::Principal> Authenticate(std::string_view token_text, std::string_view route,
                                         std::string_view remote_address) override {
    return inner_->Authenticate(token_text, route, remote_address);
  }
  void RecordPermissionDenied(const auth::Principal& principal, std::string_view route,
                              std::string_view workspace, std::string_view environment,
                              std::string_view remote_address, const Status& why) override {
    inner_->RecordPermissionDenied(principal, route, workspace, environment, remote_address, why);
  }
  StatusOr<BootstrapAdminToken> EnsureBootstrapAdminToken(
      const CallContext& ctx, std::optional<std::string_view> given) override {
    EKM_RETURN_IF_ERROR(OperatorOnly(ctx, "the bootstrap admin token"));
    return inner_->EnsureBootstrapAdminToken(ctx, given);
  }
  StatusOr<WorkspaceInfo> GetWorkspace(const CallContext& ctx,
                                       std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGetWorkspace, workspace, ""));
    return inner_->GetWorkspace(ctx, workspace);
  }
  StatusOr<EnvironmentInfo> GetEnvironment(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGetEnvironment, workspace, environment));
    return inner_->GetEnvironment(ctx, workspace, environment);
  }
  StatusOr<KeyValidation> ValidateCustomerKey(const CallContext& ctx, std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider,
                                              std::string_view key_id) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kValidateKey, workspace, environment));
    return inner_->ValidateCustomerKey(ctx, workspace, environment, provider, key_id);
  }
  StatusOr<GeneratedDataKey> GenerateDataKey(const CallContext& ctx, std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGenerateDataKey, workspace, environment));
    return inner_->GenerateDataKey(ctx, workspace, environment, scope, size, with_plaintext);
  }
  StatusOr<std::vector<StatusOr<Bytes>>> EncryptBatch(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<BatchEncryptItem>& items) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kEncryptBatch, workspace, environment));
    return inner_->EncryptBatch(ctx, workspace, environment, items);
  }
  StatusOr<std::vector<StatusOr<Bytes>>> DecryptBatch(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::vector<Bytes>& envelopes) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kDecryptBatch, workspace, environment));
    return inner_->DecryptBatch(ctx, workspace, environment, envelopes);
  }
  const AuditPublicKey& AuditSigningPublicKey() override { return inner_->AuditSigningPublicKey(); }
  StatusOr<AuditPublicKeyInfo> GetAuditPublicKey(const CallContext& ctx) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kAuditPublicKey, "", ""));
    return inner_->GetAuditPublicKey(ctx);
  }
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI(const CallContext& ctx) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kWhoAmI, "", ""));
    return inner_->WhoAmI(ctx);
  }
  StatusOr<size_t> CheckpointAdvancedChains() override {
    return inner_->CheckpointAdvancedChains();
  }
  Status FlushDataPlaneUsage() override { return inner_->FlushDataPlaneUsage(); }
  void StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                       std::chrono::milliseconds usage_interval) override {
    inner_->StartAuditTasks(checkpoint_interval, usage_interval);
  }
  void StopAuditTasks() override { inner_->StopAuditTasks(); }
  StatusOr<size_t> ApplyClusterNotices() override { return inner_->ApplyClusterNotices(); }
  void StartFollowingCluster(std::chrono::milliseconds interval) override {
    inner_->StartFollowingCluster(interval);
  }

  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces(const CallContext& ctx) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kListWorkspaces, "", ""));
    EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceInfo> all, inner_->ListWorkspaces(ctx));
    std::erase_if(
        all, [&](const WorkspaceInfo& w) { return !auth::MaySeeWorkspace(ctx.caller, w.name); });
    return all;
  }

  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(const CallContext& ctx,
                                                          std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kListEnvironments, workspace, ""));
    EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentInfo> all,
                         inner_->ListEnvironments(ctx, workspace));
    std::erase_if(all, [&](const EnvironmentInfo& e) {
      return !auth::MaySeeEnvironment(ctx.caller, e.name);
    });
    return all;
  }

  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view provider,
                                         std::string_view key_id,
                                         const KeyChangeOptions& options) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kSetKey, workspace, environment));
    EKM_RETURN_IF_ERROR(AllowEmergency(ctx, RouteId::kSetKey, workspace, environment, options));
    return inner_->SetCustomerKey(ctx, workspace, environment, provider, key_id, options);
  }

  StatusOr<KeyValidation> ImportKeyMaterial(const CallContext& ctx, std::string_view workspace,
                                            std::string_view environment, ByteView wrapped_material,
                                            std::string_view import_token,
                                            const KeyChangeOptions& change) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kImportKeyMaterial, workspace, environment));
    EKM_RETURN_IF_ERROR(
        AllowEmergency(ctx, RouteId::kImportKeyMaterial, workspace, environment, change));
    return inner_->ImportKeyMaterial(ctx, workspace, environment, wrapped_material, import_token,
                                     change);
  }

  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const EnvironmentSettings& set, const std::vector<std::string>& reset) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kPatchSettings, workspace, environment));
    // The replacement period guards CMK replacements, which key-managers make; like the
    // emergency replacement that bypasses it, changing (or resetting) it is the owner's.
    if (set.replacement_period_seconds ||
        std::find(reset.begin(), reset.end(), kSettingReplacementPeriod) != reset.end()) {
      EKM_RETURN_IF_ERROR(
          Check(ctx, RouteId::kPatchSettings, workspace, environment,
                auth::AuthorizeOwnerOnly(ctx.caller,
                                         "changing " + std::string(kSettingReplacementPeriod))));
    }
    return inner_->UpdateEnvironmentSettings(ctx, workspace, environment, set, reset);
  }

  StatusOr<KeyCacheStats> KeyCacheStatistics(const CallContext& ctx) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kKeyCacheStats, "", ""));
    return inner_->KeyCacheStatistics(ctx);
  }

  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const CallContext& ctx,
                                                       const EventQuery& query) override {
    EKM_RETURN_IF_ERROR(AllowRecordQuery(ctx, RouteId::kListEvents, query, "events"));
    return inner_->ListEvents(ctx, query);
  }

  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const CallContext& ctx,
                                                         const EventQuery& query) override {
    const RouteId id =
        ChainRoute(query.workspace, RouteId::kAuditQuery, RouteId::kPlatformAuditQuery);
    EKM_RETURN_IF_ERROR(AllowRecordQuery(ctx, id, query, "audit records"));
    return inner_->QueryAudit(ctx, query);
  }

  Status ExportAudit(const CallContext& ctx, std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override {
    const RouteId id = ChainRoute(chain, RouteId::kAuditExport, RouteId::kPlatformAuditExport);
    EKM_RETURN_IF_ERROR(Allow(ctx, id, chain, ""));
    EKM_RETURN_IF_ERROR(Check(ctx, id, chain, "", auth::AuthorizeAuditExport(ctx.caller)));
    return inner_->ExportAudit(ctx, chain, sink);
  }

  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(const CallContext& ctx,
                                                  std::string_view chain) override {
    EKM_RETURN_IF_ERROR(Allow(
        ctx,
        ChainRoute(chain, RouteId::kAuditCreateCheckpoint, RouteId::kPlatformAuditCreateCheckpoint),
        chain, ""));
    return inner_->CreateAuditCheckpoint(ctx, chain);
  }

  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(const CallContext& ctx,
                                                              std::string_view chain) override {
    EKM_RETURN_IF_ERROR(Allow(
        ctx,
        ChainRoute(chain, RouteId::kAuditListCheckpoints, RouteId::kPlatformAuditListCheckpoints),
        chain, ""));
    return inner_->ListAuditCheckpoints(ctx, chain);
  }

  StatusOr<NewApiToken> CreateApiToken(const CallContext& ctx,
                                       const ApiTokenRequest& request) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kCreateToken, "", ""));
    const auth::Principal& p = ctx.caller;
    ApiTokenRequest req = request;
    // A workspace's owner mints tokens of its own workspace unless it names one.
    if (req.workspace.empty() && !p.IsAdmin()) req.workspace = p.workspace;
    EKM_RETURN_IF_ERROR(Check(ctx, RouteId::kCreateToken, req.workspace, "",
                              auth::AuthorizeTokenAdministration(p, auth::TokenAction::kCreate,
                                                                 req.workspace, req.role)));
    auto made = inner_->CreateApiToken(ctx, req);
    // The admin asking for the owner of a workspace that has one is refused there.
    if (made.status().code() == StatusCode::kPermissionDenied) {
      return Check(ctx, RouteId::kCreateToken, req.workspace, "", made.status());
    }
    return made;
  }

  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(const CallContext& ctx,
                                                    std::optional<std::string> workspace) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kListTokens, "", ""));
    const auth::Principal& p = ctx.caller;
    if (!p.IsAdmin()) {
      // A workspace's tokens are its owner's: its own workspace unless it names one.
      std::string ws = workspace.value_or("");
      if (ws.empty()) ws = p.workspace;
      EKM_RETURN_IF_ERROR(
          Check(ctx, RouteId::kListTokens, ws, "",
                auth::AuthorizeTokenAdministration(p, auth::TokenAction::kList, ws)));
      workspace = std::move(ws);
    }
    return inner_->ListApiTokens(ctx, std::move(workspace));
  }

  StatusOr<ApiTokenInfo> GetApiToken(const CallContext& ctx, std::string_view id) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kGetToken, "", ""));
    auto found = inner_->GetApiToken(ctx, id);
    EKM_RETURN_IF_ERROR(AllowTokenById(ctx, RouteId::kGetToken, auth::TokenAction::kList, found));
    return found;
  }

  StatusOr<ApiTokenInfo> RevokeApiToken(const CallContext& ctx, std::string_view id) override {
    EKM_RETURN_IF_ERROR(Allow(ctx, RouteId::kRevokeToken, "", ""));
    auto found = inner_->GetApiToken(ctx, id);
    EKM_RETURN_IF_ERROR(
        AllowTokenById(ctx, RouteId::kRevokeToken, auth::TokenAction::kRevoke, found));
    return inner_->RevokeApiToken(ctx, id);
  }

 private:
  // `why`, recorded when it is a refusal (token.permission_denied in the caller's workspace).
  Status Check(const CallContext& ctx, RouteId id, std::string_view workspace,
               std::string_view environment, Status why) {
    if (!why.ok()) {
      inner_->RecordPermissionDenied(ctx.caller, RouteInfoFor(id).name, workspace, environment,
                                     ctx.remote_address, why);
    }
    return why;
  }
  // The operation's route rule (api/operations.h).
  Status Allow(const CallContext& ctx, RouteId id, std::string_view workspace,
               std::string_view environment) {
    if (ctx.caller.local_operator) return Status::Ok();
    const RouteInfo& route = RouteInfoFor(id);
    return Check(ctx, id, workspace, environment,
                 auth::Authorize(ctx.caller, route.rule, route.name, workspace, environment));
  }
  // An emergency replacement bypasses the replacement period: the owner's alone.
  Status AllowEmergency(const CallContext& ctx, RouteId id, std::string_view workspace,
                        std::string_view environment, const KeyChangeOptions& change) {
    if (!change.emergency) return Status::Ok();
    return Check(ctx, id, workspace, environment,
                 auth::AuthorizeOwnerOnly(ctx.caller, "an emergency replacement"));
  }
  Status AllowRecordQuery(const CallContext& ctx, RouteId id, const EventQuery& query,
                          std::string_view rows) {
    EKM_RETURN_IF_ERROR(Allow(ctx, id, query.workspace, ""));
    return Check(ctx, id, query.workspace, "",
                 auth::AuthorizeRecordQuery(ctx.caller, query.environment, rows));
  }
  // Token administration on the token `found` (or not: an unknown id) by its id. A non-admin
  // gets the same 403 for an unknown id as for another workspace's token (no existence leak);
  // the admin goes on to the 404.
  Status AllowTokenById(const CallContext& ctx, RouteId id, auth::TokenAction action,
                        const StatusOr<ApiTokenInfo>& found) {
    if (!found.ok() && !IsUnknownToken(found.status())) return found.status();
    const auth::Principal& p = ctx.caller;
    Status why = found.ok()
                     ? auth::AuthorizeTokenAdministration(p, action, found->workspace, found->role)
                 : p.IsAdmin() ? Status::Ok()
                               : auth::AuthorizeTokenAdministration(p, action, "\x01");
    return Check(ctx, id, found.ok() ? found->workspace : "", "", std::move(why));
  }
  // What has no route: the local operator's (ekm on the data directory, ekmd itself).
  Status OperatorOnly(const CallContext& ctx, std::string_view what) {
    if (ctx.caller.local_operator) return Status::Ok();
    return PermissionDeniedError(std::string(what) + " is the platform operator's",
                                 "run it with ekm on the data directory");
  }

  EkmService* inner_;
};

}  // namespace

std::unique_ptr<EkmService> NewAuthorizingService(EkmService* inner) {
  return std::make_unique<AuthorizingService>(inner);
}

}  // namespace ekm
