// BackgroundLoop: the one way ekm runs work in the background (scheduled rotations, the repack
// runner, audit checkpoints and usage flushes, the key cache purge): a thread that runs a step,
// sleeps until the step says, and wakes at once for Nudge or Stop. Stop waits for the step in
// progress; a long step polls stopping() to return early.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace ekm {

class BackgroundLoop {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // One run of the work; `nudged` says Nudge() was called since the last one. Returns when to
  // run next (a time already past: at once).
  using Step = std::function<TimePoint(bool nudged)>;

  BackgroundLoop() = default;
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;
  ~BackgroundLoop() { Stop(); }

  // Starts the thread; the first step runs at `first`. A loop that runs already is left alone.
  void Start(Step step, TimePoint first);
  // `work` every `interval`, the first after one interval.
  void StartEvery(std::chrono::milliseconds interval, std::function<void()> work);
  // The next step runs now (or right after the one in progress).
  void Nudge();
  // Wakes the thread, waits for the step in progress and joins. Idempotent; Start may follow.
  void Stop();
  bool running() const;
  bool stopping() const;

 private:
  void Run(Step step, TimePoint next);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool nudged_ = false;
  std::thread thread_;
};

}  // namespace ekm
