#include "ekm/service/ekm_service_impl.h"

namespace ekm {

EkmServiceImpl::~EkmServiceImpl() {
  StopRepackRunner();
  StopAuditTasks();
}

StatusOr<EnvironmentRecord> EkmServiceImpl::StoredEnvironment(std::string_view workspace,
                                                              std::string_view environment) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  auto env = store_->GetEnvironment(workspace, environment);
  if (env.ok()) EKM_RETURN_IF_ERROR(RefuseIfShredded(*env, /*cached=*/false));
  if (env.ok() || env.status().code() != StatusCode::kNotFound) return env;
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
  return env;
}

Status EkmServiceImpl::CustomerKeyError(std::string_view workspace, std::string_view environment,
                                        std::string_view check, const Status& cause) {
  std::string message =
      "Update key failed at the " + std::string(check) + " check: " + cause.message();
  std::string hint = cause.hint();
  switch (cause.code()) {
    case StatusCode::kPermissionDenied:
      return FailedPreconditionError(
          message, hint + "; `ekm key policy --workspace " + std::string(workspace) +
                       " --environment " + std::string(environment) +
                       "` prints the statement, and `ekm policy check FILE` checks a policy");
    case StatusCode::kUnauthenticated:
      // AWS rejected the platform's own AWS credentials: not the customer's refusal, and
      // not transient either: the platform operator must fix them (docs/api.md: 409).
      return FailedPreconditionError(message, hint);
    default:
      return Status(cause.code(), message, hint);
  }
}

std::string EkmServiceImpl::Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

void EkmServiceImpl::RecordEvent(const CallContext& ctx, std::string_view workspace,
                                 std::string_view environment, std::string_view type,
                                 const nlohmann::json& detail) {
  RecordLifecycleEvent(*store_, *options_.clock, ctx.actor, workspace, environment, type, detail)
      .IgnoreError();
}

Status EkmServiceImpl::RecordEventInTransaction(const CallContext& ctx, std::string_view workspace,
                                                std::string_view environment, std::string_view type,
                                                const nlohmann::json& detail) {
  return RecordLifecycleEvent(*store_, *options_.clock, ctx.actor, workspace, environment, type,
                              detail);
}

StatusOr<EnvironmentRecord> EkmServiceImpl::Environment(
    std::string_view workspace, std::string_view environment,
    std::chrono::steady_clock::time_point* valid_until) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  auto env = keys_.GetEnvironment(workspace, environment, valid_until);
  if (env.ok()) EKM_RETURN_IF_ERROR(RefuseIfShredded(*env, /*cached=*/true, valid_until));
  if (env.ok() || env.status().code() != StatusCode::kNotFound) return env;
  // Say which part is missing: the workspace or the environment inside it.
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
  return env;
}

EnvironmentInfo EkmServiceImpl::Info(const EnvironmentRecord& r, const EnvironmentKeyRecord& ek) {
  return EnvironmentInfo{r.workspace,     r.name,        r.created_at,
                         ek.cmk_provider, ek.cmk_key_id, r.current_ek_version};
}

KeyHierarchyOptions EkmServiceImpl::HierarchyOptions(const EkmOptions& o) {
  KeyHierarchyOptions k;
  k.ttl = o.key_cache_ttl;
  k.max_messages_per_dk = o.max_messages_per_dk;
  k.nonce_lease_size = o.nonce_lease_size;
  k.max_cached_keys = o.key_cache_max_entries;
  k.max_calls_per_provider = o.max_calls_per_provider;
  return k;
}

std::unique_ptr<EkmService> NewEkmService(EkmOptions options, StorePtr store,
                                          std::unique_ptr<ProviderRegistry> providers,
                                          std::unique_ptr<AuditSigner> audit_signer) {
  return std::make_unique<EkmServiceImpl>(std::move(options), std::move(store),
                                          std::move(providers), std::move(audit_signer));
}

}  // namespace ekm
