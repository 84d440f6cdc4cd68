// A fresh PostgreSQL database for one test, on the throwaway cluster that
// tests/peers/with_postgres.sh runs the test beside (EKM_TEST_POSTGRES_URL); dropped when it
// goes.
#pragma once

#include <string>

#include "ekm/base/status.h"

namespace ekm::testing {

class TestPostgresDatabase {
 public:
  // FailedPrecondition when EKM_TEST_POSTGRES_URL is not set (the test was not started by
  // with_postgres.sh) or the database cannot be created.
  static StatusOr<TestPostgresDatabase> Create();
  TestPostgresDatabase(TestPostgresDatabase&& other) noexcept;
  TestPostgresDatabase& operator=(TestPostgresDatabase&&) = delete;
  ~TestPostgresDatabase();

  // postgresql://postgres@127.0.0.1:PORT/ekm_test_…
  const std::string& url() const { return url_; }
  // Runs SQL on the database as its superuser (edits behind the store's back).
  Status Exec(const std::string& sql) const;

 private:
  TestPostgresDatabase(std::string admin_url, std::string name, std::string url)
      : admin_url_(std::move(admin_url)), name_(std::move(name)), url_(std::move(url)) {}
  std::string admin_url_, name_, url_;
};

}  // namespace ekm::testing
