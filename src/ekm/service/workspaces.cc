#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<WorkspaceInfo> EkmServiceImpl::CreateWorkspace(const CallContext& ctx,
                                                        std::string_view name) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", name));
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord rec,
                       store_->CreateWorkspace(name, ToUnixSeconds(options_.clock->Now())));
  // In the new workspace's own chain (its first record) and in the platform chain.
  RecordEvent(ctx, rec.name, "", event::kWorkspaceCreated, nlohmann::json::object());
  RecordEvent(ctx, "", "", event::kWorkspaceCreated, {{"workspace", rec.name}});
  return WorkspaceInfo{rec.name, rec.created_at};
}

StatusOr<std::vector<WorkspaceInfo>> EkmServiceImpl::ListWorkspaces(const CallContext& /*ctx*/) {
  EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceRecord> recs, store_->ListWorkspaces());
  std::vector<WorkspaceInfo> out;
  out.reserve(recs.size());
  for (auto& r : recs) out.push_back(WorkspaceInfo{std::move(r.name), r.created_at});
  return out;
}

StatusOr<EnvironmentInfo> EkmServiceImpl::CreateEnvironment(const CallContext& ctx,
                                                            std::string_view workspace,
                                                            std::string_view name) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", name));
  // Fail on a missing workspace before calling the provider.
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
  // New environments start on the platform-managed CMK; `ekm key set` replaces it.
  CmkRef cmk{std::string(kPlatformProviderName), std::string(kPlatformRootKeyId)};
  EKM_RETURN_IF_ERROR(PrepareNewEnvironment(workspace, name, &cmk));
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek, NewFirstEnvironmentKey(workspace, name, cmk));
  // The checks again, with the insert, in one transaction (the provider was asked in between):
  // a default CMK set meanwhile, or a shred of a same-named environment, is seen.
  EnvironmentRecord rec;
  EKM_RETURN_IF_ERROR(store_->InTransaction([&]() -> Status {
    CmkRef now{std::string(kPlatformProviderName), std::string(kPlatformRootKeyId)};
    EKM_RETURN_IF_ERROR(PrepareNewEnvironment(workspace, name, &now));
    if (now.provider != cmk.provider || now.key_id != cmk.key_id) {
      return FailedPreconditionError("the default key of workspace \"" + std::string(workspace) +
                                         "\" changed while environment \"" + std::string(name) +
                                         "\" was being created",
                                     "create it again: it gets the new default key");
    }
    EKM_ASSIGN_OR_RETURN(
        rec, store_->CreateEnvironment(workspace, name, ek, ToUnixSeconds(options_.clock->Now())));
    return RecordEventInTransaction(
        ctx, rec.workspace, rec.name, event::kEnvironmentCreated,
        {{"cmk", {{"provider", ek.cmk_provider}, {"key_id", ek.cmk_key_id}}},
         {"ek_version", ek.version}});
  }));
  return Info(rec, ek);
}

StatusOr<std::vector<EnvironmentInfo>> EkmServiceImpl::ListEnvironments(
    const CallContext& /*ctx*/, std::string_view workspace) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentRecord> recs, store_->ListEnvironments(workspace));
  std::vector<EnvironmentInfo> out;
  out.reserve(recs.size());
  for (const auto& r : recs) {
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                         store_->GetEnvironmentKey(r.id, r.current_ek_version));
    out.push_back(Info(r, ek));
  }
  return out;
}

StatusOr<WorkspaceInfo> EkmServiceImpl::GetWorkspace(const CallContext& /*ctx*/,
                                                     std::string_view workspace) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord rec, store_->GetWorkspace(workspace));
  return WorkspaceInfo{rec.name, rec.created_at};
}

StatusOr<EnvironmentInfo> EkmServiceImpl::GetEnvironment(const CallContext& /*ctx*/,
                                                         std::string_view workspace,
                                                         std::string_view environment) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  auto env = store_->GetEnvironment(workspace, environment);
  if (!env.ok() && env.status().code() == StatusCode::kNotFound) {
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());  // which part is missing
  }
  EKM_RETURN_IF_ERROR(env.status());
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                       store_->GetEnvironmentKey(env->id, env->current_ek_version));
  return Info(*env, ek);
}

Status EkmServiceImpl::PrepareNewEnvironment(std::string_view workspace, std::string_view name,
                                             CmkRef* cmk) {
  auto existing = store_->GetEnvironment(workspace, name);
  if (existing.ok()) {
    EKM_ASSIGN_OR_RETURN(std::optional<Store::EnvironmentShredRecord> shred,
                         store_->GetEnvironmentShred(existing->id));
    if (shred) return ShreddedError(workspace, name, shred->shredded_at);
  }
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
  EKM_ASSIGN_OR_RETURN(std::optional<Store::WorkspaceDefaultKeyRecord> def,
                       store_->GetWorkspaceDefaultKey(ws.id));
  if (def) *cmk = CmkRef{def->cmk_provider, def->cmk_key_id};
  return Status::Ok();
}

StatusOr<EnvironmentKeyRecord> EkmServiceImpl::NewFirstEnvironmentKey(std::string_view workspace,
                                                                      std::string_view name,
                                                                      const CmkRef& cmk) {
  auto ek = keys_.NewEnvironmentKey(workspace, name, cmk, 1);
  if (ek.ok() || cmk.provider == kPlatformProviderName) return ek;
  Status s = ProviderRefusal(ek.status().WithContext("the workspace default key (" + cmk.provider +
                                                     " " + cmk.key_id +
                                                     ") could not wrap the new environment's key"));
  return Status(s.code(), s.message(),
                s.hint() + (s.hint().empty() ? "" : "; ") +
                    "fix the key's policy or state, or go back to the platform key with "
                    "`ekm workspace set-default-key --workspace " +
                    std::string(workspace) + " --reset`");
}

}  // namespace ekm
