#include <spdlog/spdlog.h>

#include "ekm/provider/imported/imported_key_provider.h"
#include "ekm/provider/imported/key_material_import.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<KeyImportParameters> EkmServiceImpl::CreateKeyImportParameters(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    std::chrono::seconds expires_in) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(KeyProvider * platform, providers_->Get(kPlatformProviderName));
  EKM_ASSIGN_OR_RETURN(
      ImportParameters p,
      CreateImportParameters(*store_, *platform, env, ToUnixSeconds(options_.clock->Now()),
                             expires_in.count()));
  RecordEvent(ctx, env.workspace, env.name, event::kImportParamsCreated,
              {{"expires_at", FormatRfc3339(FromUnixSeconds(p.expires_at))},
               {"algorithm", std::string(kImportWrappingAlgorithm)}});
  return KeyImportParameters{env.workspace,
                             env.name,
                             std::move(p.wrapping_key_pem),
                             std::move(p.import_token),
                             p.expires_at,
                             std::string(kImportWrappingAlgorithm),
                             kImportedMaterialSize};
}

StatusOr<KeyValidation> EkmServiceImpl::ImportKeyMaterial(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    ByteView wrapped_material, std::string_view import_token, const KeyChangeOptions& change) {
  // A replacement by import follows the rules of `ekm key set` (once per period, emergency).
  EKM_RETURN_IF_ERROR(CheckKeyChangeOptions(change));
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(KeyProvider * platform, providers_->Get(kPlatformProviderName));
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  EKM_ASSIGN_OR_RETURN(
      SecretBytes material,
      OpenImportedMaterial(*store_, *platform, env, wrapped_material, import_token, now));
  EKM_ASSIGN_OR_RETURN(std::string key_id, ImportedKeyId(material));
  EKM_ASSIGN_OR_RETURN(std::optional<Store::KeyMaterialRecord> previous,
                       store_->GetKeyMaterial(env.id, key_id));
  Store::KeyMaterialRecord rec{env.id, key_id, {}, now, 0};
  EKM_ASSIGN_OR_RETURN(
      rec.sealed_material,
      SealSecret(*platform, material, KeyMaterialSealContext(env.workspace, env.name, key_id)));
  // The material and the key change in one transaction: a refused import leaves no material
  // behind (the imported provider reads it back inside the transaction for the round trip; no
  // network call is made in it). What the refusal leaves in the audit log is written after.
  std::optional<KeyUpdate> u;
  Status imported = store_->InTransaction([&]() -> Status {
    u.emplace(ctx, env.workspace, env.name, kImportedProviderName, key_id, change,
              /*validate=*/false);
    u->outcome_recorded_by_caller = true;
    EKM_RETURN_IF_ERROR(store_->PutKeyMaterial(rec));
    return UpdateKey(*u);
  });
  if (u && !u->v.checks.empty()) RecordOutcome(*u);
  if (!imported.ok()) return imported;
  const bool restored = previous && previous->deleted_at != 0;
  // Access comes back now, not when a cached refusal expires.
  keys_.ForgetEnvironment(env.workspace, env.name);
  PostNotice(kNoticeEnvironmentChanged, &env);
  RecordEvent(
      ctx, env.workspace, env.name, event::kKeyMaterialImported,
      {{"key_id", key_id}, {"algorithm", kImportWrappingAlgorithm}, {"restored", restored}});
  return std::move(u->v);
}

StatusOr<KeyMaterialDeletion> EkmServiceImpl::DeleteKeyMaterial(const CallContext& ctx,
                                                                std::string_view workspace,
                                                                std::string_view environment,
                                                                std::string_view key_id) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord current,
                       store_->GetEnvironmentKey(env.id, env.current_ek_version));
  const bool current_is_imported = current.cmk_provider == kImportedProviderName;
  std::string id(key_id);
  if (id.empty()) {
    if (!current_is_imported) {
      return FailedPreconditionError(
          "the CMK of " + env.workspace + "/" + env.name + " is " + current.cmk_provider + " " +
              current.cmk_key_id + ", not imported key material",
          "to delete earlier imported material, name it with --key-id imported:…");
    }
    id = current.cmk_key_id;
  } else {
    EKM_ASSIGN_OR_RETURN(KeyProvider * imported, providers_->Get(kImportedProviderName));
    EKM_RETURN_IF_ERROR(imported->ValidateKeyId(id));
  }
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  EKM_RETURN_IF_ERROR(store_->DeleteKeyMaterial(env.id, id, now));
  KeyMaterialDeletion d{env.workspace, env.name, id, now,
                        current_is_imported && current.cmk_key_id == id};
  RecordEvent(ctx, env.workspace, env.name, event::kKeyMaterialDeleted,
              {{"key_id", id}, {"in_use", d.in_use}});
  return d;
}

}  // namespace ekm
