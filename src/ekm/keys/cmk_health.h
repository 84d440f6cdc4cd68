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

enum class CmkState { kHealthy, kDegraded, kUnavailable };
std::string_view CmkStateName(CmkState state);  // "healthy", "degraded", "unavailable"

// What a provider call's outcome means for the CMK, by the KeyProvider error contract.
enum class ProviderOutcome { kOk, kRefused, kUnreachable, kError };
ProviderOutcome ClassifyProviderStatus(const Status& status);

// "… failed: AccessDeniedException (…)" -> "AccessDeniedException"; "" when not named.
std::string ProviderErrorCode(const Status& status);

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
  // Monotonic time before which no provider attempt is made (DEGRADED, UNAVAILABLE).
  std::chrono::steady_clock::time_point next_attempt{};
  int64_t next_retry = 0;  // the same, in unix seconds; 0: none
};

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
  void OnSuccess(int64_t environment_id, std::string_view workspace,
                 std::string_view environment);
  // Only kRefused and kUnreachable outcomes change the state.
  void OnFailure(int64_t environment_id, std::string_view workspace,
                 std::string_view environment, const Status& status);

  // Forgets what is known in memory (the next Get reads the store again).
  void Forget(int64_t environment_id);

 private:
  struct Entry {
    CmkHealthSnapshot snap;
    int failures = 0;  // consecutive, for the backoff
  };
  Entry& Load(int64_t environment_id);  // with mu_ held
  void Persist(int64_t environment_id, const CmkHealthSnapshot& snap);
  std::chrono::milliseconds Backoff(int failures);

  Store* store_;
  Clock* clock_;
  CmkHealthOptions options_;
  std::mutex mu_;
  std::unordered_map<int64_t, Entry> entries_;
};

}  // namespace ekm
