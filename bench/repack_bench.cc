// Repack throughput: seeds N DKs under EK v1 of one environment (one transaction, outside the
// timing), rotates the EK and times RunRepack re-wrapping all of them under EK v2. Prints one
// JSON object per N on stdout. On the embedded SQLite store; on PostgreSQL when
// EKM_TEST_POSTGRES_URL is set (a fresh database per N: run it as
// tests/peers/with_postgres.sh ekm_repack_bench N...).
//
//   ekm_repack_bench [N ...]        (default: 10000 100000 1000000)
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "ekm/base/random.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"
#include "ekm/testing/test_postgres.h"

namespace ekm {
namespace {

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "ekm_repack_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}
template <typename T>
T Must(StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what, v.status());
  return std::move(v).value();
}

// N real DKs wrapped under EK v1, inserted in one transaction (how the repack kill test seeds).
void Seed(const EkmOptions& o, int64_t n) {
  auto platform = Must(PlatformKeyProvider::Open(o.data_dir + "/root.key"), "open root key");
  auto store = Must(EkmService::OpenStore(o), "open store");
  ProviderRegistry providers;
  providers.Register(std::move(platform));
  KeyHierarchy keys(store.get(), &providers, &Clock::Real(), KeyHierarchyOptions{});
  auto env = Must(store->GetEnvironment("acme", "prod"), "environment");
  auto ek = Must(keys.EnvironmentKey(env, 1), "EK v1");
  std::vector<DataKeyRecord> recs;
  recs.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto dk = Must(RandomSecret(32), "DK");
    DataKeyRecord r;
    r.environment_id = env.id;
    char scope[24];  // not "s" + std::to_string(i): GCC 12 -O3 misreports it (-Wrestrict)
    std::snprintf(scope, sizeof(scope), "s%lld", static_cast<long long>(i));
    r.scope = scope;
    r.version = 1;
    r.ek_version = 1;
    r.wrapped = Must(WrapKey(*ek, dk, DataKeyWrapAad("acme", "prod", r.scope, 1, 1)), "wrap");
    recs.push_back(std::move(r));
  }
  Status s = store->InsertDataKeys(recs);
  if (!s.ok()) Die("insert", s);
}

void Run(int64_t n) {
  testing::TempDir dir;
  EkmOptions o;
  o.data_dir = dir.path() + "/data";
  std::optional<testing::TestPostgresDatabase> postgres;
  if (const char* url = std::getenv("EKM_TEST_POSTGRES_URL"); url && *url) {
    postgres.emplace(Must(testing::TestPostgresDatabase::Create(), "create database"));
    o.store = postgres->url();
    o.root_key_file = o.data_dir + "/root.key";
    ::mkdir(o.data_dir.c_str(), 0700);
  }
  if (Status s = EkmService::Initialize(o); !s.ok()) Die("init", s);
  {
    auto svc = Must(EkmService::Open(o), "open");
    Must(svc->CreateWorkspace(TestOp(), "acme"), "workspace");
    Must(svc->CreateEnvironment(TestOp(), "acme", "prod"), "environment");
  }
  auto seed_start = std::chrono::steady_clock::now();
  Seed(o, n);
  double seed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - seed_start).count();

  auto svc = Must(EkmService::Open(o), "reopen");
  Must(svc->RotateEnvironmentKey(TestOp(), "acme", "prod"), "rotate EK");
  auto start = std::chrono::steady_clock::now();
  RepackStatus st =
      Must(svc->RunRepack(TestOp(), "acme", "prod", [](const RepackStatus&) {}), "repack");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (st.state != "finished" || st.done != static_cast<uint64_t>(n)) {
    Die("repack", InternalError("ended " + st.state + " after " + std::to_string(st.done) + " of " +
                                std::to_string(n) + " DKs"));
  }
  std::printf(
      "{\"dks\": %lld, \"seconds\": %.3f, \"dks_per_second\": %.0f, \"seed_seconds\": %.3f, "
      "\"batch_size\": %zu, \"store\": \"%s\"}\n",
      static_cast<long long>(n), s, static_cast<double>(n) / s, seed_s, o.repack_batch_size,
      postgres ? "postgresql" : "sqlite");
  std::fflush(stdout);
}

}  // namespace
}  // namespace ekm

int main(int argc, char** argv) {
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::stoll(argv[i]));
  if (sizes.empty()) sizes = {10000, 100000, 1000000};
  for (int64_t n : sizes) ekm::Run(n);
  return 0;
}
