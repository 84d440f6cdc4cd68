// Who makes a call of the API and from where: what every EkmApi operation is given, instead of
// thread-local state, so a call's work may move between threads (a pool, an asynchronous store)
// and still be attributed to its caller.
#pragma once

#include <string>
#include <string_view>

#include "ekm/auth/token.h"

namespace ekm {

struct CallContext {
  auth::Principal caller;  // a token's, or the local operator
  // What lifecycle events and audit records name as the actor: "token:<id>", "cli:alice",
  // "system:schedule".
  std::string actor;
  std::string request_id;      // X-Request-Id ("" outside an HTTP request)
  std::string remote_address;  // the peer's IP ("" in process)

  // The platform operator on the data directory (local mode, tools, tests): may do everything.
  // `actor` names them, e.g. "cli:alice".
  static CallContext Operator(std::string actor);
  // Work the service does on its own: the operator's rights, actor "system:<job>".
  static CallContext System(std::string_view job);
  // A request through ekmd: the authenticated token (actor "token:<id>"; "api" on the routes
  // that need no token).
  static CallContext Request(auth::Principal caller, std::string request_id,
                             std::string remote_address);
};

}  // namespace ekm
