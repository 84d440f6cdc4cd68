#include "ekm/store/sql/sql_store.h"

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "ekm/audit/audit_log.h"
#include "ekm/base/encoding.h"
#include "ekm/base/non_blocking_scope.h"
#include "ekm/store/sql/migrations.h"
#include "ekm/store/store_integrity.h"

namespace ekm {

namespace {

using Stmt = sql::Statement;
constexpr sql::StepResult kRow = sql::StepResult::kRow;
constexpr sql::StepResult kDone = sql::StepResult::kDone;
constexpr sql::StepResult kConstraint = sql::StepResult::kConstraint;

// store_meta names (migration kStoreIntegrityMigration).
constexpr std::string_view kRootKeyFingerprintMeta = "root_key_fingerprint";
constexpr std::string_view kFreePagesWipedMeta = "free_pages_wiped";

// The connection the calling thread leased for the store call in progress, and how deep in
// transactions it is. A store method that runs inside another (in InTransaction, or a helper)
// finds the lease already taken and uses the same connection, so all of one call is on one
// connection and, in a transaction, in that transaction.
struct ThreadLease {
  sql::ConnectionPool* pool = nullptr;
  sql::Connection* connection = nullptr;
  int transaction_depth = 0;
};
thread_local ThreadLease t_lease;

class ConnectionLease {
 public:
  static StatusOr<ConnectionLease> Take(sql::ConnectionPool& pool) {
    if (t_lease.pool == &pool) return ConnectionLease(nullptr, {});
    EKM_RETURN_IF_ERROR(MayBlock("a store query"));  // never on an HTTP I/O thread
    EKM_ASSIGN_OR_RETURN(sql::Connection * connection, pool.Acquire());
    ThreadLease outer = t_lease;
    t_lease = ThreadLease{&pool, connection, 0};
    return ConnectionLease(&pool, outer);
  }
  ConnectionLease(ConnectionLease&& other) noexcept : pool_(other.pool_), outer_(other.outer_) {
    other.pool_ = nullptr;
  }
  ConnectionLease& operator=(ConnectionLease&&) = delete;
  ~ConnectionLease() {
    if (pool_ == nullptr) return;
    sql::Connection* connection = t_lease.connection;
    t_lease = outer_;
    pool_->Release(connection);
  }

 private:
  ConnectionLease(sql::ConnectionPool* pool, ThreadLease outer) : pool_(pool), outer_(outer) {}
  sql::ConnectionPool* pool_;  // null: nested in a lease of this thread, which releases
  ThreadLease outer_;          // another store's lease this thread held before (restored)
};

// Serialization failures (PostgreSQL) are retried this many times, from the transaction's start,
// after a random pause that grows with the attempt (so that the losers of one conflict do not
// meet again at once).
constexpr int kMaxTransactionAttempts = 20;

void PauseBeforeAttempt(int attempt) {
  thread_local std::minstd_rand jitter(
      static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
  const int cap_us = std::min(attempt, 10) * 1000;
  std::this_thread::sleep_for(std::chrono::microseconds(jitter() % cap_us + 100));
}

class SqlStore : public Store {
 public:
  SqlStore(std::unique_ptr<sql::ConnectionPool> pool, StoreBinding binding)
      : pool_(std::move(pool)),
        name_(pool_->name()),
        fingerprint_(HexEncode(binding.root_key_fingerprint)),
        root_key_source_(std::move(binding.root_key_source)),
        check_legacy_ek_(std::move(binding.check_legacy_ek)),
        macs_(std::move(binding.mac_key)) {}

  Status NotInitializedError() const {
    return FailedPreconditionError(
        name_ + " is not initialized (the database has no ekm schema)",
        "initialize it once with `ekm --store URL --root-key-file FILE init`");
  }

  Status Migrate(bool create_if_empty) {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_RETURN_IF_ERROR(db().LockForMigration());
    Status migrated = MigrateLocked(create_if_empty);
    db().UnlockForMigration();
    return migrated;
  }

  Status MigrateLocked(bool create_if_empty) {
    // Looked up before anything is created: a store that may not create its schema (a replica,
    // `ekm` on a URL) leaves a database that is not ekm's exactly as it found it.
    bool has_schema = false;
    {
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare(db().dialect() == sql::Dialect::kSqlite
                      ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
                        "'schema_migrations'"
                      : "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                        "current_schema() AND table_name = 'schema_migrations'"));
      if (s->Step() != kRow) return Error("looking for the schema version");
      has_schema = s->Int(0) > 0;
    }
    if (!has_schema && !create_if_empty) return NotInitializedError();
    EKM_RETURN_IF_ERROR(
        Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
             "description TEXT NOT NULL, applied_at INTEGER NOT NULL)"));
    int64_t current = 0;
    {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                           Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
      if (s->Step() != kRow) return Error("reading the schema version");
      current = s->Int(0);
    }
    const auto& migrations = Migrations();
    int64_t latest = migrations.empty() ? 0 : migrations.back().version;
    if (current > latest) {
      return FailedPreconditionError("the database has schema version " + std::to_string(current) +
                                         ", newer than this build of ekm knows (" +
                                         std::to_string(latest) + ")",
                                     "upgrade ekm; never run an older ekm on a newer database");
    }
    if (current == 0 && !create_if_empty) return NotInitializedError();
    // The root key first: nothing is changed in a store opened with another one.
    if (current >= kStoreIntegrityMigration) EKM_RETURN_IF_ERROR(CheckRootKey());
    for (const Migration& m : migrations) {
      if (m.version <= current) continue;
      Status s = WriteTransactionLocked([&]() -> Status {
        // Another process may have applied it since `current` was read.
        {
          EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> applied,
                               Prepare("SELECT COUNT(*) FROM schema_migrations WHERE version = ?"));
          applied->Bind(1, int64_t{m.version});
          if (applied->Step() != kRow) return Error("reading the schema version");
          if (applied->Int(0) > 0) return Status::Ok();
        }
        const bool postgres_own =
            db().dialect() == sql::Dialect::kPostgres && !m.postgres_sql.empty();
        EKM_RETURN_IF_ERROR(Exec(std::string(postgres_own ? m.postgres_sql : m.sql)));
        if (m.version == 10) EKM_RETURN_IF_ERROR(ChainMovedAuditRecords());
        if (m.version == kStoreIntegrityMigration) {
          EKM_RETURN_IF_ERROR(BindToRootKey(current == 0));
        }
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> st,
                             Prepare("INSERT INTO schema_migrations (version, description, "
                                     "applied_at) VALUES (?, ?, ?)"));
        st->Bind(1, int64_t{m.version}).Bind(2, m.description);
        st->Bind(3, static_cast<int64_t>(::time(nullptr)));
        if (st->Step() != kDone) return Error("recording migration");
        return Status::Ok();
      });
      if (!s.ok()) return s.WithContext("applying schema migration " + std::to_string(m.version));
    }
    check_legacy_ek_ = nullptr;  // the provider it refers to may go; only the upgrade needs it
    if (db().dialect() != sql::Dialect::kSqlite) return Status::Ok();
    // A SQLite store from before secure_delete and the wipes: what was destroyed then may still
    // be in free pages. VACUUM rewrites the file from the live rows only, once; the checkpoint
    // leaves no old page in the WAL. If it cannot run now (another process is busy), the store
    // works anyway and the next open tries again.
    EKM_ASSIGN_OR_RETURN(std::optional<std::string> wiped, StoreMetaLocked(kFreePagesWipedMeta));
    if (!wiped && Exec("VACUUM").ok()) {
      EKM_RETURN_IF_ERROR(PutStoreMetaOnceLocked(kFreePagesWipedMeta, "1").status());
      WipeDestroyed();
    }
    return Status::Ok();
  }

  Status InTransaction(const std::function<Status()>& body) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked(body);
  }

