#include "ekm/base/background_loop.h"

#include <utility>

namespace ekm {

void BackgroundLoop::Start(Step step, TimePoint first) {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  nudged_ = false;
  thread_ =
      std::thread([this, step = std::move(step), first]() mutable { Run(std::move(step), first); });
}

void BackgroundLoop::StartEvery(std::chrono::milliseconds interval, std::function<void()> work) {
  Start(
      [interval, work = std::move(work)](bool) {
        work();
        return std::chrono::steady_clock::now() + interval;
      },
      std::chrono::steady_clock::now() + interval);
}

void BackgroundLoop::Run(Step step, TimePoint next) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_until(lock, next, [this] { return stop_ || nudged_; });
    if (stop_) return;
    const bool nudged = std::exchange(nudged_, false);
    lock.unlock();
    next = step(nudged);
    lock.lock();
  }
}

void BackgroundLoop::Nudge() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    nudged_ = true;
  }
  cv_.notify_all();
}

void BackgroundLoop::Stop() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

bool BackgroundLoop::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return thread_.joinable();
}

bool BackgroundLoop::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

}  // namespace ekm
