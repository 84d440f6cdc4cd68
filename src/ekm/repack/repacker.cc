#include "ekm/repack/repacker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <system_error>

#include "ekm/crypto/key_wrap.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/metrics/metrics.h"

namespace ekm {

namespace {

// The repack moved on to a newer EK (a replacement during the repack): start over towards it.
bool MovedOn(const Status& s) { return s.code() == StatusCode::kFailedPrecondition; }

nlohmann::json JobJson(const Store::RepackJobRecord& job) {
  return {{"ek_version", job.target_ek_version}, {"done", job.done}, {"total", job.total}};
}

}  // namespace

Repacker::Repacker(Store* store, KeyHierarchy* keys, Clock* clock, RepackOptions options)
    : store_(store), keys_(keys), clock_(clock), options_(options) {}

uint64_t Repacker::DataKeysUnderDestroyedKeys(const EnvironmentRecord& env) {
  auto inv = store_->EnvironmentKeyInventory(env.id);
  if (!inv.ok()) return 0;
  uint64_t lost = 0;
  for (const auto& ek : *inv) {
    if (ek.destroyed_at) lost += ek.data_keys;
  }
  // Only a store written by an older ekm can hold such rows (see Store::InsertDataKey); the
  // repack moves every other DK and finishes, and says what it could not move and why.
  if (lost > 0) {
    spdlog::error(
        "repack of {}/{}: {} data keys are wrapped under destroyed environment keys "
        "and cannot be unwrapped (an inconsistency of the store, not the CMK); data "
        "encrypted under them cannot be decrypted",
        env.workspace, env.name, lost);
  }
  return lost;
}

int64_t Repacker::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->Now().time_since_epoch())
      .count();
}

void Repacker::Event(const EnvironmentRecord& env, std::string_view type,
                     const nlohmann::json& detail) {
  // The repack is the system's job, whoever's CMK change started it (that change is recorded
  // with its own actor) and wherever it runs (ekmd's runner, or `ekm repack run`).
  RecordLifecycleEvent(*store_, *clock_, kRepackActor, env.workspace, env.name, type, detail)
      .IgnoreError();
}

namespace {

// The repack gauges hold a job's share while it runs, whichever way Run leaves.
class JobGauges {
 public:
  JobGauges(double done, double total) : done_(done), total_(total) {
    metrics::RepackRunningJobs().Add(1);
    metrics::RepackDataKeysDone().Add(done_);
    metrics::RepackDataKeysTotal().Add(total_);
  }
  JobGauges(const JobGauges&) = delete;
  JobGauges& operator=(const JobGauges&) = delete;
  void Update(double done, double total) {
    metrics::RepackDataKeysDone().Add(done - done_);
    metrics::RepackDataKeysTotal().Add(total - total_);
    done_ = done;
    total_ = total;
  }
  ~JobGauges() {
    metrics::RepackRunningJobs().Add(-1);
    metrics::RepackDataKeysDone().Add(-done_);
    metrics::RepackDataKeysTotal().Add(-total_);
  }

 private:
  double done_, total_;
};

}  // namespace

struct Repacker::Pass {
  EnvironmentRecord env;
  uint32_t target = 0;
  Store::RepackJobRecord job;
  JobGauges gauges;
  std::chrono::milliseconds retry_in;
  std::shared_ptr<const SecretBytes> new_ek;
  std::map<uint32_t, std::shared_ptr<const SecretBytes>> old_eks;
  uint64_t last_event_done = 0;
  std::chrono::steady_clock::time_point last_event_at;
  // Two batches: one commits on a second thread while the next is listed and re-wrapped.
  struct Buffer {
    std::vector<DataKeyRecord> rows;
    std::vector<Store::RepackedDataKey> batch;
  };
  Buffer buffers[2];
  std::string after_scope;  // where the next batch starts ("", 0: the first DK)
  uint32_t after_version = 0;
};

