// A fixed set of threads that runs independent jobs side by side, for work a caller wants spread
// over spare cores (the CLI sealing a large file's segments). The calling thread takes part, so
// WorkerPool(0) runs everything inline on the caller.
#ifndef EKM_BASE_WORKER_POOL_H_
#define EKM_BASE_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ekm {

class WorkerPool {
 public:
  explicit WorkerPool(size_t extra_threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs job(i) for every i in [0, n), each exactly once, and returns when all have finished.
  // Jobs must not throw. Calls from several threads at once are serialised by nothing: one
  // caller at a time.
  void ParallelFor(size_t n, const std::function<void(size_t)>& job);

  // One thread per core beside the caller's, at most `cap`.
  static size_t SpareCores(size_t cap);

 private:
  struct Batch;
  void WorkerLoop();
  static void Work(Batch& batch);

  std::mutex mu_;
  std::condition_variable wake_;
  std::shared_ptr<Batch> batch_;  // the latest batch; workers keep their own reference
  unsigned long generation_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace ekm

#endif  // EKM_BASE_WORKER_POOL_H_
