// The repack: after a CMK change, re-wraps every DK of an environment from the older EKs to
// the current one, in batches, each batch one transaction with the job's progress. DK bytes
// never change, so data is never re-encrypted and every ciphertext stays readable. When no DK
// is left under an older EK, the older EKs' wrappings are destroyed in the transaction that
// finishes the job: from then on the old CMK is no longer needed.
//
// Crash-safe: the work to do is derived from the store (DKs under an EK older than the
// current one), so a job interrupted at any point is resumed by running it again.
//
// Concurrent writers: a DK is only ever created under the current EK (the store checks it in
// the insert's transaction), and the finishing transaction counts the DKs under older EKs again
// before it destroys them. Several repackers (threads, ekmd replicas, `ekm repack run`) may
// run at once: an EK one of them destroyed, or a target that moved on, makes the others start
// over from the store; only a CMK that refuses (or cannot be reached) makes a job wait.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "ekm/base/background_loop.h"
#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/store/store.h"

namespace ekm {

// The actor of the repack's lifecycle events.
inline constexpr std::string_view kRepackActor = "system:repack";

struct RepackOptions {
  size_t batch_size = 1000;
  // repack.progress events: at most one per this share of the job or this interval.
  double progress_event_share = 0.1;
  std::chrono::seconds progress_event_interval{30};
};

class Repacker {
 public:
  Repacker(Store* store, KeyHierarchy* keys, Clock* clock, RepackOptions options);

  using ProgressFn = std::function<void(const Store::RepackJobRecord&)>;
  using StopFn = std::function<bool()>;

  // Runs the environment's repack until it finishes (true), `stop` says so (false), or an
  // error: then the job waits (state "waiting", the error and `retry_in` recorded) and the
  // error is returned. Nothing to do is a finished repack.
  StatusOr<bool> Run(std::string_view workspace, std::string_view environment, const StopFn& stop,
                     const ProgressFn& progress,
                     std::chrono::milliseconds retry_in = std::chrono::seconds(1));

 private:
  int64_t NowMs() const;
  // DKs under an EK whose wrapping was destroyed (no one can unwrap them): logged when any.
  uint64_t DataKeysUnderDestroyedKeys(const EnvironmentRecord& env);
  void Event(const EnvironmentRecord& env, std::string_view type, const nlohmann::json& detail);

  // One pass of Run: the job of moving the environment's DKs under one target EK.
  struct Pass;
  enum class PassEnd { kFinished, kStopped, kMovedOn };  // kMovedOn: a newer target EK
  StatusOr<PassEnd> RunPass(Pass& pass, const StopFn& stop, const ProgressFn& progress);
  // Re-wraps `rows` under the target EK into `batch`; true when the repack moved on meanwhile.
  // An error is returned for the caller to record (Wait) once the batch in flight settled.
  StatusOr<bool> RewrapRows(Pass& pass, const std::vector<DataKeyRecord>& rows,
                            std::vector<Store::RepackedDataKey>* batch);
  // After a committed batch: progress, gauges, the repack.progress event.
  void RecordBatch(Pass& pass, uint64_t moved, const ProgressFn& progress);
  // Records the job as waiting with `cause` (retried after the pass's retry_in); returns it.
  Status Wait(Pass& pass, Status cause);
  // Whether `version` failed because the repack moved on (another finished it, or a newer EK).
  bool Superseded(const Pass& pass, uint32_t version);
  StatusOr<PassEnd> FinishPass(Pass& pass, const ProgressFn& progress);

  Store* store_;
  KeyHierarchy* keys_;
  Clock* clock_;
  RepackOptions options_;
};

// ekmd's background repack: one thread that resumes every unfinished repack at start, picks
// up new ones when nudged (after a CMK change) or by a periodic scan, and retries a waiting
// job with backoff. Stop() ends it between two batches.
class RepackRunner {
 public:
  struct Options {
    std::chrono::milliseconds scan_interval{5000};
    std::chrono::milliseconds min_backoff{1000};
    std::chrono::milliseconds max_backoff{60000};
    // Several processes on one store: each environment's repack runs under a lease
    // ("repack/<environment id>") that this holder takes before and renews between batches, so
    // one process at a time repacks an environment; when it dies, another takes over once the
    // lease expires. Empty: no lease.
    std::string lease_holder;
    std::chrono::milliseconds lease_duration{15000};
    const Clock* clock = &Clock::Real();  // the lease's wall time
  };
  RepackRunner(Repacker* repacker, Store* store, Options options);
  ~RepackRunner();  // stops

  void Start();
  void Stop();
  void Nudge();

 private:
  // One pass over the environments that need a repack; when to pass again.
  std::chrono::steady_clock::time_point Scan(bool nudged);
  // Takes or renews the environment's lease; true when this process holds it.
  bool HoldLease(const std::string& name);

  Repacker* repacker_;
  Store* store_;
  Options options_;
  // Per environment id (read and written by the loop's thread only): backoff and when to try
  // again after an error.
  struct Backoff {
    std::chrono::milliseconds delay{0};
    std::chrono::steady_clock::time_point next;
  };
  std::map<int64_t, Backoff> backoff_;
  BackgroundLoop loop_;  // last: stopped first
};

}  // namespace ekm