StatusOr<bool> Repacker::Run(std::string_view workspace, std::string_view environment,
                             const StopFn& stop, const ProgressFn& progress,
                             std::chrono::milliseconds retry_in) {
  for (;;) {  // once per target EK (a replacement during the repack moves the target on)
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, store_->GetEnvironment(workspace, environment));
    const uint32_t target = env.current_ek_version;
    EKM_ASSIGN_OR_RETURN(std::vector<Store::EkInventoryRow> eks,
                         store_->EnvironmentKeyInventory(env.id));
    bool needed = false;
    for (const auto& ek : eks) needed = needed || (ek.version < target && !ek.destroyed_at);
    if (!needed) return true;  // nothing under an older EK, and no old wrapping left
    bool created = false;
    auto begun = store_->BeginRepackJob(env.id, target, NowMs(), &created);
    if (!begun.ok()) {
      if (MovedOn(begun.status())) continue;  // rotated again since the read above
      return begun.status();
    }
    Pass pass{std::move(env),
              target,
              std::move(begun).value(),
              JobGauges(0, 0),
              retry_in,
              nullptr,
              {},
              0,
              clock_->Monotonic(),
              {},
              {},
              0};
    pass.gauges.Update(static_cast<double>(pass.job.done), static_cast<double>(pass.job.total));
    pass.last_event_done = pass.job.done;
    if (created && pass.job.total > 0) {
      Event(pass.env, event::kRepackStarted, JobJson(pass.job));
    } else if (pass.job.total > pass.job.done) {
      spdlog::info("repack of {}/{}: resuming at {}/{} data keys", pass.env.workspace,
                   pass.env.name, pass.job.done, pass.job.total);
    }
    EKM_ASSIGN_OR_RETURN(PassEnd end, RunPass(pass, stop, progress));
    if (end == PassEnd::kStopped) return false;
    if (end == PassEnd::kFinished) return true;
  }
}

// Every error of a pass leaves the job waiting, with the reason, until the next try.
Status Repacker::Wait(Pass& pass, Status cause) {
  store_
      ->SetRepackJobWaiting(pass.job.id, cause.ToString(), NowMs() + pass.retry_in.count(), NowMs())
      .IgnoreError();
  spdlog::warn("repack of {}/{} waits: {}", pass.env.workspace, pass.env.name, cause.ToString());
  return cause;
}

// An EK that failed because another repacker (a thread, ekmd, `ekm repack run`) finished
// meanwhile and destroyed it, or because the current EK moved on, is not the customer's doing:
// start over from the store, never wait on it blaming the CMK.
bool Repacker::Superseded(const Pass& pass, uint32_t version) {
  auto now_env = store_->GetEnvironment(pass.env.workspace, pass.env.name);
  if (now_env.ok() && now_env->current_ek_version != pass.target) return true;
  auto ek = store_->GetEnvironmentKey(pass.env.id, version);
  return ek.ok() && ek->wrapped.empty();
}

