// What the CLI's commands run against: the local data directory (EkmService in-process) or a
// running ekmd (EkmClient over HTTP). Each command is written once against this interface.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/status.h"
#include "ekm/client/ekm_client.h"
#include "ekm/service/ekm_service.h"

namespace ekm::cli {

// Stream input. `read` fills `buf` with up to `capacity` bytes, 0 at end of input. When the
// input is a regular file, `mapped` holds all of it as mapped memory, and the local backend seals
// straight from the page cache: copying 256 MiB in with read(2) took half of `ekm encrypt`.
struct Source {
  std::function<StatusOr<size_t>(uint8_t* buf, size_t capacity)> read;
  std::optional<ByteView> mapped;
  // Called with each prefix of `mapped` that has been used, so the mapping's pages can leave
  // the process's memory (a stream is encrypted in bounded memory, mapped or not).
  std::function<void(size_t used)> release;
};
using Sink = std::function<Status(ByteView)>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) = 0;
  virtual StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() = 0;
  virtual StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view workspace,
                                                      std::string_view name) = 0;
  virtual StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view workspace) = 0;
  virtual StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view provider,
                                                 std::string_view key_id) = 0;
  virtual StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view workspace,
                                                    std::string_view environment) = 0;
  virtual StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view workspace,
                                              std::string_view environment) = 0;
  virtual StatusOr<std::string> CheckKeyPolicy(std::string_view workspace,
                                               std::string_view policy_text) = 0;
  virtual Status EncryptStream(std::string_view workspace, std::string_view environment,
                               std::string_view scope, bool text, const Source& source,
                               const Sink& sink) = 0;
  virtual Status DecryptStream(std::string_view workspace, std::string_view environment,
                               const Source& source, const Sink& sink) = 0;
  virtual StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view workspace,
                                                   std::string_view environment) = 0;
  // Local mode: this command's own (fresh) cache; server mode: the server's.
  virtual StatusOr<KeyCacheStats> KeyCacheStatistics() = 0;

  virtual StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view provider, std::string_view key_id,
                                                 const KeyChangeOptions& options) = 0;
  virtual StatusOr<RepackStatus> GetRepackStatus(std::string_view workspace,
                                                 std::string_view environment) = 0;
  // Local mode runs repacks in the foreground (there is no ekmd to run them); server mode
  // leaves them to ekmd.
  virtual bool RunsRepacksLocally() const = 0;
  virtual StatusOr<RepackStatus> RunRepack(
      std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) = 0;

  virtual StatusOr<KeyImportParameters> CreateKeyImportParameters(
      std::string_view workspace, std::string_view environment,
      std::chrono::seconds expires_in) = 0;
  virtual StatusOr<KeyValidation> ImportKeyMaterial(std::string_view workspace,
                                                    std::string_view environment,
                                                    ByteView wrapped_material,
                                                    std::string_view import_token,
                                                    const KeyChangeOptions& change) = 0;
  virtual StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view workspace,
                                                          std::string_view environment,
                                                          std::string_view key_id) = 0;

  virtual StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                        std::string_view environment) = 0;
  virtual StatusOr<std::vector<RotationResult>> RotateDataKeys(
      std::string_view workspace, std::string_view environment,
      const std::vector<std::string>& scopes, bool all_scopes) = 0;
  virtual StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                        ByteView envelope, Bytes* out) = 0;
  virtual StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                                   std::string_view environment) = 0;
  virtual StatusOr<ShredResult> ShredEnvironment(std::string_view workspace,
                                                 std::string_view environment,
                                                 std::string_view token,
                                                 std::string_view confirm_environment) = 0;
  virtual StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                               std::string_view provider,
                                                               std::string_view key_id) = 0;
  virtual StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace) = 0;
  virtual StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace) = 0;
  virtual StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                               std::string_view environment) = 0;
  virtual StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      std::string_view workspace, std::string_view environment, const EnvironmentSettings& set,
      const std::vector<std::string>& reset) = 0;
  virtual StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& query) = 0;
  // What is due now (ekmd also runs the schedule by itself).
  virtual StatusOr<ScheduledRotationReport> RunScheduledRotations() = 0;
  virtual StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                                      std::string_view environment,
                                                      std::string_view provider,
                                                      std::string_view key_id) = 0;
  virtual StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                                     std::string_view environment,
                                                     std::string_view scope, size_t size,
                                                     bool with_plaintext) = 0;

  virtual StatusOr<NewApiToken> CreateApiToken(const ApiTokenRequest& request) = 0;
  virtual StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(
      std::optional<std::string> workspace) = 0;
  virtual StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id) = 0;
  virtual StatusOr<ApiTokenInfo> GetApiToken(std::string_view id) = 0;
  // The calling token; nullopt in local mode (the platform operator, no token).
  virtual StatusOr<std::optional<ApiTokenInfo>> WhoAmI() = 0;

  // The audit log; chain "" = the platform chain.
  virtual StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& query) = 0;
  virtual Status ExportAudit(std::string_view chain,
                             const std::function<Status(const LifecycleEventRecord&)>& sink) = 0;
  virtual StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain) = 0;
  virtual StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain) = 0;
  virtual StatusOr<std::string> AuditPublicKeyPem() = 0;
};

// `caller`: the operator on the data directory, named in lifecycle events ("cli:alice").
StatusOr<std::unique_ptr<Backend>> NewLocalBackend(const EkmOptions& options, CallContext caller);
StatusOr<std::unique_ptr<Backend>> NewRemoteBackend(const std::string& server_url,
                                                    const std::string& token,
                                                    const ClientTlsOptions& tls = {});

}  // namespace ekm::cli
