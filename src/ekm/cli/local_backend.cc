#include <algorithm>
#include <vector>

#include "ekm/base/worker_pool.h"
#include "ekm/cli/backend.h"

namespace ekm::cli {

namespace {

// Input is read in 1 MiB chunks: 16 default segments, sealed side by side on spare cores.
constexpr size_t kChunkSize = 1024 * 1024;
// Threads beside the CLI's own that seal segments: a file moves at the speed of the cores.
constexpr size_t kMaxSealingThreads = 3;

// Runs EkmService in this process on the data directory.
class LocalBackend : public Backend {
 public:
  explicit LocalBackend(std::unique_ptr<EkmService> svc) : svc_(std::move(svc)) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) override {
    return svc_->CreateWorkspace(name);
  }
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() override { return svc_->ListWorkspaces(); }
  StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view ws, std::string_view name) override {
    return svc_->CreateEnvironment(ws, name);
  }
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view ws) override {
    return svc_->ListEnvironments(ws);
  }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider,
                                         std::string_view key_id) override {
    return svc_->SetCustomerKey(ws, env, provider, key_id);
  }
  StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view ws, std::string_view env) override {
    return svc_->ShowCustomerKey(ws, env);
  }
  StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view ws, std::string_view env) override {
    return svc_->KeyPolicy(ws, env);
  }
  StatusOr<std::string> CheckKeyPolicy(std::string_view ws, std::string_view text) override {
    return svc_->CheckKeyPolicy(ws, text);
  }
  Status EncryptStream(std::string_view ws, std::string_view env, std::string_view scope, bool text,
                       const Source& source, const Sink& sink) override {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> enc,
                         svc_->NewEncryptStream(ws, env, scope, text));
    WorkerPool pool(WorkerPool::SpareCores(kMaxSealingThreads));
    EnvelopeEncoder::ParallelSealing parallel;
    parallel.pool = &pool;
    if (source.mapped) parallel.input_size = source.mapped->size();
    parallel.sink = sink;
    enc->SealInParallel(std::move(parallel));
    return Pump(
        source, sink, [&](ByteView in, Bytes* out) { return enc->Update(in, out); },
        [&](Bytes* out) { return enc->Finish(out); });
  }

  Status DecryptStream(std::string_view ws, std::string_view env, const Source& source,
                       const Sink& sink) override {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> dec, svc_->NewDecryptStream(ws, env));
    return Pump(
        source, sink, [&](ByteView in, Bytes* out) { return dec->Update(in, out); },
        [&](Bytes* out) { return dec->Finish(out); });
  }

  StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view ws, std::string_view env) override {
    return svc_->KeyStatus(ws, env);
  }
  StatusOr<KeyCacheStats> KeyCacheStatistics() override { return svc_->KeyCacheStatistics(); }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider, std::string_view key_id,
                                         const KeyChangeOptions& options) override {
    return svc_->SetCustomerKey(ws, env, provider, key_id, options);
  }
  StatusOr<RepackStatus> GetRepackStatus(std::string_view ws, std::string_view env) override {
    return svc_->GetRepackStatus(ws, env);
  }
  bool RunsRepacksLocally() const override { return true; }
  StatusOr<RepackStatus> RunRepack(
      std::string_view ws, std::string_view env,
      const std::function<void(const RepackStatus&)>& progress) override {
    return svc_->RunRepack(ws, env, progress);
  }

  StatusOr<KeyImportParameters> CreateKeyImportParameters(
      std::string_view ws, std::string_view env, std::chrono::seconds expires_in) override {
    return svc_->CreateKeyImportParameters(ws, env, expires_in);
  }
  StatusOr<KeyValidation> ImportKeyMaterial(std::string_view ws, std::string_view env,
                                            ByteView wrapped, std::string_view token,
                                            const KeyChangeOptions& change) override {
    return svc_->ImportKeyMaterial(ws, env, wrapped, token, change);
  }
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view ws, std::string_view env,
                                                  std::string_view key_id) override {
    return svc_->DeleteKeyMaterial(ws, env, key_id);
  }

  StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                std::string_view environment) override {
    return svc_->RotateEnvironmentKey(workspace, environment);
  }
  StatusOr<std::vector<RotationResult>> RotateDataKeys(std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override {
    return svc_->RotateDataKeys(workspace, environment, scopes, all_scopes);
  }
  StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                ByteView envelope, Bytes* out) override {
    return svc_->Rewrap(workspace, environment, envelope, out);
  }
  StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                           std::string_view environment) override {
    return svc_->RequestShred(workspace, environment);
  }
  StatusOr<ShredResult> ShredEnvironment(std::string_view workspace, std::string_view environment,
                                         std::string_view token,
                                         std::string_view confirm_environment) override {
    return svc_->ShredEnvironment(workspace, environment, token, confirm_environment);
  }
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id) override {
    return svc_->SetWorkspaceDefaultKey(workspace, provider, key_id);
  }
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace) override {
    return svc_->GetWorkspaceDefaultKey(workspace);
  }
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace) override {
    return svc_->ResetWorkspaceDefaultKey(workspace);
  }
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                       std::string_view environment) override {
    return svc_->GetEnvironmentSettings(workspace, environment);
  }
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      std::string_view workspace, std::string_view environment, const EnvironmentSettings& set,
      const std::vector<std::string>& reset) override {
    return svc_->UpdateEnvironmentSettings(workspace, environment, set, reset);
  }
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& query) override {
    return svc_->ListEvents(query);
  }
  StatusOr<ScheduledRotationReport> RunScheduledRotations() override {
    return svc_->RunScheduledRotations();
  }
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& query) override {
    return svc_->QueryAudit(query);
  }
  Status ExportAudit(std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override {
    return svc_->ExportAudit(chain, sink);
  }
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain) override {
    return svc_->CreateAuditCheckpoint(chain);
  }
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain) override {
    return svc_->ListAuditCheckpoints(chain);
  }
  StatusOr<std::string> AuditPublicKeyPem() override { return svc_->AuditSigningPublicKey().pem(); }

  StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider,
                                              std::string_view key_id) override {
    return svc_->ValidateCustomerKey(workspace, environment, provider, key_id);
  }
  StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override {
    return svc_->GenerateDataKey(workspace, environment, scope, size, with_plaintext);
  }

 private:
  template <typename UpdateFn, typename FinishFn>
  static Status Pump(const Source& source, const Sink& sink, UpdateFn update, FinishFn finish) {
    Bytes out;
    const auto step = [&](ByteView in) -> Status {
      out.clear();
      EKM_RETURN_IF_ERROR(update(in, &out));
      return out.empty() ? Status::Ok() : sink(out);
    };
    if (source.mapped) {
      for (ByteView rest = *source.mapped; !rest.empty();) {
        const size_t n = std::min(rest.size(), kChunkSize);
        EKM_RETURN_IF_ERROR(step(rest.first(n)));
        rest = rest.subspan(n);
        if (source.release) source.release(source.mapped->size() - rest.size());
      }
    } else {
      std::vector<uint8_t> in(kChunkSize);
      for (;;) {
        EKM_ASSIGN_OR_RETURN(size_t n, source.read(in.data(), in.size()));
        if (n == 0) break;
        EKM_RETURN_IF_ERROR(step(ByteView(in.data(), n)));
      }
    }
    out.clear();
    EKM_RETURN_IF_ERROR(finish(&out));
    if (!out.empty()) EKM_RETURN_IF_ERROR(sink(out));
    return Status::Ok();
  }

  StatusOr<NewApiToken> CreateApiToken(const ApiTokenRequest& request) override {
    return svc_->CreateApiToken(request);
  }
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(std::optional<std::string> ws) override {
    return svc_->ListApiTokens(std::move(ws));
  }
  StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id) override {
    return svc_->RevokeApiToken(id);
  }
  StatusOr<ApiTokenInfo> GetApiToken(std::string_view id) override { return svc_->GetApiToken(id); }
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI() override { return std::optional<ApiTokenInfo>(); }

  std::unique_ptr<EkmService> svc_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> NewLocalBackend(const EkmOptions& options) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmService> svc, EkmService::Open(options));
  return std::unique_ptr<Backend>(new LocalBackend(std::move(svc)));
}

}  // namespace ekm::cli
