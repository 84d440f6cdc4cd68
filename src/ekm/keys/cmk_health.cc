#include "ekm/keys/cmk_health.h"

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "ekm/base/random.h"
#include "ekm/events/lifecycle_event.h"

namespace ekm {

std::string_view CmkStateName(CmkState state) {
  switch (state) {
    case CmkState::kHealthy: return "healthy";
    case CmkState::kDegraded: return "degraded";
    case CmkState::kUnavailable: return "unavailable";
  }
  return "healthy";
}

namespace {

CmkState StateFromName(std::string_view name) {
  if (name == "degraded") return CmkState::kDegraded;
  if (name == "unavailable") return CmkState::kUnavailable;
  return CmkState::kHealthy;
}

StatusCode CodeFromName(std::string_view name) {
  for (StatusCode c :
       {StatusCode::kInvalidArgument, StatusCode::kNotFound, StatusCode::kAlreadyExists,
        StatusCode::kFailedPrecondition, StatusCode::kPermissionDenied,
        StatusCode::kUnauthenticated, StatusCode::kResourceExhausted, StatusCode::kUnavailable,
        StatusCode::kDeadlineExceeded, StatusCode::kDataLoss, StatusCode::kInternal}) {
    if (StatusCodeName(c) == name) return c;
  }
  return StatusCode::kInternal;
}

}  // namespace

ProviderOutcome ClassifyProviderStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return ProviderOutcome::kOk;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded: return ProviderOutcome::kUnreachable;
    case StatusCode::kPermissionDenied:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kNotFound: return ProviderOutcome::kRefused;
    default: return ProviderOutcome::kError;
  }
}

std::string ProviderErrorCode(const Status& status) {
  const std::string& m = status.message();
  auto at = m.rfind(" failed: ");
  if (at == std::string::npos) return "";
  std::string code = m.substr(at + 9);
  code = code.substr(0, code.find(' '));
  // Transport failures ("request to host failed: …") name no provider code.
  if (code.empty() || !std::isupper(static_cast<unsigned char>(code[0]))) return "";
  return code;
}

CmkHealth::CmkHealth(Store* store, Clock* clock, CmkHealthOptions options)
    : store_(store), clock_(clock), options_(options) {}

CmkHealth::Entry& CmkHealth::Load(int64_t environment_id) {
  auto it = entries_.find(environment_id);
  if (it != entries_.end()) return it->second;
  Entry e;
  auto stored = store_->GetEnvironmentKeyStatus(environment_id);
  if (stored.ok() && stored->has_value()) {
    const auto& r = **stored;
    e.snap.state = StateFromName(r.state);
    e.snap.since = r.since;
    e.snap.last_success = r.last_success;
    if (!r.error_code.empty()) e.snap.last_error = Status(CodeFromName(r.error_code), r.message, r.hint);
    e.snap.provider_code = r.provider_code;
    // A fresh process tries the provider at once: the stored next retry is another node's.
    e.snap.next_retry = r.next_retry;
  } else if (!stored.ok()) {
    spdlog::warn("could not read the key status of environment {}: {}", environment_id,
                 stored.status().ToString());
  }
  return entries_.emplace(environment_id, std::move(e)).first->second;
}

bool CmkHealth::MayAttempt(int64_t environment_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Load(environment_id);
  return e.snap.state == CmkState::kHealthy || clock_->Monotonic() >= e.snap.next_attempt;
}

CmkHealthSnapshot CmkHealth::Get(int64_t environment_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return Load(environment_id).snap;
}

void CmkHealth::Forget(int64_t environment_id) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.erase(environment_id);
}

