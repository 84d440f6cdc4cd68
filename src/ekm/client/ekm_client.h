// EkmClient: ekmd's API v1 over HTTP (libcurl), for the CLI's --server mode and for tests.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/ekm_api.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// For https:// servers: the CA to trust instead of the system store, and a client
// certificate and key (PEM) for servers that ask for one (ekmd --tls-client-ca).
struct ClientTlsOptions {
  std::string ca_file;
  std::string client_cert_file;
  std::string client_key_file;
};

// EkmApi over HTTP: each operation is one request to the route the operation table names for
// it. The caller is the bearer token (ekmd builds its context from it); of `ctx` only the request
// id is sent, as X-Request-Id, so that ekmd's logs carry the caller's.
// Streams go both ways for encrypt/decrypt of any size: a failure after output began is still
// reported (the client asks for the Ekm-Error trailer with Ekm-Accept-Trailer), and a stream cut
// short is an error too. Encrypt and Decrypt go through the JSON routes. One client per thread.
class EkmClient final : public EkmApi {
 public:
  // `base_url` like "http://127.0.0.1:8080"; `token` (may be empty) is sent as a bearer token.
  static StatusOr<std::unique_ptr<EkmClient>> Create(std::string base_url, std::string token = {},
                                                     ClientTlsOptions tls = {});
  ~EkmClient() override;

  // GET /healthz, the probe (no token).
  StatusOr<std::string> Health();
  // GET /readyz: ekmd's store answers (and ekmd is not shutting down).
  Status CheckStore() override;

  StatusOr<WorkspaceInfo> CreateWorkspace(const CallContext& ctx, std::string_view name) override;
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces(const CallContext& ctx) override;
  StatusOr<EnvironmentInfo> CreateEnvironment(const CallContext& ctx, std::string_view workspace,
                                              std::string_view name) override;
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(const CallContext& ctx,
                                                          std::string_view workspace) override;
  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view provider,
                                         std::string_view key_id) override;
  StatusOr<CustomerKeyInfo> ShowCustomerKey(const CallContext& ctx, std::string_view workspace,
                                            std::string_view environment) override;
  StatusOr<KeyPolicyAdvice> KeyPolicy(const CallContext& ctx, std::string_view workspace,
                                      std::string_view environment) override;
  StatusOr<std::string> CheckKeyPolicy(const CallContext& ctx, std::string_view workspace,
                                       std::string_view policy_text) override;
  Status EncryptStream(const CallContext& ctx, std::string_view workspace,
                       std::string_view environment, std::string_view scope, bool text,
                       const StreamSource& source, const StreamSink& sink) override;
  Status DecryptStream(const CallContext& ctx, std::string_view workspace,
                       std::string_view environment, const StreamSource& source,
                       const StreamSink& sink) override;
  Status Encrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 std::string_view scope, ByteView plaintext, Bytes* out) override;
  Status Decrypt(const CallContext& ctx, std::string_view workspace, std::string_view environment,
                 ByteView envelope, Bytes* out) override;
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment) override;
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const EnvironmentSettings& set, const std::vector<std::string>& reset) override;
  StatusOr<EnvironmentKeyStatus> KeyStatus(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;
  StatusOr<KeyCacheStats> KeyCacheStatistics(const CallContext& ctx) override;
  StatusOr<KeyValidation> SetCustomerKey(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view provider,
                                         std::string_view key_id,
                                         const KeyChangeOptions& options) override;
  StatusOr<RepackStatus> GetRepackStatus(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment) override;
  StatusOr<ScopeList> ListScopes(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment) override;
  StatusOr<std::vector<LifecycleEventInfo>> KeyHistory(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       int64_t after_id, size_t limit) override;
  StatusOr<RepackStatus> RerunRepack(const CallContext& ctx, std::string_view workspace,
                                     std::string_view environment) override;
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
  StatusOr<RotationResult> RotateEnvironmentKey(const CallContext& ctx, std::string_view workspace,
                                                std::string_view environment) override;
  StatusOr<std::vector<RotationResult>> RotateDataKeys(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override;
  StatusOr<ScheduledRotationReport> RunScheduledRotations(const CallContext& ctx) override;
  StatusOr<RewrapResult> Rewrap(const CallContext& ctx, std::string_view workspace,
                                std::string_view environment, ByteView envelope,
                                Bytes* out) override;
  StatusOr<ShredConfirmation> RequestShred(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;
  StatusOr<ShredResult> ShredEnvironment(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, std::string_view token,
                                         std::string_view confirm_environment) override;
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id) override;
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(const CallContext& ctx,
                                                       std::string_view workspace) override;
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                         std::string_view workspace) override;
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const CallContext& ctx,
                                                       const EventQuery& query) override;
  StatusOr<NewApiToken> CreateApiToken(const CallContext& ctx,
                                       const ApiTokenRequest& request) override;
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(const CallContext& ctx,
                                                    std::optional<std::string> workspace) override;
  StatusOr<ApiTokenInfo> GetApiToken(const CallContext& ctx, std::string_view id) override;
  StatusOr<ApiTokenInfo> RevokeApiToken(const CallContext& ctx, std::string_view id) override;
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI(const CallContext& ctx) override;
  StatusOr<WorkspaceInfo> GetWorkspace(const CallContext& ctx, std::string_view workspace) override;
  StatusOr<EnvironmentInfo> GetEnvironment(const CallContext& ctx, std::string_view workspace,
                                           std::string_view environment) override;
  StatusOr<KeyValidation> ValidateCustomerKey(const CallContext& ctx, std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider,
                                              std::string_view key_id) override;
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
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const CallContext& ctx,
                                                         const EventQuery& query) override;
  Status ExportAudit(const CallContext& ctx, std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override;
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(const CallContext& ctx,
                                                  std::string_view chain) override;
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(const CallContext& ctx,
                                                              std::string_view chain) override;
  StatusOr<AuditPublicKeyInfo> GetAuditPublicKey(const CallContext& ctx) override;

  class Impl;

 private:
  explicit EkmClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ekm
