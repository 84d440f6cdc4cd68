#include "ekm/provider/provider_factory.h"

namespace ekm {

Status CreateProviders(const std::vector<ProviderFactory>& factories,
                       const ProviderDependencies& dependencies, ProviderRegistry* registry) {
  for (const ProviderFactory& f : factories) {
    auto created = f.create(dependencies);
    if (!created.ok()) return created.status().WithContext("setting up key provider " + f.name);
    if ((*created)->Name() != f.name) {
      return InternalError("the factory of key provider " + f.name + " built provider " +
                           std::string((*created)->Name()));
    }
    registry->Register(std::move(created).value());
  }
  return Status::Ok();
}

}  // namespace ekm
