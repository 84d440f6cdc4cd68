#include "ekm/testing/test_service.h"

#include "ekm/audit/audit_log.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/store_binding.h"

namespace ekm::testing {

StatusOr<std::unique_ptr<EkmService>> NewTestService(
    const std::string& dir, EkmOptions options,
    std::vector<std::unique_ptr<KeyProvider>> extra_providers) {
  const std::string root = dir + "/root.key";
  EKM_RETURN_IF_ERROR(PlatformKeyProvider::CreateRootKeyFile(root));
  EKM_ASSIGN_OR_RETURN(auto platform, PlatformKeyProvider::Open(root));
  auto providers = std::make_unique<ProviderRegistry>();
  providers->Register(std::move(platform));
  for (auto& p : extra_providers) providers->Register(std::move(p));
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenSqliteStore(dir + "/ekm.db", TestStoreBinding()));
  const std::string signing = dir + "/audit-signing.key";
  EKM_RETURN_IF_ERROR(AuditSigner::CreateKeyFile(signing));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<AuditSigner> signer, AuditSigner::Load(signing));
  options.aws.enabled = false;
  return NewEkmService(std::move(options), std::move(store), std::move(providers),
                       std::move(signer));
}

}  // namespace ekm::testing
