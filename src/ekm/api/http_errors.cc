#include "ekm/api/http_errors.h"

#include <nlohmann/json.hpp>

namespace ekm {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kDataLoss:
      return 400;  // the caller's ciphertext does not authenticate
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 413;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

std::string ErrorJson(const Status& status) {
  nlohmann::json err = {{"code", std::string(StatusCodeName(status.code()))},
                        {"message", status.message()}};
  if (!status.hint().empty()) err["hint"] = status.hint();
  if (status.retry_after_seconds() > 0) err["retry_after_seconds"] = status.retry_after_seconds();
  return nlohmann::json{{"error", err}}.dump(-1, ' ', false,
                                             nlohmann::json::error_handler_t::replace);
}

}  // namespace ekm
