// Library data-plane throughput at three layers, for the side-by-side table against
// `openssl speed -evp aes-256-gcm` (bench/run.sh):
//   crypto    AesGcmSeal/AesGcmOpen with a 12-byte nonce and a 40-byte header as AAD;
//   envelope  SealSingle/OpenSingle (header serialised and bound, nonce from a NonceSequence);
//   service   EkmService::Encrypt/Decrypt on the embedded default (SQLite, platform CMK), key
//             cache warm: what an application linking libekm pays per message.
// Every benchmark runs at 64 B, 1 KiB, 16 KiB and 1 MiB, on one thread and on two.
#include <benchmark/benchmark.h>

#include <array>
#include <memory>
#include <mutex>

#include "ekm/base/random.h"
#include "ekm/crypto/aes_gcm.h"
#include "ekm/envelope/envelope.h"
#include "ekm/keys/nonce_sequence.h"
#include "ekm/service/ekm_service.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

void Sizes(benchmark::internal::Benchmark* b) {
  for (int64_t size : {64, 1024, 16 * 1024, 1024 * 1024}) b->Arg(size);
  b->Threads(1)->Threads(2)->UseRealTime();
}

const SecretBytes& BenchKey() {
  static SecretBytes key = std::move(RandomSecret(kAesGcmKeySize)).value();
  return key;
}

Bytes Payload(size_t size) { return Bytes(size, 0x5a); }

void CheckOk(benchmark::State& state, const Status& s) {
  if (!s.ok()) state.SkipWithError(s.ToString().c_str());
}

// --- crypto ----------------------------------------------------------------------------------

void BM_CryptoSeal(benchmark::State& state) {
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes out(plain.size() + kAesGcmTagSize);
  std::array<uint8_t, 40> aad{};
  NonceSequence nonces(static_cast<uint64_t>(state.thread_index()) << 32, UINT32_MAX);
  std::array<uint8_t, 12> nonce;
  for (auto _ : state) {
    nonces.Next(nonce);
    CheckOk(state, AesGcmSeal(BenchKey(), nonce, aad, plain, out.data()));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_CryptoSeal)->Apply(Sizes);

void BM_CryptoOpen(benchmark::State& state) {
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes sealed(plain.size() + kAesGcmTagSize);
  Bytes out(plain.size());
  std::array<uint8_t, 40> aad{};
  std::array<uint8_t, 12> nonce{};
  CheckOk(state, AesGcmSeal(BenchKey(), nonce, aad, plain, sealed.data()));
  for (auto _ : state) {
    CheckOk(state, AesGcmOpen(BenchKey(), nonce, aad, sealed, out.data()));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_CryptoOpen)->Apply(Sizes);

// --- envelope --------------------------------------------------------------------------------

const EnvelopeContext& BenchContext() {
  static const EnvelopeContext c{"acme", "prod", "default", 1};
  return c;
}

void BM_EnvelopeSeal(benchmark::State& state) {
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes out;
  out.reserve(plain.size() + 128);
  NonceSequence nonces(static_cast<uint64_t>(state.thread_index()) << 32, UINT32_MAX);
  std::array<uint8_t, 12> nonce;
  for (auto _ : state) {
    out.clear();
    nonces.Next(nonce);
    CheckOk(state, SealSingle(BenchContext(), BenchKey(), nonce, plain, &out));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_EnvelopeSeal)->Apply(Sizes);

void BM_EnvelopeOpen(benchmark::State& state) {
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes envelope;
  std::array<uint8_t, 12> nonce{};
  CheckOk(state, SealSingle(BenchContext(), BenchKey(), nonce, plain, &envelope));
  Bytes out;
  out.reserve(plain.size());
  for (auto _ : state) {
    out.clear();
    auto parsed = ParseHeader(envelope);
    if (!parsed.ok()) {
      state.SkipWithError(parsed.status().ToString().c_str());
      break;
    }
    CheckOk(state, OpenSingle(*parsed, envelope, BenchKey(), &out));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_EnvelopeOpen)->Apply(Sizes);

// --- service ---------------------------------------------------------------------------------

// One embedded-default service for the whole run (both threads share it, as ekmd's do).
EkmService& Service() {
  static testing::TempDir dir;
  static std::unique_ptr<EkmService> svc = [] {
    EkmOptions o;
    o.data_dir = dir.path() + "/data";
    Status s = EkmService::Initialize(o);
    auto opened = EkmService::Open(o);
    if (!s.ok() || !opened.ok()) std::abort();
    std::unique_ptr<EkmService> svc = std::move(opened).value();
    if (!svc->CreateWorkspace(TestOp(), "acme").ok() ||
        !svc->CreateEnvironment(TestOp(), "acme", "prod").ok()) {
      std::abort();
    }
    return svc;
  }();
  return *svc;
}

void BM_ServiceEncrypt(benchmark::State& state) {
  EkmService& svc = Service();
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes out;
  out.reserve(plain.size() + 128);
  CheckOk(state, svc.Encrypt(TestOp(), "acme", "prod", "default", plain, &out));  // warm the cache
  for (auto _ : state) {
    out.clear();
    CheckOk(state, svc.Encrypt(TestOp(), "acme", "prod", "default", plain, &out));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ServiceEncrypt)->Apply(Sizes);

void BM_ServiceDecrypt(benchmark::State& state) {
  EkmService& svc = Service();
  const Bytes plain = Payload(static_cast<size_t>(state.range(0)));
  Bytes envelope;
  CheckOk(state, svc.Encrypt(TestOp(), "acme", "prod", "default", plain, &envelope));
  Bytes out;
  out.reserve(plain.size());
  for (auto _ : state) {
    out.clear();
    CheckOk(state, svc.Decrypt(TestOp(), "acme", "prod", envelope, &out));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ServiceDecrypt)->Apply(Sizes);

}  // namespace
}  // namespace ekm

BENCHMARK_MAIN();
