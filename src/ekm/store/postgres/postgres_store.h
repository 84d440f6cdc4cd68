// The Store on PostgreSQL (libpq): SqlStore over a pool of connections, for several ekmd
// replicas on one database (docs/operations.md "Running several replicas").
#pragma once

#include <cstddef>
#include <string>

#include "ekm/store/store.h"
#include "ekm/store/store_integrity.h"

namespace ekm {

struct PostgresStoreOptions {
  // A libpq connection URI: postgresql://user@host:port/db?sslmode=verify-full. A password in
  // it is refused (it would be on a command line or in an environment listing): libpq reads it
  // from PGPASSFILE (~/.pgpass by default) or passfile=… in the URI.
  std::string url;
  size_t pool_size = 8;              // connections at most
  int connect_timeout_seconds = 5;   // unless the URI says connect_timeout=
  int statement_timeout_ms = 10000;  // a statement running longer is cancelled (Unavailable)
  int acquire_timeout_ms = 5000;     // waiting for a free connection of the pool
  // Creates the schema in an empty database (`ekm init`); otherwise an empty database is
  // refused (FailedPrecondition: not initialized).
  bool create_if_empty = false;
};

// Connects, checks the server, and migrates the schema under an advisory lock (replicas that
// start at once migrate it once). InvalidArgument for a bad URI or one with a password;
// Unavailable when the server cannot be reached.
StatusOr<StorePtr> OpenPostgresStore(const PostgresStoreOptions& options, StoreBinding binding);

// "postgresql://user@host:port/db": the URI without password or options, for messages.
StatusOr<std::string> PostgresDisplayName(const std::string& url);

}  // namespace ekm
