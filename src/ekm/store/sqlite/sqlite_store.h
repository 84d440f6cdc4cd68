// The embedded default Store: one SQLite file in WAL mode.
#pragma once

#include <string>

#include "ekm/store/store.h"
#include "ekm/store/store_integrity.h"

namespace ekm {

// Opens (creating if needed) the database at `path`, with mode 0600, and applies every
// pending numbered migration in one transaction each. A newer schema than this build knows
// is refused with FailedPrecondition, and so is a store whose recorded root key fingerprint
// is not `binding`'s (before anything is written); a new store records it.
StatusOr<StorePtr> OpenSqliteStore(const std::string& path, StoreBinding binding);

}  // namespace ekm
