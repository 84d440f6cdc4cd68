#include "ekm/server/blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

#include "ekm/base/status.h"

namespace ekm {
namespace {

namespace net = boost::asio;

// One I/O thread: work given to the pool blocks until another coroutine on that same thread
// releases it, which it can only do if the I/O thread is free while the work runs. Run inline
// on the I/O thread, the work would wait out its bound and report it.
TEST(BlockingPoolTest, TheIoThreadServesOthersWhileTheWorkRuns) {
  net::io_context io(1);
  BlockingPool pool(1);
  std::atomic<bool> entered{false};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread::id io_thread, work_thread, resumed_thread;
  int result = 0;

  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        io_thread = std::this_thread::get_id();
        result = co_await pool.Run([&] {
          work_thread = std::this_thread::get_id();
          entered = true;
          // A bound for the failure case only: success never waits for it.
          return released.wait_for(std::chrono::seconds(20)) == std::future_status::ready ? 42 : -1;
        });
        resumed_thread = std::this_thread::get_id();
      },
      net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        net::steady_timer timer(io);
        while (!entered) {
          timer.expires_after(std::chrono::milliseconds(1));
          co_await timer.async_wait(net::use_awaitable);
        }
        release.set_value();
      },
      net::detached);
  io.run();

  EXPECT_EQ(result, 42) << "the work blocked the I/O thread";
  EXPECT_NE(work_thread, io_thread);
  EXPECT_EQ(resumed_thread, io_thread);
}

TEST(BlockingPoolTest, ResultsWithoutADefaultConstructorAndExceptionsComeBack) {
  net::io_context io(1);
  BlockingPool pool(2);
  StatusOr<int> value = InternalError("not set");
  bool caught = false;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        value = co_await pool.Run([] { return StatusOr<int>(7); });
        try {
          co_await pool.Run([]() -> int { throw std::runtime_error("boom"); });
        } catch (const std::runtime_error& e) {
          caught = std::string(e.what()) == "boom";
        }
      },
      net::detached);
  io.run();
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(*value, 7);
  EXPECT_TRUE(caught);
}

}  // namespace
}  // namespace ekm