// The store's write of one batch and the listing and re-wrapping of the next overlap: batch
// k commits on a second thread (its own store connection) while this thread lists and
// re-wraps batch k+1, so the database and ekm's crypto work side by side instead of in turn
// (docs/benchmarks.md "Repack"). At most one commit is in flight, and it is settled (its
// progress recorded, or its error) before anything records the job's state, and before a
// listing from the first DK, which must see every commit.
StatusOr<Repacker::PassEnd> Repacker::RunPass(Pass& pass, const StopFn& stop,
                                              const ProgressFn& progress) {
  auto new_ek = keys_->EnvironmentKey(pass.env, pass.target);
  if (!new_ek.ok()) {
    if (Superseded(pass, pass.target)) return PassEnd::kMovedOn;
    return Wait(pass, new_ek.status().WithContext(
                          "the new customer main key must be usable for the repack to go on"));
  }
  pass.new_ek = *new_ek;
  for (Pass::Buffer& b : pass.buffers) {
    b.rows.reserve(options_.batch_size);
    b.batch.reserve(options_.batch_size);
  }
  std::future<StatusOr<uint64_t>> committing;
  // The commit in flight, if any: its progress recorded; on error the pass ends with it.
  auto settle = [&]() -> StatusOr<std::optional<PassEnd>> {
    if (!committing.valid()) return std::optional<PassEnd>();
    StatusOr<uint64_t> moved = committing.get();
    if (!moved.ok()) {
      if (MovedOn(moved.status())) return std::optional<PassEnd>(PassEnd::kMovedOn);
      return Wait(pass, moved.status());
    }
    RecordBatch(pass, *moved, progress);
    return std::optional<PassEnd>();
  };
  for (int next = 0;; next ^= 1) {
    if (stop && stop()) {
      EKM_ASSIGN_OR_RETURN(std::optional<PassEnd> end, settle());
      return end.value_or(PassEnd::kStopped);
    }
    const bool from_first = pass.after_scope.empty() && pass.after_version == 0;
    if (from_first) {
      EKM_ASSIGN_OR_RETURN(std::optional<PassEnd> end, settle());
      if (end) return *end;
    }
    Pass::Buffer& buffer = pass.buffers[next];
    Status listed =
        store_->ListDataKeysToRepack(pass.env.id, pass.target, pass.after_scope, pass.after_version,
                                     options_.batch_size, &buffer.rows);
    if (!listed.ok()) {
      EKM_ASSIGN_OR_RETURN(std::optional<PassEnd> end, settle());
      if (end) return *end;
      return Wait(pass, listed);
    }
    if (buffer.rows.empty()) {
      // The end of the table: finished only when a listing from the first DK finds nothing
      // (a DK changed by someone else between its listing and its batch was not moved).
      if (from_first) return FinishPass(pass, progress);
      pass.after_scope.clear();
      pass.after_version = 0;
      continue;
    }
    pass.after_scope = buffer.rows.back().scope;
    pass.after_version = buffer.rows.back().version;
    StatusOr<bool> rewrapped = RewrapRows(pass, buffer.rows, &buffer.batch);
    EKM_ASSIGN_OR_RETURN(std::optional<PassEnd> end, settle());
    if (end) return *end;
    if (!rewrapped.ok()) return Wait(pass, rewrapped.status());
    // Rows under a destroyed EK are not listed: list again from the store.
    if (*rewrapped) return PassEnd::kMovedOn;
    auto commit = [this, job = pass.job.id, env = pass.env.id, target = pass.target,
                   &batch = buffer.batch, now = NowMs()] {
      return store_->CommitRepackBatch(job, env, target, batch, now);
    };
    try {
      committing = std::async(std::launch::async, commit);
    } catch (const std::system_error&) {  // no thread to be had: commit when settled, in turn
      committing = std::async(std::launch::deferred, commit);
    }
  }
}

// Errors are returned, not recorded: the caller records them once the commit in flight (which
// records progress) has settled.
StatusOr<bool> Repacker::RewrapRows(Pass& pass, const std::vector<DataKeyRecord>& rows,
                                    std::vector<Store::RepackedDataKey>* batch) {
  const EnvironmentRecord& env = pass.env;
  batch->clear();
  for (const DataKeyRecord& row : rows) {
    auto& old = pass.old_eks[row.ek_version];
    if (!old) {
      auto got = keys_->EnvironmentKey(env, row.ek_version);
      if (!got.ok()) {
        pass.old_eks.erase(row.ek_version);
        if (Superseded(pass, row.ek_version)) return true;
        return Status(got.status().code(),
                      "the previous customer main key must stay available until the repack "
                      "completes: " +
                          got.status().message(),
                      "restore its access (key policy, enable it, cancel its deletion); the "
                      "repack retries by itself");
      }
      old = *got;
    }
    auto dk =
        UnwrapKey(*old, row.wrapped,
                  DataKeyWrapAad(env.workspace, env.name, row.scope, row.version, row.ek_version));
    if (!dk.ok()) {
      return dk.status().WithContext("data key v" + std::to_string(row.version) + " of scope \"" +
                                     row.scope + "\"");
    }
    auto wrapped =
        WrapKey(*pass.new_ek, *dk,
                DataKeyWrapAad(env.workspace, env.name, row.scope, row.version, pass.target));
    if (!wrapped.ok()) return wrapped.status();
    batch->push_back({&row, std::move(wrapped).value()});
  }
  return false;
}

void Repacker::RecordBatch(Pass& pass, uint64_t moved, const ProgressFn& progress) {
  Store::RepackJobRecord& job = pass.job;
  job.done += moved;
  job.state = "running";
  job.updated_at_ms = NowMs();
  if (job.done > job.total) job.total = job.done;
  pass.gauges.Update(static_cast<double>(job.done), static_cast<double>(job.total));
  if (progress) progress(job);
  const auto now = clock_->Monotonic();
  const double share = job.total ? double(job.done - pass.last_event_done) / double(job.total) : 1;
  if (share >= options_.progress_event_share ||
      now - pass.last_event_at >= options_.progress_event_interval) {
    Event(pass.env, event::kRepackProgress, JobJson(job));
    pass.last_event_done = job.done;
    pass.last_event_at = now;
  }
}