std::chrono::milliseconds CmkHealth::Backoff(int failures) {
  // Exponential with full jitter in [ceiling/2, ceiling]: spread out, never immediate.
  int64_t ceiling = std::min<int64_t>(options_.backoff_cap.count(),
                                      options_.backoff_base.count() << std::min(failures - 1, 20));
  auto r = RandomUint64();
  int64_t half = ceiling / 2;
  int64_t jitter = r.ok() && half > 0 ? static_cast<int64_t>(*r % static_cast<uint64_t>(half + 1)) : half;
  return std::chrono::milliseconds(ceiling - half + jitter);
}

void CmkHealth::OnSuccess(int64_t environment_id, std::string_view workspace,
                          std::string_view environment) {
  CmkHealthSnapshot snap;
  CmkState before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = Load(environment_id);
    before = e.snap.state;
    e.failures = 0;
    int64_t now = ToUnixSeconds(clock_->Now());
    e.snap.last_success = now;
    if (before != CmkState::kHealthy) {
      e.snap.state = CmkState::kHealthy;
      e.snap.since = now;
      e.snap.next_attempt = {};
      e.snap.next_retry = 0;
    }
    if (e.snap.since == 0) e.snap.since = now;
    snap = e.snap;
  }
  Persist(environment_id, snap);
  if (before != CmkState::kHealthy) {
    RecordLifecycleEvent(*store_, *clock_, workspace, environment, event::kCmkRestored,
                         {{"from", std::string(CmkStateName(before))},
                          {"previous_error", snap.last_error.message()},
                          {"provider_code", snap.provider_code}})
        .IgnoreError();
  }
}

void CmkHealth::OnFailure(int64_t environment_id, std::string_view workspace,
                          std::string_view environment, const Status& status) {
  ProviderOutcome outcome = ClassifyProviderStatus(status);
  if (outcome != ProviderOutcome::kRefused && outcome != ProviderOutcome::kUnreachable) return;
  const CmkState next =
      outcome == ProviderOutcome::kRefused ? CmkState::kUnavailable : CmkState::kDegraded;
  CmkHealthSnapshot snap;
  CmkState before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = Load(environment_id);
    before = e.snap.state;
    ++e.failures;
    auto wait = Backoff(e.failures);
    e.snap.next_attempt = clock_->Monotonic() + wait;
    e.snap.next_retry =
        ToUnixSeconds(clock_->Now() + wait) + (wait.count() % 1000 == 0 ? 0 : 1);
    e.snap.last_error = status;
    e.snap.provider_code = ProviderErrorCode(status);
    if (before != next) {
      e.snap.state = next;
      e.snap.since = ToUnixSeconds(clock_->Now());
    }
    snap = e.snap;
  }
  // Every failure moves next_retry; the row is small and failures are rate-limited by the
  // backoff, so storing each keeps other nodes' view exact.
  Persist(environment_id, snap);
  if (before != next) {
    RecordLifecycleEvent(*store_, *clock_, workspace, environment,
                         next == CmkState::kUnavailable ? event::kCmkRevocationDetected
                                                        : event::kCmkOutageDetected,
                         {{"from", std::string(CmkStateName(before))},
                          {"error_code", std::string(StatusCodeName(status.code()))},
                          {"provider_code", snap.provider_code},
                          {"message", status.message()}})
        .IgnoreError();
  }
}

void CmkHealth::Persist(int64_t environment_id, const CmkHealthSnapshot& snap) {
  Store::EnvironmentKeyStatusRecord r;
  r.environment_id = environment_id;
  r.state = std::string(CmkStateName(snap.state));
  r.since = snap.since;
  r.last_success = snap.last_success;
  if (!snap.last_error.ok()) {
    r.error_code = std::string(StatusCodeName(snap.last_error.code()));
    r.message = snap.last_error.message();
    r.hint = snap.last_error.hint();
  }
  r.provider_code = snap.provider_code;
  r.next_retry = snap.next_retry;
  Status s = store_->PutEnvironmentKeyStatus(r);
  if (!s.ok()) spdlog::warn("could not store the key status of environment {}: {}", environment_id, s.ToString());
}

}  // namespace ekm
