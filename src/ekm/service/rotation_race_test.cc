// Routine rotation under load (issue 12, defect 3): EK rotations, DK rotations of every scope,
// repacks and encrypts into new scopes, all at once, from two services on one data directory
// (ekmd and a CLI process). Afterwards no DK is under a destroyed EK, a repack finishes, and no
// data-plane call failed.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ekm/service/ekm_service.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

class RotationRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path() + "/data";
    options_.nonce_lease_size = 16;  // as the CLI: many leases
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    for (auto* svc : {&a_, &b_}) {
      auto s = EkmService::Open(options_);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      *svc = std::move(*s);
    }
    ASSERT_TRUE(a_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(a_->CreateEnvironment(TestOp(), "acme", "prod").ok());
  }

  // Each failure counted, the first few kept for the message.
  void Failed(std::string_view what, const Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    ++failures_[std::string(what)];
    if (examples_.size() < 8) examples_.push_back(std::string(what) + ": " + s.ToString());
  }
  int FailureCount(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_[what];
  }
  std::string Examples() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& e : examples_) out += "\n  " + e;
    return out;
  }

  // COUNT(*) of a query on the data directory's database.
  int64_t Count(const char* sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((options_.data_dir + "/ekm.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  }

  testing::TempDir dir_;
  EkmOptions options_;
  std::unique_ptr<EkmService> a_, b_;
  std::mutex mu_;
  std::map<std::string, int> failures_;
  std::vector<std::string> examples_;
};

TEST_F(RotationRaceTest, RoutineRotationNeverFailsADataPlaneCallNorLeavesADataKeyBehind) {
  constexpr int kEncryptors = 4, kRounds = 30;
  std::atomic<bool> stop{false};
  std::atomic<int> ek_rotations{0}, repacks{0};
  std::vector<std::thread> background;
  for (EkmService* svc : {a_.get(), b_.get()}) {
    background.emplace_back([&, svc] {  // `ekm key rotate`, back to back
      while (!stop) {
        auto r = svc->RotateEnvironmentKey(TestOp(), "acme", "prod");
        if (r.ok())
          ++ek_rotations;
        else
          Failed("ek rotation", r.status());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    background.emplace_back([&, svc] {  // `ekm key rotate --all-scopes`
      while (!stop) {
        auto r = svc->RotateDataKeys(TestOp(), "acme", "prod", {}, /*all_scopes=*/true);
        if (!r.ok()) Failed("dk rotation", r.status());
        std::this_thread::sleep_for(std::chrono::milliseconds(4));
      }
    });
    background.emplace_back([&, svc] {  // the repack runner / `ekm repack run`
      while (!stop) {
        auto r = svc->RunRepack(TestOp(), "acme", "prod", nullptr);
        if (r.ok())
          ++repacks;
        else
          Failed("repack", r.status());
      }
    });
  }
  // Data plane: each round a new scope (a new DK), its ciphertext decrypted at once and again
  // at the end.
  std::vector<std::vector<std::pair<std::string, Bytes>>> written(kEncryptors);
  std::vector<std::thread> clients;
  for (int t = 0; t < kEncryptors; ++t) {
    clients.emplace_back([&, t] {
      EkmService* svc = t % 2 == 0 ? a_.get() : b_.get();
      for (int i = 0; i < kRounds; ++i) {
        // Appended, not "c" + …: GCC 12 at -O3 reports a false -Wrestrict (GCC bug 105651).
        const std::string scope =
            std::string("c").append(std::to_string(t)).append("-s").append(std::to_string(i));
        const std::string text = "message " + scope;
        Bytes ct;
        Status s = svc->Encrypt(TestOp(), "acme", "prod", scope, AsBytes(text), &ct);
        if (!s.ok()) {
          Failed("encrypt", s);
          continue;
        }
        // And once more into an older scope (a DK that may have moved since).
        if (i > 0) {
          Bytes more;
          Status again = svc->Encrypt(TestOp(), "acme", "prod", written[t].front().first,
                                      AsBytes(text), &more);
          if (!again.ok()) Failed("encrypt", again);
        }
        Bytes out;
        s = svc->Decrypt(TestOp(), "acme", "prod", ct, &out);
        if (!s.ok())
          Failed("decrypt", s);
        else if (AsChars(out) != text)
          Failed("decrypt", InternalError("wrong plaintext"));
        written[t].emplace_back(scope, std::move(ct));
      }
    });
  }
  for (auto& c : clients) c.join();
  stop = true;
  for (auto& b : background) b.join();

  EXPECT_EQ(FailureCount("encrypt"), 0) << Examples();
  EXPECT_EQ(FailureCount("decrypt"), 0) << Examples();
  EXPECT_EQ(FailureCount("repack"), 0) << Examples();
  EXPECT_EQ(FailureCount("dk rotation"), 0) << Examples();
  EXPECT_GT(ek_rotations, 0);
  std::printf("%d EK rotations (%d refused: another got there first), %d repacks\n",
              ek_rotations.load(), FailureCount("ek rotation"), repacks.load());
  // A last repack finishes, and leaves nothing under a destroyed (or any older) EK.
  auto last = a_->RunRepack(TestOp(), "acme", "prod", nullptr);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_TRUE(last->state == "finished" || last->state == "none") << last->state;
  EXPECT_EQ(Count("SELECT COUNT(*) FROM data_keys d JOIN environment_keys k ON "
                  "k.environment_id = d.environment_id AND k.version = d.ek_version WHERE "
                  "k.destroyed_at IS NOT NULL OR length(k.wrapped) = 0"),
            0)
      << "data keys under a destroyed environment key";
  EXPECT_EQ(Count("SELECT COUNT(*) FROM data_keys d JOIN environments e ON e.id = "
                  "d.environment_id WHERE d.ek_version <> e.current_ek_version"),
            0);
  // Every ciphertext decrypts in a new process.
  auto fresh = EkmService::Open(options_);
  ASSERT_TRUE(fresh.ok());
  for (const auto& per_client : written) {
    for (const auto& [scope, ct] : per_client) {
      Bytes out;
      Status s = (*fresh)->Decrypt(TestOp(), "acme", "prod", ct, &out);
      ASSERT_TRUE(s.ok()) << scope << ": " << s.ToString();
      EXPECT_EQ(AsChars(out), "message " + scope);
    }
  }
}

}  // namespace
}  // namespace ekm
