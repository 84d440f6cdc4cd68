#include "ekm/store/postgres/postgres_store.h"

#include <libpq-fe.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ekm/base/encoding.h"
#include "ekm/store/postgres/postgres_sql.h"
#include "ekm/store/sql/sql_connection.h"
#include "ekm/store/sql/sql_store.h"

namespace ekm {

namespace {

// pg_type OIDs (catalog/pg_type_d.h is a server header).
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;

// pg_advisory_lock key held while migrating: "ekm_migr".
constexpr int64_t kMigrationLockKey = 0x656b6d5f6d696772;
// A statement outside a transaction that hits a serialization failure runs again this often.
constexpr int kAutocommitAttempts = 8;
// PostgreSQL 11: identity columns, VACUUM of several tables.
constexpr int kMinServerVersion = 110000;

// bytea in the form bytea_output = 'hex' gives: \x and pairs of hex digits.
bool IsHexBytea(const char* v) {
  if (v[0] != '\\' || v[1] != 'x') return false;
  size_t n = 0;
  for (const char* p = v + 2; *p != '\0'; ++p, ++n) {
    if (!std::isxdigit(static_cast<unsigned char>(*p))) return false;
  }
  return n % 2 == 0;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

class PostgresConnection;

class PostgresStatement final : public sql::Statement {
 public:
  PostgresStatement(PostgresConnection& connection, const postgres::TranslatedSql& sql)
      : connection_(connection),
        sql_(sql),
        values_(static_cast<size_t>(sql.parameters)),
        types_(static_cast<size_t>(sql.parameters), 0),
        formats_(static_cast<size_t>(sql.parameters), 0) {}

  Statement& Bind(int i, int64_t v) override { return Set(i, std::to_string(v), kInt8Oid, 0); }
  Statement& Bind(int i, std::string_view v) override {
    return Set(i, std::string(v), kTextOid, 0);
  }
  Statement& Bind(int i, ByteView v) override {
    return Set(i, std::string(reinterpret_cast<const char*>(v.data()), v.size()), kByteaOid, 1);
  }
  sql::StepResult Step() override;
  void Reset() override {
    result_.reset();
    row_ = -1;
    for (auto& v : values_) v.reset();
  }
  int64_t Int(int col) const override {
    const char* v = Value(col);
    if (v == nullptr) return 0;
    if (v[0] == 't' && v[1] == '\0') return 1;  // a boolean expression's column
    if (v[0] == 'f' && v[1] == '\0') return 0;
    return std::strtoll(v, nullptr, 10);
  }
  std::string Text(int col) const override {
    const char* v = Value(col);
    return v ? std::string(v, static_cast<size_t>(PQgetlength(result_.get(), row_, col)))
             : std::string();
  }
  Bytes Blob(int col) const override {
    const char* v = Value(col);  // bytea_output = hex: \x0a1b…, checked by Step()
    if (v == nullptr || v[0] != '\\' || v[1] != 'x') return Bytes();
    auto bytes = HexDecode(std::string_view(v + 2));
    return bytes.ok() ? std::move(*bytes) : Bytes();
  }

 private:
  Statement& Set(int i, std::string value, Oid type, int format) {
    if (i >= 1 && static_cast<size_t>(i) <= values_.size()) {
      values_[static_cast<size_t>(i - 1)] = std::move(value);
      types_[static_cast<size_t>(i - 1)] = type;
      formats_[static_cast<size_t>(i - 1)] = format;
    }
    return *this;
  }
  const char* Value(int col) const {
    if (!result_ || row_ < 0 || PQgetisnull(result_.get(), row_, col)) return nullptr;
    return PQgetvalue(result_.get(), row_, col);
  }

  PostgresConnection& connection_;
  const postgres::TranslatedSql& sql_;  // owned by the connection's cache
  std::vector<std::optional<std::string>> values_;
  std::vector<Oid> types_;
  std::vector<int> formats_;
  Result result_;
  int row_ = -1;
};

class PostgresConnection final : public sql::Connection {
 public:
  PostgresConnection(PGconn* conn, const std::string& name) : conn_(conn), name_(name) {}
  ~PostgresConnection() override { PQfinish(conn_); }

  sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }

  StatusOr<std::unique_ptr<sql::Statement>> Prepare(const std::string& sql) override {
    auto it = translated_.find(sql);
    if (it == translated_.end()) it = translated_.emplace(sql, postgres::ToPostgres(sql)).first;
    return std::unique_ptr<sql::Statement>(std::make_unique<PostgresStatement>(*this, it->second));
  }

  Status Exec(const std::string& sql) override {
    Result r(PQexec(conn_, postgres::ToPostgres(sql).text.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::Ok();
    RecordError(r.get());
    return Error("running " + sql.substr(0, sql.find_first_of(" \n")));
  }

  uint64_t Changes() const override { return changes_; }

  Status Error(std::string_view what) const override {
    const std::string& code = sqlstate_;
    std::string detail = message_.empty() ? PQerrorMessage(conn_) : message_;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
    if (Broken() || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) {
      return UnavailableError(name_ + " cannot be reached (" + std::string(what) + "): " + detail,
                              "ekm reconnects by itself; check that the PostgreSQL server is up "
                              "and reachable")
          .WithRetryAfter(1);
    }
    if (code == "57014" || code == "55P03") {
      return UnavailableError(name_ + " did not finish " + std::string(what) +
                                  " in time (statement or lock timeout): " + detail,
                              "retry; if it lasts, look for long transactions on the database")
          .WithRetryAfter(1);
    }
    if (code == "40001" || code == "40P01") {
      return UnavailableError(
                 "concurrent changes kept conflicting with " + std::string(what) + " on " + name_,
                 "retry")
          .WithRetryAfter(1);
    }
    if (code.rfind("53", 0) == 0) {
      return UnavailableError(name_ + " is out of resources (" + std::string(what) + "): " + detail)
          .WithRetryAfter(1);
    }
    if (code == "XX001" || code == "XX002") {
      return DataLossError(name_ + " reports corrupt data (" + std::string(what) + "): " + detail);
    }
    return InternalError("PostgreSQL " + std::string(what) + ": " + detail +
                         (code.empty() ? "" : " (SQLSTATE " + code + ")"));
  }

  Status BeginWrite() override {
    retryable_ = false;
    return Exec("BEGIN ISOLATION LEVEL SERIALIZABLE");
  }
  bool LastErrorIsRetryable() const override { return retryable_; }

  // PostgreSQL keeps an updated row's old version until VACUUM removes it: run it on the tables
  // that hold key material, so the destroyed wrappings leave the tables' live pages. What
  // PostgreSQL does not zero (freed space inside a page, WAL segments, base backups) is
  // described in docs/store.md "Destroying key material".
  // VACUUM cannot run inside a transaction: then it runs when the lease ends (RunPendingWipe).
  void WipeDestroyed() override {
    wipe_pending_ = true;
    if (!InTransaction()) RunPendingWipe();
  }
  void RunPendingWipe() {
    if (!wipe_pending_ || InTransaction()) return;
    wipe_pending_ = false;
    Exec("VACUUM environment_keys, data_keys, key_material, import_params").IgnoreError();
  }

  Status LockForMigration() override {
    return Exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLockKey) + ")");
  }
  void UnlockForMigration() override {
    Exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLockKey) + ")").IgnoreError();
  }

