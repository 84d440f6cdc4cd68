// Provider (KMS) calls per million data-plane operations, against moto: one environment on an
// AWS KMS CMK, the same mix of encrypts and decrypts with the key cache on (TTL 300 s) and off
// (TTL 0: every operation re-unwraps the EK), and with a 1 s TTL for 5 s (at most one call per
// environment per TTL). Calls are the key hierarchy's own counters of provider answers. Prints
// one JSON object per mode.
//
//   ekm_provider_calls_bench [operations]  (default 200000 cached, 1% of that uncached)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include "ekm/service/ekm_service.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

[[noreturn]] void Die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "ekm_provider_calls_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

// `ops` operations, or as many as fit in `duration` when it is set.
void Run(const testing::MotoPeer& peer, const char* mode, std::chrono::seconds ttl, int ops,
         std::chrono::seconds duration = std::chrono::seconds(0)) {
  testing::TempDir dir;
  EkmOptions o;
  o.data_dir = dir.path() + "/data";
  o.key_cache_ttl = ttl;
  const auto& u = peer.setup()["users"]["ekm-platform"];
  std::map<std::string, std::string> env = {
      {"AWS_ACCESS_KEY_ID", u["access_key_id"]}, {"AWS_SECRET_ACCESS_KEY", u["secret_access_key"]},
      {"AWS_ENDPOINT_URL", peer.endpoint()},     {"AWS_REGION", "us-east-1"},
      {"AWS_EC2_METADATA_DISABLED", "true"},     {"HOME", dir.path()}};
  o.aws.env = [env](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(std::string(name));
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  if (Status s = EkmService::Initialize(o); !s.ok()) Die("init", s);
  auto opened = EkmService::Open(o);
  if (!opened.ok()) Die("open", opened.status());
  auto svc = std::move(opened).value();
  if (auto s = svc->CreateWorkspace(TestOp(), "acme"); !s.ok()) Die("workspace", s.status());
  if (auto s = svc->CreateEnvironment(TestOp(), "acme", "prod"); !s.ok())
    Die("environment", s.status());
  std::string arn = peer.setup()["keys"]["main"]["arn"];
  if (auto s = svc->SetCustomerKey(TestOp(), "acme", "prod", "aws-kms", arn); !s.ok()) {
    Die("set key", s.status());
  }
  Bytes ct;
  if (Status s = svc->Encrypt(TestOp(), "acme", "prod", "default", AsBytes("warm"), &ct); !s.ok()) {
    Die("warm", s);
  }
  const uint64_t before = svc->KeyCacheStatistics(TestOp())->provider_ok;
  const Bytes plain(1024, 0x5a);
  auto start = std::chrono::steady_clock::now();
  const auto until = start + duration;
  if (duration.count() > 0) ops = INT32_MAX;
  int i = 0;
  for (; i < ops; ++i) {
    if (duration.count() > 0 && (i & 1023) == 0 && std::chrono::steady_clock::now() >= until) break;
    Bytes out;
    Status s = i % 2 == 0 ? svc->Encrypt(TestOp(), "acme", "prod", "default", plain, &out)
                          : svc->Decrypt(TestOp(), "acme", "prod", ct, &out);
    if (!s.ok()) Die("operation", s);
  }
  ops = i;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const KeyCacheStats stats = *svc->KeyCacheStatistics(TestOp());
  const uint64_t calls = stats.provider_ok - before;
  std::printf(
      "{\"mode\": \"%s\", \"ttl_seconds\": %lld, \"operations\": %d, \"provider_calls\": %llu, "
      "\"calls_per_million\": %.1f, \"seconds\": %.3f, \"operations_per_second\": %.0f, "
      "\"provider_errors\": %llu}\n",
      mode, static_cast<long long>(ttl.count()), ops, static_cast<unsigned long long>(calls),
      static_cast<double>(calls) * 1e6 / ops, seconds, ops / seconds,
      static_cast<unsigned long long>(stats.provider_refused + stats.provider_unavailable +
                                      stats.provider_error));
  std::fflush(stdout);
}

}  // namespace
}  // namespace ekm

int main(int argc, char** argv) {
  int cached_ops = argc > 1 ? std::stoi(argv[1]) : 200000;
  auto peer = ekm::testing::MotoPeer::Start();
  if (!peer.ok()) ekm::Die("start moto", peer.status());
  ekm::Run(**peer, "cache", std::chrono::seconds(300), cached_ops);
  ekm::Run(**peer, "no-cache", std::chrono::seconds(0), std::max(cached_ops / 100, 200));
  ekm::Run(**peer, "cache-ttl-1s-for-5s", std::chrono::seconds(1), 0, std::chrono::seconds(5));
  return 0;
}
