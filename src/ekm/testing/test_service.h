// The service on injected dependencies, for tests that need no data directory and no KMS: a
// SQLite store in `dir` (testing::TestStoreBinding), the platform provider on a new root key,
// a new audit signing key, and the providers a test adds (FakeKeyProvider, say).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ekm/base/status.h"
#include "ekm/provider/key_provider.h"
#include "ekm/service/ekm_service.h"

namespace ekm::testing {

StatusOr<std::unique_ptr<EkmService>> NewTestService(
    const std::string& dir, EkmOptions options,
    std::vector<std::unique_ptr<KeyProvider>> extra_providers = {});

}  // namespace ekm::testing
