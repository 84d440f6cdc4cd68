// CmkHealth: how each environment's customer main key (CMK) answers, learned from the outcomes
// of the provider calls the key hierarchy makes (never from extra calls).
//
//   HEALTHY     the last call succeeded.
//   DEGRADED    the KMS could not be reached (network, 5xx, throttling: kUnavailable,
//               kDeadlineExceeded). Cached keys stay usable within the TTL (plus the
//               environment's grace period, if one is set); the next attempt waits for a backoff.
//   UNAVAILABLE the KMS refused definitively (access removed, key disabled, pending deletion,
//               deleted: kPermissionDenied, kFailedPrecondition, kNotFound). Nothing cached is
//               used; the next attempt waits for a backoff and, if access was restored, succeeds.
//
// Transitions are stored (Store::PutEnvironmentKeyStatus) so every node and `ekm` in local mode
// show the same status, and recorded as lifecycle events (cmk.outage_detected,
// cmk.revocation_detected, cmk.restored): one per transition, not one per request.
//
// The backoff is one schedule for every process on the store: the stored next_retry. A process
// that loads a failing status waits for it (it does not start a backoff of its own), re-reads it
// before its own next attempt (another process may have tried since), and every wait is a
// function of how long the state has lasted (`since`, stored), not of a per-process count. So
// the "asks the KMS again within N s" of an error, N = NextAttemptInSeconds, is what `ekm
// environment status` shows as the next retry, in every process. Failures of calls that were in
// flight when the schedule was set do not move it.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/store/store.h"

namespace ekm {

// The actor of the CMK health events (cmk.restored, cmk.outage_detected,
// cmk.revocation_detected): the change is the customer's KMS's, seen by whichever call hit it.
inline constexpr std::string_view kCmkHealthActor = "system:cmk-health";

enum class CmkState { kHealthy, kDegraded, kUnavailable };
std::string_view CmkStateName(CmkState state);  // "healthy", "degraded", "unavailable"

// What a provider call's outcome means for the CMK, by the KeyProvider error contract.
enum class ProviderOutcome { kOk, kRefused, kUnreachable, kError };
ProviderOutcome ClassifyProviderStatus(const Status& status);

struct CmkHealthOptions {
  std::chrono::milliseconds backoff_base{1000};  // the first retry waits up to this
  std::chrono::milliseconds backoff_cap{60000};  // no retry waits longer
};

struct CmkHealthSnapshot {
  CmkState state = CmkState::kHealthy;
  int64_t since = 0;         // unix seconds
  int64_t last_success = 0;  // unix seconds; 0: none seen
  Status last_error;         // as the provider answered (code, message, hint)
  std::string provider_code;
  // Monotonic time before which no provider attempt is made (DEGRADED, UNAVAILABLE): exactly
  // the instant of next_retry, a whole unix second.
  std::chrono::steady_clock::time_point next_attempt{};
  int64_t next_retry = 0;  // the same, in unix seconds; 0: none
};

// Whole seconds from `now` to the snapshot's next attempt (at least 1), counted so that the
// second `now` falls in plus the result is the next_retry `environment status` shows.
int64_t NextAttemptInSeconds(const CmkHealthSnapshot& snap,
                             std::chrono::system_clock::time_point now);

class CmkHealth {
 public:
  CmkHealth(Store* store, Clock* clock, CmkHealthOptions options = {});

  // Whether a provider call for the environment may be made now (not inside a backoff).
  bool MayAttempt(int64_t environment_id);
  // The current state, seeded from the store on first use.
  CmkHealthSnapshot Get(int64_t environment_id);

  // Outcomes of provider calls for the environment's CMK. `workspace`/`environment` name it
  // for the lifecycle events. A success stores last_success (at most once a TTL per key, which
  // is as often as the provider is called) and ends a DEGRADED or UNAVAILABLE state.
  void OnSuccess(int64_t environment_id, std::string_view workspace, std::string_view environment);
  // Only kRefused and kUnreachable outcomes change the state.
  void OnFailure(int64_t environment_id, std::string_view workspace, std::string_view environment,
                 const Status& status);

  // Forgets what is known in memory (the next Get reads the store again).
  void Forget(int64_t environment_id);

 private:
  struct Entry {
    CmkHealthSnapshot snap;
  };
  Entry& Load(int64_t environment_id);  // with mu_ held
  // Takes the stored row's schedule (and state) when it is newer than this process's view.
  void Adopt(Entry& e, const Store::EnvironmentKeyStatusRecord& row);  // with mu_ held
  void Persist(int64_t environment_id, const CmkHealthSnapshot& snap);
  // The wait after a failure, from how long the current state has lasted.
  std::chrono::milliseconds Backoff(const CmkHealthSnapshot& snap);

  Store* store_;
  Clock* clock_;
  CmkHealthOptions options_;
  std::mutex mu_;
  std::unordered_map<int64_t, Entry> entries_;
};

}  // namespace ekm
