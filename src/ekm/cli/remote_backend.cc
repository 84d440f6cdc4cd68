#include "ekm/cli/backend.h"
#include "ekm/client/ekm_client.h"

namespace ekm::cli {

namespace {

// Talks to a running ekmd.
class RemoteBackend : public Backend {
 public:
  explicit RemoteBackend(std::unique_ptr<EkmClient> client) : client_(std::move(client)) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) override {
    return client_->CreateWorkspace(name);
  }
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() override {
    return client_->ListWorkspaces();
  }
  StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view ws, std::string_view name) override {
    return client_->CreateEnvironment(ws, name);
  }
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view ws) override {
    return client_->ListEnvironments(ws);
  }
  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider,
                                         std::string_view key_id) override {
    return client_->SetCustomerKey(ws, env, provider, key_id);
  }
  StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view ws, std::string_view env) override {
    return client_->ShowCustomerKey(ws, env);
  }
  StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view ws, std::string_view env) override {
    return client_->KeyPolicy(ws, env);
  }
  StatusOr<std::string> CheckKeyPolicy(std::string_view ws, std::string_view text) override {
    return client_->CheckKeyPolicy(ws, text);
  }
  Status EncryptStream(std::string_view ws, std::string_view env, std::string_view scope, bool text,
                       const Source& source, const Sink& sink) override {
    return client_->EncryptStream(ws, env, scope, text, source.read, sink);
  }
  Status DecryptStream(std::string_view ws, std::string_view env, const Source& source,
                       const Sink& sink) override {
    return client_->DecryptStream(ws, env, source.read, sink);
  }

  StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view ws, std::string_view env) override {
    return client_->KeyStatus(ws, env);
  }
  StatusOr<KeyCacheStats> KeyCacheStatistics() override { return client_->KeyCacheStatistics(); }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider, std::string_view key_id,
                                         const KeyChangeOptions& options) override {
    return client_->SetCustomerKey(ws, env, provider, key_id, options);
  }
  StatusOr<RepackStatus> GetRepackStatus(std::string_view ws, std::string_view env) override {
    return client_->GetRepackStatus(ws, env);
  }
  bool RunsRepacksLocally() const override { return false; }
  StatusOr<RepackStatus> RunRepack(std::string_view, std::string_view,
                                   const std::function<void(const RepackStatus&)>&) override {
    return FailedPreconditionError(
        "ekmd runs repacks by itself, in the background",
        "follow it with `ekm repack status --workspace W --environment E --watch`");
  }

  StatusOr<KeyImportParameters> CreateKeyImportParameters(
      std::string_view ws, std::string_view env, std::chrono::seconds expires_in) override {
    return client_->CreateKeyImportParameters(ws, env, expires_in);
  }
  StatusOr<KeyValidation> ImportKeyMaterial(std::string_view ws, std::string_view env,
                                            ByteView wrapped, std::string_view token,
                                            const KeyChangeOptions& change) override {
    return client_->ImportKeyMaterial(ws, env, wrapped, token, change);
  }
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view ws, std::string_view env,
                                                  std::string_view key_id) override {
    return client_->DeleteKeyMaterial(ws, env, key_id);
  }

  StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                std::string_view environment) override {
    return client_->RotateEnvironmentKey(workspace, environment);
  }
  StatusOr<std::vector<RotationResult>> RotateDataKeys(std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override {
    return client_->RotateDataKeys(workspace, environment, scopes, all_scopes);
  }
  StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                ByteView envelope, Bytes* out) override {
    return client_->Rewrap(workspace, environment, envelope, out);
  }
  StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                           std::string_view environment) override {
    return client_->RequestShred(workspace, environment);
  }
  StatusOr<ShredResult> ShredEnvironment(std::string_view workspace, std::string_view environment,
                                         std::string_view token,
                                         std::string_view confirm_environment) override {
    return client_->ShredEnvironment(workspace, environment, token, confirm_environment);
  }
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id) override {
    return client_->SetWorkspaceDefaultKey(workspace, provider, key_id);
  }
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace) override {
    return client_->GetWorkspaceDefaultKey(workspace);
  }
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace) override {
    return client_->ResetWorkspaceDefaultKey(workspace);
  }
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                       std::string_view environment) override {
    return client_->GetEnvironmentSettings(workspace, environment);
  }
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      std::string_view workspace, std::string_view environment, const EnvironmentSettings& set,
      const std::vector<std::string>& reset) override {
    return client_->UpdateEnvironmentSettings(workspace, environment, set, reset);
  }
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& query) override {
    return client_->ListEvents(query);
  }
  StatusOr<ScheduledRotationReport> RunScheduledRotations() override {
    return client_->RunScheduledRotations();
  }
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& query) override {
    return client_->QueryAudit(query);
  }
  Status ExportAudit(std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override {
    return client_->ExportAudit(chain, sink);
  }
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain) override {
    return client_->CreateAuditCheckpoint(chain);
  }
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain) override {
    return client_->ListAuditCheckpoints(chain);
  }
  StatusOr<std::string> AuditPublicKeyPem() override { return client_->AuditPublicKeyPem(); }

  StatusOr<NewApiToken> CreateApiToken(const ApiTokenRequest& request) override {
    return client_->CreateApiToken(request);
  }
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(std::optional<std::string> ws) override {
    return client_->ListApiTokens(std::move(ws));
  }
  StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id) override {
    return client_->RevokeApiToken(id);
  }
  StatusOr<ApiTokenInfo> GetApiToken(std::string_view id) override {
    return client_->GetApiToken(id);
  }
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI() override {
    EKM_ASSIGN_OR_RETURN(ApiTokenInfo t, client_->WhoAmI());
    return std::optional<ApiTokenInfo>(std::move(t));
  }

  StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider,
                                              std::string_view key_id) override {
    return client_->ValidateCustomerKey(workspace, environment, provider, key_id);
  }
  StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override {
    return client_->GenerateDataKey(workspace, environment, scope, size, with_plaintext);
  }

 private:
  std::unique_ptr<EkmClient> client_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> NewRemoteBackend(const std::string& server_url,
                                                    const std::string& token,
                                                    const ClientTlsOptions& tls) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmClient> client,
                       EkmClient::Create(server_url, token, tls));
  return std::unique_ptr<Backend>(new RemoteBackend(std::move(client)));
}

}  // namespace ekm::cli