  // A plan made on statistics older than a bulk of new rows can read and sort a whole table
  // where an index walk reads one batch (docs/store.md "CMK replacement and the repack").
  void RefreshStatistics(const std::string& table) override {
    Exec("ANALYZE " + table).IgnoreError();
  }

  bool Broken() const override { return PQstatus(conn_) != CONNECTION_OK; }

  // Whether an idle connection still reaches its server. A server that restarted (or a backend
  // that was terminated) closed the socket while the connection sat in the pool; libpq notices
  // only when it next reads, so read what is there without waiting: on end of file libpq marks
  // the connection bad, and the pool opens a new one instead of failing the next request.
  bool StillConnected() {
    if (Broken()) return false;
    // Twice: a terminated backend sends its FATAL message before it closes, and one read may
    // return the message without the end of file behind it.
    for (int i = 0; i < 2 && !Broken(); ++i) PQconsumeInput(conn_);
    return !Broken();
  }

  bool InTransaction() const { return PQtransactionStatus(conn_) != PQTRANS_IDLE; }

  // Runs a statement of SqlStore: prepared on the server once per text and parameter types.
  Result Execute(const postgres::TranslatedSql& sql, const std::vector<Oid>& types,
                 const char* const* values, const int* lengths, const int* formats) {
    std::string key = sql.text;
    key.push_back('\0');
    for (Oid t : types) key += std::to_string(t) + ",";
    auto it = prepared_.find(key);
    if (it == prepared_.end()) {
      std::string name = "ekm_" + std::to_string(prepared_.size() + 1);
      Result p(PQprepare(conn_, name.c_str(), sql.text.c_str(), sql.parameters, types.data()));
      if (PQresultStatus(p.get()) != PGRES_COMMAND_OK) {
        RecordError(p.get());
        return nullptr;
      }
      it = prepared_.emplace(std::move(key), std::move(name)).first;
    }
    for (int attempt = 1;; ++attempt) {
      bool autocommit = !InTransaction();
      Result r(
          PQexecPrepared(conn_, it->second.c_str(), sql.parameters, values, lengths, formats, 0));
      ExecStatusType st = PQresultStatus(r.get());
      if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        const char* n = PQcmdTuples(r.get());
        changes_ = (n && *n) ? std::strtoull(n, nullptr, 10) : 0;
        sqlstate_.clear();
        message_.clear();
        return r;
      }
      RecordError(r.get());
      if (!(autocommit && retryable_ && attempt < kAutocommitAttempts)) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(attempt * 2));
    }
  }

  const std::string& sqlstate() const { return sqlstate_; }

  // A result the server sent that this client cannot read: as PostgreSQL's own data corruption
  // (XX001), a DataLoss, never an empty value handed on as if it had been stored.
  void RecordCorruptResult(std::string message) {
    sqlstate_ = "XX001";
    message_ = std::move(message);
  }

 private:
  void RecordError(const PGresult* r) {
    const char* code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    sqlstate_ = code ? code : "";
    message_ = primary ? primary : PQerrorMessage(conn_);
    changes_ = 0;
    if (sqlstate_ == "40001" || sqlstate_ == "40P01") retryable_ = true;
  }

  PGconn* conn_;
  const std::string name_;
  std::unordered_map<std::string, postgres::TranslatedSql> translated_;  // by SqlStore's text
  std::unordered_map<std::string, std::string> prepared_;  // text + types -> statement name
  std::string sqlstate_, message_;
  uint64_t changes_ = 0;
  bool retryable_ = false;     // a serialization failure since BeginWrite
  bool wipe_pending_ = false;  // a WipeDestroyed() waits for the transaction's end
};

