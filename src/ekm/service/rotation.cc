#include <spdlog/spdlog.h>

#include "ekm/service/ekm_service_impl.h"

namespace ekm {

StatusOr<RotationResult> EkmServiceImpl::RotateEnvironmentKey(const CallContext& ctx,
                                                              std::string_view workspace,
                                                              std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  return RotateEk(ctx, env);
}

StatusOr<std::vector<RotationResult>> EkmServiceImpl::RotateDataKeys(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<std::string>& scopes, bool all_scopes) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  if (all_scopes == !scopes.empty()) {
    return InvalidArgumentError("name the scopes to rotate, or ask for all of them",
                                "pass --scope S (repeatable) or --all-scopes, not both");
  }
  for (const std::string& scope : scopes) EKM_RETURN_IF_ERROR(ValidateScope(scope));
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  std::vector<std::string> todo = scopes;
  if (all_scopes) {
    EKM_ASSIGN_OR_RETURN(std::vector<DataKeyRecord> latest, store_->ListLatestDataKeys(env.id));
    for (const auto& dk : latest) todo.push_back(dk.scope);
  }
  std::vector<RotationResult> out;
  for (const std::string& scope : todo) {
    EKM_ASSIGN_OR_RETURN(RotationResult r, RotateDk(ctx, env, scope));
    out.push_back(std::move(r));
  }
  return out;
}

StatusOr<ScheduledRotationReport> EkmServiceImpl::RunScheduledRotations(const CallContext& ctx) {
  ScheduledRotationReport report;
  // One process of several on the store runs the schedule; the others find the lease held.
  // Held for the run and a minute beyond: a replica that dies mid-run is replaced by then.
  if (!HoldJobLease("rotation-schedule", std::chrono::minutes(1))) return report;
  EKM_ASSIGN_OR_RETURN(std::vector<Store::RotationScheduleRecord> schedules,
                       store_->ListRotationSchedules());
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  for (const auto& sched : schedules) {
    EnvironmentRecord env = sched.environment;
    const std::string name = env.workspace + "/" + env.name;
    if (sched.ek_rotation_period_seconds &&
        now - sched.current_ek_created_at >= *sched.ek_rotation_period_seconds) {
      auto r = RotateEk(ctx, env);
      if (!r.ok()) {
        report.failures.push_back(name + ": " + r.status().ToString());
        continue;
      }
      report.rotated.push_back(*r);
      env.current_ek_version = r->to_version;  // new DKs below go under the new EK
    }
    if (!sched.dk_rotation_period_seconds) continue;
    auto latest = store_->ListLatestDataKeys(env.id);
    if (!latest.ok()) {
      report.failures.push_back(name + ": " + latest.status().ToString());
      continue;
    }
    for (const DataKeyRecord& dk : *latest) {
      if (now - dk.created_at < *sched.dk_rotation_period_seconds) continue;
      auto r = RotateDk(ctx, env, dk.scope);
      if (!r.ok()) {
        report.failures.push_back(name + " scope " + dk.scope + ": " + r.status().ToString());
        continue;
      }
      report.rotated.push_back(*r);
    }
  }
  for (const auto& f : report.failures) spdlog::warn("scheduled rotation failed: {}", f);
  return report;
}

Status EkmServiceImpl::ProviderRefusal(const Status& s) {
  if (s.code() == StatusCode::kPermissionDenied || s.code() == StatusCode::kUnauthenticated) {
    return FailedPreconditionError(s.message(), s.hint());
  }
  return s;
}

StatusOr<RotationResult> EkmServiceImpl::RotateEk(const CallContext& ctx, EnvironmentRecord env) {
  EnvironmentKeyRecord current;
  EnvironmentKeyRecord rec;
  CmkRef cmk;
  // Another rotation (a thread, another node, the CLI) may store the next version first: a
  // routine rotation then wraps the version after it, a few times, rather than fail.
  for (int attempt = 0;; ++attempt) {
    EKM_ASSIGN_OR_RETURN(current, store_->GetEnvironmentKey(env.id, env.current_ek_version));
    cmk = CmkRef{current.cmk_provider, current.cmk_key_id};
    auto ek = keys_.NewEnvironmentKey(env.workspace, env.name, cmk, env.current_ek_version + 1);
    if (!ek.ok()) {
      return ProviderRefusal(ek.status().WithContext(
          "rotating the environment key of " + env.workspace + "/" + env.name + ": the CMK (" +
          cmk.provider + " " + cmk.key_id + ") could not wrap a new version"));
    }
    rec = std::move(ek).value();
    rec.environment_id = env.id;
    Status added = store_->AddEnvironmentKey(rec);
    if (added.ok()) break;
    if (added.code() != StatusCode::kFailedPrecondition || attempt >= 3) return added;
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord fresh, StoredEnvironment(env.workspace, env.name));
    // Only another rotation under the same CMK is retried: a CMK change is not ours to follow.
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord now_current,
                         store_->GetEnvironmentKey(fresh.id, fresh.current_ek_version));
    if (now_current.cmk_provider != cmk.provider || now_current.cmk_key_id != cmk.key_id) {
      return added;
    }
    env = std::move(fresh);
  }
  keys_.ForgetEnvironment(env.workspace, env.name);
  PostNotice(kNoticeEnvironmentChanged, &env);
  RecordEvent(ctx, env.workspace, env.name, event::kEnvironmentKeyRotated,
              {{"cmk", {{"provider", cmk.provider}, {"key_id", cmk.key_id}}},
               {"from_version", env.current_ek_version},
               {"to_version", rec.version}});
  return RotationResult{env.workspace, env.name, "ek", "", env.current_ek_version, rec.version};
}

StatusOr<RotationResult> EkmServiceImpl::RotateDk(const CallContext& ctx,
                                                  const EnvironmentRecord& env,
                                                  const std::string& scope) {
  EKM_ASSIGN_OR_RETURN(std::optional<DataKeyRecord> latest,
                       store_->GetLatestDataKey(env.id, scope));
  const uint32_t from = latest ? latest->version : 0;
  auto dk = keys_.RotateDataKey(env, scope, from);
  if (!dk.ok()) return ProviderRefusal(dk.status());
  PostNotice(kNoticeDataKeysRotated, &env);  // the others encrypt under the new version at once
  RecordEvent(ctx, env.workspace, env.name, event::kDataKeyRotated,
              {{"scope", scope},
               {"from_version", from},
               {"to_version", (*dk)->version},
               {"ek_version", (*dk)->ek_version}});
  return RotationResult{env.workspace, env.name, "dk", scope, from, (*dk)->version};
}

StatusOr<ScopeList> EkmServiceImpl::ListScopes(const CallContext& /*ctx*/,
                                               std::string_view workspace,
                                               std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(std::vector<DataKeyRecord> latest, store_->ListLatestDataKeys(env.id));
  ScopeList list;
  list.workspace = env.workspace;
  list.environment = env.name;
  list.max_messages_per_dk = options_.max_messages_per_dk;
  list.scopes.reserve(latest.size());
  for (const DataKeyRecord& dk : latest) {
    list.scopes.push_back(
        {dk.scope, dk.version, dk.ek_version, dk.created_at, dk.messages_reserved});
  }
  return list;
}

}  // namespace ekm
