// EkmClient: ekmd's API v1 over HTTP (libcurl), for the CLI's --server mode and for tests.
// Streams both ways for encrypt/decrypt of any size. One client per thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/status.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

// For https:// servers: the CA to trust instead of the system store, and a client
// certificate and key (PEM) for servers that ask for one (ekmd --tls-client-ca).
struct ClientTlsOptions {
  std::string ca_file;
  std::string client_cert_file;
  std::string client_key_file;
};

class EkmClient {
 public:
  // `base_url` like "http://127.0.0.1:8080"; `token` (may be empty) is sent as a bearer token.
  static StatusOr<std::unique_ptr<EkmClient>> Create(std::string base_url, std::string token = {},
                                                     ClientTlsOptions tls = {});
  ~EkmClient();

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name);
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces();
  StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view workspace, std::string_view name);
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view workspace);

  // Customer main keys (see EkmService).
  StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace, std::string_view environment,
                                         std::string_view provider, std::string_view key_id);
  StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view workspace,
                                            std::string_view environment);
  StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view workspace, std::string_view environment);
  // The policy doctor's report, as JSON.
  StatusOr<std::string> CheckKeyPolicy(std::string_view workspace, std::string_view policy_text);

  // Reads `source` until it returns 0 (end of input) and writes the response to `sink`,
  // streaming both ways. A failure after output began is still reported: the client asks for
  // the Ekm-Error trailer (Ekm-Accept-Trailer), and a stream cut short is an error too.
  using Source = std::function<StatusOr<size_t>(uint8_t* buf, size_t capacity)>;
  using Sink = std::function<Status(ByteView)>;
  Status EncryptStream(std::string_view workspace, std::string_view environment,
                       std::string_view scope, bool text, const Source& source, const Sink& sink);
  Status DecryptStream(std::string_view workspace, std::string_view environment,
                       const Source& source, const Sink& sink);

  // Whole messages through the JSON API.
  StatusOr<std::string> Encrypt(std::string_view workspace, std::string_view environment,
                                std::string_view scope, ByteView plaintext);
  StatusOr<Bytes> Decrypt(std::string_view workspace, std::string_view environment,
                          std::string_view ciphertext);
  StatusOr<std::string> Health();

  class Impl;

  // GET …/environments/{e}/status and GET /v1/key-cache (the server's cache).
  StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view workspace,
                                           std::string_view environment);
  StatusOr<KeyCacheStats> KeyCacheStatistics();

  // "Update key" with the replacement options (an emergency replacement and its reason).
  StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace, std::string_view environment,
                                         std::string_view provider, std::string_view key_id,
                                         const KeyChangeOptions& options);
  StatusOr<RepackStatus> GetRepackStatus(std::string_view workspace, std::string_view environment);

  // Uploaded key material (see EkmService).
  StatusOr<KeyImportParameters> CreateKeyImportParameters(std::string_view workspace,
                                                          std::string_view environment,
                                                          std::chrono::seconds expires_in);
  StatusOr<KeyValidation> ImportKeyMaterial(std::string_view workspace,
                                            std::string_view environment, ByteView wrapped_material,
                                            std::string_view import_token,
                                            const KeyChangeOptions& change = {});
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view key_id);

  // Rotation, rewrap (the text form over JSON), crypto-shred, workspace default CMK,
  // environment settings and lifecycle events (see EkmService).
  StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                std::string_view environment);
  // POST /v1/rotations/run (admin): what the environments' rotation periods say is due.
  StatusOr<ScheduledRotationReport> RunScheduledRotations();
  StatusOr<std::vector<RotationResult>> RotateDataKeys(std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes);
  StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                ByteView envelope, Bytes* out);
  StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                           std::string_view environment);
  StatusOr<ShredResult> ShredEnvironment(std::string_view workspace, std::string_view environment,
                                         std::string_view token,
                                         std::string_view confirm_environment);
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id);
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace);
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace);
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                       std::string_view environment);
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(std::string_view workspace,
                                                          std::string_view environment,
                                                          const EnvironmentSettings& set,
                                                          const std::vector<std::string>& reset);
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& query);

  // API tokens: POST /v1/tokens, GET /v1/tokens[?workspace=W], DELETE /v1/tokens/{id}, and
  // GET /v1/token (the calling token).
  StatusOr<NewApiToken> CreateApiToken(const ApiTokenRequest& request);
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(std::optional<std::string> workspace);
  StatusOr<ApiTokenInfo> GetApiToken(std::string_view id);
  StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id);
  StatusOr<ApiTokenInfo> WhoAmI();
  StatusOr<WorkspaceInfo> GetWorkspace(std::string_view workspace);
  StatusOr<EnvironmentInfo> GetEnvironment(std::string_view workspace,
                                           std::string_view environment);
  // POST …/key/validate: "Update key"'s checks, nothing changed.
  StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider, std::string_view key_id);
  // POST …/generate-data-key; GeneratedDataKey::ciphertext is the binary envelope.
  StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext);

  // The audit log; chain "" = the platform chain.
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& query);
  Status ExportAudit(std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink);
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain);
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain);
  StatusOr<std::string> AuditPublicKeyPem();

 private:
  explicit EkmClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ekm
