#include "ekm/api/key_status_json.h"

#include <ctime>

#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"

namespace ekm {

namespace {

using nlohmann::json;

std::string Str(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

template <typename T>
T Num(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number() ? it->get<T>() : T{};
}

}  // namespace

json EnvironmentKeyStatusToJson(const EnvironmentKeyStatus& s) {
  json j = {{"workspace", s.workspace},
            {"environment", s.environment},
            {"cmk", {{"provider", s.cmk_provider}, {"key_id", s.cmk_key_id}}},
            {"state", s.state},
            {"since", JsonTimeOrNull(s.since)},
            {"last_success", JsonTimeOrNull(s.last_success)},
            {"retryable", s.retryable},
            {"next_retry", JsonTimeOrNull(s.next_retry)},
            {"key_cache_ttl_seconds", s.key_cache_ttl_seconds},
            {"grace_period_seconds", s.grace_period_seconds}};
  if (!s.error_code.empty()) {
    j["last_error"] = {{"code", s.error_code},
                       {"provider_code", s.provider_code},
                       {"message", s.message},
                       {"hint", s.hint},
                       {"resolved_at", JsonTimeOrNull(s.error_resolved_at)}};
  } else {
    j["last_error"] = nullptr;
  }
  return j;
}

EnvironmentKeyStatus EnvironmentKeyStatusFromJson(const json& j) {
  EnvironmentKeyStatus s;
  s.workspace = Str(j, "workspace");
  s.environment = Str(j, "environment");
  if (auto c = j.find("cmk"); c != j.end() && c->is_object()) {
    s.cmk_provider = Str(*c, "provider");
    s.cmk_key_id = Str(*c, "key_id");
  }
  s.state = Str(j, "state");
  s.since = JsonTimeSeconds(j, "since");
  s.last_success = JsonTimeSeconds(j, "last_success");
  s.retryable = j.value("retryable", false);
  s.next_retry = JsonTimeSeconds(j, "next_retry");
  s.key_cache_ttl_seconds = Num<int64_t>(j, "key_cache_ttl_seconds");
  s.grace_period_seconds = Num<int64_t>(j, "grace_period_seconds");
  if (auto e = j.find("last_error"); e != j.end() && e->is_object()) {
    s.error_code = Str(*e, "code");
    s.provider_code = Str(*e, "provider_code");
    s.message = Str(*e, "message");
    s.hint = Str(*e, "hint");
    s.error_resolved_at = JsonTimeSeconds(*e, "resolved_at");
  }
  return s;
}

json KeyCacheStatsToJson(const KeyCacheStats& s) {
  return {{"entries", s.entries},
          {"ek_entries", s.ek_entries},
          {"dk_entries", s.dk_entries},
          {"max_entries", s.max_entries},
          {"hits", s.hits},
          {"misses", s.misses},
          {"provider_calls",
           {{"ok", s.provider_ok},
            {"refused", s.provider_refused},
            {"unavailable", s.provider_unavailable},
            {"error", s.provider_error}}},
          {"ttl_seconds", s.ttl_seconds},
          {"node", s.node}};
}

KeyCacheStats KeyCacheStatsFromJson(const json& j) {
  KeyCacheStats s;
  s.entries = Num<uint64_t>(j, "entries");
  s.ek_entries = Num<uint64_t>(j, "ek_entries");
  s.dk_entries = Num<uint64_t>(j, "dk_entries");
  s.max_entries = Num<uint64_t>(j, "max_entries");
  s.hits = Num<uint64_t>(j, "hits");
  s.misses = Num<uint64_t>(j, "misses");
  if (auto p = j.find("provider_calls"); p != j.end() && p->is_object()) {
    s.provider_ok = Num<uint64_t>(*p, "ok");
    s.provider_refused = Num<uint64_t>(*p, "refused");
    s.provider_unavailable = Num<uint64_t>(*p, "unavailable");
    s.provider_error = Num<uint64_t>(*p, "error");
  }
  s.ttl_seconds = Num<int64_t>(j, "ttl_seconds");
  s.node = Str(j, "node");
  return s;
}

}  // namespace ekm
