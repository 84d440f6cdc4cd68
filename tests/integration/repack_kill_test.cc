// The repack survives kill -9: a real ekmd process is killed at random points of repacks
// kKills times while clients keep writing through the API (at most kMaxRounds rounds and
// kMaxLoopTime: the test fails rather than loop on); after each restart it resumes where it
// was; at the end every ciphertext written before and during the repacks decrypts, with the
// old customer keys revoked (AWS KMS refusing everything), ekmd exits 0 on SIGTERM with a clean
// log, and every DK row of every environment in the store unwraps under its EK (not only the
// DKs of the ciphertexts: the ~100,000 seeded ones too).
//
// Seeding: the DKs are real keys wrapped under the environment's first EK, stored in one
// transaction through the library (a repack cares about the number of DKs, not how they came).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "ekm/base/random.h"
#include "ekm/client/ekm_client.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/moto_peer.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

extern char** environ;

#if defined(__SANITIZE_ADDRESS__)
#define EKM_KILL_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EKM_KILL_TEST_SANITIZED 1
#endif
#endif

namespace ekm {
namespace {

// Over HTTP the caller is the client's token; the context only fills the parameter.
const CallContext kClientCtx;

using namespace std::chrono_literals;

#ifdef EKM_KILL_TEST_SANITIZED
constexpr int kSeededDataKeys = 20000;  // sanitizers slow everything ~10x
#else
constexpr int kSeededDataKeys = 100000;
#endif
constexpr int kKills = 6;
// Bounds on the kill loop: a round kills during a repack unless the repack had already finished
// (a few in 20), so these are reached only when ekm misbehaves.
constexpr int kMaxRounds = 4 * kKills;
constexpr auto kMaxLoopTime = std::chrono::seconds(240);

// What a process writes when it dies badly (the patterns of tests/integration/lib.sh).
constexpr std::array<std::string_view, 8> kCrashPatterns = {"ERROR: AddressSanitizer",
                                                            "ERROR: LeakSanitizer",
                                                            "AddressSanitizer:",
                                                            "runtime error:",
                                                            "ThreadSanitizer",
                                                            "terminate called",
                                                            "Assertion `",
                                                            "pure virtual method called"};

class Ekmd {
 public:
  Ekmd(std::string data_dir, std::string log, std::vector<std::string> env)
      : data_dir_(std::move(data_dir)), log_(std::move(log)), env_(std::move(env)) {}
  ~Ekmd() { Kill(SIGKILL); }