sql::StepResult PostgresStatement::Step() {
  if (!result_) {
    std::vector<const char*> values(values_.size(), nullptr);
    std::vector<int> lengths(values_.size(), 0);
    for (size_t i = 0; i < values_.size(); ++i) {
      if (!values_[i]) continue;
      values[i] = values_[i]->data();
      lengths[i] = static_cast<int>(values_[i]->size());
    }
    result_ = connection_.Execute(sql_, types_, values.data(), lengths.data(), formats_.data());
    if (!result_) {
      return connection_.sqlstate().rfind("23", 0) == 0 ? sql::StepResult::kConstraint
                                                        : sql::StepResult::kError;
    }
    row_ = -1;
  }
  if (row_ + 1 < PQntuples(result_.get())) {
    ++row_;
    for (int col = 0; col < PQnfields(result_.get()); ++col) {
      if (PQftype(result_.get(), col) != kByteaOid || PQgetisnull(result_.get(), row_, col))
        continue;
      if (!IsHexBytea(PQgetvalue(result_.get(), row_, col))) {
        connection_.RecordCorruptResult("column " + std::to_string(col + 1) +
                                        " of a result is not bytea in hex form");
        return sql::StepResult::kError;
      }
    }
    return sql::StepResult::kRow;
  }
  row_ = PQntuples(result_.get());
  return sql::StepResult::kDone;
}

class PostgresPool final : public sql::ConnectionPool {
 public:
  PostgresPool(PostgresStoreOptions options, std::string display)
      : options_(std::move(options)), name_("the store " + display) {}
  ~PostgresPool() override {
    for (PostgresConnection* c : idle_) delete c;
  }

