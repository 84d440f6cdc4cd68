#include "ekm/keys/data_path_memo.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "ekm/keys/key_hierarchy.h"

namespace ekm {
namespace {

TEST(DataPathMemosTest, FindsOnlyTheSameNamesGenerationAndTime) {
  DataPathMemos memos;
  DataPathMemos::Block* block = nullptr;
  auto lock = memos.Lock(&block);
  const uint64_t gen = memos.current_generation();
  DataPathMemos::Entry& e = block->Slot();
  e.generation = gen;
  e.valid_until_ns = 1000;
  e.workspace = "acme";
  e.environment = "prod";
  e.scope = "orders";
  EXPECT_EQ(block->Find(gen, 999, "acme", "prod", "orders", 0), &e);
  EXPECT_EQ(block->Find(gen, 1000, "acme", "prod", "orders", 0), nullptr);  // expired
  EXPECT_EQ(block->Find(gen + 1, 999, "acme", "prod", "orders", 0), nullptr);
  EXPECT_EQ(block->Find(gen, 999, "acme", "prod", "orders", 2), nullptr);  // another version
  EXPECT_EQ(block->Find(gen, 999, "acme", "dev", "orders", 0), nullptr);
  EXPECT_EQ(block->Find(gen, 999, "globex", "prod", "orders", 0), nullptr);
  EXPECT_EQ(block->Find(gen, 999, "acme", "prod", "orderz", 0), nullptr);
}

TEST(DataPathMemosTest, DropAllClearsEveryThreadsMemosAndReleasesTheirKeys) {
  DataPathMemos memos;
  auto dk = std::make_shared<DataKeyHandle>();
  std::weak_ptr<DataKeyHandle> watch = dk;
  std::thread other([&] {
    DataPathMemos::Block* block = nullptr;
    auto lock = memos.Lock(&block);
    DataPathMemos::Entry& e = block->Slot();
    e.generation = memos.current_generation();
    e.dk = dk;
  });
  other.join();
  dk.reset();
  EXPECT_FALSE(watch.expired());  // the other thread's memo holds it
  const uint64_t before = memos.current_generation();
  memos.DropAll();
  EXPECT_TRUE(watch.expired());
  EXPECT_GT(memos.current_generation(), before);
}

TEST(DataPathMemosTest, OneBlockPerThreadAcrossManyServices) {
  // A thread serving more services than it remembers gets its old block back, not a new one.
  std::vector<std::unique_ptr<DataPathMemos>> all;
  for (int i = 0; i < 10; ++i) all.push_back(std::make_unique<DataPathMemos>());
  std::set<DataPathMemos::Block*> seen;
  for (int round = 0; round < 3; ++round) {
    for (auto& m : all) {
      DataPathMemos::Block* block = nullptr;
      auto lock = m->Lock(&block);
      seen.insert(block);
    }
  }
  EXPECT_EQ(seen.size(), all.size());
}

TEST(NonceSequenceTest, TakenRunsNeverOverlapAcrossThreads) {
  NonceSequence seq(0x0102030405060708, 100000);
  std::vector<std::vector<uint64_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      uint64_t first = 0, end = 0;
      while (seq.Take(256, &first, &end)) {
        for (uint64_t i = first; i < end; ++i) got[t].push_back(i);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  size_t total = 0;
  for (const auto& g : got) {
    total += g.size();
    all.insert(g.begin(), g.end());
  }
  EXPECT_EQ(total, 100000u);  // every index once, none past the lease
  EXPECT_EQ(all.size(), 100000u);
  std::array<uint8_t, 12> a, b;
  seq.Format(7, a);
  std::array<uint8_t, 12> n;
  NonceSequence fresh(0x0102030405060708, 10);
  for (int i = 0; i <= 7; ++i) ASSERT_TRUE(fresh.Next(n));
  b = n;
  EXPECT_EQ(a, b);  // Format(i) is the i-th Next
}

}  // namespace
}  // namespace ekm
