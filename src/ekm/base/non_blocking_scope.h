// Threads that must never wait on I/O (ekmd's HTTP I/O threads, which serve every connection)
// run a request's work inside a NonBlockingScope. Code about to wait (a store query, a KMS call,
// waiting for another thread's KMS call) calls MayBlock() first: inside a scope it marks the
// scope deferred and returns an error, and the caller returns that error at once, having
// changed nothing that outlives the request. The server then runs the request again on its
// blocking pool, where MayBlock() is OK. So a cached key is served on the I/O thread with no
// thread hop, and a cache miss never holds an I/O thread (docs/architecture.md, "Threads").
//
// Effects that outlive the request (usage counts, audit records) check BlockingDeferred() and
// are left to the run that counts. Outside a scope both are a thread-local read.
#pragma once

#include <string_view>

#include "ekm/base/status.h"

namespace ekm {

namespace internal {
struct NonBlockingState {
  bool active = false;
  bool deferred = false;
};
inline thread_local NonBlockingState t_non_blocking;
}  // namespace internal

class NonBlockingScope {
 public:
  NonBlockingScope() : outer_(internal::t_non_blocking) {
    internal::t_non_blocking = {true, false};
  }
  ~NonBlockingScope() { internal::t_non_blocking = outer_; }
  NonBlockingScope(const NonBlockingScope&) = delete;
  NonBlockingScope& operator=(const NonBlockingScope&) = delete;

  // Some code wanted to wait since the scope began: the work's result is to be discarded (or,
  // for a stream coder, resumed) and the work run again where waiting is allowed.
  bool deferred() const { return internal::t_non_blocking.deferred; }

 private:
  internal::NonBlockingState outer_;
};

// OK, or (inside a NonBlockingScope) an Unavailable error that defers the scope's work.
// `what` names the wait, for the error a caller that forgot to check the scope would show.
Status MayBlock(std::string_view what);

// Inside a NonBlockingScope.
inline bool InNonBlockingScope() { return internal::t_non_blocking.active; }

// Inside a NonBlockingScope whose work was deferred.
inline bool BlockingDeferred() {
  return internal::t_non_blocking.active && internal::t_non_blocking.deferred;
}

}  // namespace ekm