  StatusOr<sql::Connection*> Acquire() override {
    std::unique_lock<std::mutex> lock(mu_);
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.acquire_timeout_ms);
    for (;;) {
      while (!idle_.empty()) {
        PostgresConnection* c = idle_.back();
        idle_.pop_back();
        if (c->StillConnected()) return static_cast<sql::Connection*>(c);
        delete c;  // the server went away (a restart, a failover): reconnect below
        --open_;
      }
      if (open_ < options_.pool_size) break;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.pool_size) {
        return UnavailableError(name_ + ": all " + std::to_string(options_.pool_size) +
                                    " database connections stayed busy for " +
                                    std::to_string(options_.acquire_timeout_ms) + " ms",
                                "retry; if it lasts, raise the pool size or look for slow "
                                "statements on the database")
            .WithRetryAfter(1);
      }
    }
    ++open_;
    lock.unlock();
    auto connected = Connect();
    if (!connected.ok()) {
      std::lock_guard<std::mutex> relock(mu_);
      --open_;
      cv_.notify_one();
      return connected.status();
    }
    return static_cast<sql::Connection*>(connected->release());
  }

  void Release(sql::Connection* connection) override {
    auto* c = static_cast<PostgresConnection*>(connection);
    if (!c->Broken() && c->InTransaction()) c->Exec("ROLLBACK").IgnoreError();
    if (!c->Broken()) c->RunPendingWipe();
    std::lock_guard<std::mutex> lock(mu_);
    if (c->Broken()) {
      delete c;
      --open_;
    } else {
      idle_.push_back(c);
    }
    cv_.notify_one();
  }

  const std::string& name() const override { return name_; }

  StatusOr<std::unique_ptr<PostgresConnection>> Connect() {
    // Our defaults first: the URI (expanded from dbname, last) overrides them.
    std::string timeout = std::to_string(options_.connect_timeout_seconds);
    const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {timeout.c_str(), "ekm", options_.url.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, 1);
    if (conn == nullptr) return UnavailableError(name_ + ": out of memory connecting");
    auto connection = std::make_unique<PostgresConnection>(conn, name_);
    if (PQstatus(conn) != CONNECTION_OK) {
      std::string msg = PQerrorMessage(conn);
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      return UnavailableError(name_ + " cannot be reached: " + msg,
                              "check the URL given to --store (host, port, database, user), that "
                              "the server is up, and the password file (PGPASSFILE)")
          .WithRetryAfter(1);
    }
    if (PQserverVersion(conn) < kMinServerVersion) {
      return FailedPreconditionError(name_ + " runs PostgreSQL " +
                                         std::to_string(PQserverVersion(conn) / 10000) +
                                         "; ekm needs PostgreSQL 11 or newer",
                                     "upgrade the database server");
    }
    // Every transaction SERIALIZABLE: a transaction sees what SQLite's single writer would, and
    // a conflict is a retryable failure, never a silent anomaly.
    EKM_RETURN_IF_ERROR(connection->Exec(
        "SET default_transaction_isolation = 'serializable'; SET bytea_output = 'hex'; "
        "SET client_min_messages = 'warning'; SET statement_timeout = " +
        std::to_string(options_.statement_timeout_ms) +
        "; SET lock_timeout = " + std::to_string(options_.statement_timeout_ms) +
        "; SET idle_in_transaction_session_timeout = 60000"));
    return connection;
  }

 private:
  const PostgresStoreOptions options_;
  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PostgresConnection*> idle_;
  size_t open_ = 0;  // idle + leased
};

struct ConninfoDeleter {
  void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};

}  // namespace

StatusOr<std::string> PostgresDisplayName(const std::string& url) {
  char* err = nullptr;
  std::unique_ptr<PQconninfoOption, ConninfoDeleter> opts(PQconninfoParse(url.c_str(), &err));
  if (!opts) {
    std::string msg = err ? err : "out of memory";
    PQfreemem(err);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return InvalidArgumentError("the store URL is not a valid PostgreSQL connection URI: " + msg,
                                "write it as postgresql://USER@HOST:PORT/DATABASE");
  }
  std::string user, host, port, db;
  for (PQconninfoOption* o = opts.get(); o->keyword != nullptr; ++o) {
    std::string_view k = o->keyword;
    std::string v = o->val ? o->val : "";
    if (k == "password" && !v.empty()) {
      return InvalidArgumentError(
          "the store URL carries a password",
          "never put the database password on a command line or in an environment listing: "
          "write it in a password file (PGPASSFILE, ~/.pgpass, or passfile=PATH in the URL) "
          "and remove it from the URL");
    }
    if (k == "user") user = v;
    if (k == "host") host = v;
    if (k == "hostaddr" && host.empty()) host = v;
    if (k == "port") port = v;
    if (k == "dbname") db = v;
  }
  return "postgresql://" + (user.empty() ? "" : user + "@") + host +
         (port.empty() ? "" : ":" + port) + "/" + db;
}

StatusOr<StorePtr> OpenPostgresStore(const PostgresStoreOptions& options, StoreBinding binding) {
  EKM_ASSIGN_OR_RETURN(std::string display, PostgresDisplayName(options.url));
  auto pool = std::make_unique<PostgresPool>(options, display);
  return OpenSqlStore(std::move(pool), std::move(binding), options.create_if_empty);
}

}  // namespace ekm
