#include "ekm/keys/cmk_health.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "ekm/base/random.h"
#include "ekm/events/lifecycle_event.h"

namespace ekm {

std::string_view CmkStateName(CmkState state) {
  switch (state) {
    case CmkState::kHealthy:
      return "healthy";
    case CmkState::kDegraded:
      return "degraded";
    case CmkState::kUnavailable:
      return "unavailable";
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
    case StatusCode::kOk:
      return ProviderOutcome::kOk;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      return ProviderOutcome::kUnreachable;
    case StatusCode::kPermissionDenied:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kNotFound:
      return ProviderOutcome::kRefused;
    default:
      return ProviderOutcome::kError;
  }
}

int64_t NextAttemptInSeconds(const CmkHealthSnapshot& snap,
                             std::chrono::system_clock::time_point now) {
  return std::max<int64_t>(1, snap.next_retry - ToUnixSeconds(now));
}

CmkHealth::CmkHealth(Store* store, Clock* clock, CmkHealthOptions options)
    : store_(store), clock_(clock), options_(options) {}

void CmkHealth::Adopt(Entry& e, const Store::EnvironmentKeyStatusRecord& r) {
  e.snap.state = StateFromName(r.state);
  e.snap.since = r.since;
  e.snap.last_success = std::max(e.snap.last_success, r.last_success);
  if (!r.error_code.empty()) {
    e.snap.last_error = Status(CodeFromName(r.error_code), r.message, r.hint);
  }
  e.snap.provider_code = r.provider_code;
  if (e.snap.state == CmkState::kHealthy || r.next_retry == 0) {
    e.snap.next_attempt = {};
    e.snap.next_retry = 0;
    return;
  }
  // The stored schedule, whoever wrote it; a clock far ahead on another node cannot stall this
  // one longer than the longest backoff.
  e.snap.next_retry = r.next_retry;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(FromUnixSeconds(r.next_retry) -
                                                                    clock_->Now());
  wait = std::clamp(wait, std::chrono::milliseconds(0), options_.backoff_cap);
  e.snap.next_attempt = clock_->Monotonic() + wait;
}

CmkHealth::Entry& CmkHealth::Load(int64_t environment_id) {
  auto it = entries_.find(environment_id);
  if (it != entries_.end()) return it->second;
  Entry e;
  auto stored = store_->GetEnvironmentKeyStatus(environment_id);
  if (stored.ok() && stored->has_value()) {
    // A fresh process (another node, `ekm` in local mode) keeps to the stored schedule.
    Adopt(e, **stored);
  } else if (!stored.ok()) {
    spdlog::warn("could not read the key status of environment {}: {}", environment_id,
                 stored.status().ToString());
  }
  return entries_.emplace(environment_id, std::move(e)).first->second;
}

bool CmkHealth::MayAttempt(int64_t environment_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = Load(environment_id);
    if (e.snap.state == CmkState::kHealthy) return true;
    if (clock_->Monotonic() < e.snap.next_attempt) return false;
  }
  // This process's wait is over. Another process may have tried since (and moved the schedule)
  // or succeeded: the stored row decides. One read per attempt, never per request.
  auto stored = store_->GetEnvironmentKeyStatus(environment_id);
  if (!stored.ok() || !stored->has_value()) return true;
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = Load(environment_id);
  Adopt(e, **stored);
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

std::chrono::milliseconds CmkHealth::Backoff(const CmkHealthSnapshot& snap) {
  // As long as the state has lasted (from `since`, which every process shares), between the
  // base and the cap, with jitter in [ceiling/2, ceiling]: each wait at least half of the time
  // so far, so the attempts are exponentially spaced, spread out and never immediate.
  int64_t lasted = std::chrono::duration_cast<std::chrono::milliseconds>(
                       clock_->Now() - FromUnixSeconds(snap.since))
                       .count();
  int64_t ceiling =
      std::clamp<int64_t>(lasted, options_.backoff_base.count(), options_.backoff_cap.count());
  auto r = RandomUint64();
  int64_t half = ceiling / 2;
  int64_t jitter =
      r.ok() && half > 0 ? static_cast<int64_t>(*r % static_cast<uint64_t>(half + 1)) : half;
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
    RecordLifecycleEvent(*store_, *clock_, kCmkHealthActor, workspace, environment,
                         event::kCmkRestored,
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
    // A call that was already in flight when another failure set the schedule: the next
    // attempt stays where errors and the status already said it is.
    const bool scheduled =
        before != CmkState::kHealthy && clock_->Monotonic() < e.snap.next_attempt;
    if (before != next) {
      e.snap.state = next;
      e.snap.since = ToUnixSeconds(clock_->Now());
    }
    if (!scheduled) {
      // Rounded up to a whole second: the instant next_retry names, for every reader.
      const auto now = clock_->Now();
      const auto at = now + Backoff(e.snap);
      int64_t next_retry = ToUnixSeconds(at);
      if (FromUnixSeconds(next_retry) < at) ++next_retry;
      e.snap.next_retry = next_retry;
      e.snap.next_attempt = clock_->Monotonic() + (FromUnixSeconds(next_retry) - now);
    }
    e.snap.provider_code = status.provider_code();
    // A refusal's hint is its provider's advice (KeyProvider::RefusalAdvice), as the error says
    // it, so that `environment status` says the same.
    e.snap.last_error = status;
    snap = e.snap;
  }
  // Every failure moves next_retry; the row is small and failures are rate-limited by the
  // backoff, so storing each keeps other nodes' view exact.
  Persist(environment_id, snap);
  if (before != next) {
    RecordLifecycleEvent(
        *store_, *clock_, kCmkHealthActor, workspace, environment,
        next == CmkState::kUnavailable ? event::kCmkRevocationDetected : event::kCmkOutageDetected,
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
  if (!s.ok())
    spdlog::warn("could not store the key status of environment {}: {}", environment_id,
                 s.ToString());
}

}  // namespace ekm
