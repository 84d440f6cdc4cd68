#include <algorithm>
#include <array>

#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {

// One setting with its bounds, and its value in a change (absent: not changed).
struct SettingField {
  std::string_view name;
  const std::optional<int64_t>& value;
  int64_t min, max;
};

std::array<SettingField, 5> SettingFields(const EnvironmentSettings& set) {
  return {{
      {kSettingKeyCacheTtl, set.key_cache_ttl_seconds, 1, 86400},
      {kSettingGracePeriod, set.grace_period_seconds, 0, 7 * 86400},
      {kSettingEkRotationPeriod, set.ek_rotation_period_seconds, 3600, 10LL * 365 * 86400},
      {kSettingDkRotationPeriod, set.dk_rotation_period_seconds, 3600, 10LL * 365 * 86400},
      {kSettingReplacementPeriod, set.replacement_period_seconds, kMinReplacementPeriod.count(),
       365LL * 86400},
  }};
}

// Every value in its bounds and every name to reset a setting's.
Status CheckSettingsChange(const EnvironmentSettings& set, const std::vector<std::string>& reset) {
  const std::array<SettingField, 5> fields = SettingFields(set);
  if (set.replacement_period_seconds &&
      *set.replacement_period_seconds < kMinReplacementPeriod.count()) {
    const std::string floor = std::to_string(kMinReplacementPeriod.count() / 3600) + " h";
    return InvalidArgumentError(
        "replacement_period_seconds must be at least " +
            std::to_string(kMinReplacementPeriod.count()) + " seconds (" + floor + "), got " +
            std::to_string(*set.replacement_period_seconds) +
            ": a shorter period would let the customer main key be replaced again and again",
        "pick " + floor +
            " or more (the default is 24 h); to replace a compromised key "
            "inside the period, an owner makes an emergency replacement (`ekm key set … "
            "--emergency --reason TEXT`)");
  }
  for (const SettingField& f : fields) {
    if (f.value && (*f.value < f.min || *f.value > f.max)) {
      return InvalidArgumentError(std::string(f.name) + " must be between " +
                                      std::to_string(f.min) + " and " + std::to_string(f.max) +
                                      " seconds, got " + std::to_string(*f.value),
                                  "pick a value in that range");
    }
  }
  for (const std::string& name : reset) {
    bool known = false;
    for (const SettingField& f : fields) known = known || f.name == name;
    if (!known) {
      return InvalidArgumentError("no environment setting is called \"" + name + "\"",
                                  "settings: key_cache_ttl_seconds, grace_period_seconds, "
                                  "ek_rotation_period_seconds, dk_rotation_period_seconds, "
                                  "replacement_period_seconds");
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<EnvironmentSettings> EkmServiceImpl::GetEnvironmentSettings(const CallContext& /*ctx*/,
                                                                     std::string_view workspace,
                                                                     std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(auto stored, store_->GetEnvironmentSettings(env.id));
  return SettingsFromMap(stored);
}

StatusOr<EnvironmentSettings> EkmServiceImpl::UpdateEnvironmentSettings(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const EnvironmentSettings& set, const std::vector<std::string>& reset) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  // Check everything before changing anything.
  EKM_RETURN_IF_ERROR(CheckSettingsChange(set, reset));
  nlohmann::json changed = nlohmann::json::object();
  const bool period_changes =
      set.replacement_period_seconds ||
      std::find(reset.begin(), reset.end(), kSettingReplacementPeriod) != reset.end();
  // The period running since the last CMK change keeps its end: a shorter period applies
  // only after it (a longer one at once).
  Store::SettingChanges changes;
  if (period_changes) EKM_RETURN_IF_ERROR(KeepRunningReplacementPeriod(env, &changes));
  for (const SettingField& f : SettingFields(set)) {
    if (!f.value) continue;
    changes.emplace_back(std::string(f.name), *f.value);
    changed[std::string(f.name)] = *f.value;
  }
  for (const std::string& name : reset) {
    changes.emplace_back(name, std::nullopt);
    changed[name] = nullptr;
  }
  // All of it in one transaction: a failure leaves every setting as it was.
  EKM_RETURN_IF_ERROR(store_->SetEnvironmentSettings(env.id, changes));
  if (period_changes) {
    EKM_ASSIGN_OR_RETURN(int64_t next, NextReplacementAllowedAt(env));
    if (next > ToUnixSeconds(options_.clock->Now())) {
      changed["next_replacement_allowed_at"] = FormatRfc3339(FromUnixSeconds(next));
    }
  }
  RecordEvent(ctx, env.workspace, env.name, event::kEnvironmentSettingsChanged, changed);
  OnEnvironmentSettingsChanged(env);
  return GetEnvironmentSettings(ctx, workspace, environment);
}

StatusOr<EnvironmentKeyStatus> EkmServiceImpl::KeyStatus(const CallContext& /*ctx*/,
                                                         std::string_view workspace,
                                                         std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                       store_->GetEnvironmentKey(env.id, env.current_ek_version));
  EnvironmentKeyStatus st;
  st.workspace = env.workspace;
  st.environment = env.name;
  st.cmk_provider = ek.cmk_provider;
  st.cmk_key_id = ek.cmk_key_id;
  // The stored row is what every node last saw; this process's own view may be newer.
  EKM_ASSIGN_OR_RETURN(auto row, store_->GetEnvironmentKeyStatus(env.id));
  if (row) {
    st.state = row->state;
    st.since = row->since;
    st.last_success = row->last_success;
    st.error_code = row->error_code;
    st.provider_code = row->provider_code;
    st.message = row->message;
    st.hint = row->hint;
    st.next_retry = row->state == "healthy" ? 0 : row->next_retry;
    // Healthy again since `since`: the stored error is what happened before.
    if (row->state == "healthy" && !row->error_code.empty()) {
      st.error_resolved_at = row->since;
    }
  }
  st.retryable = st.state == "degraded";
  EKM_ASSIGN_OR_RETURN(KeyHierarchy::EnvironmentCachePolicy policy, keys_.CachePolicy(env.id));
  st.key_cache_ttl_seconds = policy.ttl.count();
  st.grace_period_seconds = policy.grace.count();
  return st;
}

Status EkmServiceImpl::CheckStore() {
  // One indexed lookup of a name that cannot exist: "not found" is the store answering.
  auto probe = store_->GetWorkspace("-readyz-probe-");
  if (probe.ok() || probe.status().code() == StatusCode::kNotFound) return Status::Ok();
  return probe.status();
}

StatusOr<KeyCacheStats> EkmServiceImpl::KeyCacheStatistics(const CallContext& /*ctx*/) {
  KeyHierarchy::Counters c = keys_.counters();
  KeyCacheStats s;
  s.entries = c.entries;
  s.ek_entries = c.ek_entries;
  s.dk_entries = c.dk_entries;
  s.max_entries = keys_.max_cached_keys();
  s.hits = c.hits;
  s.misses = c.misses;
  s.provider_ok = c.provider_ok;
  s.provider_refused = c.provider_refused;
  s.provider_unavailable = c.provider_unavailable;
  s.provider_error = c.provider_error;
  s.ttl_seconds = keys_.default_ttl().count();
  s.node = options_.node_name;
  return s;
}

void EkmServiceImpl::StartPurgingExpiredKeys(std::chrono::milliseconds interval) {
  keys_.StartPurging(interval);
}

EnvironmentSettings EkmServiceImpl::SettingsFromMap(const std::map<std::string, int64_t>& m) {
  auto get = [&](std::string_view name) -> std::optional<int64_t> {
    auto it = m.find(std::string(name));
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
  EnvironmentSettings s;
  s.key_cache_ttl_seconds = get(kSettingKeyCacheTtl);
  s.grace_period_seconds = get(kSettingGracePeriod);
  s.ek_rotation_period_seconds = get(kSettingEkRotationPeriod);
  s.dk_rotation_period_seconds = get(kSettingDkRotationPeriod);
  s.replacement_period_seconds = get(kSettingReplacementPeriod);
  return s;
}

void EkmServiceImpl::OnEnvironmentSettingsChanged(const EnvironmentRecord& env) {
  keys_.ForgetEnvironment(env.workspace, env.name);
  keys_.ForgetEnvironmentSettings(env.id);  // TTL and grace period
  PostNotice(kNoticeEnvironmentChanged, &env);
}

}  // namespace ekm
