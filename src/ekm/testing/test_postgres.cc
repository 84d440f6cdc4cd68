#include "ekm/testing/test_postgres.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <utility>

namespace ekm::testing {

namespace {

Status Run(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn);
    PQfinish(conn);
    return FailedPreconditionError("cannot connect to " + url + ": " + msg);
  }
  PGresult* r = PQexec(conn, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  std::string msg = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return FailedPreconditionError("running `" + sql + "`: " + msg);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<TestPostgresDatabase> TestPostgresDatabase::Create() {
  const char* base = std::getenv("EKM_TEST_POSTGRES_URL");
  if (base == nullptr || *base == '\0') {
    return FailedPreconditionError(
        "EKM_TEST_POSTGRES_URL is not set",
        "run this test through ctest, or as tests/peers/with_postgres.sh TEST");
  }
  static std::atomic<int> counter{0};
  std::string admin(base);
  std::string name = "ekm_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  EKM_RETURN_IF_ERROR(Run(admin, "CREATE DATABASE " + name));
  std::string url = admin.substr(0, admin.rfind('/') + 1) + name;
  return TestPostgresDatabase(admin, name, url);
}

TestPostgresDatabase::TestPostgresDatabase(TestPostgresDatabase&& other) noexcept
    : admin_url_(std::move(other.admin_url_)),
      name_(std::move(other.name_)),
      url_(std::move(other.url_)) {
  other.name_.clear();
}

TestPostgresDatabase::~TestPostgresDatabase() {
  if (!name_.empty()) Run(admin_url_, "DROP DATABASE " + name_ + " WITH (FORCE)").IgnoreError();
}

Status TestPostgresDatabase::Exec(const std::string& sql) const { return Run(url_, sql); }

}  // namespace ekm::testing