  StatusOr<WorkspaceRecord> CreateWorkspace(std::string_view name, int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("INSERT INTO workspaces (name, created_at) VALUES (?, ?) "
                                 "RETURNING id"));
    s->Bind(1, name).Bind(2, now);
    auto rc = s->Step();
    if (rc == kConstraint) {
      return AlreadyExistsError("workspace \"" + std::string(name) + "\" already exists");
    }
    if (rc != kRow) return Error("creating workspace");
    WorkspaceRecord ws{s->Int(0), std::string(name), now};
    if (s->Step() != kDone) return Error("creating workspace");
    return ws;
  }

  StatusOr<WorkspaceRecord> GetWorkspace(std::string_view name) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return GetWorkspaceLocked(name);
  }

  StatusOr<std::vector<WorkspaceRecord>> ListWorkspaces() override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT id, name, created_at FROM workspaces ORDER BY name"));
    std::vector<WorkspaceRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) out.push_back({s->Int(0), s->Text(1), s->Int(2)});
    if (rc != kDone) return Error("listing workspaces");
    return out;
  }

  StatusOr<EnvironmentRecord> CreateEnvironment(std::string_view workspace, std::string_view name,
                                                const EnvironmentKeyRecord& first_ek,
                                                int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<EnvironmentRecord> {
      EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, GetWorkspaceLocked(workspace));
      EnvironmentRecord env;
      {
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                             Prepare("INSERT INTO environments (workspace_id, name, "
                                     "created_at, current_ek_version) VALUES (?,?,?,?) "
                                     "RETURNING id"));
        s->Bind(1, ws.id).Bind(2, name).Bind(3, now).Bind(4, int64_t{first_ek.version});
        auto rc = s->Step();
        if (rc == kConstraint) {
          return AlreadyExistsError("environment \"" + std::string(name) +
                                    "\" already exists in workspace \"" + ws.name + "\"");
        }
        if (rc != kRow) return Error("creating environment");
        env =
            EnvironmentRecord{s->Int(0), ws.id, ws.name, std::string(name), now, first_ek.version};
        if (s->Step() != kDone) return Error("creating environment");
      }
      EKM_RETURN_IF_ERROR(SetCurrentEkMacLocked(env));
      EnvironmentKeyRecord ek = first_ek;
      ek.environment_id = env.id;
      EKM_RETURN_IF_ERROR(InsertEnvironmentKeyLocked(env, ek));
      return env;
    });
    if (!result.ok()) return result;
    return result;
  }

  StatusOr<EnvironmentRecord> GetEnvironment(std::string_view workspace,
                                             std::string_view name) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s, Prepare(std::string(kSelectEnvironment) +
                                                          " WHERE w.name = ? AND e.name = ?"));
    s->Bind(1, workspace).Bind(2, name);
    auto rc = s->Step();
    if (rc == kRow) return ReadEnvironment(*s);
    if (rc != kDone) return Error("reading environment");
    return NotFoundError("environment \"" + std::string(name) +
                             "\" does not exist in workspace \"" + std::string(workspace) + "\"",
                         "create it with `ekm environment create " + std::string(workspace) + " " +
                             std::string(name) + "`");
  }

  StatusOr<std::vector<EnvironmentRecord>> ListEnvironments(std::string_view workspace) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_RETURN_IF_ERROR(GetWorkspaceLocked(workspace).status());
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s, Prepare(std::string(kSelectEnvironment) +
                                                          " WHERE w.name = ? ORDER BY e.name"));
    s->Bind(1, workspace);
    std::vector<EnvironmentRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, ReadEnvironment(*s));
      out.push_back(std::move(env));
    }
    if (rc != kDone) return Error("listing environments");
    return out;
  }

  StatusOr<EnvironmentKeyRecord> GetEnvironmentKey(int64_t environment_id,
                                                   uint32_t version) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT k.cmk_provider, k.cmk_key_id, k.wrapped, k.created_at, k.mac, "
                "e.workspace_id, w.name, e.name FROM environment_keys k JOIN environments e ON "
                "e.id = k.environment_id JOIN workspaces w ON w.id = e.workspace_id WHERE "
                "k.environment_id = ? AND k.version = ?"));
    s->Bind(1, environment_id).Bind(2, int64_t{version});
    auto rc = s->Step();
    if (rc == kRow) {
      EnvironmentKeyRecord ek{environment_id, version,    s->Text(0),
                              s->Text(1),     s->Blob(2), s->Int(3)};
      EnvironmentRecord env{environment_id, s->Int(5), s->Text(6), s->Text(7), 0, 0};
      EKM_RETURN_IF_ERROR(macs_.CheckEnvironmentKey(env, ek, s->Blob(4)));
      return ek;
    }
    if (rc != kDone) return Error("reading environment key");
    return NotFoundError("environment key v" + std::to_string(version) + " does not exist");
  }

  Status AddEnvironmentKey(const EnvironmentKeyRecord& ek) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, MoveCurrentEkLocked(ek));
      return InsertEnvironmentKeyLocked(env, ek);
    });
  }

  Status RecordKeyValidation(const KeyValidationRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO key_validations (environment_id, cmk_provider, cmk_key_id, "
                "checked_at, ok, error_code, provider_code, message, hint, detail) VALUES "
                "(?,?,?,?,?,?,?,?,?,?)"));
    s->Bind(1, r.environment_id).Bind(2, r.cmk_provider).Bind(3, r.cmk_key_id);
    s->Bind(4, r.checked_at).Bind(5, int64_t{r.ok ? 1 : 0}).Bind(6, r.error_code);
    s->Bind(7, r.provider_code).Bind(8, r.message).Bind(9, r.hint).Bind(10, r.detail);
    if (s->Step() != kDone) return Error("recording key validation");
    return Status::Ok();
  }

  StatusOr<std::optional<KeyValidationRecord>> GetLatestKeyValidation(
      int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT environment_id, cmk_provider, cmk_key_id, checked_at, ok, error_code, "
                "provider_code, message, hint, detail FROM key_validations WHERE "
                "environment_id = ? ORDER BY id DESC LIMIT 1"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<KeyValidationRecord>();
    if (rc != kRow) return Error("reading key validation");
    return std::optional<KeyValidationRecord>(
        KeyValidationRecord{s->Int(0), s->Text(1), s->Text(2), s->Int(3), s->Int(4) != 0,
                            s->Text(5), s->Text(6), s->Text(7), s->Text(8), s->Text(9)});
  }

  StatusOr<std::optional<DataKeyRecord>> GetLatestDataKey(int64_t environment_id,
                                                          std::string_view scope) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string(kSelectDataKey) + " WHERE environment_id = ? AND scope = ? ORDER BY "
                                              "version DESC LIMIT 1"));
    s->Bind(1, environment_id).Bind(2, scope);
    auto rc = s->Step();
    if (rc == kRow) return std::optional<DataKeyRecord>(ReadDataKey(*s));
    if (rc != kDone) return Error("reading data key");
    return std::optional<DataKeyRecord>();
  }

  StatusOr<DataKeyRecord> GetDataKey(int64_t environment_id, std::string_view scope,
                                     uint32_t version) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return GetDataKeyLocked(environment_id, scope, version);
  }

  // One write transaction: the existing row, else a check that the EK is current and alive,
  // then the insert. A repack's finishing transaction (which destroys older EKs) is serialised
  // with it, so a DK never lands under an EK that is destroyed or about to be.
  StatusOr<DataKeyRecord> InsertDataKey(const DataKeyRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<DataKeyRecord> {
      // The winner of a race, another thread's or process's: it stands, under whichever EK
      // wraps it now.
      auto existing = GetDataKeyLocked(r.environment_id, r.scope, r.version);
      if (existing.status().code() != StatusCode::kNotFound) return existing;
      EKM_RETURN_IF_ERROR(CheckNewDataKeyLocked(r));
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("INSERT INTO data_keys (environment_id, scope, version, ek_version, "
                  "wrapped, created_at, messages_reserved) VALUES (?,?,?,?,?,?,0)"));
      s->Bind(1, r.environment_id).Bind(2, r.scope).Bind(3, int64_t{r.version});
      s->Bind(4, int64_t{r.ek_version}).Bind(5, ByteView(r.wrapped)).Bind(6, r.created_at);
      if (s->Step() != kDone) return Error("storing data key");
      return GetDataKeyLocked(r.environment_id, r.scope, r.version);
    });
    if (!result.ok()) return result;
    return result;
  }

  StatusOr<uint64_t> ReserveMessages(int64_t environment_id, std::string_view scope,
                                     uint32_t version, uint64_t count, uint64_t limit) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE data_keys SET messages_reserved = messages_reserved + ?1 WHERE "
                "environment_id = ?2 AND scope = ?3 AND version = ?4 AND messages_reserved + ?1 "
                "<= ?5 RETURNING messages_reserved - ?1"));
    s->Bind(1, static_cast<int64_t>(count)).Bind(2, environment_id).Bind(3, scope);
    s->Bind(4, int64_t{version}).Bind(5, static_cast<int64_t>(limit));
    auto rc = s->Step();
    if (rc == kRow) {
      uint64_t before = static_cast<uint64_t>(s->Int(0));
      // Finish the statement so the write is complete before the lock is released.
      while (s->Step() == kRow) {
      }
      return before;
    }
    if (rc != kDone) return Error("reserving messages");
    // No row changed: over the limit, or no such key.
    EKM_RETURN_IF_ERROR(GetDataKeyLocked(environment_id, scope, version).status());
    return ResourceExhaustedError("data key v" + std::to_string(version) + " of scope \"" +
                                  std::string(scope) + "\" reached its bound of " +
                                  std::to_string(limit) + " messages");
  }

 private:
  // The newest record of `chain` (seq 0 when empty). Caller holds a lease.
  StatusOr<AuditChainHead> ChainHead(std::string_view chain) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT seq, hash FROM audit_records WHERE chain = ? ORDER BY seq DESC LIMIT 1"));
    s->Bind(1, chain);
    AuditChainHead head;
    head.chain = std::string(chain);
    auto rc = s->Step();
    if (rc == kRow) {
      head.seq = s->Int(0);
      head.hash = s->Blob(1);
    } else if (rc != kDone) {
      return Error("reading the audit chain head");
    }
    return head;
  }

  Status InsertAuditRecord(const LifecycleEventRecord& r) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO audit_records (chain, seq, at_ms, workspace, environment, type, "
                "actor, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)"));
    s->Bind(1, r.chain).Bind(2, r.seq).Bind(3, r.at_ms).Bind(4, r.workspace);
    s->Bind(5, r.environment).Bind(6, r.type).Bind(7, r.actor).Bind(8, r.detail);
    s->Bind(9, ByteView(r.prev_hash)).Bind(10, ByteView(r.hash));
    if (s->Step() != kDone) return Error("recording an audit record");
    return Status::Ok();
  }

  // Migration 10: hashes the lifecycle events moved into audit_records, chain by chain in seq
  // order. Runs inside the migration's transaction.
  Status ChainMovedAuditRecords() {
    std::vector<LifecycleEventRecord> rows;
    {
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("SELECT id, at_ms, workspace, environment, type, actor, detail FROM "
                  "audit_records ORDER BY chain, seq"));
      sql::StepResult rc;
      while ((rc = s->Step()) == kRow) {
        LifecycleEventRecord r;
        r.id = s->Int(0);
        r.at_ms = s->Int(1);
        r.workspace = s->Text(2);
        r.environment = s->Text(3);
        r.type = s->Text(4);
        r.actor = s->Text(5);
        r.detail = s->Text(6);
        rows.push_back(std::move(r));
      }
      if (rc != kDone) return Error("reading moved lifecycle events");
    }
    std::string chain;
    int64_t seq = 0;
    Bytes head;
    for (LifecycleEventRecord& r : rows) {
      if (seq == 0 || r.workspace != chain) {
        chain = r.workspace;
        seq = 0;
        head.clear();
      }
      ChainAuditRecord(r, seq, head);
      seq = r.seq;
      head = r.hash;
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> u,
          Prepare("UPDATE audit_records SET prev_hash = ?, hash = ? WHERE id = ? AND seq = ?"));
      u->Bind(1, ByteView(r.prev_hash)).Bind(2, ByteView(r.hash)).Bind(3, r.id).Bind(4, r.seq);
      if (u->Step() != kDone) return Error("chaining moved lifecycle events");
    }
    return Status::Ok();
  }

  // The store's root key fingerprint against the binding's. Caller holds a lease (or is Migrate).
  Status CheckRootKey() {
    EKM_ASSIGN_OR_RETURN(std::optional<std::string> recorded,
                         StoreMetaLocked(kRootKeyFingerprintMeta));
    if (!recorded) {
      return StoreModifiedError(name_ + " has no root key fingerprint; it");
    }
    if (*recorded != fingerprint_) {
      return FailedPreconditionError(
          root_key_source_ + " (store fingerprint " + fingerprint_ +
              ") is not the root key of this store, " + name_ + " (store fingerprint " + *recorded +
              ")",
          "start ekm with the root key file this store was created with: restore it from your "
          "backup, or pass --root-key-file; ekm never uses another root key for an existing "
          "store (what is wrapped under the old one could not be read, and new keys would be "
          "wrapped under the wrong one)");
    }
    return Status::Ok();
  }

  // Migration kStoreIntegrityMigration: MACs of the rows stored before (each EK row vouched
  // for by the binding's legacy check first) and the root key's fingerprint. Runs inside the
  // migration's transaction: all of it or nothing.
  Status BindToRootKey(bool new_store) {
    struct EkRow {
      EnvironmentRecord env;
      EnvironmentKeyRecord ek;
    };
    std::vector<EkRow> eks;
    {
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("SELECT k.environment_id, k.version, k.cmk_provider, k.cmk_key_id, k.wrapped, "
                  "k.created_at, e.workspace_id, w.name, e.name FROM environment_keys k JOIN "
                  "environments e ON e.id = k.environment_id JOIN workspaces w ON w.id = "
                  "e.workspace_id ORDER BY k.environment_id, k.version"));
      sql::StepResult rc;
      while ((rc = s->Step()) == kRow) {
        eks.push_back(EkRow{EnvironmentRecord{s->Int(0), s->Int(6), s->Text(7), s->Text(8), 0, 0},
                            EnvironmentKeyRecord{s->Int(0), static_cast<uint32_t>(s->Int(1)),
                                                 s->Text(2), s->Text(3), s->Blob(4), s->Int(5)}});
      }
      if (rc != kDone) return Error("reading environment keys");
    }
    for (const EkRow& r : eks) {
      if (check_legacy_ek_) {
        Status vouched = check_legacy_ek_(r.ek);
        if (!vouched.ok()) {
          return vouched.WithContext("environment key v" + std::to_string(r.ek.version) + " of " +
                                     r.env.workspace + "/" + r.env.name);
        }
      }
      EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.EnvironmentKey(r.env, r.ek));
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> u,
                           Prepare("UPDATE environment_keys SET mac = ? WHERE environment_id = ? "
                                   "AND version = ?"));
      u->Bind(1, ByteView(mac)).Bind(2, r.ek.environment_id).Bind(3, int64_t{r.ek.version});
      if (u->Step() != kDone) return Error("storing an environment key's integrity check");
    }
    std::vector<EnvironmentRecord> envs;
    {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                           Prepare("SELECT e.id, e.workspace_id, w.name, e.name, e.created_at, "
                                   "e.current_ek_version FROM environments e JOIN workspaces w "
                                   "ON w.id = e.workspace_id"));
      sql::StepResult rc;
      while ((rc = s->Step()) == kRow) {
        envs.push_back(EnvironmentRecord{s->Int(0), s->Int(1), s->Text(2), s->Text(3), s->Int(4),
                                         static_cast<uint32_t>(s->Int(5))});
      }
      if (rc != kDone) return Error("reading environments");
    }
    for (const EnvironmentRecord& env : envs) EKM_RETURN_IF_ERROR(SetCurrentEkMacLocked(env));
    std::vector<std::pair<std::string, WorkspaceDefaultKeyRecord>> defaults;
    {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                           Prepare("SELECT d.workspace_id, w.name, d.cmk_provider, d.cmk_key_id "
                                   "FROM workspace_default_keys d JOIN workspaces w ON w.id = "
                                   "d.workspace_id"));
      sql::StepResult rc;
      while ((rc = s->Step()) == kRow) {
        WorkspaceDefaultKeyRecord r;
        r.workspace_id = s->Int(0);
        r.cmk_provider = s->Text(2);
        r.cmk_key_id = s->Text(3);
        defaults.emplace_back(s->Text(1), std::move(r));
      }
      if (rc != kDone) return Error("reading workspace default keys");
    }
    for (const auto& [workspace, r] : defaults) {
      EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.WorkspaceDefaultKey(workspace, r));
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> u,
          Prepare("UPDATE workspace_default_keys SET mac = ? WHERE workspace_id = ?"));
      u->Bind(1, ByteView(mac)).Bind(2, r.workspace_id);
      if (u->Step() != kDone) return Error("storing a workspace default key's integrity check");
    }
    EKM_RETURN_IF_ERROR(PutStoreMetaOnceLocked(kRootKeyFingerprintMeta, fingerprint_).status());
    // A new store has never held a destroyed key: nothing to VACUUM.
    if (new_store) EKM_RETURN_IF_ERROR(PutStoreMetaOnceLocked(kFreePagesWipedMeta, "1").status());
    return Status::Ok();
  }

  StatusOr<std::optional<std::string>> StoreMetaLocked(std::string_view name) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT value FROM store_meta WHERE name = ?"));
    s->Bind(1, name);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<std::string>();
    if (rc != kRow) return Error("reading the store's metadata");
    return std::optional<std::string>(s->Text(0));
  }

  StatusOr<std::string> PutStoreMetaOnceLocked(std::string_view name, std::string_view value) {
    // Read first: every process opening the store asks, and an INSERT would take the write lock
    // each time (a read-only `ekm workspace list` waited for a busy writer, and failed after
    // the busy timeout).
    {
      EKM_ASSIGN_OR_RETURN(std::optional<std::string> stored, StoreMetaLocked(name));
      if (stored) return *stored;
    }
    {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                           Prepare("INSERT INTO store_meta (name, value) VALUES (?, ?) ON "
                                   "CONFLICT (name) DO NOTHING"));
      s->Bind(1, name).Bind(2, value);
      if (s->Step() != kDone) return Error("storing the store's metadata");
    }
    EKM_ASSIGN_OR_RETURN(std::optional<std::string> stored, StoreMetaLocked(name));
    if (!stored) return InternalError("the store's metadata just stored is missing");
    return *stored;
  }

 public:
  StatusOr<std::optional<std::string>> GetStoreMeta(std::string_view name) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return StoreMetaLocked(name);
  }

  StatusOr<std::string> PutStoreMetaOnce(std::string_view name, std::string_view value) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return PutStoreMetaOnceLocked(name, value);
  }

 private:
  // DKs of environment ?1 under an EK older than ?2 whose wrapping still exists: what a repack
  // moves. A DK under a destroyed EK cannot be unwrapped by anyone; the repack reports such
  // rows (EnvironmentKeyInventory counts them) instead of waiting on them forever.
  static constexpr const char* kUnderOlderLiveEk =
      "environment_id = ?1 AND ek_version IN (SELECT version FROM environment_keys WHERE "
      "environment_id = ?1 AND version < ?2 AND destroyed_at IS NULL)";
  static constexpr std::string_view kSelectDataKey =
      "SELECT environment_id, scope, version, ek_version, wrapped, created_at, "
      "messages_reserved FROM data_keys";
  // Reads the chain head and appends inside one write transaction (BEGIN IMMEDIATE takes the
  // database's write lock), so no other thread or process can append between the two.
  Status RecordLifecycleEvent(const LifecycleEventRecord& in) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      EKM_ASSIGN_OR_RETURN(AuditChainHead head, ChainHead(in.workspace));
      LifecycleEventRecord r = in;
      ChainAuditRecord(r, head.seq, head.hash);
      EKM_RETURN_IF_ERROR(InsertAuditRecord(r));
      return Status::Ok();
    });
  }

  StatusOr<std::vector<LifecycleEventRecord>> ListLifecycleEvents(
      const LifecycleEventFilter& f) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    // The types as a JSON array: one parameter whatever their number (the one spelling that
    // differs between the two databases).
    const char* types_in = db().dialect() == sql::Dialect::kSqlite
                               ? "json_each(?)"
                               : "json_array_elements_text(CAST(? AS json))";
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string("SELECT id, at_ms, workspace, environment, type, actor, detail, "
                            "chain, seq, prev_hash, hash FROM audit_records WHERE workspace = ? "
                            "AND (? = 0 OR environment = ?) AND (? = '' OR type = ?) AND at_ms "
                            ">= ? AND at_ms < ? AND id > ? AND (? = 0 OR type IN (SELECT value "
                            "FROM ") +
                types_in + ")) ORDER BY id LIMIT ?"));
    s->Bind(1, f.workspace).Bind(2, int64_t{f.environment.has_value() ? 1 : 0});
    s->Bind(3, f.environment.value_or("")).Bind(4, f.type).Bind(5, f.type);
    s->Bind(6, f.since_ms).Bind(7, f.until_ms).Bind(8, f.after_id);
    const std::string types = nlohmann::json(f.types).dump();
    s->Bind(9, int64_t{f.types.empty() ? 0 : 1}).Bind(10, types);
    s->Bind(11, static_cast<int64_t>(f.limit));
    std::vector<LifecycleEventRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      out.push_back(LifecycleEventRecord{s->Int(0), s->Int(1), s->Text(2), s->Text(3), s->Text(4),
                                         s->Text(5), s->Text(6), s->Text(7), s->Int(8), s->Blob(9),
                                         s->Blob(10)});
    }
    if (rc != kDone) return Error("reading audit records");
    return out;
  }

  StatusOr<std::vector<AuditChainHead>> ListAuditChainHeads() override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        // One pass over the (chain, seq) index for the heads, then one lookup per chain.
        Prepare("SELECT h.chain, h.seq, r.hash, COALESCE((SELECT MAX(c.seq) FROM "
                "audit_checkpoints c WHERE c.chain = h.chain), 0) FROM (SELECT chain, MAX(seq) "
                "AS seq FROM audit_records GROUP BY chain) h JOIN audit_records r ON r.chain = "
                "h.chain AND r.seq = h.seq ORDER BY h.chain"));
    std::vector<AuditChainHead> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      out.push_back(AuditChainHead{s->Text(0), s->Int(1), s->Blob(2), s->Int(3)});
    }
    if (rc != kDone) return Error("reading audit chain heads");
    return out;
  }

  StatusOr<AuditChainHead> GetAuditChainHead(std::string_view chain) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return ChainHead(chain);
  }

  Status PutAuditCheckpoint(const AuditCheckpointRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO audit_checkpoints (chain, seq, head_hash, at_ms, key_id, "
                "signature) VALUES (?,?,?,?,?,?)"));
    s->Bind(1, r.chain).Bind(2, r.seq).Bind(3, ByteView(r.head_hash)).Bind(4, r.at_ms);
    s->Bind(5, r.key_id).Bind(6, ByteView(r.signature));
    if (s->Step() != kDone) return Error("recording an audit checkpoint");
    return Status::Ok();
  }

  StatusOr<std::vector<AuditCheckpointRecord>> ListAuditCheckpoints(
      std::string_view chain) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT id, chain, seq, head_hash, at_ms, key_id, signature FROM "
                                 "audit_checkpoints WHERE chain = ? ORDER BY id"));
    s->Bind(1, chain);
    std::vector<AuditCheckpointRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      out.push_back(AuditCheckpointRecord{s->Int(0), s->Text(1), s->Int(2), s->Blob(3), s->Int(4),
                                          s->Text(5), s->Blob(6)});
    }
    if (rc != kDone) return Error("reading audit checkpoints");
    return out;
  }

  StatusOr<std::map<std::string, int64_t>> GetEnvironmentSettings(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT name, value FROM environment_settings WHERE environment_id = ?"));
    s->Bind(1, environment_id);
    std::map<std::string, int64_t> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) out.emplace(s->Text(0), s->Int(1));
    if (rc != kDone) return Error("reading environment settings");
    return out;
  }

  Status SetEnvironmentSettings(int64_t environment_id, const SettingChanges& changes) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      for (const auto& [name, value] : changes) {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> s,
            Prepare(
                value ? "INSERT INTO environment_settings (environment_id, name, value) VALUES "
                        "(?,?,?) ON CONFLICT (environment_id, name) DO UPDATE SET value = "
                        "excluded.value"
                      : "DELETE FROM environment_settings WHERE environment_id = ? AND name = ?"));
        s->Bind(1, environment_id).Bind(2, std::string_view(name));
        if (value) s->Bind(3, *value);
        if (s->Step() != kDone) return Error("storing environment setting " + name);
      }
      return Status::Ok();
    });
  }

  StatusOr<std::optional<EnvironmentKeyStatusRecord>> GetEnvironmentKeyStatus(
      int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT state, since, last_success, error_code, provider_code, message, hint, "
                "next_retry FROM environment_key_status WHERE environment_id = ?"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<EnvironmentKeyStatusRecord>();
    if (rc != kRow) return Error("reading environment key status");
    EnvironmentKeyStatusRecord r;
    r.environment_id = environment_id;
    r.state = s->Text(0);
    r.since = s->Int(1);
    r.last_success = s->Int(2);
    r.error_code = s->Text(3);
    r.provider_code = s->Text(4);
    r.message = s->Text(5);
    r.hint = s->Text(6);
    r.next_retry = s->Int(7);
    return std::optional<EnvironmentKeyStatusRecord>(std::move(r));
  }

  Status PutEnvironmentKeyStatus(const EnvironmentKeyStatusRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO environment_key_status (environment_id, state, since, last_success, "
                "error_code, provider_code, message, hint, next_retry) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (environment_id) DO UPDATE SET state = excluded.state, since = "
                "excluded.since, last_success = excluded.last_success, error_code = "
                "excluded.error_code, provider_code = excluded.provider_code, message = "
                "excluded.message, hint = excluded.hint, next_retry = excluded.next_retry"));
    s->Bind(1, r.environment_id)
        .Bind(2, r.state)
        .Bind(3, r.since)
        .Bind(4, r.last_success)
        .Bind(5, r.error_code)
        .Bind(6, r.provider_code)
        .Bind(7, r.message)
        .Bind(8, r.hint)
        .Bind(9, r.next_retry);
    if (s->Step() != kDone) return Error("storing environment key status");
    return Status::Ok();
  }

  Status AddEnvironmentKeyForCmkChange(const EnvironmentKeyRecord& ek,
                                       const CmkChangeRecord& c) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, MoveCurrentEkLocked(ek));
      EKM_RETURN_IF_ERROR(InsertEnvironmentKeyLocked(env, ek));
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("INSERT INTO cmk_changes (environment_id, at, from_provider, from_key_id, "
                  "to_provider, to_key_id, ek_version, kind, emergency, reason, actor) VALUES "
                  "(?,?,?,?,?,?,?,?,?,?,?)"));
      s->Bind(1, c.environment_id).Bind(2, c.at).Bind(3, c.from_provider).Bind(4, c.from_key_id);
      s->Bind(5, c.to_provider).Bind(6, c.to_key_id).Bind(7, int64_t{c.ek_version});
      s->Bind(8, c.kind).Bind(9, int64_t{c.emergency ? 1 : 0}).Bind(10, c.reason);
      s->Bind(11, c.actor);
      if (s->Step() != kDone) return Error("recording the CMK change");
      return Status::Ok();
    });
  }

  StatusOr<std::optional<CmkChangeRecord>> GetLatestCmkChange(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT at, from_provider, from_key_id, to_provider, to_key_id, ek_version, kind, "
                "emergency, reason, actor FROM cmk_changes WHERE environment_id = ? ORDER BY "
                "id DESC LIMIT 1"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<CmkChangeRecord>();
    if (rc != kRow) return Error("reading CMK changes");
    CmkChangeRecord c;
    c.environment_id = environment_id;
    c.at = s->Int(0);
    c.from_provider = s->Text(1);
    c.from_key_id = s->Text(2);
    c.to_provider = s->Text(3);
    c.to_key_id = s->Text(4);
    c.ek_version = static_cast<uint32_t>(s->Int(5));
    c.kind = s->Text(6);
    c.emergency = s->Int(7) != 0;
    c.reason = s->Text(8);
    c.actor = s->Text(9);
    return std::optional<CmkChangeRecord>(std::move(c));
  }

  StatusOr<std::optional<RepackJobRecord>> GetLatestRepackJob(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return LatestRepackJobLocked(environment_id);
  }

  StatusOr<std::vector<EnvironmentRecord>> ListEnvironmentsToRepack() override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare(std::string(kSelectEnvironment) +
                                 " WHERE EXISTS (SELECT 1 FROM environment_keys k WHERE "
                                 "k.environment_id = e.id AND k.version < e.current_ek_version AND "
                                 "k.destroyed_at IS NULL) ORDER BY e.id"));
    std::vector<EnvironmentRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      // A store-wide list for a background job: an edited row is left out (every use of that
      // environment reports it), so it does not stop the job for every other environment.
      auto env = ReadEnvironment(*s);
      if (env.ok())
        out.push_back(std::move(env).value());
      else if (env.status().code() != StatusCode::kDataLoss)
        return env.status();
    }
    if (rc != kDone) return Error("listing environments to repack");
    return out;
  }

  StatusOr<RepackJobRecord> BeginRepackJob(int64_t environment_id, uint32_t target, int64_t now_ms,
                                           bool* created) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<RepackJobRecord> {
      // A repacker that read the environment before another finished its repack and rotated
      // again must not leave a job for a superseded target behind (it would read "running"
      // for ever): the target is checked inside the transaction.
      EKM_RETURN_IF_ERROR(CheckCurrentEkLocked(environment_id, target));
      int64_t left = 0;
      {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> c,
            Prepare(std::string("SELECT COUNT(*) FROM data_keys WHERE ") + kUnderOlderLiveEk));
        c->Bind(1, environment_id).Bind(2, int64_t{target});
        if (c->Step() != kRow) return Error("counting data keys to repack");
        left = c->Int(0);
      }
      EKM_ASSIGN_OR_RETURN(std::optional<RepackJobRecord> job,
                           LatestRepackJobLocked(environment_id));
      *created = !job.has_value() || job->state == "finished";
      if (*created) {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> s,
            Prepare("INSERT INTO repack_jobs (environment_id, target_ek_version, state, total, "
                    "done, started_at_ms, run_started_at_ms, run_started_done, updated_at_ms, "
                    "last_error) VALUES (?1, ?2, 'running', ?3, 0, ?4, ?4, 0, ?4, '')"));
        s->Bind(1, environment_id).Bind(2, int64_t{target}).Bind(3, left).Bind(4, now_ms);
        if (s->Step() != kDone) return Error("beginning a repack job");
      } else {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> s,
            Prepare("UPDATE repack_jobs SET target_ek_version = ?2, state = 'running', total = "
                    "done + ?3, run_started_at_ms = ?4, run_started_done = done, updated_at_ms = "
                    "?4, last_error = '', retry_at_ms = NULL WHERE id = ?1"));
        s->Bind(1, job->id).Bind(2, int64_t{target}).Bind(3, left).Bind(4, now_ms);
        if (s->Step() != kDone) return Error("resuming a repack job");
      }
      EKM_ASSIGN_OR_RETURN(job, LatestRepackJobLocked(environment_id));
      if (!job) return InternalError("the repack job just stored is missing");
      return *job;
    });
    if (!result.ok()) return result;
    // A new job's DKs were all written under older EKs, perhaps in bulk since the planner's
    // statistics were taken: refresh them once here, so each batch's listing walks the primary
    // key (docs/store.md "CMK replacement and the repack"). A resumed or retried job keeps the
    // statistics its start took.
    if (*created) db().RefreshStatistics("data_keys");
    return result;
  }

  Status ListDataKeysToRepack(int64_t environment_id, uint32_t below, std::string_view after_scope,
                              uint32_t after_version, size_t limit,
                              std::vector<DataKeyRecord>* out) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    out->clear();
    // Along the primary key from the position (a row-value comparison both databases use as
    // an index range), never by the ek_version index (`ek_version + 0` is not indexable), and
    // with the older EKs' versions as a filter the planner cannot turn into a join. Joined,
    // PostgreSQL estimated the DKs under them from the 0.5% default selectivity of a join on an
    // expression: fewer than one batch, so it read every DK of the environment and sorted them,
    // for the batches where that looked cheaper (up to 80 ms of a batch's 10). The array's
    // default estimate (about 5% of the DKs) keeps it on the primary key, once the statistics
    // know the table's size (BeginRepackJob refreshes them; without any, it sorted too).
    const bool postgres = db().dialect() == sql::Dialect::kPostgres;
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string(kSelectDataKey) + " WHERE environment_id = ?1 AND ek_version + 0 " +
                (postgres ? "= ANY (ARRAY(" : "IN (") +
                "SELECT version FROM environment_keys WHERE environment_id = ?1 AND version < ?2 "
                "AND destroyed_at IS NULL)" +
                (postgres ? ")" : "") +
                " AND (scope, version) > (?3, ?4) ORDER BY scope, version LIMIT ?5"));
    s->Bind(1, environment_id).Bind(2, int64_t{below}).Bind(3, after_scope);
    s->Bind(4, int64_t{after_version}).Bind(5, static_cast<int64_t>(limit));
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) out->push_back(ReadDataKey(*s));
    if (rc != kDone) return Error("reading data keys to repack");
    return Status::Ok();
  }

  StatusOr<uint64_t> CommitRepackBatch(int64_t job_id, int64_t environment_id, uint32_t target,
                                       const std::vector<RepackedDataKey>& batch,
                                       int64_t now_ms) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<uint64_t> {
      EKM_RETURN_IF_ERROR(CheckCurrentEkLocked(environment_id, target));
      // Many rows per statement (one round trip to PostgreSQL for each chunk, not each row):
      // each DK moves only if it is still under the EK it was read under.
      uint64_t moved = 0;
      for (size_t at = 0; at < batch.size(); at += kRowsPerStatement) {
        const size_t rows = std::min(kRowsPerStatement, batch.size() - at);
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> u, Prepare(RepackUpdateSql(rows)));
        u->Bind(1, int64_t{target}).Bind(2, environment_id);
        for (size_t i = at; i < at + rows; ++i) {
          const RepackedDataKey& r = batch[i];
          const int p = 3 + 4 * static_cast<int>(i - at);
          u->Bind(p, r.from->scope).Bind(p + 1, int64_t{r.from->version});
          u->Bind(p + 2, int64_t{r.from->ek_version}).Bind(p + 3, ByteView(r.wrapped));
        }
        // In the listing's order, so the first and last row bound the chunk in the database's
        // own collation (a C++ string comparison may order scopes otherwise).
        const DataKeyRecord* first = batch[at].from;
        const DataKeyRecord* last = batch[at + rows - 1].from;
        const int lo = 3 + 4 * static_cast<int>(rows);
        u->Bind(lo, first->scope).Bind(lo + 1, int64_t{first->version});
        u->Bind(lo + 2, last->scope).Bind(lo + 3, int64_t{last->version});
        if (u->Step() != kDone) return Error("re-wrapping data keys");
        moved += db().Changes();
      }
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> p,
          Prepare("UPDATE repack_jobs SET done = done + ?2, updated_at_ms = ?3, state = "
                  "'running', last_error = '', retry_at_ms = NULL WHERE id = ?1"));
      p->Bind(1, job_id).Bind(2, static_cast<int64_t>(moved)).Bind(3, now_ms);
      if (p->Step() != kDone) return Error("recording repack progress");
      return moved;
    });
    if (!result.ok()) return result;
    return result;
  }

  StatusOr<std::vector<uint32_t>> FinishRepackJob(int64_t job_id, int64_t environment_id,
                                                  uint32_t target, int64_t now_ms) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<std::vector<uint32_t>> {
      EKM_RETURN_IF_ERROR(CheckCurrentEkLocked(environment_id, target));
      {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> c,
            Prepare(std::string("SELECT COUNT(*) FROM data_keys WHERE ") + kUnderOlderLiveEk));
        c->Bind(1, environment_id).Bind(2, int64_t{target});
        if (c->Step() != kRow) return Error("counting data keys to repack");
        if (c->Int(0) != 0) {
          return FailedPreconditionError(std::to_string(c->Int(0)) +
                                         " data keys are still under an older environment key");
        }
      }
      EKM_ASSIGN_OR_RETURN(std::vector<uint32_t> destroyed,
                           DestroyEnvironmentKeysLocked(environment_id, target, now_ms / 1000));
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> f,
          Prepare("UPDATE repack_jobs SET state = 'finished', finished_at_ms = ?2, "
                  "updated_at_ms = ?2, last_error = '', retry_at_ms = NULL WHERE id = ?1"));
      f->Bind(1, job_id).Bind(2, now_ms);
      if (f->Step() != kDone) return Error("finishing the repack job");
      return destroyed;
    });
    if (!result.ok()) return result;
    if (!result->empty()) WipeDestroyed();
    return result;
  }

  Status SetRepackJobWaiting(int64_t job_id, std::string_view error, int64_t retry_at_ms,
                             int64_t now_ms) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE repack_jobs SET state = 'waiting', last_error = ?2, retry_at_ms = ?3, "
                "updated_at_ms = ?4 WHERE id = ?1 AND state != 'finished'"));
    s->Bind(1, job_id).Bind(2, error).Bind(3, retry_at_ms).Bind(4, now_ms);
    if (s->Step() != kDone) return Error("recording why the repack waits");
    return Status::Ok();
  }

  StatusOr<std::vector<EkInventoryRow>> EnvironmentKeyInventory(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT k.version, k.cmk_provider, k.cmk_key_id, k.created_at, "
                "COALESCE(k.destroyed_at, -1), "
                "(SELECT COUNT(*) FROM data_keys d WHERE d.environment_id = k.environment_id AND "
                "d.ek_version = k.version), k.wrapped, k.mac, e.workspace_id, w.name, e.name "
                "FROM environment_keys k JOIN environments e ON e.id = k.environment_id JOIN "
                "workspaces w ON w.id = e.workspace_id WHERE k.environment_id = ? "
                "ORDER BY k.version"));
    s->Bind(1, environment_id);
    std::vector<EkInventoryRow> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      EkInventoryRow r;
      r.version = static_cast<uint32_t>(s->Int(0));
      r.cmk_provider = s->Text(1);
      r.cmk_key_id = s->Text(2);
      r.created_at = s->Int(3);
      if (s->Int(4) >= 0) r.destroyed_at = s->Int(4);
      r.data_keys = static_cast<uint64_t>(s->Int(5));
      EKM_RETURN_IF_ERROR(macs_.CheckEnvironmentKey(
          EnvironmentRecord{environment_id, s->Int(8), s->Text(9), s->Text(10), 0, 0},
          EnvironmentKeyRecord{environment_id, r.version, r.cmk_provider, r.cmk_key_id, s->Blob(6),
                               r.created_at},
          s->Blob(7)));
      out.push_back(std::move(r));
    }
    if (rc != kDone) return Error("reading the environment key inventory");
    return out;
  }

  Status InsertDataKeys(const std::vector<DataKeyRecord>& records) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      // Under the current EK only, as InsertDataKey (checked once per environment and EK).
      std::set<std::pair<int64_t, uint32_t>> checked;
      for (const DataKeyRecord& r : records) {
        if (checked.emplace(r.environment_id, r.ek_version).second) {
          EKM_RETURN_IF_ERROR(CheckNewDataKeyLocked(r));
        }
      }
      for (size_t at = 0; at < records.size(); at += kRowsPerStatement) {
        const size_t rows = std::min(kRowsPerStatement, records.size() - at);
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s, Prepare(InsertDataKeysSql(rows)));
        for (size_t i = at; i < at + rows; ++i) {
          const DataKeyRecord& r = records[i];
          const int p = 1 + 6 * static_cast<int>(i - at);
          s->Bind(p, r.environment_id).Bind(p + 1, r.scope).Bind(p + 2, int64_t{r.version});
          s->Bind(p + 3, int64_t{r.ek_version}).Bind(p + 4, ByteView(r.wrapped));
          s->Bind(p + 5, r.created_at);
        }
        if (s->Step() != kDone) return Error("storing data keys");
      }
      return Status::Ok();
    });
  }

  // Rows per multi-row statement of the bulk writes: few round trips, and well under both
  // databases' parameter limits (SQLite 32766, PostgreSQL 65535).
  static constexpr size_t kRowsPerStatement = 1000;

  // UPDATE … FROM (VALUES (scope, version, from EK, wrapped), …): ?1 the target EK, ?2 the
  // environment. VALUES columns are column1… in both databases.
  static std::string RepackUpdateSql(size_t rows) {
    std::string sql = "UPDATE data_keys SET ek_version = ?1, wrapped = v.column4 FROM (VALUES ";
    // Numbered: a bare ? would follow ?1 and take 2, which the WHERE clause's ?2 names too.
    for (size_t i = 0; i < rows; ++i) {
      sql += (i == 0 ? "(?" : ",(?") + std::to_string(3 + 4 * i) + ",?" +
             std::to_string(4 + 4 * i) + ",?" + std::to_string(5 + 4 * i) + ",?" +
             std::to_string(6 + 4 * i) + ")";
    }
    // The rows' key range as well: the join then reads that range of the primary key, where
    // PostgreSQL's planner would otherwise hash the environment's whole table for each batch
    // (which made a repack quadratic in the number of DKs).
    const size_t lo = 3 + 4 * rows;
    sql +=
        ") AS v WHERE data_keys.environment_id = ?2 AND (data_keys.scope, data_keys.version) "
        ">= (?" +
        std::to_string(lo) + ", ?" + std::to_string(lo + 1) +
        ") AND (data_keys.scope, data_keys.version) <= (?" + std::to_string(lo + 2) + ", ?" +
        std::to_string(lo + 3) +
        ") AND data_keys.scope = v.column1 AND data_keys.version = v.column2 AND "
        "data_keys.ek_version = v.column3";
    return sql;
  }
  static std::string InsertDataKeysSql(size_t rows) {
    std::string sql =
        "INSERT INTO data_keys (environment_id, scope, version, ek_version, wrapped, created_at, "
        "messages_reserved) VALUES ";
    for (size_t i = 0; i < rows; ++i) sql += i == 0 ? "(?,?,?,?,?,?,0)" : ",(?,?,?,?,?,?,0)";
    sql += " ON CONFLICT (environment_id, scope, version) DO NOTHING";
    return sql;
  }

  Status CheckCurrentEkLocked(int64_t environment_id, uint32_t target) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT current_ek_version FROM environments WHERE id = ?"));
    s->Bind(1, environment_id);
    if (s->Step() != kRow) return Error("reading environment");
    if (static_cast<uint32_t>(s->Int(0)) != target) {
      return FailedPreconditionError("the environment's current key moved on to v" +
                                         std::to_string(s->Int(0)) + " during the repack",
                                     "the repack continues towards the new key");
    }
    return Status::Ok();
  }

  // A new DK may only be wrapped under the environment's current EK, and only while that EK's
  // wrapping exists (a shred destroys it).
  Status CheckNewDataKeyLocked(const DataKeyRecord& r) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT e.current_ek_version, k.destroyed_at IS NOT NULL FROM environments e "
                "LEFT JOIN environment_keys k ON k.environment_id = e.id AND k.version = "
                "e.current_ek_version WHERE e.id = ?"));
    s->Bind(1, r.environment_id);
    auto rc = s->Step();
    if (rc == kDone) return NotFoundError("the data key's environment does not exist");
    if (rc != kRow) return Error("reading environment");
    const auto current = static_cast<uint32_t>(s->Int(0));
    const std::string what =
        "data key v" + std::to_string(r.version) + " of scope \"" + r.scope + "\"";
    if (current != r.ek_version) {
      return FailedPreconditionError(
          what + " was wrapped under environment key v" + std::to_string(r.ek_version) +
              ", which is not the environment's current key (v" + std::to_string(current) +
              " is): a rotation or CMK change got there first",
          "wrap it under the current environment key");
    }
    if (s->Int(1) != 0) {
      return FailedPreconditionError(what + " cannot be stored: environment key v" +
                                         std::to_string(current) + " was destroyed",
                                     "the environment was crypto-shredded");
    }
    return Status::Ok();
  }

  StatusOr<std::optional<RepackJobRecord>> LatestRepackJobLocked(int64_t environment_id) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT id, environment_id, target_ek_version, state, total, done, "
                "started_at_ms, run_started_at_ms, run_started_done, updated_at_ms, "
                "COALESCE(finished_at_ms, -1), last_error, COALESCE(retry_at_ms, -1) FROM "
                "repack_jobs WHERE environment_id "
                "= ? ORDER BY id DESC LIMIT 1"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<RepackJobRecord>();
    if (rc != kRow) return Error("reading repack job");
    RepackJobRecord j;
    j.id = s->Int(0);
    j.environment_id = s->Int(1);
    j.target_ek_version = static_cast<uint32_t>(s->Int(2));
    j.state = s->Text(3);
    j.total = static_cast<uint64_t>(s->Int(4));
    j.done = static_cast<uint64_t>(s->Int(5));
    j.started_at_ms = s->Int(6);
    j.run_started_at_ms = s->Int(7);
    j.run_started_done = static_cast<uint64_t>(s->Int(8));
    j.updated_at_ms = s->Int(9);
    if (s->Int(10) >= 0) j.finished_at_ms = s->Int(10);
    j.last_error = s->Text(11);
    if (s->Int(12) >= 0) j.retry_at_ms = s->Int(12);
    return std::optional<RepackJobRecord>(std::move(j));
  }

  Status PutImportParams(const ImportParamsRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO import_params (environment_id, token_sha256, public_key_pem, "
                "sealed_private_key, created_at, expires_at, used_at, attempts) VALUES "
                "(?,?,?,?,?,?,0,0) ON CONFLICT (environment_id) DO UPDATE SET token_sha256 = "
                "excluded.token_sha256, public_key_pem = excluded.public_key_pem, "
                "sealed_private_key = excluded.sealed_private_key, created_at = "
                "excluded.created_at, expires_at = excluded.expires_at, used_at = 0, "
                "attempts = 0"));
    s->Bind(1, r.environment_id).Bind(2, ByteView(r.token_sha256)).Bind(3, r.public_key_pem);
    s->Bind(4, ByteView(r.sealed_private_key)).Bind(5, r.created_at).Bind(6, r.expires_at);
    if (s->Step() != kDone) return Error("storing import parameters");
    // A replaced wrapping private key could still open an upload made for it.
    WipeDestroyed();
    return Status::Ok();
  }

  StatusOr<std::optional<ImportParamsRecord>> GetImportParams(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT environment_id, token_sha256, public_key_pem, sealed_private_key, "
                "created_at, expires_at, used_at, attempts FROM import_params WHERE "
                "environment_id = ?"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<ImportParamsRecord>();
    if (rc != kRow) return Error("reading import parameters");
    return std::optional<ImportParamsRecord>(ImportParamsRecord{
        s->Int(0), s->Blob(1), s->Text(2), s->Blob(3), s->Int(4), s->Int(5), s->Int(6), s->Int(7)});
  }

  StatusOr<std::optional<int64_t>> FindImportTokenEnvironment(ByteView token_sha256) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT environment_id FROM import_params WHERE token_sha256 = ?"));
    s->Bind(1, token_sha256);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<int64_t>();
    if (rc != kRow) return Error("reading import parameters");
    return std::optional<int64_t>(s->Int(0));
  }

  Status SpendImportToken(int64_t environment_id, ByteView token_sha256, int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE import_params SET used_at = ?, sealed_private_key = X'' WHERE "
                "environment_id = ? AND token_sha256 = ? AND used_at = 0"));
    s->Bind(1, now).Bind(2, environment_id).Bind(3, token_sha256);
    if (s->Step() != kDone) return Error("spending import token");
    if (db().Changes() != 1) {
      return FailedPreconditionError("this import token was used already",
                                     "run `ekm key import-params` again for a new token");
    }
    // The wrapping private key has done its one job: destroyed, it can no longer open the
    // upload (material.wrapped) if a copy of that turns up later.
    WipeDestroyed();
    return Status::Ok();
  }

  StatusOr<int64_t> TakeImportAttempt(int64_t environment_id, ByteView token_sha256,
                                      int64_t limit) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE import_params SET attempts = attempts + 1 WHERE environment_id = ? AND "
                "token_sha256 = ? AND used_at = 0 AND attempts < ? RETURNING attempts"));
    s->Bind(1, environment_id).Bind(2, token_sha256).Bind(3, limit);
    auto rc = s->Step();
    if (rc == kRow) {
      int64_t attempts = s->Int(0);
      while (s->Step() == kRow) {
      }
      return attempts;
    }
    if (rc != kDone) return Error("counting an import attempt");
    return FailedPreconditionError(
        "this import token is locked after " + std::to_string(limit) +
            " failed imports (or was used, or replaced, meanwhile)",
        "run `ekm key import-params` again for a new token and wrapping key");
  }

  Status PutKeyMaterial(const KeyMaterialRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO key_material (environment_id, key_id, sealed_material, "
                "imported_at, deleted_at) VALUES (?,?,?,?,?) ON CONFLICT (environment_id, "
                "key_id) DO UPDATE SET sealed_material = excluded.sealed_material, "
                "imported_at = excluded.imported_at, deleted_at = excluded.deleted_at"));
    s->Bind(1, r.environment_id).Bind(2, r.key_id).Bind(3, ByteView(r.sealed_material));
    s->Bind(4, r.imported_at).Bind(5, r.deleted_at);
    if (s->Step() != kDone) return Error("storing key material");
    return Status::Ok();
  }

  StatusOr<std::optional<KeyMaterialRecord>> GetKeyMaterial(int64_t environment_id,
                                                            std::string_view key_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string(kSelectKeyMaterial) + " WHERE environment_id = ? AND key_id = ?"));
    s->Bind(1, environment_id).Bind(2, key_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<KeyMaterialRecord>();
    if (rc != kRow) return Error("reading key material");
    return std::optional<KeyMaterialRecord>(ReadKeyMaterial(*s));
  }

  StatusOr<std::vector<KeyMaterialRecord>> FindKeyMaterial(std::string_view key_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string(kSelectKeyMaterial) + " WHERE key_id = ? ORDER BY environment_id"));
    s->Bind(1, key_id);
    std::vector<KeyMaterialRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) out.push_back(ReadKeyMaterial(*s));
    if (rc != kDone) return Error("reading key material");
    return out;
  }

  Status DeleteKeyMaterial(int64_t environment_id, std::string_view key_id, int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE key_material SET sealed_material = X'', deleted_at = ? WHERE "
                "environment_id = ? AND key_id = ? AND deleted_at = 0"));
    s->Bind(1, now).Bind(2, environment_id).Bind(3, key_id);
    if (s->Step() != kDone) return Error("deleting key material");
    if (db().Changes() != 1) {
      return NotFoundError("no imported key material \"" + std::string(key_id) +
                           "\" exists in this environment (never imported, or deleted already)");
    }
    WipeDestroyed();
    return Status::Ok();
  }

  Status RemoveKeyMaterialRow(int64_t environment_id, std::string_view key_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("DELETE FROM key_material WHERE environment_id = ? AND key_id = ?"));
    s->Bind(1, environment_id).Bind(2, key_id);
    if (s->Step() != kDone) return Error("removing key material");
    if (db().Changes() > 0) WipeDestroyed();
    return Status::Ok();
  }

  static constexpr std::string_view kSelectKeyMaterial =
      "SELECT environment_id, key_id, sealed_material, imported_at, deleted_at FROM "
      "key_material";
  static KeyMaterialRecord ReadKeyMaterial(const Stmt& s) {
    return KeyMaterialRecord{s.Int(0), s.Text(1), s.Blob(2), s.Int(3), s.Int(4)};
  }

  StatusOr<EnvironmentShredRecord> ShredEnvironment(int64_t environment_id, int64_t now,
                                                    std::string_view actor) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    auto result = WriteTransactionLocked([&]() -> StatusOr<EnvironmentShredRecord> {
      EKM_ASSIGN_OR_RETURN(std::optional<EnvironmentShredRecord> done,
                           GetEnvironmentShredLocked(environment_id));
      if (done) {
        return FailedPreconditionError("the environment was crypto-shredded already");
      }
      EnvironmentShredRecord r{environment_id, now, std::string(actor), 0, 0};
      {
        EKM_ASSIGN_OR_RETURN(std::vector<uint32_t> wiped,
                             DestroyEnvironmentKeysLocked(environment_id, 0, now));
        r.ek_versions = static_cast<uint32_t>(wiped.size());
      }
      if (r.ek_versions == 0) return NotFoundError("environment has no keys to shred");
      {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> s,
            Prepare("UPDATE data_keys SET wrapped = X'' WHERE environment_id = ?"));
        s->Bind(1, environment_id);
        if (s->Step() != kDone) return Error("wiping data keys");
        r.dk_versions = static_cast<uint32_t>(db().Changes());
      }
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("INSERT INTO environment_shreds (environment_id, shredded_at, actor, "
                  "ek_versions, dk_versions) VALUES (?,?,?,?,?)"));
      s->Bind(1, environment_id).Bind(2, now).Bind(3, actor);
      s->Bind(4, int64_t{r.ek_versions}).Bind(5, int64_t{r.dk_versions});
      if (s->Step() != kDone) return Error("recording the shred");
      return r;
    });
    if (!result.ok()) return result;
    WipeDestroyed();
    return result;
  }

  StatusOr<std::optional<EnvironmentShredRecord>> GetEnvironmentShred(
      int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return GetEnvironmentShredLocked(environment_id);
  }

  Status PutShredConfirmation(ByteView token_hash, int64_t environment_id, int64_t expires_at,
                              int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      {
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> purge,
                             Prepare("DELETE FROM shred_confirmations WHERE expires_at <= ?"));
        purge->Bind(1, now);
        if (purge->Step() != kDone) return Error("deleting expired shred confirmations");
      }
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                           Prepare("INSERT INTO shred_confirmations (token_hash, environment_id, "
                                   "expires_at) VALUES (?,?,?)"));
      s->Bind(1, token_hash).Bind(2, environment_id).Bind(3, expires_at);
      if (s->Step() != kDone) return Error("storing the shred confirmation");
      return Status::Ok();
    });
  }

  StatusOr<ShredConfirmationTake> TakeShredConfirmation(ByteView token_hash,
                                                        int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> StatusOr<ShredConfirmationTake> {
      ShredConfirmationTake t;
      {
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> q,
                             Prepare("SELECT environment_id, expires_at FROM shred_confirmations "
                                     "WHERE token_hash = ?"));
        q->Bind(1, token_hash);
        const auto rc = q->Step();
        if (rc == kDone) return t;
        if (rc != kRow) return Error("reading the shred confirmation");
        t.found = true;
        t.environment_id = q->Int(0);
        t.expires_at = q->Int(1);
      }
      if (t.environment_id != environment_id) return t;
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> d,
                           Prepare("DELETE FROM shred_confirmations WHERE token_hash = ?"));
      d->Bind(1, token_hash);
      if (d->Step() != kDone) return Error("taking the shred confirmation");
      t.taken = true;
      return t;
    });
  }

  Status PostClusterNotice(const ClusterNotice& n) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> Status {
      {
        EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                             Prepare("INSERT INTO cluster_notices (at, kind, workspace, "
                                     "environment, token_id) VALUES (?,?,?,?,?)"));
        s->Bind(1, n.at).Bind(2, n.kind).Bind(3, n.workspace).Bind(4, n.environment);
        s->Bind(5, n.token_id);
        if (s->Step() != kDone) return Error("posting a cluster notice");
      }
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> old,
                           Prepare("DELETE FROM cluster_notices WHERE at < ?"));
      old->Bind(1, n.at - 86400);
      if (old->Step() != kDone) return Error("deleting old cluster notices");
      return Status::Ok();
    });
  }

  StatusOr<std::vector<ClusterNotice>> ListClusterNotices(int64_t after_seq,
                                                          size_t limit) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT seq, at, kind, workspace, environment, token_id FROM "
                                 "cluster_notices WHERE seq > ? ORDER BY seq LIMIT ?"));
    s->Bind(1, after_seq).Bind(2, static_cast<int64_t>(limit));
    std::vector<ClusterNotice> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      out.push_back({s->Int(0), s->Int(1), s->Text(2), s->Text(3), s->Text(4), s->Text(5)});
    }
    if (rc != kDone) return Error("reading cluster notices");
    return out;
  }

  StatusOr<bool> TakeLease(std::string_view name, std::string_view holder, int64_t now_ms,
                           int64_t until_ms) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    return WriteTransactionLocked([&]() -> StatusOr<bool> {
      {
        EKM_ASSIGN_OR_RETURN(
            std::unique_ptr<Stmt> s,
            Prepare("INSERT INTO leases (name, holder, expires_at_ms) VALUES (?1, ?2, ?4) ON "
                    "CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = "
                    "excluded.expires_at_ms WHERE leases.holder = excluded.holder OR "
                    "leases.expires_at_ms <= ?3"));
        s->Bind(1, name).Bind(2, holder).Bind(3, now_ms).Bind(4, until_ms);
        if (s->Step() != kDone) return Error("taking a lease");
      }
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> q,
                           Prepare("SELECT holder FROM leases WHERE name = ?"));
      q->Bind(1, name);
      if (q->Step() != kRow) return Error("reading a lease");
      return q->Text(0) == holder;
    });
  }

  Status ReleaseLease(std::string_view name, std::string_view holder) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("DELETE FROM leases WHERE name = ? AND holder = ?"));
    s->Bind(1, name).Bind(2, holder);
    if (s->Step() != kDone) return Error("releasing a lease");
    return Status::Ok();
  }

  StatusOr<int64_t> LatestClusterNoticeSeq() override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT COALESCE(MAX(seq), 0) FROM cluster_notices"));
    if (s->Step() != kRow) return Error("reading cluster notices");
    return s->Int(0);
  }

  Status SetWorkspaceDefaultKey(const WorkspaceDefaultKeyRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    std::string workspace;
    {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> w,
                           Prepare("SELECT name FROM workspaces WHERE id = ?"));
      w->Bind(1, r.workspace_id);
      auto rc = w->Step();
      if (rc == kDone)
        return NotFoundError("workspace " + std::to_string(r.workspace_id) + " does not exist");
      if (rc != kRow) return Error("reading workspace");
      workspace = w->Text(0);
    }
    EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.WorkspaceDefaultKey(workspace, r));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO workspace_default_keys (workspace_id, cmk_provider, cmk_key_id, "
                "set_at, actor, mac) VALUES (?,?,?,?,?,?) ON CONFLICT (workspace_id) DO UPDATE "
                "SET cmk_provider = excluded.cmk_provider, cmk_key_id = excluded.cmk_key_id, "
                "set_at = excluded.set_at, actor = excluded.actor, mac = excluded.mac"));
    s->Bind(1, r.workspace_id).Bind(2, r.cmk_provider).Bind(3, r.cmk_key_id);
    s->Bind(4, r.set_at).Bind(5, r.actor).Bind(6, ByteView(mac));
    if (s->Step() != kDone) return Error("storing the workspace default key");
    return Status::Ok();
  }

  StatusOr<std::optional<WorkspaceDefaultKeyRecord>> GetWorkspaceDefaultKey(
      int64_t workspace_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT d.cmk_provider, d.cmk_key_id, d.set_at, d.actor, d.mac, w.name FROM "
                "workspace_default_keys d JOIN workspaces w ON w.id = d.workspace_id WHERE "
                "d.workspace_id = ?"));
    s->Bind(1, workspace_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<WorkspaceDefaultKeyRecord>();
    if (rc != kRow) return Error("reading the workspace default key");
    WorkspaceDefaultKeyRecord r{workspace_id, s->Text(0), s->Text(1), s->Int(2), s->Text(3)};
    EKM_RETURN_IF_ERROR(macs_.CheckWorkspaceDefaultKey(s->Text(5), r, s->Blob(4)));
    return std::optional<WorkspaceDefaultKeyRecord>(std::move(r));
  }

  Status DeleteWorkspaceDefaultKey(int64_t workspace_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("DELETE FROM workspace_default_keys WHERE workspace_id = ?"));
    s->Bind(1, workspace_id);
    if (s->Step() != kDone) return Error("removing the workspace default key");
    return Status::Ok();
  }

  StatusOr<std::vector<RotationScheduleRecord>> ListRotationSchedules() override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT e.id, e.workspace_id, w.name, e.name, e.created_at, e.current_ek_version, "
                "e.current_ek_mac, "
                "COALESCE((SELECT value FROM environment_settings WHERE environment_id = e.id AND "
                "name = 'ek_rotation_period_seconds'), -1), COALESCE((SELECT value FROM "
                "environment_settings WHERE environment_id = e.id AND name = "
                "'dk_rotation_period_seconds'), -1), k.created_at "
                "FROM environments e JOIN workspaces w ON w.id = e.workspace_id JOIN "
                "environment_keys k ON k.environment_id = e.id AND k.version = "
                "e.current_ek_version WHERE e.id NOT IN (SELECT environment_id FROM "
                "environment_shreds) AND e.id IN (SELECT environment_id FROM "
                "environment_settings WHERE name IN ('ek_rotation_period_seconds', "
                "'dk_rotation_period_seconds')) ORDER BY w.name, e.name"));
    std::vector<RotationScheduleRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      RotationScheduleRecord r;
      auto env = ReadEnvironment(*s);
      if (!env.ok()) {
        if (env.status().code() == StatusCode::kDataLoss) continue;  // as in the list above
        return env.status();
      }
      r.environment = std::move(env).value();
      // -1: not set (a period is at least an hour).
      if (s->Int(7) >= 0) r.ek_rotation_period_seconds = s->Int(7);
      if (s->Int(8) >= 0) r.dk_rotation_period_seconds = s->Int(8);
      r.current_ek_created_at = s->Int(9);
      out.push_back(std::move(r));
    }
    if (rc != kDone) return Error("listing rotation schedules");
    return out;
  }

  StatusOr<std::vector<DataKeyRecord>> ListLatestDataKeys(int64_t environment_id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("SELECT d.environment_id, d.scope, d.version, d.ek_version, X'', d.created_at, "
                "d.messages_reserved FROM data_keys d WHERE d.environment_id = ?1 AND d.version = "
                "(SELECT MAX(m.version) FROM data_keys m WHERE m.environment_id = ?1 AND m.scope "
                "= d.scope) ORDER BY d.scope"));
    s->Bind(1, environment_id);
    std::vector<DataKeyRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) out.push_back(ReadDataKey(*s));
    if (rc != kDone) return Error("listing data keys");
    return out;
  }

  Status CreateApiToken(const ApiTokenRecord& r) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO api_tokens (id, secret_sha256, role, workspace, environments, "
                "description, created_at, created_by, expires_at, revoked_at) VALUES "
                "(?,?,?,?,?,?,?,?,?,?)"));
    std::string envs = nlohmann::json(r.environments).dump();
    s->Bind(1, r.id).Bind(2, ByteView(r.secret_sha256)).Bind(3, r.role).Bind(4, r.workspace);
    s->Bind(5, envs).Bind(6, r.description).Bind(7, r.created_at).Bind(8, r.created_by);
    s->Bind(9, r.expires_at).Bind(10, r.revoked_at);
    auto rc = s->Step();
    if (rc == kConstraint) return AlreadyExistsError("token " + r.id + " already exists");
    if (rc != kDone) return Error("storing API token");
    return Status::Ok();
  }

  Status CreateOwnerTokenUnlessOneIsValid(const ApiTokenRecord& r, int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("INSERT INTO api_tokens (id, secret_sha256, role, workspace, environments, "
                "description, created_at, created_by, expires_at, revoked_at) "
                "SELECT ?1, ?2, 'owner', ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE NOT EXISTS (SELECT 1 "
                "FROM api_tokens WHERE workspace = ?3 AND role = 'owner' AND revoked_at = 0 AND "
                "(expires_at = 0 OR expires_at > ?10))"));
    std::string envs = nlohmann::json(r.environments).dump();
    s->Bind(1, r.id).Bind(2, ByteView(r.secret_sha256)).Bind(3, r.workspace).Bind(4, envs);
    s->Bind(5, r.description).Bind(6, r.created_at).Bind(7, r.created_by).Bind(8, r.expires_at);
    s->Bind(9, r.revoked_at).Bind(10, now);
    auto rc = s->Step();
    if (rc == kConstraint) return AlreadyExistsError("token " + r.id + " already exists");
    if (rc != kDone) return Error("storing API token");
    if (db().Changes() == 0) {
      return FailedPreconditionError("workspace " + r.workspace + " has a valid owner token");
    }
    return Status::Ok();
  }

  StatusOr<std::optional<ApiTokenRecord>> GetApiToken(std::string_view id) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare(std::string(kSelectApiToken) + " WHERE id = ?"));
    s->Bind(1, id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<ApiTokenRecord>();
    if (rc != kRow) return Error("reading API token");
    EKM_ASSIGN_OR_RETURN(ApiTokenRecord r, ReadApiToken(*s));
    return std::optional<ApiTokenRecord>(std::move(r));
  }

  StatusOr<std::vector<ApiTokenRecord>> ListApiTokens(
      std::optional<std::string_view> workspace) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare(std::string(kSelectApiToken) +
                                 " WHERE (? = 0 OR workspace = ?) ORDER BY created_at, id"));
    s->Bind(1, int64_t{workspace.has_value() ? 1 : 0}).Bind(2, workspace.value_or(""));
    std::vector<ApiTokenRecord> out;
    sql::StepResult rc;
    while ((rc = s->Step()) == kRow) {
      EKM_ASSIGN_OR_RETURN(ApiTokenRecord r, ReadApiToken(*s));
      out.push_back(std::move(r));
    }
    if (rc != kDone) return Error("listing API tokens");
    return out;
  }

  Status RevokeApiToken(std::string_view id, int64_t now) override {
    EKM_ASSIGN_OR_RETURN(ConnectionLease held, ConnectionLease::Take(*pool_));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare("UPDATE api_tokens SET revoked_at = CASE WHEN revoked_at = 0 THEN ?1 ELSE "
                "revoked_at END WHERE id = ?2"));
    s->Bind(1, now).Bind(2, id);
    if (s->Step() != kDone) return Error("revoking API token");
    if (db().Changes() == 0) return NotFoundError("token " + std::string(id) + " not found");
    return Status::Ok();
  }

  static constexpr std::string_view kSelectApiToken =
      "SELECT id, secret_sha256, role, workspace, environments, description, created_at, "
      "created_by, expires_at, revoked_at FROM api_tokens";

  static StatusOr<ApiTokenRecord> ReadApiToken(const Stmt& s) {
    ApiTokenRecord r;
    r.id = s.Text(0);
    r.secret_sha256 = s.Blob(1);
    r.role = s.Text(2);
    r.workspace = s.Text(3);
    nlohmann::json envs = nlohmann::json::parse(s.Text(4), nullptr, false);
    if (!envs.is_array()) return DataLossError("token " + r.id + ": environments are corrupt");
    for (const auto& e : envs) {
      if (!e.is_string()) return DataLossError("token " + r.id + ": environments are corrupt");
      r.environments.push_back(e.get<std::string>());
    }
    r.description = s.Text(5);
    r.created_at = s.Int(6);
    r.created_by = s.Text(7);
    r.expires_at = s.Int(8);
    r.revoked_at = s.Int(9);
    return r;
  }

  StatusOr<std::optional<EnvironmentShredRecord>> GetEnvironmentShredLocked(
      int64_t environment_id) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT shredded_at, actor, ek_versions, dk_versions FROM "
                                 "environment_shreds WHERE environment_id = ?"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kDone) return std::optional<EnvironmentShredRecord>();
    if (rc != kRow) return Error("reading the shred record");
    return std::optional<EnvironmentShredRecord>(
        EnvironmentShredRecord{environment_id, s->Int(0), s->Text(1),
                               static_cast<uint32_t>(s->Int(2)), static_cast<uint32_t>(s->Int(3))});
  }

  // Columns of kSelectEnvironment, the pointer's MAC checked.
  static constexpr std::string_view kSelectEnvironment =
      "SELECT e.id, e.workspace_id, w.name, e.name, e.created_at, e.current_ek_version, "
      "e.current_ek_mac FROM environments e JOIN workspaces w ON w.id = e.workspace_id";
  StatusOr<EnvironmentRecord> ReadEnvironment(const Stmt& s) const {
    EnvironmentRecord env{s.Int(0),  s.Int(1), s.Text(2),
                          s.Text(3), s.Int(4), static_cast<uint32_t>(s.Int(5))};
    EKM_RETURN_IF_ERROR(macs_.CheckCurrentEnvironmentKey(env, s.Blob(6)));
    return env;
  }
  static DataKeyRecord ReadDataKey(const Stmt& s) {
    return DataKeyRecord{
        s.Int(0),  s.Text(1), static_cast<uint32_t>(s.Int(2)), static_cast<uint32_t>(s.Int(3)),
        s.Blob(4), s.Int(5),  static_cast<uint64_t>(s.Int(6))};
  }

  StatusOr<WorkspaceRecord> GetWorkspaceLocked(std::string_view name) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("SELECT id, name, created_at FROM workspaces WHERE name = ?"));
    s->Bind(1, name);
    auto rc = s->Step();
    if (rc == kRow) return WorkspaceRecord{s->Int(0), s->Text(1), s->Int(2)};
    if (rc != kDone) return Error("reading workspace");
    return NotFoundError("workspace \"" + std::string(name) + "\" does not exist",
                         "create it with `ekm workspace create " + std::string(name) + "`");
  }

  StatusOr<DataKeyRecord> GetDataKeyLocked(int64_t environment_id, std::string_view scope,
                                           uint32_t version) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> s,
        Prepare(std::string(kSelectDataKey) + " WHERE environment_id = ? AND scope = ? AND "
                                              "version = ?"));
    s->Bind(1, environment_id).Bind(2, scope).Bind(3, int64_t{version});
    auto rc = s->Step();
    if (rc == kRow) return ReadDataKey(*s);
    if (rc != kDone) return Error("reading data key");
    return NotFoundError("data key v" + std::to_string(version) + " of scope \"" +
                         std::string(scope) + "\" does not exist");
  }

  // `env`: the environment the EK belongs to (id, workspace, name), for its MAC.
  Status InsertEnvironmentKeyLocked(const EnvironmentRecord& env, const EnvironmentKeyRecord& ek) {
    EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.EnvironmentKey(env, ek));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("INSERT INTO environment_keys (environment_id, version, "
                                 "cmk_provider, cmk_key_id, wrapped, created_at, mac) "
                                 "VALUES (?,?,?,?,?,?,?)"));
    s->Bind(1, ek.environment_id).Bind(2, int64_t{ek.version}).Bind(3, ek.cmk_provider);
    s->Bind(4, ek.cmk_key_id).Bind(5, ByteView(ek.wrapped)).Bind(6, ek.created_at);
    s->Bind(7, ByteView(mac));
    if (s->Step() != kDone) return Error("storing environment key");
    return Status::Ok();
  }

  // Stores the MAC of the environment's current-EK pointer as `env` has it.
  Status SetCurrentEkMacLocked(const EnvironmentRecord& env) {
    EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.CurrentEnvironmentKey(env));
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare("UPDATE environments SET current_ek_mac = ? WHERE id = ?"));
    s->Bind(1, ByteView(mac)).Bind(2, env.id);
    if (s->Step() != kDone) return Error("storing the environment's integrity check");
    return Status::Ok();
  }

  // The environment by id, its pointer's MAC checked. Caller holds a lease.
  StatusOr<EnvironmentRecord> EnvironmentByIdLocked(int64_t environment_id) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> s,
                         Prepare(std::string(kSelectEnvironment) + " WHERE e.id = ?"));
    s->Bind(1, environment_id);
    auto rc = s->Step();
    if (rc == kRow) return ReadEnvironment(*s);
    if (rc != kDone) return Error("reading environment");
    return NotFoundError("environment " + std::to_string(environment_id) + " does not exist");
  }

  // Moves the environment's current EK from ek.version - 1 to ek.version, guarded (another
  // change that got there first wins), with the pointer's new MAC; returns the environment as
  // it is now. Inside a write transaction.
  StatusOr<EnvironmentRecord> MoveCurrentEkLocked(const EnvironmentKeyRecord& ek) {
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, EnvironmentByIdLocked(ek.environment_id));
    env.current_ek_version = ek.version;
    EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.CurrentEnvironmentKey(env));
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<Stmt> u,
        Prepare("UPDATE environments SET current_ek_version = ?1, current_ek_mac = ?3 WHERE "
                "id = ?2 AND current_ek_version = ?1 - 1"));
    u->Bind(1, int64_t{ek.version}).Bind(2, ek.environment_id).Bind(3, ByteView(mac));
    if (u->Step() != kDone) return Error("updating environment");
    if (db().Changes() != 1) {
      return FailedPreconditionError(
          "the environment's key changed while this change was being made",
          "look at `ekm key show` and try again");
    }
    return env;
  }

  // Wipes the wrapped blob of the environment's EK versions below `below` (all with
  // below = 0) that are not destroyed yet (all, destroyed or not, with below = 0: a shred),
  // marks them destroyed_at and gives each its MAC as wiped; returns the versions. A wiped row
  // is MAC'd as it is without checking what it was: destroying is safe whatever was there.
  StatusOr<std::vector<uint32_t>> DestroyEnvironmentKeysLocked(int64_t environment_id,
                                                               uint32_t below,
                                                               int64_t destroyed_at) {
    struct Row {
      EnvironmentKeyRecord ek;
      EnvironmentRecord env;
    };
    std::vector<Row> rows;
    {
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> s,
          Prepare("SELECT k.version, k.cmk_provider, k.cmk_key_id, k.created_at, e.workspace_id, "
                  "w.name, e.name FROM environment_keys k JOIN environments e ON e.id = "
                  "k.environment_id JOIN workspaces w ON w.id = e.workspace_id WHERE "
                  "k.environment_id = ?1 AND (?2 = 0 OR (k.version < ?2 AND k.destroyed_at IS "
                  "NULL)) ORDER BY k.version"));
      s->Bind(1, environment_id).Bind(2, int64_t{below});
      sql::StepResult rc;
      while ((rc = s->Step()) == kRow) {
        rows.push_back(
            Row{EnvironmentKeyRecord{environment_id, static_cast<uint32_t>(s->Int(0)), s->Text(1),
                                     s->Text(2), Bytes(), s->Int(3)},
                EnvironmentRecord{environment_id, s->Int(4), s->Text(5), s->Text(6), 0, 0}});
      }
      if (rc != kDone) return Error("reading environment keys to destroy");
    }
    std::vector<uint32_t> destroyed;
    for (const Row& r : rows) {
      EKM_ASSIGN_OR_RETURN(Bytes mac, macs_.EnvironmentKey(r.env, r.ek));
      EKM_ASSIGN_OR_RETURN(
          std::unique_ptr<Stmt> u,
          Prepare("UPDATE environment_keys SET wrapped = X'', destroyed_at = ?, mac = ? WHERE "
                  "environment_id = ? AND version = ?"));
      u->Bind(1, destroyed_at).Bind(2, ByteView(mac)).Bind(3, environment_id);
      u->Bind(4, int64_t{r.ek.version});
      if (u->Step() != kDone) return Error("destroying an environment key");
      destroyed.push_back(r.ek.version);
    }
    return destroyed;
  }

  // The connection this thread leased (a ConnectionLease is held).
  sql::Connection& db() const { return *t_lease.connection; }

  // After a committed change that destroyed key material (the connection's driver knows what
  // its files need).
  void WipeDestroyed() { db().WipeDestroyed(); }

  StatusOr<std::unique_ptr<Stmt>> Prepare(const std::string& sql) { return db().Prepare(sql); }
  Status Exec(const std::string& sql) { return db().Exec(sql); }
  Status Error(std::string_view what) { return db().Error(what); }

  // Runs `body` (returning Status or StatusOr) in one write transaction, committed when `body`
  // succeeds, rolled back when it fails or the commit does. Inside another transaction of this
  // thread's lease it is a savepoint of it: its changes go or stay with that transaction. The
  // outermost transaction runs `body` again from the start after a serialization failure
  // (PostgreSQL), so `body` must do nothing but store calls.
  template <typename Body>
  auto WriteTransactionLocked(Body&& body) -> decltype(body()) {
    if (t_lease.transaction_depth > 0) {
      std::string savepoint = "ekm_" + std::to_string(t_lease.transaction_depth);
      EKM_RETURN_IF_ERROR(Exec("SAVEPOINT " + savepoint));
      ++t_lease.transaction_depth;
      auto result = body();
      --t_lease.transaction_depth;
      Status st = StatusOf(result);
      if (st.ok()) st = Exec("RELEASE SAVEPOINT " + savepoint);
      if (st.ok()) return result;
      Exec("ROLLBACK TO SAVEPOINT " + savepoint).IgnoreError();
      Exec("RELEASE SAVEPOINT " + savepoint).IgnoreError();
      return st;
    }
    for (int attempt = 1;; ++attempt) {
      EKM_RETURN_IF_ERROR(db().BeginWrite());
      t_lease.transaction_depth = 1;
      auto result = body();
      t_lease.transaction_depth = 0;
      Status st = StatusOf(result);
      if (st.ok()) st = Exec("COMMIT");
      if (st.ok()) return result;
      bool retry = db().LastErrorIsRetryable();
      Exec("ROLLBACK").IgnoreError();
      if (!retry || attempt == kMaxTransactionAttempts) return st;
      // Another transaction won; let it finish before running again.
      PauseBeforeAttempt(attempt);
    }
  }
  static Status StatusOf(const Status& s) { return s; }
  template <typename T>
  static Status StatusOf(const StatusOr<T>& s) {
    return s.ok() ? Status::Ok() : s.status();
  }

  const std::unique_ptr<sql::ConnectionPool> pool_;
  const std::string name_;         // "the store …", in messages
  const std::string fingerprint_;  // hex of the root key's store fingerprint
  const std::string root_key_source_;
  std::function<Status(const EnvironmentKeyRecord&)> check_legacy_ek_;  // during Migrate only
  const StoreRowMacs macs_;
};

}  // namespace

StatusOr<StorePtr> OpenSqlStore(std::unique_ptr<sql::ConnectionPool> pool, StoreBinding binding,
                                bool create_if_empty) {
  auto store = std::make_unique<SqlStore>(std::move(pool), std::move(binding));
  EKM_RETURN_IF_ERROR(store->Migrate(create_if_empty));
  return StorePtr(std::move(store));
}

}  // namespace ekm
