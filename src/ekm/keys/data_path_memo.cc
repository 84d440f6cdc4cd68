#include "ekm/keys/data_path_memo.h"

#include "ekm/keys/key_hierarchy.h"

namespace ekm {

namespace {
uint64_t NextMemosId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

DataPathMemos::DataPathMemos() : id_(NextMemosId()) {}

std::unique_lock<std::mutex> DataPathMemos::Lock(Block** block) {
  // A thread may serve several services (tests); it remembers its block in each by the
  // memos' id, which is never reused, so a block of a destroyed service is never found.
  struct Known {
    uint64_t id = 0;
    Block* block = nullptr;
  };
  thread_local std::array<Known, 4> known;
  thread_local size_t next = 0;
  Block* b = nullptr;
  for (const Known& k : known) {
    if (k.id == id_) b = k.block;
  }
  if (b == nullptr) {
    b = Register();
    known[next] = Known{id_, b};
    next = (next + 1) % known.size();
  }
  *block = b;
  return std::unique_lock<std::mutex>(b->mu);
}

DataPathMemos::Block* DataPathMemos::Register() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::thread::id me = std::this_thread::get_id();
  for (auto& b : blocks_) {
    if (b->owner == me) return b.get();  // forgotten by a thread that serves many services
  }
  blocks_.push_back(std::make_unique<Block>());
  blocks_.back()->owner = me;
  return blocks_.back().get();
}

void DataPathMemos::DropAll() {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& b : blocks_) {
    std::lock_guard<std::mutex> block_lock(b->mu);
    for (Entry& e : b->entries) e = Entry{};
  }
}

}  // namespace ekm