  // Starts ekmd and waits until it listens; returns its URL.
  std::string Start() {
    std::ofstream(log_, std::ios::trunc).close();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<std::string> args = {EKMD_PATH,  "--data-dir",      data_dir_,
                                     "--listen", "127.0.0.1:0",     "--key-replacement-period",
                                     "0",        "--key-cache-ttl", "300"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    int rc = posix_spawn(&pid_, EKMD_PATH, &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return "";
    // std::regex is avoided: GCC 12 warns inside it under the sanitizers.
    static constexpr std::string_view kListening = "listening on http://127.0.0.1:";
    for (int i = 0; i < 300; ++i) {
      std::string s = LogText();
      size_t at = s.find(kListening);
      if (at != std::string::npos) {
        size_t begin = at + kListening.size(), end = begin;
        while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
        if (end > begin) return "http://127.0.0.1:" + s.substr(begin, end - begin);
      }
      std::this_thread::sleep_for(20ms);
    }
    return "";
  }

  // Sends `sig` and waits; the exit status as waitpid gives it (-1 when it was not running).
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  // SIGTERM, then what went wrong: "" when ekmd exited 0 and its log has no crash report.
  std::string StopAndCheck() {
    if (pid_ <= 0) return "ekmd was not running";
    int status = Kill(SIGTERM);
    std::string problems;
    if (WIFSIGNALED(status)) {
      problems += "killed by signal " + std::to_string(WTERMSIG(status)) + " after SIGTERM; ";
    } else if (WEXITSTATUS(status) != 0) {
      problems += "exit status " + std::to_string(WEXITSTATUS(status)) + " after SIGTERM; ";
    }
    return problems + CrashReport();
  }

  // The log's first crash or sanitizer report line, or "".
  std::string CrashReport() const {
    std::istringstream log(LogText());
    for (std::string line; std::getline(log, line);) {
      for (std::string_view p : kCrashPatterns) {
        if (line.find(p) != std::string::npos) return "its log has a crash report: " + line;
      }
    }
    return "";
  }

  std::string LogText() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string data_dir_, log_;
  std::vector<std::string> env_;
  pid_t pid_ = -1;
};

class RepackKillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto peer = testing::MotoPeer::Start({.tls = false, .fault_proxy = true});
    ASSERT_TRUE(peer.ok()) << peer.status().ToString();
    peer_ = std::move(*peer);
    data_dir_ = dir_.path() + "/data";
    EkmOptions o;
    o.data_dir = data_dir_;
    o.aws.enabled = false;
    ASSERT_TRUE(EkmService::Initialize(o).ok());
    {
      auto svc = EkmService::Open(o);
      ASSERT_TRUE(svc.ok());
      ASSERT_TRUE((*svc)->CreateWorkspace(TestOp(), "acme").ok());
      ASSERT_TRUE((*svc)->CreateEnvironment(TestOp(), "acme", "prod").ok());
      // ekmd wants tokens: a key-manager changes the CMK and reads the repack, the app writes.
      for (auto [role, out] : {std::pair{"key-manager", &km_token_}, {"app", &app_token_}}) {
        auto t =
            (*svc)->CreateApiToken(TestOp(), ApiTokenRequest{role, "acme", {}, "repack test", {}});
        ASSERT_TRUE(t.ok()) << t.status().ToString();
        auto text = t->token.RevealForCrypto();
        out->assign(text.begin(), text.end());
      }
      // Ciphertexts written before: in seeded scopes and in scopes of their own.
      for (int i = 0; i < 200; ++i) {
        std::string scope = i % 2 ? "s" + std::to_string(i * 37) : "own-" + std::to_string(i);
        Bytes ct;
        std::string text = "before " + std::to_string(i);
        if (i % 2) continue;  // the seeded scopes get theirs after the seed, below
        ASSERT_TRUE((*svc)->Encrypt(TestOp(), "acme", "prod", scope, AsBytes(text), &ct).ok());
        written_.push_back({std::string(EnvelopeToText(ct)), text});
      }
    }
    Seed();
    {
      auto svc = EkmService::Open(o);
      ASSERT_TRUE(svc.ok());
      for (int i = 1; i < 200; i += 2) {
        Bytes ct;
        std::string text = "before " + std::to_string(i);
        ASSERT_TRUE((*svc)
                        ->Encrypt(TestOp(), "acme", "prod", "s" + std::to_string(i * 37),
                                  AsBytes(text), &ct)
                        .ok());
        written_.push_back({std::string(EnvelopeToText(ct)), text});
      }
    }
    const auto& u = peer_->setup()["users"]["ekm-platform"];
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).rfind("AWS_", 0) != 0 && std::string_view(*e).rfind("HOME=", 0) != 0)
        env.push_back(*e);
    }
    env.push_back("AWS_ACCESS_KEY_ID=" + u["access_key_id"].get<std::string>());
    env.push_back("AWS_SECRET_ACCESS_KEY=" + u["secret_access_key"].get<std::string>());
    env.push_back("AWS_ENDPOINT_URL=" + peer_->proxy_endpoint());
    env.push_back("AWS_REGION=us-east-1");
    env.push_back("AWS_EC2_METADATA_DISABLED=true");
    env.push_back("HOME=" + dir_.path());
    ekmd_ = std::make_unique<Ekmd>(data_dir_, dir_.path() + "/ekmd.log", env);
  }

  // kSeededDataKeys real DKs (scopes s0…) under EK v1, one transaction.
  void Seed() {
    auto platform = PlatformKeyProvider::Open(data_dir_ + "/root.key");
    ASSERT_TRUE(platform.ok()) << platform.status().ToString();
    auto binding = (*platform)->BindStore();
    ASSERT_TRUE(binding.ok());
    auto store = OpenSqliteStore(data_dir_ + "/ekm.db", std::move(*binding));
    ASSERT_TRUE(store.ok());
    ProviderRegistry providers;
    providers.Register(std::move(*platform));
    KeyHierarchy keys(store->get(), &providers, &Clock::Real(), KeyHierarchyOptions{});
    auto env = (*store)->GetEnvironment("acme", "prod");
    ASSERT_TRUE(env.ok());
    auto ek = keys.EnvironmentKey(*env, 1);
    ASSERT_TRUE(ek.ok()) << ek.status().ToString();
    std::vector<DataKeyRecord> recs;
    recs.reserve(kSeededDataKeys);
    for (int i = 0; i < kSeededDataKeys; ++i) {
      auto dk = RandomSecret(32);
      ASSERT_TRUE(dk.ok());
      DataKeyRecord r;
      r.environment_id = env->id;
      r.scope = "s" + std::to_string(i);
      r.version = 1;
      r.ek_version = 1;
      auto w = WrapKey(**ek, *dk, DataKeyWrapAad("acme", "prod", r.scope, 1, 1));
      ASSERT_TRUE(w.ok());
      r.wrapped = std::move(*w);
      recs.push_back(std::move(r));
    }
    ASSERT_TRUE((*store)->InsertDataKeys(recs).ok());
  }

  std::unique_ptr<EkmClient> Client(const std::string& url) {  // the key-manager
    auto c = EkmClient::Create(url, km_token_);
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  }
  std::unique_ptr<EkmClient> AppClient(const std::string& url) {
    auto c = EkmClient::Create(url, app_token_);
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  }

  // A few ciphertexts through the API, in new scopes and in seeded ones (whose DK is then
  // still under an old EK, so the scope moves on to a new DK version).
  void WriteSome(EkmClient& c, int n) {
    for (int i = 0; i < n; ++i) {
      std::string scope = rng_() % 2 ? "live-" + std::to_string(rng_() % 50)
                                     : "s" + std::to_string(rng_() % kSeededDataKeys);
      std::string text = "during " + std::to_string(written_.size());
      Bytes ct;
      Status s = c.Encrypt(kClientCtx, "acme", "prod", scope, AsBytes(text), &ct);
      ASSERT_TRUE(s.ok()) << s.ToString();
      written_.push_back({EnvelopeToText(ct), text});
    }
  }

  StatusOr<RepackStatus> WaitFinished(const std::string& url) {
    auto c = Client(url);
    for (int i = 0; i < 3000; ++i) {
      auto st = c->GetRepackStatus(kClientCtx, "acme", "prod");
      if (!st.ok()) return st.status();
      if (st->state == "finished") return st;
      std::this_thread::sleep_for(20ms);
    }
    return DeadlineExceededError("the repack did not finish in 60 s");
  }

  // Every DK row of the store (every environment, scope and version) unwraps under its EK with
  // its associated data; *count: how many. Reads the rows with sqlite3 (no Store method lists
  // them all) and unwraps with the EKs the library unwraps (KeyHierarchy::EnvironmentKey).
  void UnwrapEveryDataKey(uint64_t* count) {
    auto platform = PlatformKeyProvider::Open(data_dir_ + "/root.key");
    ASSERT_TRUE(platform.ok()) << platform.status().ToString();
    auto binding = (*platform)->BindStore();
    ASSERT_TRUE(binding.ok());
    auto store = OpenSqliteStore(data_dir_ + "/ekm.db", std::move(*binding));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ProviderRegistry providers;
    providers.Register(std::move(*platform));
    KeyHierarchy keys(store->get(), &providers, &Clock::Real(), KeyHierarchyOptions{});
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2((data_dir_ + "/ekm.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
              SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> close(db, sqlite3_close);
    sqlite3_stmt* rows = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT scope, version, ek_version, wrapped FROM data_keys "
                                 "WHERE environment_id = ? ORDER BY scope, version",
                                 -1, &rows, nullptr),
              SQLITE_OK);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> finalize(rows, sqlite3_finalize);
    auto workspaces = (*store)->ListWorkspaces();
    ASSERT_TRUE(workspaces.ok());
    uint64_t failed = 0;
    std::string first_failure;
    for (const auto& ws : *workspaces) {
      auto envs = (*store)->ListEnvironments(ws.name);
      ASSERT_TRUE(envs.ok());
      for (const auto& env : *envs) {
        sqlite3_reset(rows);
        sqlite3_bind_int64(rows, 1, env.id);
        while (sqlite3_step(rows) == SQLITE_ROW) {
          std::string scope(reinterpret_cast<const char*>(sqlite3_column_text(rows, 0)));
          auto version = static_cast<uint32_t>(sqlite3_column_int64(rows, 1));
          auto ek_version = static_cast<uint32_t>(sqlite3_column_int64(rows, 2));
          const auto* blob = static_cast<const uint8_t*>(sqlite3_column_blob(rows, 3));
          Bytes wrapped(blob, blob + sqlite3_column_bytes(rows, 3));
          auto ek = keys.EnvironmentKey(env, ek_version);
          Status st = ek.status();
          if (ek.ok()) {
            st = UnwrapKey(**ek, wrapped,
                           DataKeyWrapAad(ws.name, env.name, scope, version, ek_version))
                     .status();
          }
          if (st.ok()) {
            ++*count;
          } else if (++failed == 1) {
            first_failure = ws.name + "/" + env.name + " scope " + scope + " v" +
                            std::to_string(version) + " (EK v" + std::to_string(ek_version) +
                            "): " + st.ToString();
          }
        }
      }
    }
    EXPECT_EQ(failed, 0u) << failed << " data keys do not unwrap, the first: " << first_failure;
    EXPECT_GT(*count, 0u);
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::MotoPeer> peer_;
  std::string data_dir_;
  std::string km_token_, app_token_;
  std::unique_ptr<Ekmd> ekmd_;
  std::vector<std::pair<std::string, std::string>> written_;  // text form, plaintext
  std::mt19937 rng_{std::random_device{}()};
};

