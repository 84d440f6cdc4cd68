#include "ekm/base/worker_pool.h"

#include <algorithm>
#include <atomic>

namespace ekm {

// One call's work. Shared with the workers, so one that wakes late (after the caller returned)
// finds every index claimed and never touches `job`, whose owner may be gone.
struct WorkerPool::Batch {
  const std::function<void(size_t)>* job = nullptr;
  size_t n = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> left{0};
  std::mutex mu;
  std::condition_variable done;
};

WorkerPool::WorkerPool(size_t extra_threads) {
  threads_.reserve(extra_threads);
  for (size_t i = 0; i < extra_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

size_t WorkerPool::SpareCores(size_t cap) {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::min<size_t>(cores > 1 ? cores - 1 : 0, cap);
}

void WorkerPool::Work(Batch& batch) {
  for (size_t i; (i = batch.next.fetch_add(1, std::memory_order_relaxed)) < batch.n;) {
    (*batch.job)(i);
    if (batch.left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(batch.mu);
      batch.done.notify_all();
    }
  }
}

void WorkerPool::ParallelFor(size_t n, const std::function<void(size_t)>& job) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) job(i);
    return;
  }
  auto batch = std::make_shared<Batch>();
  batch->job = &job;
  batch->n = n;
  batch->left.store(n, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch_ = batch;
    ++generation_;
  }
  wake_.notify_all();
  Work(*batch);
  std::unique_lock<std::mutex> lock(batch->mu);
  batch->done.wait(lock, [&] { return batch->left.load(std::memory_order_acquire) == 0; });
}

void WorkerPool::WorkerLoop() {
  unsigned long seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    std::shared_ptr<Batch> batch = batch_;
    lock.unlock();
    Work(*batch);
    batch.reset();
    lock.lock();
  }
}

}  // namespace ekm
