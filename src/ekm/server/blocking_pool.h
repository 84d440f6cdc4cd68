// A small pool of threads for work an I/O thread must not wait on: CPU-heavy or blocking calls
// (the RSA-4096 generation of import-params today; provider calls can move here later). A
// coroutine co_awaits Run(f): f runs on a pool thread while the I/O thread goes on serving the
// other connections, and the coroutine resumes on its own executor (its connection's strand, or
// the loop itself when one I/O thread runs it) with f's result. Work waits in a queue when every
// pool thread is busy.
#pragma once

// clang-format off
// <utility> first: Boost 1.74's awaitable.hpp uses std::exchange without including it.
#include <utility>
// clang-format on
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <type_traits>

namespace ekm {

class BlockingPool {
 public:
  explicit BlockingPool(int threads) : pool_(threads > 0 ? threads : 1) {}
  ~BlockingPool() { Stop(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Runs `f` on a pool thread; its result (or exception) comes back to the awaiting coroutine.
  template <typename F>
  boost::asio::awaitable<std::invoke_result_t<F&>> Run(F f) {
    using R = std::invoke_result_t<F&>;
    // (co_spawn hands a default-constructed value to the completion on an exception: the
    // optional spares R from needing a default constructor.)
    std::optional<R> result = co_await boost::asio::co_spawn(
        pool_.get_executor(),
        [f = std::move(f)]() mutable -> boost::asio::awaitable<std::optional<R>> {
          co_return std::optional<R>(f());
        },
        boost::asio::use_awaitable);
    co_return std::move(*result);
  }

  // Drops queued work, waits for the work running now. Idempotent.
  void Stop() {
    pool_.stop();
    pool_.join();
  }

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace ekm
