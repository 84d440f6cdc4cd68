// The API v1 routes: matching a request line to a row of the operation table (api/operations.h),
// checking the caller, and running the row's handler (api/operation_handlers.h) through the
// authorizing service. Transport-free, so the HTTP layer stays small. docs/api.md lists every
// route.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ekm/api/operation_handlers.h"
#include "ekm/api/operations.h"
#include "ekm/auth/token.h"
#include "ekm/base/bytes.h"
#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/service/authorizing_service.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

struct RouteRequest {
  std::string method;
  std::string target;  // path and query, percent-encoded
  std::string content_type;
  std::string authorization;
  std::string remote_address;  // the peer's IP, for audit records and rate limits
  std::string request_id;      // X-Request-Id (given or generated), for logs and audit records
};

// The request matched to a row: what the operation's handler is given (OperationRequest: the
// row, the path's names, the query) and what the HTTP layer needs besides.
struct RouteMatch : OperationRequest {
  Status status;  // not OK: answer with this error
  bool method_not_allowed = false;
  bool unsupported_media_type = false;
  std::string allow;         // for 405
  bool streaming = false;    // body and response are streamed
  bool text_output = false;  // streamed encrypt writes the text form

  bool found = false;          // a row of the route table matched
  bool authenticated = false;  // Match checked the caller's token (or the route is open)
  auth::Principal principal;   // the caller (Match fills it)
  std::string remote_address;  // for audit records
  std::string request_id;      // X-Request-Id, for the call's context
};

using RouteResponse = OperationResponse;

// A streamed encrypt or decrypt.
class StreamTransform {
 public:
  virtual ~StreamTransform() = default;
  virtual Status Update(ByteView chunk, Bytes* out) = 0;
  virtual Status Finish(Bytes* out) = 0;
};

class Router {
 public:
  // `clock` tells relative query times (since=24h) and token expiry: the service's own.
  // Handlers call `service` through the authorizing service (service/authorizing_service.h),
  // which makes every authorization decision a handler's call needs.
  explicit Router(EkmService* service, const Clock* clock = &Clock::Real())
      : service_(service), api_(NewAuthorizingService(service)), clock_(clock) {}
  // Matches the route, then authenticates the caller's token and authorizes the route for it
  // (auth/authorization.h); a refusal is the match's status (401 or 403).
  RouteMatch Match(const RouteRequest& request) const;
  // Only the route table: no token check (tests of the table).
  RouteMatch MatchRoute(const RouteRequest& request) const;
  // Runs the row's handler for an authenticated match.
  RouteResponse Handle(const RouteMatch& match, const std::string& body);
  StatusOr<std::unique_ptr<StreamTransform>> OpenStream(const RouteMatch& match);

  // `ekmd --metrics-unauthenticated`: GET /metrics needs no token (authorization reads it).
  void set_metrics_unauthenticated(bool open) { metrics_unauthenticated_ = open; }
  bool metrics_unauthenticated() const { return metrics_unauthenticated_; }

 private:
  EkmService* service_;              // authenticates (Match)
  std::unique_ptr<EkmService> api_;  // every operation, authorized
  const Clock* clock_;
  bool metrics_unauthenticated_ = false;
};

}  // namespace ekm
