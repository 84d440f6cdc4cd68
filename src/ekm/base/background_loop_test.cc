#include "ekm/base/background_loop.h"

#include <gtest/gtest.h>

#include <atomic>

namespace ekm {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(BackgroundLoopTest, RunsWhenTheStepSaysAndStopsAtOnce) {
  BackgroundLoop loop;
  std::atomic<int> runs{0};
  loop.Start(
      [&](bool) {
        ++runs;
        // Far away: only a nudge or the stop wakes the loop again.
        return steady_clock::now() + std::chrono::hours(1);
      },
      steady_clock::now());
  while (runs.load() == 0) std::this_thread::sleep_for(milliseconds(1));
  EXPECT_TRUE(loop.running());
  const auto before = steady_clock::now();
  loop.Stop();
  EXPECT_LT(steady_clock::now() - before, std::chrono::seconds(30));  // woken, not timed out
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(runs.load(), 1);
  loop.Stop();  // idempotent
}

TEST(BackgroundLoopTest, ANudgeRunsTheNextStepNowAndSaysSo) {
  BackgroundLoop loop;
  std::atomic<int> runs{0};
  std::atomic<int> nudged_runs{0};
  loop.Start(
      [&](bool nudged) {
        ++runs;
        if (nudged) ++nudged_runs;
        return steady_clock::now() + std::chrono::hours(1);
      },
      steady_clock::now() + std::chrono::hours(1));
  loop.Nudge();
  while (runs.load() == 0) std::this_thread::sleep_for(milliseconds(1));
  loop.Stop();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(nudged_runs.load(), 1);
}

TEST(BackgroundLoopTest, ALongStepSeesStoppingAndTheLoopRestarts) {
  BackgroundLoop loop;
  std::atomic<bool> entered{false};
  std::atomic<bool> saw_stop{false};
  loop.Start(
      [&](bool) {
        entered = true;
        while (!loop.stopping()) std::this_thread::sleep_for(milliseconds(1));
        saw_stop = true;
        return steady_clock::now();
      },
      steady_clock::now());
  while (!entered.load()) std::this_thread::sleep_for(milliseconds(1));
  loop.Stop();
  EXPECT_TRUE(saw_stop.load());
  std::atomic<int> every{0};
  loop.StartEvery(milliseconds(1), [&] { ++every; });
  while (every.load() < 3) std::this_thread::sleep_for(milliseconds(1));
  loop.Stop();
}

}  // namespace
}  // namespace ekm
