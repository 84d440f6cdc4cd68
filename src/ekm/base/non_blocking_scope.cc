#include "ekm/base/non_blocking_scope.h"

#include <string>

namespace ekm {

Status MayBlock(std::string_view what) {
  internal::NonBlockingState& state = internal::t_non_blocking;
  if (!state.active) return Status::Ok();
  state.deferred = true;
  return UnavailableError("would wait for " + std::string(what) + " on a thread that must not",
                          "the request runs again on the blocking pool; report this error if "
                          "you see it");
}

}  // namespace ekm
