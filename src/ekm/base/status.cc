#include "ekm/base/status.h"

namespace ekm {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kFailedPrecondition:
      return "failed_precondition";
    case StatusCode::kPermissionDenied:
      return "permission_denied";
    case StatusCode::kUnauthenticated:
      return "unauthenticated";
    case StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case StatusCode::kDataLoss:
      return "data_loss";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out = message_;
  if (!hint_.empty()) {
    out += " (";
    out += hint_;
    out += ")";
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  Status out = *this;
  out.message_ = std::move(m);
  return out;
}

Status Status::WithHint(std::string hint) const {
  if (ok()) return *this;
  Status out = *this;
  out.hint_ = std::move(hint);
  return out;
}

Status Status::WithRetryAfter(int64_t seconds) const {
  Status out = *this;
  if (!ok()) out.retry_after_seconds_ = seconds;
  return out;
}

Status Status::WithProviderCode(std::string code) const {
  Status out = *this;
  if (!ok()) out.provider_code_ = std::move(code);
  return out;
}

Status Status::WithCode(StatusCode code) const {
  if (ok() || code == StatusCode::kOk) return *this;
  Status out = *this;
  out.code_ = code;
  return out;
}

}  // namespace ekm
