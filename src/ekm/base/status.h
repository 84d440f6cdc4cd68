// Errors as values. A compact Status / StatusOr modelled on RocksDB's status.h and
// absl::Status: a code, a message that says what is wrong, and a hint that says what to do.
// Thread-compatible value types. No exceptions cross module boundaries.
#pragma once

#include <cassert>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ekm {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong (HTTP 400)
  kNotFound,            // a named thing does not exist (404)
  kAlreadyExists,       // a named thing exists already (409)
  kFailedPrecondition,  // the system is not in a state to do this (409/412)
  kPermissionDenied,    // refused (403)
  kUnauthenticated,     // no or bad credentials (401)
  kResourceExhausted,   // a limit was reached (413/429)
  kUnavailable,         // a dependency cannot be reached now; retry (503)
  kDeadlineExceeded,    // timed out (504)
  kDataLoss,            // stored or supplied data is corrupt or fails authentication (400/422)
  kInternal,            // a broken invariant (500)
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message, std::string hint = {})
      : code_(code), message_(std::move(message)), hint_(std::move(hint)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // What the user can do about it; may be empty.
  const std::string& hint() const { return hint_; }

  // "message (hint)" on one line, for the CLI and logs.
  std::string ToString() const;

  // Adds context in front of the message: "reading X: <message>".
  Status WithContext(std::string_view context) const;
  Status WithHint(std::string hint) const;
  // For a transient error: seconds after which a retry may succeed (HTTP Retry-After). 0: none.
  Status WithRetryAfter(int64_t seconds) const;
  int64_t retry_after_seconds() const { return retry_after_seconds_; }
  // The KMS's own name for the error ("AccessDeniedException", "CKR_KEY_HANDLE_INVALID"), set
  // by the provider that received it; empty when the error did not come from a KMS answer.
  Status WithProviderCode(std::string code) const;
  const std::string& provider_code() const { return provider_code_; }
  // The same error under another code, everything else kept (e.g. a KMS refusal, which is
  // not the API caller's 403).
  Status WithCode(StatusCode code) const;

  // Deliberately drops an error; greppable.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string hint_;
  int64_t retry_after_seconds_ = 0;
  std::string provider_code_;
};

inline Status InvalidArgumentError(std::string m, std::string h = {}) {
  return Status(StatusCode::kInvalidArgument, std::move(m), std::move(h));
}
inline Status NotFoundError(std::string m, std::string h = {}) {
  return Status(StatusCode::kNotFound, std::move(m), std::move(h));
}
inline Status AlreadyExistsError(std::string m, std::string h = {}) {
  return Status(StatusCode::kAlreadyExists, std::move(m), std::move(h));
}
inline Status FailedPreconditionError(std::string m, std::string h = {}) {
  return Status(StatusCode::kFailedPrecondition, std::move(m), std::move(h));
}
inline Status PermissionDeniedError(std::string m, std::string h = {}) {
  return Status(StatusCode::kPermissionDenied, std::move(m), std::move(h));
}
inline Status UnauthenticatedError(std::string m, std::string h = {}) {
  return Status(StatusCode::kUnauthenticated, std::move(m), std::move(h));
}
inline Status ResourceExhaustedError(std::string m, std::string h = {}) {
  return Status(StatusCode::kResourceExhausted, std::move(m), std::move(h));
}
inline Status UnavailableError(std::string m, std::string h = {}) {
  return Status(StatusCode::kUnavailable, std::move(m), std::move(h));
}
inline Status DeadlineExceededError(std::string m, std::string h = {}) {
  return Status(StatusCode::kDeadlineExceeded, std::move(m), std::move(h));
}
inline Status DataLossError(std::string m, std::string h = {}) {
  return Status(StatusCode::kDataLoss, std::move(m), std::move(h));
}
inline Status InternalError(std::string m, std::string h = {}) {
  return Status(StatusCode::kInternal, std::move(m), std::move(h));
}

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : v_(status) { assert(!status.ok()); }  // NOLINT
  StatusOr(Status&& status) : v_(std::move(status)) {                    // NOLINT
    assert(!std::get<Status>(v_).ok());
  }
  StatusOr(const T& value) : v_(value) {}        // NOLINT
  StatusOr(T&& value) : v_(std::move(value)) {}  // NOLINT
  template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                    !std::is_same_v<std::decay_t<U>, Status> &&
                                                    !std::is_same_v<std::decay_t<U>, T>>>
  StatusOr(U&& value) : v_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace ekm

#define EKM_STATUS_CONCAT_INNER_(a, b) a##b
#define EKM_STATUS_CONCAT_(a, b) EKM_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (a Status) is not OK.
#define EKM_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::ekm::Status ekm_status_ = (expr);        \
    if (!ekm_status_.ok()) return ekm_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its error.
#define EKM_ASSIGN_OR_RETURN(lhs, expr) \
  EKM_ASSIGN_OR_RETURN_IMPL_(EKM_STATUS_CONCAT_(ekm_statusor_, __LINE__), lhs, expr)
#define EKM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
