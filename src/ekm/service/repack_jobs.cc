#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<RepackStatus> EkmServiceImpl::GetRepackStatus(const CallContext& /*ctx*/,
                                                       std::string_view workspace,
                                                       std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(std::vector<Store::EkInventoryRow> inv,
                       store_->EnvironmentKeyInventory(env.id));
  EKM_ASSIGN_OR_RETURN(std::optional<Store::RepackJobRecord> job,
                       store_->GetLatestRepackJob(env.id));
  RepackStatus st;
  st.workspace = env.workspace;
  st.environment = env.name;
  bool needed = false;
  uint64_t under_old = 0;
  for (const auto& r : inv) {
    EkInventoryEntry e;
    e.ek_version = r.version;
    e.cmk_provider = r.cmk_provider;
    e.cmk_key_id = r.cmk_key_id;
    e.state = r.version == env.current_ek_version ? "current"
              : r.destroyed_at                    ? "destroyed"
                                                  : "old";
    e.data_keys = r.data_keys;
    e.created_at = r.created_at;
    e.destroyed_at = r.destroyed_at;
    if (e.state == "old") {
      needed = true;
      under_old += r.data_keys;
    }
    st.inventory.push_back(std::move(e));
  }
  st.target_ek_version = env.current_ek_version;
  if (job && !(job->state == "finished" && needed)) {
    FillFromJob(*job, &st);
    return st;
  }
  // Not begun yet (ekmd's runner or `ekm repack run` begins it), or never needed.
  st.state = needed ? "pending" : "none";
  st.total = under_old;
  return st;
}

StatusOr<RepackStatus> EkmServiceImpl::RerunRepack(const CallContext& ctx,
                                                   std::string_view workspace,
                                                   std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(RepackStatus st, GetRepackStatus(ctx, workspace, environment));
  if (st.state == "none" || st.state == "finished") return st;
  {
    std::lock_guard<std::mutex> lock(repack_mu_);
    if (repack_runner_) {
      // A nudge clears the runner's backoff: every environment that needs a repack, now.
      repack_runner_->Nudge();
      return st;
    }
  }
  return RunRepack(ctx, workspace, environment, nullptr);
}

StatusOr<RepackStatus> EkmServiceImpl::RunRepack(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::function<void(const RepackStatus&)>& progress) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  Repacker::ProgressFn on_batch;
  if (progress) {
    on_batch = [&](const Store::RepackJobRecord& job) {
      RepackStatus st;
      st.workspace = env.workspace;
      st.environment = env.name;
      FillFromJob(job, &st);
      progress(st);
    };
  }
  EKM_RETURN_IF_ERROR(repacker().Run(env.workspace, env.name, nullptr, on_batch).status());
  keys_.ForgetEnvironment(env.workspace, env.name);
  PostNotice(kNoticeEnvironmentChanged, &env);
  return GetRepackStatus(ctx, workspace, environment);
}

void EkmServiceImpl::StartRepackRunner() {
  std::lock_guard<std::mutex> lock(repack_mu_);
  if (!repack_runner_) {
    RepackRunner::Options o;
    o.lease_holder = lease_holder_;
    o.clock = options_.clock;
    repack_runner_ = std::make_unique<RepackRunner>(&repacker(), store_.get(), o);
  }
  repack_runner_->Start();
}

void EkmServiceImpl::StopRepackRunner() {
  std::lock_guard<std::mutex> lock(repack_mu_);
  if (repack_runner_) repack_runner_->Stop();
}

void EkmServiceImpl::FillFromJob(const Store::RepackJobRecord& job, RepackStatus* st) {
  st->state = job.state;
  st->target_ek_version = job.target_ek_version;
  st->done = job.done;
  st->total = std::max(job.total, job.done);
  st->started_at_ms = job.started_at_ms;
  st->updated_at_ms = job.updated_at_ms;
  st->finished_at_ms = job.finished_at_ms;
  st->retry_at_ms = job.retry_at_ms;
  st->last_error = job.last_error;
  if (job.state == "finished") {
    int64_t ms = job.finished_at_ms.value_or(job.updated_at_ms) - job.started_at_ms;
    st->rate = ms > 0 ? double(job.done) * 1000.0 / double(ms) : 0;
    return;
  }
  int64_t ms = job.updated_at_ms - job.run_started_at_ms;
  uint64_t moved = job.done - std::min(job.done, job.run_started_done);
  st->rate = ms > 0 ? double(moved) * 1000.0 / double(ms) : 0;
  if (st->rate > 0) st->eta_seconds = double(st->total - st->done) / st->rate;
}

Repacker& EkmServiceImpl::repacker() {
  std::call_once(repacker_once_, [this] {
    RepackOptions o;
    o.batch_size = options_.repack_batch_size;
    repacker_ = std::make_unique<Repacker>(store_.get(), &keys_, options_.clock, o);
  });
  return *repacker_;
}

}  // namespace ekm