StatusOr<Repacker::PassEnd> Repacker::FinishPass(Pass& pass, const ProgressFn& progress) {
  const EnvironmentRecord& env = pass.env;
  Store::RepackJobRecord& job = pass.job;
  auto destroyed = store_->FinishRepackJob(job.id, env.id, pass.target, NowMs());
  if (!destroyed.ok()) {
    if (MovedOn(destroyed.status())) return PassEnd::kMovedOn;
    return Wait(pass, destroyed.status());
  }
  for (uint32_t v : *destroyed) keys_->ForgetEnvironmentKey(env.id, v);
  const uint64_t lost = DataKeysUnderDestroyedKeys(env);
  if (job.total > 0 || !destroyed->empty()) {
    nlohmann::json detail = JobJson(job);
    detail["destroyed_ek_versions"] = *destroyed;
    if (lost > 0) detail["unrecoverable_data_keys"] = lost;
    detail["seconds"] = double(NowMs() - job.started_at_ms) / 1000.0;
    Event(env, event::kRepackFinished, detail);
  }
  job.state = "finished";
  if (progress) progress(job);
  return PassEnd::kFinished;
}

RepackRunner::RepackRunner(Repacker* repacker, Store* store, Options options)
    : repacker_(repacker), store_(store), options_(options) {}

RepackRunner::~RepackRunner() { Stop(); }

void RepackRunner::Start() {
  loop_.Start([this](bool nudged) { return Scan(nudged); }, std::chrono::steady_clock::now());
}

void RepackRunner::Stop() { loop_.Stop(); }

void RepackRunner::Nudge() { loop_.Nudge(); }

bool RepackRunner::HoldLease(const std::string& name) {
  const int64_t now = ToUnixMillis(options_.clock->Now());
  auto held =
      store_->TakeLease(name, options_.lease_holder, now, now + options_.lease_duration.count());
  if (!held.ok()) {
    spdlog::warn("repack runner: cannot take the lease {}: {}", name, held.status().ToString());
    return false;
  }
  return *held;
}

std::chrono::steady_clock::time_point RepackRunner::Scan(bool nudged) {
  auto stopping = [this] { return loop_.stopping(); };
  // A nudge means a new CMK change: try every environment now, whatever its backoff.
  if (nudged) backoff_.clear();
  auto wake = std::chrono::steady_clock::now() + options_.scan_interval;
  auto envs = store_->ListEnvironmentsToRepack();
  if (!envs.ok()) {
    spdlog::warn("repack runner: cannot list environments to repack: {}", envs.status().ToString());
    return wake;
  }
  for (const EnvironmentRecord& env : *envs) {
    if (stopping()) break;
    auto now = std::chrono::steady_clock::now();
    Backoff& b = backoff_[env.id];
    if (b.next > now) {
      wake = std::min(wake, b.next);
      continue;
    }
    auto next_delay = std::clamp(b.delay * 2, options_.min_backoff, options_.max_backoff);
    const std::string lease = "repack/" + std::to_string(env.id);
    if (!options_.lease_holder.empty() && !HoldLease(lease)) continue;  // another process's
    // Between batches: renewed at a third of its duration; lost (expired and taken by another
    // process after a long stall), the run stops.
    auto renewed = std::chrono::steady_clock::now();
    auto stop = [&] {
      if (stopping()) return true;
      if (options_.lease_holder.empty()) return false;
      auto t = std::chrono::steady_clock::now();
      if (t - renewed < options_.lease_duration / 3) return false;
      renewed = t;
      return !HoldLease(lease);
    };
    auto done = repacker_->Run(env.workspace, env.name, stop, nullptr, next_delay);
    if (!options_.lease_holder.empty()) {
      store_->ReleaseLease(lease, options_.lease_holder).IgnoreError();
    }
    if (done.ok()) {
      backoff_.erase(env.id);
    } else {
      b.delay = next_delay;
      b.next = std::chrono::steady_clock::now() + next_delay;
      wake = std::min(wake, b.next);
    }
  }
  return wake;
}

}  // namespace ekm
