#include "ekm/base/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace ekm {
namespace {

TEST(WorkerPoolTest, RunsEveryIndexExactlyOnce) {
  for (size_t extra : {0u, 1u, 3u}) {
    WorkerPool pool(extra);
    for (size_t n : {0u, 1u, 2u, 7u, 64u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << extra << " " << n << " " << i;
    }
  }
}

TEST(WorkerPoolTest, ReturnsOnlyAfterEveryJobFinished) {
  WorkerPool pool(2);
  for (int round = 0; round < 200; ++round) {
    std::vector<int> out(16, 0);  // plain ints: a job still running after return is a race
    pool.ParallelFor(out.size(), [&](size_t i) { out[i] = static_cast<int>(i) * round; });
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], static_cast<int>(i) * round);
  }
}

TEST(WorkerPoolTest, SpareCoresIsCapped) {
  EXPECT_LE(WorkerPool::SpareCores(1), 1u);
  EXPECT_EQ(WorkerPool::SpareCores(0), 0u);
}

}  // namespace
}  // namespace ekm
