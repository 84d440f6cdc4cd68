// The cost of a key-cache hit: KeyHierarchy::CurrentDataKey (the encrypt path's lookup) and
// KeyHierarchy::DataKeyVersion (the decrypt path's), with the DK cached and its EK valid, on
// one thread and on two sharing the cache. Repetitions give the median the target is set on.
#include <benchmark/benchmark.h>

#include <memory>

#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

struct Fixture {
  testing::TempDir dir;
  ProviderRegistry providers;
  std::unique_ptr<Store> store;
  std::unique_ptr<KeyHierarchy> keys;
  EnvironmentRecord env;

  Fixture() {
    if (!PlatformKeyProvider::CreateRootKeyFile(dir.path() + "/root.key").ok()) std::abort();
    auto p = PlatformKeyProvider::Open(dir.path() + "/root.key");
    if (!p.ok()) std::abort();
    auto binding = (*p)->BindStore();
    if (!binding.ok()) std::abort();
    auto s = OpenSqliteStore(dir.path() + "/ekm.db", std::move(*binding));
    if (!s.ok()) std::abort();
    providers.Register(std::move(p).value());
    store = std::move(s).value();
    keys = std::make_unique<KeyHierarchy>(store.get(), &providers, &Clock::Real(),
                                          KeyHierarchyOptions{});
    if (!store->CreateWorkspace("acme", 1).ok()) std::abort();
    auto ek = keys->NewEnvironmentKey("acme", "prod", CmkRef{"platform", "root"}, 1);
    if (!ek.ok() || !store->CreateEnvironment("acme", "prod", *ek, 1).ok()) std::abort();
    auto e = keys->GetEnvironment("acme", "prod");
    if (!e.ok() || !keys->CurrentDataKey(*e, "default").ok()) std::abort();
    env = *e;
  }
};

Fixture& F() {
  static Fixture f;
  return f;
}

void BM_KeyCacheHitCurrentDataKey(benchmark::State& state) {
  Fixture& f = F();
  for (auto _ : state) {
    auto dk = f.keys->CurrentDataKey(f.env, "default");
    benchmark::DoNotOptimize(dk);
  }
}
BENCHMARK(BM_KeyCacheHitCurrentDataKey)->Threads(1)->Threads(2)->UseRealTime()->Repetitions(9);

void BM_KeyCacheHitDataKeyVersion(benchmark::State& state) {
  Fixture& f = F();
  for (auto _ : state) {
    auto dk = f.keys->DataKeyVersion(f.env, "default", 1);
    benchmark::DoNotOptimize(dk);
  }
}
BENCHMARK(BM_KeyCacheHitDataKeyVersion)->Threads(1)->Threads(2)->UseRealTime()->Repetitions(9);

void BM_KeyCacheHitEnvironment(benchmark::State& state) {
  Fixture& f = F();
  for (auto _ : state) {
    auto env = f.keys->GetEnvironment("acme", "prod");
    benchmark::DoNotOptimize(env);
  }
}
BENCHMARK(BM_KeyCacheHitEnvironment)->Threads(1)->Threads(2)->UseRealTime()->Repetitions(9);

}  // namespace
}  // namespace ekm

BENCHMARK_MAIN();