TEST_F(RepackKillTest, KilledAtRandomPointsTheRepackResumesAndEveryCiphertextDecrypts) {
  std::string url = ekmd_->Start();
  ASSERT_FALSE(url.empty()) << ekmd_->LogText();
  const char* cmks[] = {"main", "rotating"};
  int kills = 0, changes = 0;
  uint64_t last_done = 0;
  bool changed = false;
  // Replace the CMK (main, rotating, main…; the period is 0 for this test) and kill ekmd in
  // the middle of the repacks until it was killed kKills times during one.
  const auto loop_start = std::chrono::steady_clock::now();
  int rounds = 0;
  for (; kills < kKills && rounds < kMaxRounds &&
         std::chrono::steady_clock::now() - loop_start < kMaxLoopTime;
       ++rounds) {
    auto c = Client(url);
    auto st = c->GetRepackStatus(kClientCtx, "acme", "prod");
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    if (!changed || st->state == "finished" || st->state == "none") {
      std::string arn = peer_->setup()["keys"][cmks[changes % 2]]["arn"];
      auto v = c->SetCustomerKey(kClientCtx, "acme", "prod", "aws-kms", arn, KeyChangeOptions{});
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      ++changes;
      changed = true;
      last_done = 0;
    }
    WriteSome(*AppClient(url), 5);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 150));
    st = c->GetRepackStatus(kClientCtx, "acme", "prod");
    ASSERT_TRUE(st.ok());
    const bool running = st->state == "running" || st->state == "pending";
    ekmd_->Kill(SIGKILL);
    ASSERT_EQ(ekmd_->CrashReport(), "") << ekmd_->LogText();
    if (running) {
      ++kills;
      EXPECT_GE(st->done, last_done) << "progress is never lost";
      last_done = st->done;
      std::printf("kill -9 #%d at %llu/%llu data keys (CMK change %d)\n", kills,
                  static_cast<unsigned long long>(st->done),
                  static_cast<unsigned long long>(st->total), changes);
    }
    url = ekmd_->Start();
    ASSERT_FALSE(url.empty()) << ekmd_->LogText();
    auto after = Client(url)->GetRepackStatus(kClientCtx, "acme", "prod");
    ASSERT_TRUE(after.ok());
    if (running) {
      EXPECT_GE(after->done, st->done) << "it resumes where it was";
    }
  }
  ASSERT_EQ(kills, kKills) << "only " << kills << " kills during a repack in " << rounds
                           << " rounds (" << changes << " CMK changes)";
  auto done = WaitFinished(url);
  ASSERT_TRUE(done.ok()) << done.status().ToString() << "\n" << ekmd_->LogText();
  // Finally back to the platform key: after its repack no AWS key is needed any more.
  auto c = Client(url);
  WriteSome(*AppClient(url), 20);
  ASSERT_TRUE(
      c->SetCustomerKey(kClientCtx, "acme", "prod", "platform", "root", KeyChangeOptions{}).ok());
  done = WaitFinished(url);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  uint64_t dks = 0;
  for (const auto& e : done->inventory) {
    if (e.state != "current") {
      EXPECT_EQ(e.state, "destroyed") << "EK v" << e.ek_version;
      EXPECT_EQ(e.data_keys, 0u);
    }
    dks += e.data_keys;
  }
  EXPECT_GE(dks, static_cast<uint64_t>(kSeededDataKeys));
  // Revoke AWS KMS entirely, restart (empty caches), and read everything back.
  ASSERT_TRUE(peer_->ArmFault("*", "AccessDeniedException").ok());
  ekmd_->Kill(SIGKILL);
  url = ekmd_->Start();
  ASSERT_FALSE(url.empty());
  c = AppClient(url);
  size_t ok = 0;
  for (const auto& [ct, text] : written_) {
    Bytes pt;
    Status s = c->Decrypt(kClientCtx, "acme", "prod", AsBytes(ct), &pt);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(std::string(AsChars(pt)), text);
    ++ok;
  }
  std::printf("%d kills in %d rounds over %d CMK changes; %zu ciphertexts decrypt\n", kills, rounds,
              changes + 1, ok);
  EXPECT_EQ(ok, written_.size());
  EXPECT_EQ(ekmd_->StopAndCheck(), "") << ekmd_->LogText();

  // With ekmd gone, every DK row of every environment unwraps under its EK, through the
  // library on the data directory (AWS KMS still refuses everything: after the last repack no
  // DK may need it).
  uint64_t unwrapped = 0;
  ASSERT_NO_FATAL_FAILURE(UnwrapEveryDataKey(&unwrapped));
  std::printf("%llu data keys unwrap\n", static_cast<unsigned long long>(unwrapped));
  EXPECT_GE(unwrapped, dks);
}

}  // namespace
}  // namespace ekm
