// The handler of each API route: decode the request (api/request_codec.h), call the one EkmApi
// operation of its row through the authorizing service, encode the answer. A handler decides
// nothing (authorization is the authorizing service's) and touches no transport.
#pragma once

#include <string>

#include "ekm/api/call_context.h"
#include "ekm/api/operations.h"
#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/server/routes.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

// What a handler is given.
struct HandlerCall {
  EkmService& api;  // behind the authorizing service
  const CallContext& ctx;
  const RouteMatch& m;  // the path's names, the query
  const std::string& body;
  const Clock& clock;  // relative query times, token expiry
  int success;         // the status of a success: the row's success_status
};
using RouteHandler = RouteResponse (*)(const HandlerCall&);

// The handler of `id`; nullptr for none (routes_test requires one for every row).
RouteHandler HandlerFor(RouteId id);

// An error as the API answers it (http_errors.h), with Retry-After for a transient one.
RouteResponse ErrorResponse(const Status& s);

}  // namespace ekm
