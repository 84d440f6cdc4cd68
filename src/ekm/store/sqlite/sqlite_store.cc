#include "ekm/store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "ekm/store/sql/sql_connection.h"
#include "ekm/store/sql/sql_store.h"

namespace ekm {

namespace {

constexpr int kBusyTimeoutMs = 5000;
// How long a WAL-truncating checkpoint waits for readers while it holds the write lock.
constexpr int kCheckpointWaitMs = 200;

class SqliteStatement final : public sql::Statement {
 public:
  explicit SqliteStatement(sqlite3_stmt* s) : s_(s) {}
  ~SqliteStatement() override { Reset(); }

  Statement& Bind(int i, int64_t v) override {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Statement& Bind(int i, std::string_view v) override {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, ByteView v) override {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  sql::StepResult Step() override {
    switch (sqlite3_step(s_)) {
      case SQLITE_ROW:
        return sql::StepResult::kRow;
      case SQLITE_DONE:
        return sql::StepResult::kDone;
      case SQLITE_CONSTRAINT:
        return sql::StepResult::kConstraint;
      default:
        return sql::StepResult::kError;
    }
  }
  void Reset() override {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t Int(int col) const override { return sqlite3_column_int64(s_, col); }
  std::string Text(int col) const override {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  Bytes Blob(int col) const override {
    const auto* b = static_cast<const uint8_t*>(sqlite3_column_blob(s_, col));
    int n = sqlite3_column_bytes(s_, col);
    return b ? Bytes(b, b + n) : Bytes();
  }

 private:
  sqlite3_stmt* s_;
};

// One connection, and the pool of it: SQLite serialises writers anyway. Reads could use a
// pool of read connections (WAL allows concurrent readers) when profiling says so.
class SqliteConnection final : public sql::Connection, public sql::ConnectionPool {
 public:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), name_("the store " + path) {}
  ~SqliteConnection() override {
    for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
    if (wipe_pending_) TruncateWal(kBusyTimeoutMs);
    sqlite3_close(db_);
  }

  // ConnectionPool: a lease is the mutex.
  StatusOr<sql::Connection*> Acquire() override {
    mu_.lock();
    return static_cast<sql::Connection*>(this);
  }
  void Release(sql::Connection*) override {
    RetryPendingWipe();
    mu_.unlock();
  }
  const std::string& name() const override { return name_; }

  sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }

  StatusOr<std::unique_ptr<sql::Statement>> Prepare(const std::string& sql) override {
    auto it = stmts_.find(sql);
    sqlite3_stmt* raw;
    if (it != stmts_.end()) {
      raw = it->second;
    } else {
      if (sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &raw, nullptr) !=
          SQLITE_OK) {
        return Error("preparing a statement");
      }
      stmts_.emplace(sql, raw);
    }
    return std::unique_ptr<sql::Statement>(std::make_unique<SqliteStatement>(raw));
  }

  Status Exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      int code = sqlite3_errcode(db_);
      if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return BusyError();
      return InternalError("SQLite: " + msg);
    }
    return Status::Ok();
  }

  uint64_t Changes() const override { return static_cast<uint64_t>(sqlite3_changes(db_)); }

  Status Error(std::string_view what) const override {
    int code = sqlite3_errcode(db_);
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return BusyError().WithContext(what);
    std::string msg = std::string(what) + ": " + sqlite3_errmsg(db_);
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return DataLossError(msg);
    return InternalError("SQLite " + msg);
  }

  // BEGIN IMMEDIATE takes the database's write lock at once (no upgrade deadlock between
  // processes).
  Status BeginWrite() override { return Exec("BEGIN IMMEDIATE"); }
  // SQLite serialises writers: a transaction never has to run again.
  bool LastErrorIsRetryable() const override { return false; }

  // secure_delete zeroed the freed space in the pages written, but those pages and the older
  // versions of them are still frames of the WAL, and the main file holds the pages as they
  // were before. A TRUNCATE checkpoint copies the new pages into the main file and cuts the
  // WAL to zero bytes, so no file of the database keeps a copy. It holds the write lock while
  // it waits for readers of older snapshots, so it waits briefly here: a full busy timeout
  // made every other writer (ekmd, an `ekm` process) time out behind it under load. If a
  // reader still holds the WAL, the wipe is retried at the next destructive change and when
  // the store closes (SQLite checkpoints and removes the WAL when its last connection closes).
  void WipeDestroyed() override {
    last_wipe_attempt_ = std::chrono::steady_clock::now();
    wipe_pending_ = !TruncateWal(kCheckpointWaitMs);
  }
  Status LockForMigration() override { return Status::Ok(); }
  void UnlockForMigration() override {}
  void RefreshStatistics(const std::string&) override {}  // its planner needs none here
  bool Broken() const override { return false; }

 private:
  // SQLite's "database is locked" once the busy timeout is over: another process (ekmd, ekm,
  // a sqlite3 shell) kept the write lock all that time. Said in ekm's words, retryable; never
  // SQLite's text, which names neither the store nor what to do (docs/operations.md).
  Status BusyError() const {
    return UnavailableError(name_ + " is busy: another process kept its write lock for " +
                                std::to_string(kBusyTimeoutMs / 1000) + " s",
                            "retry; if it lasts, look for a process that holds the database in "
                            "a long transaction (a sqlite3 shell, a backup tool)")
        .WithRetryAfter(1);
  }

  // A wipe that found a reader is tried again at the end of a later call, at most once a
  // second, so a long-running ekmd does not keep destroyed pages in its WAL until it stops.
  void RetryPendingWipe() {
    if (!wipe_pending_ || !sqlite3_get_autocommit(db_)) return;
    if (std::chrono::steady_clock::now() - last_wipe_attempt_ < std::chrono::seconds(1)) return;
    WipeDestroyed();
  }
  bool TruncateWal(int wait_ms) {
    sqlite3_busy_timeout(db_, wait_ms);
    bool done = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                          nullptr) == SQLITE_OK;
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    return done;
  }

  sqlite3* db_;
  const std::string name_;
  std::mutex mu_;
  std::unordered_map<std::string, sqlite3_stmt*> stmts_;
  bool wipe_pending_ = false;  // a WipeDestroyed() could not truncate the WAL
  std::chrono::steady_clock::time_point last_wipe_attempt_;
};

}  // namespace

StatusOr<StorePtr> OpenSqliteStore(const std::string& path, StoreBinding binding) {
  // Create the file ourselves so it is 0600 from its first byte.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return FailedPreconditionError("cannot open database " + path + ": " + std::strerror(errno),
                                   "check that the data directory exists and is writable");
  }
  ::close(fd);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return FailedPreconditionError("cannot open database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  auto connection = std::make_unique<SqliteConnection>(db, path);
  // secure_delete: deleted and overwritten content is overwritten with zeros, in the page and in
  // freed pages (Debian builds SQLite with it on; other builds do not), so a destroyed key does
  // not stay in free space (docs/store.md "Destroying key material").
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON", "PRAGMA secure_delete=ON"}) {
    char* err = nullptr;
    if (sqlite3_exec(db, pragma, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "";
      sqlite3_free(err);
      if (msg.find("not a database") != std::string::npos) {
        return DataLossError("database " + path + " is not an ekm database (" + msg + ")",
                             "check --data-dir");
      }
      return UnavailableError("cannot configure database " + path + ": " + msg);
    }
  }
  return OpenSqlStore(std::move(connection), std::move(binding));
}

}  // namespace ekm
