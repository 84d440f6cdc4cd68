// SqlStore: the Store (store.h) written once in SQL, over a sql::ConnectionPool. The SQLite
// (store/sqlite) and PostgreSQL (store/postgres) stores are this one with their driver, so
// both keep the same contract and pass the same conformance tests.
#pragma once

#include <memory>

#include "ekm/store/sql/sql_connection.h"
#include "ekm/store/store.h"
#include "ekm/store/store_integrity.h"

namespace ekm {

// Applies every pending numbered migration (migrations.h), one transaction each, and returns
// the store. A newer schema than this build knows is refused with FailedPrecondition, and so
// is a store whose recorded root key fingerprint is not `binding`'s (before anything is
// written); a new store records it. Without `create_if_empty`, an empty database (no schema
// yet) is refused with FailedPrecondition: it is created only on purpose (`ekm init`).
StatusOr<StorePtr> OpenSqlStore(std::unique_ptr<sql::ConnectionPool> pool, StoreBinding binding,
                                bool create_if_empty = true);

}  // namespace ekm
