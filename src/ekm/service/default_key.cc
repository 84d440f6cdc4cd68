#include "ekm/base/random.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<WorkspaceDefaultKey> EkmServiceImpl::SetWorkspaceDefaultKey(const CallContext& ctx,
                                                                     std::string_view workspace,
                                                                     std::string_view provider_name,
                                                                     std::string_view key_id) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
  EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(provider_name));
  auto failed = [&](std::string_view step, const Status& cause) {
    std::string message = "the workspace default key was not set: the " + std::string(step) +
                          " check failed: " + cause.message();
    std::string hint = cause.hint();
    if (cause.code() == StatusCode::kPermissionDenied) {
      return FailedPreconditionError(message,
                                     hint +
                                         "; the key policy must allow the platform kms:Encrypt and "
                                         "kms:Decrypt for ekm:workspace " +
                                         ws.name + " (`ekm key policy` prints the statement)");
    }
    // The platform's own AWS credentials rejected: the operator must fix them (409).
    if (cause.code() == StatusCode::kUnauthenticated) {
      return FailedPreconditionError(message, hint);
    }
    return Status(cause.code(), message, hint);
  };
  Status shape = provider->ValidateKeyId(key_id);
  if (!shape.ok()) return failed("key id", shape);
  // The round trip with the workspace's context only (the key policy pins ekm:workspace).
  EncryptionContext context{{std::string(kEkContextWorkspace), ws.name}};
  EKM_ASSIGN_OR_RETURN(SecretBytes probe, RandomSecret(32));
  EKM_ASSIGN_OR_RETURN(Bulkhead::Ticket place, keys_.ProviderCallPlace(*provider));
  auto wrapped = provider->Wrap(key_id, probe, context);
  if (!wrapped.ok()) return failed("encrypt", wrapped.status());
  auto back = provider->Unwrap(key_id, *wrapped, context);
  if (!back.ok()) return failed("decrypt", back.status());
  if (!(*back == probe)) {
    return DataLossError("the key provider returned a different key than it was given",
                         "the provider is misbehaving; do not use this key");
  }
  Store::WorkspaceDefaultKeyRecord rec{ws.id, std::string(provider_name), std::string(key_id),
                                       ToUnixSeconds(options_.clock->Now()), ctx.actor};
  EKM_RETURN_IF_ERROR(store_->SetWorkspaceDefaultKey(rec));
  RecordEvent(ctx, ws.name, "", event::kWorkspaceDefaultKeySet,
              {{"cmk", {{"provider", rec.cmk_provider}, {"key_id", rec.cmk_key_id}}}});
  return DefaultKeyInfo(ws.name, rec);
}

StatusOr<WorkspaceDefaultKey> EkmServiceImpl::GetWorkspaceDefaultKey(const CallContext& /*ctx*/,
                                                                     std::string_view workspace) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
  EKM_ASSIGN_OR_RETURN(std::optional<Store::WorkspaceDefaultKeyRecord> rec,
                       store_->GetWorkspaceDefaultKey(ws.id));
  if (!rec) return DefaultKeyInfo(ws.name, std::nullopt);
  return DefaultKeyInfo(ws.name, *rec);
}

StatusOr<WorkspaceDefaultKey> EkmServiceImpl::ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                                       std::string_view workspace) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
  EKM_RETURN_IF_ERROR(store_->DeleteWorkspaceDefaultKey(ws.id));
  RecordEvent(ctx, ws.name, "", event::kWorkspaceDefaultKeySet,
              {{"cmk",
                {{"provider", std::string(kPlatformProviderName)},
                 {"key_id", std::string(kPlatformRootKeyId)}}},
               {"reset", true}});
  return DefaultKeyInfo(ws.name, std::nullopt);
}

WorkspaceDefaultKey EkmServiceImpl::DefaultKeyInfo(
    const std::string& workspace, const std::optional<Store::WorkspaceDefaultKeyRecord>& rec) {
  WorkspaceDefaultKey k;
  k.workspace = workspace;
  k.set = rec.has_value();
  k.provider = rec ? rec->cmk_provider : std::string(kPlatformProviderName);
  k.key_id = rec ? rec->cmk_key_id : std::string(kPlatformRootKeyId);
  if (rec) {
    k.set_at = rec->set_at;
    k.actor = rec->actor;
  }
  return k;
}

}  // namespace ekm
