// What SqlStore (sql_store.h) needs of a database: one connection's statements and
// transactions, and a pool that leases connections. Implemented for SQLite (store/sqlite) and
// PostgreSQL (store/postgres); SqlStore's SQL is written once, in the subset both accept, with
// `?` / `?N` placeholders (each driver maps them, and the few spellings that differ, see
// Dialect below).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm::sql {

enum class StepResult {
  kRow,         // a row is ready: read it with Int/Text/Blob
  kDone,        // the statement finished
  kConstraint,  // a UNIQUE, FOREIGN KEY or NOT NULL constraint refused the change
  kError,       // anything else: Connection::Error says what
};

// A prepared statement of one connection. Bind (1-based), then Step until kDone; columns are
// 0-based. Reset makes it ready to bind and run again (the holder resets it when it goes).
class Statement {
 public:
  virtual ~Statement() = default;
  virtual Statement& Bind(int index, int64_t value) = 0;
  virtual Statement& Bind(int index, std::string_view value) = 0;
  virtual Statement& Bind(int index, ByteView value) = 0;
  virtual StepResult Step() = 0;
  virtual void Reset() = 0;
  // A NULL reads as 0, "" or no bytes: the queries COALESCE what may be NULL.
  virtual int64_t Int(int column) const = 0;
  virtual std::string Text(int column) const = 0;
  virtual Bytes Blob(int column) const = 0;
};

enum class Dialect { kSqlite, kPostgres };

// One connection to the database, used by one thread at a time (a lease of ConnectionPool).
class Connection {
 public:
  virtual ~Connection() = default;
  virtual Dialect dialect() const = 0;
  // Prepared once per connection and cached by its text.
  virtual StatusOr<std::unique_ptr<Statement>> Prepare(const std::string& sql) = 0;
  // Runs statements without results (DDL, BEGIN, SAVEPOINT…).
  virtual Status Exec(const std::string& sql) = 0;
  // Rows changed by the last INSERT, UPDATE or DELETE.
  virtual uint64_t Changes() const = 0;
  // The last failure in ekm's words, with `what` ekm was doing: Unavailable (retryable, with
  // Retry-After) when the database is busy or unreachable, DataLoss when it is corrupt,
  // Internal otherwise.
  virtual Status Error(std::string_view what) const = 0;
  // Starts the outermost write transaction: SQLite takes the write lock at once (BEGIN
  // IMMEDIATE); PostgreSQL runs it SERIALIZABLE, so each transaction sees what SQLite's single
  // writer would.
  virtual Status BeginWrite() = 0;
  // The last failure was a serialization failure or deadlock: the transaction was rolled back
  // by the database and may be run again from its start.
  virtual bool LastErrorIsRetryable() const = 0;
  // After a committed change that destroyed key material: whatever the database needs so that
  // no file keeps the old bytes (docs/store.md "Destroying key material").
  virtual void WipeDestroyed() = 0;
  // Held while the schema is migrated, so that processes starting at once on one database
  // migrate it once (PostgreSQL: an advisory lock; SQLite: each migration's write transaction
  // checks again that it is still pending).
  virtual Status LockForMigration() = 0;
  virtual void UnlockForMigration() = 0;
  // Before a long walk over `table` whose rows changed in bulk (a repack): brings the
  // planner's statistics up to date where it has any (PostgreSQL: ANALYZE; SQLite: nothing).
  virtual void RefreshStatistics(const std::string& table) = 0;
  // The connection can no longer be used (the server went away): the pool drops it.
  virtual bool Broken() const = 0;
};

// Leases connections. Thread-safe.
class ConnectionPool {
 public:
  virtual ~ConnectionPool() = default;
  // A connection for the caller alone until Release. Unavailable (with Retry-After) when none
  // can be had in time: every connection busy, or the database unreachable.
  virtual StatusOr<Connection*> Acquire() = 0;
  virtual void Release(Connection* connection) = 0;
  // Names the store in messages ("the store /var/lib/ekm/ekm.db",
  // "the store postgresql://ekm@db:5432/ekm").
  virtual const std::string& name() const = 0;
};

}  // namespace ekm::sql
