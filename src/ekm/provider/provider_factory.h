// ProviderFactory: how ekm builds each kind of KeyProvider it can use. The composition root
// builds every configured provider from one set of dependencies through these; a KMS that ekm
// learns to use is one more factory (and its folder under provider/), not a change to the
// service, the router or the CLI.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/provider/key_provider.h"

namespace ekm {

class Store;

// What providers are built from: the platform's shared parts. A provider takes what it needs.
struct ProviderDependencies {
  Store* store = nullptr;           // for providers that keep key material in the store
  KeyProvider* platform = nullptr;  // the platform root key, to seal what they keep
  Clock* clock = &Clock::Real();
};

struct ProviderFactory {
  std::string name;            // KeyProvider::Name() of what it builds: "aws-kms", "imported"
  std::string config_section;  // prefix of its ekmd options ("aws": --aws-…); empty: none
  std::string key_id_form;     // what one of its key ids looks like, for help and errors
  std::function<StatusOr<KeyProviderPtr>(const ProviderDependencies&)> create;
};

// Builds each factory's provider into `registry`, in order; the first failure names the
// provider it stopped at. A factory must build a provider of its own name.
Status CreateProviders(const std::vector<ProviderFactory>& factories,
                       const ProviderDependencies& dependencies, ProviderRegistry* registry);

}  // namespace ekm
