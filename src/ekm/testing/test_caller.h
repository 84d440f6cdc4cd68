// The caller of the service in tests: the platform operator, named "cli:test" in lifecycle
// events, as `ekm` in local mode calls it.
#pragma once

#include "ekm/api/call_context.h"

namespace ekm {

inline const CallContext& TestOp() {
  static const CallContext* const op = new CallContext(CallContext::Operator("cli:test"));
  return *op;
}

}  // namespace ekm
