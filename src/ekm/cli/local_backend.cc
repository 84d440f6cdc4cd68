#include <algorithm>
#include <vector>

#include "ekm/base/worker_pool.h"
#include "ekm/cli/backend.h"
#include "ekm/service/authorizing_service.h"

namespace ekm::cli {

namespace {

// Input is read in 1 MiB chunks: 16 default segments, sealed side by side on spare cores.
constexpr size_t kChunkSize = 1024 * 1024;
// Threads beside the CLI's own that seal segments: a file moves at the speed of the cores.
constexpr size_t kMaxSealingThreads = 3;

// Runs EkmService in this process on the data directory.
class LocalBackend : public Backend {
 public:
  LocalBackend(std::unique_ptr<EkmService> service, CallContext ctx)
      : service_(std::move(service)),
        svc_(NewAuthorizingService(service_.get())),
        ctx_(std::move(ctx)) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) override {
    return svc_->CreateWorkspace(ctx_, name);
  }
  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() override {
    return svc_->ListWorkspaces(ctx_);
  }
  StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view ws, std::string_view name) override {
    return svc_->CreateEnvironment(ctx_, ws, name);
  }
  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view ws) override {
    return svc_->ListEnvironments(ctx_, ws);
  }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider,
                                         std::string_view key_id) override {
    return svc_->SetCustomerKey(ctx_, ws, env, provider, key_id);
  }
  StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view ws, std::string_view env) override {
    return svc_->ShowCustomerKey(ctx_, ws, env);
  }
  StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view ws, std::string_view env) override {
    return svc_->KeyPolicy(ctx_, ws, env);
  }
  StatusOr<std::string> CheckKeyPolicy(std::string_view ws, std::string_view text) override {
    return svc_->CheckKeyPolicy(ctx_, ws, text);
  }
  Status EncryptStream(std::string_view ws, std::string_view env, std::string_view scope, bool text,
                       const Source& source, const Sink& sink) override {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> enc,
                         svc_->NewEncryptStream(ctx_, ws, env, scope, text));
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
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> dec,
                         svc_->NewDecryptStream(ctx_, ws, env));
    return Pump(
        source, sink, [&](ByteView in, Bytes* out) { return dec->Update(in, out); },
        [&](Bytes* out) { return dec->Finish(out); });
  }

  StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view ws, std::string_view env) override {
    return svc_->KeyStatus(ctx_, ws, env);
  }
  StatusOr<KeyCacheStats> KeyCacheStatistics() override { return svc_->KeyCacheStatistics(ctx_); }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view ws, std::string_view env,
                                         std::string_view provider, std::string_view key_id,
                                         const KeyChangeOptions& options) override {
    return svc_->SetCustomerKey(ctx_, ws, env, provider, key_id, options);
  }
  StatusOr<RepackStatus> GetRepackStatus(std::string_view ws, std::string_view env) override {
    return svc_->GetRepackStatus(ctx_, ws, env);
  }
  bool RunsRepacksLocally() const override { return true; }
  StatusOr<RepackStatus> RunRepack(
      std::string_view ws, std::string_view env,
      const std::function<void(const RepackStatus&)>& progress) override {
    return svc_->RunRepack(ctx_, ws, env, progress);
  }

  StatusOr<KeyImportParameters> CreateKeyImportParameters(
      std::string_view ws, std::string_view env, std::chrono::seconds expires_in) override {
    return svc_->CreateKeyImportParameters(ctx_, ws, env, expires_in);
  }
  StatusOr<KeyValidation> ImportKeyMaterial(std::string_view ws, std::string_view env,
                                            ByteView wrapped, std::string_view token,
                                            const KeyChangeOptions& change) override {
    return svc_->ImportKeyMaterial(ctx_, ws, env, wrapped, token, change);
  }
  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view ws, std::string_view env,
                                                  std::string_view key_id) override {
    return svc_->DeleteKeyMaterial(ctx_, ws, env, key_id);
  }

  StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                std::string_view environment) override {
    return svc_->RotateEnvironmentKey(ctx_, workspace, environment);
  }
  StatusOr<std::vector<RotationResult>> RotateDataKeys(std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override {
    return svc_->RotateDataKeys(ctx_, workspace, environment, scopes, all_scopes);
  }
  StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                ByteView envelope, Bytes* out) override {
    return svc_->Rewrap(ctx_, workspace, environment, envelope, out);
  }
  StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                           std::string_view environment) override {
    return svc_->RequestShred(ctx_, workspace, environment);
  }
  StatusOr<ShredResult> ShredEnvironment(std::string_view workspace, std::string_view environment,
                                         std::string_view token,
                                         std::string_view confirm_environment) override {
    return svc_->ShredEnvironment(ctx_, workspace, environment, token, confirm_environment);
  }
  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                       std::string_view provider,
                                                       std::string_view key_id) override {
    return svc_->SetWorkspaceDefaultKey(ctx_, workspace, provider, key_id);
  }
  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace) override {
    return svc_->GetWorkspaceDefaultKey(ctx_, workspace);
  }
  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace) override {
    return svc_->ResetWorkspaceDefaultKey(ctx_, workspace);
  }
  StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                       std::string_view environment) override {
    return svc_->GetEnvironmentSettings(ctx_, workspace, environment);
  }
  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      std::string_view workspace, std::string_view environment, const EnvironmentSettings& set,
      const std::vector<std::string>& reset) override {
    return svc_->UpdateEnvironmentSettings(ctx_, workspace, environment, set, reset);
  }
  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& query) override {
    return svc_->ListEvents(ctx_, query);
  }
  StatusOr<ScheduledRotationReport> RunScheduledRotations() override {
    return svc_->RunScheduledRotations(ctx_);
  }
  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& query) override {
    return svc_->QueryAudit(ctx_, query);
  }
  Status ExportAudit(std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override {
    return svc_->ExportAudit(ctx_, chain, sink);
  }
  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain) override {
    return svc_->CreateAuditCheckpoint(ctx_, chain);
  }
  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain) override {
    return svc_->ListAuditCheckpoints(ctx_, chain);
  }
  StatusOr<std::string> AuditPublicKeyPem() override { return svc_->AuditSigningPublicKey().pem(); }

  StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider,
                                              std::string_view key_id) override {
    return svc_->ValidateCustomerKey(ctx_, workspace, environment, provider, key_id);
  }
  StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override {
    return svc_->GenerateDataKey(ctx_, workspace, environment, scope, size, with_plaintext);
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
    return svc_->CreateApiToken(ctx_, request);
  }
  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(std::optional<std::string> ws) override {
    return svc_->ListApiTokens(ctx_, std::move(ws));
  }
  StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id) override {
    return svc_->RevokeApiToken(ctx_, id);
  }
  StatusOr<ApiTokenInfo> GetApiToken(std::string_view id) override {
    return svc_->GetApiToken(ctx_, id);
  }
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI() override { return std::optional<ApiTokenInfo>(); }

  std::unique_ptr<EkmService> service_;
  std::unique_ptr<EkmService> svc_;  // service_ behind the same authorization as ekmd's
  const CallContext ctx_;            // the operator, for every call
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> NewLocalBackend(const EkmOptions& options, CallContext caller) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmService> svc, EkmService::Open(options));
  return std::unique_ptr<Backend>(new LocalBackend(std::move(svc), std::move(caller)));
}

}  // namespace ekm::cli
