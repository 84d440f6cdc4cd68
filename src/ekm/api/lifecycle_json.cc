#include "ekm/api/lifecycle_json.h"

#include <ctime>
#include <utility>

#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/json_text.h"

namespace ekm {

namespace {

using nlohmann::json;

int64_t TimeBack(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return 0;
  auto ms = ParseTimeMs(it->get<std::string>(), 0);
  return ms.ok() ? *ms / 1000 : 0;
}

struct SettingField {
  std::string_view name;
  std::optional<int64_t> EnvironmentSettings::*field;
};
constexpr SettingField kSettingFields[] = {
    {kSettingKeyCacheTtl, &EnvironmentSettings::key_cache_ttl_seconds},
    {kSettingGracePeriod, &EnvironmentSettings::grace_period_seconds},
    {kSettingEkRotationPeriod, &EnvironmentSettings::ek_rotation_period_seconds},
    {kSettingDkRotationPeriod, &EnvironmentSettings::dk_rotation_period_seconds},
    {kSettingReplacementPeriod, &EnvironmentSettings::replacement_period_seconds},
};

}  // namespace

json RotationResultToJson(const RotationResult& r) {
  json j = {{"workspace", r.workspace},
            {"environment", r.environment},
            {"kind", r.kind},
            {"from_version", r.from_version},
            {"to_version", r.to_version}};
  if (!r.scope.empty()) j["scope"] = r.scope;
  return j;
}

RotationResult RotationResultFromJson(const json& j) {
  return RotationResult{j.value("workspace", ""),    j.value("environment", ""),
                        j.value("kind", ""),         j.value("scope", ""),
                        j.value("from_version", 0u), j.value("to_version", 0u)};
}

json ShredConfirmationToJson(const ShredConfirmation& c) {
  return {{"workspace", c.workspace},
          {"environment", c.environment},
          {"confirmation", c.token},
          {"expires_at", JsonTime(c.expires_at)}};
}

ShredConfirmation ShredConfirmationFromJson(const json& j) {
  return ShredConfirmation{j.value("workspace", ""), j.value("environment", ""),
                           j.value("confirmation", ""), TimeBack(j, "expires_at")};
}

json ShredResultToJson(const ShredResult& r) {
  return {{"workspace", r.workspace},
          {"environment", r.environment},
          {"shredded_at", JsonTime(r.shredded_at)},
          {"actor", r.actor},
          {"ek_versions_destroyed", r.ek_versions_destroyed},
          {"dk_versions_destroyed", r.dk_versions_destroyed}};
}

ShredResult ShredResultFromJson(const json& j) {
  return ShredResult{j.value("workspace", ""),
                     j.value("environment", ""),
                     TimeBack(j, "shredded_at"),
                     j.value("actor", ""),
                     j.value("ek_versions_destroyed", 0u),
                     j.value("dk_versions_destroyed", 0u)};
}

json WorkspaceDefaultKeyToJson(const WorkspaceDefaultKey& k) {
  json j = {{"workspace", k.workspace},
            {"set", k.set},
            {"cmk", {{"provider", k.provider}, {"key_id", k.key_id}}}};
  if (k.set) {
    j["set_at"] = JsonTime(k.set_at);
    j["actor"] = k.actor;
  }
  return j;
}

WorkspaceDefaultKey WorkspaceDefaultKeyFromJson(const json& j) {
  WorkspaceDefaultKey k;
  k.workspace = j.value("workspace", "");
  k.set = j.value("set", false);
  if (auto c = j.find("cmk"); c != j.end() && c->is_object()) {
    k.provider = c->value("provider", "");
    k.key_id = c->value("key_id", "");
  }
  k.set_at = TimeBack(j, "set_at");
  k.actor = j.value("actor", "");
  return k;
}

json EnvironmentSettingsToJson(const EnvironmentSettings& s) {
  json j = json::object();
  for (const auto& f : kSettingFields) {
    const auto& v = s.*(f.field);
    j[std::string(f.name)] = v ? json(*v) : json(nullptr);
  }
  return j;
}

EnvironmentSettings EnvironmentSettingsFromJson(const json& j) {
  EnvironmentSettings s;
  for (const auto& f : kSettingFields) {
    auto it = j.find(std::string(f.name));
    if (it != j.end() && it->is_number_integer()) s.*(f.field) = it->get<int64_t>();
  }
  return s;
}

Status EnvironmentSettingsPatchFromJson(const json& j, EnvironmentSettings* set,
                                        std::vector<std::string>* reset) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const SettingField* field = nullptr;
    for (const auto& f : kSettingFields) {
      if (f.name == it.key()) field = &f;
    }
    if (field == nullptr) {
      return InvalidArgumentError("no environment setting is called " + QuotedExcerpt(it.key()),
                                  "settings: key_cache_ttl_seconds, grace_period_seconds, "
                                  "ek_rotation_period_seconds, dk_rotation_period_seconds, "
                                  "replacement_period_seconds");
    }
    if (it->is_null()) {
      reset->push_back(it.key());
    } else if (it->is_number_integer()) {
      set->*(field->field) = it->get<int64_t>();
    } else {
      return InvalidArgumentError("field \"" + it.key() +
                                      "\" must be a whole number of seconds "
                                      "or null, got " +
                                      std::string(it->type_name()),
                                  "null goes back to the deployment default");
    }
  }
  return Status::Ok();
}

json LifecycleEventInfoToJson(const LifecycleEventInfo& e) {
  json detail = json::parse(e.detail, nullptr, false);
  if (detail.is_discarded()) detail = json::object();
  return {{"id", e.id},
          {"at", FormatRfc3339(
                     std::chrono::system_clock::time_point(std::chrono::milliseconds(e.at_ms)))},
          {"at_ms", e.at_ms},
          {"workspace", e.workspace},
          {"environment", e.environment},
          {"type", e.type},
          {"actor", e.actor},
          {"detail", detail}};
}

LifecycleEventInfo LifecycleEventInfoFromJson(const json& j) {
  LifecycleEventInfo e;
  e.id = j.value("id", int64_t{0});
  e.at_ms = j.value("at_ms", int64_t{0});
  e.workspace = j.value("workspace", "");
  e.environment = j.value("environment", "");
  e.type = j.value("type", "");
  e.actor = j.value("actor", "");
  auto d = j.find("detail");
  e.detail = d != j.end() ? d->dump() : "{}";
  return e;
}

LifecycleEventRecord AuditRecordFromJson(const json& e) {
  LifecycleEventInfo info = LifecycleEventInfoFromJson(e);
  LifecycleEventRecord r;
  r.id = info.id;
  r.at_ms = info.at_ms;
  r.workspace = std::move(info.workspace);
  r.environment = std::move(info.environment);
  r.type = std::move(info.type);
  r.actor = std::move(info.actor);
  r.detail = std::move(info.detail);
  r.chain = e.value("chain", "");
  r.seq = e.value("seq", int64_t{0});
  auto prev = HexDecode(e.value("prev_hash", ""));
  auto hash = HexDecode(e.value("hash", ""));
  if (prev.ok()) r.prev_hash = std::move(*prev);
  if (hash.ok()) r.hash = std::move(*hash);
  return r;
}

namespace {

// `"text"` followed by `rest` (QuotedExcerpt: at most 64 bytes of the text). Appended rather
// than `"\"" + std::string(text) + …`: GCC 12 at -O3 misreports that temporary (-Wrestrict).
std::string QuotedThen(std::string_view text, std::string_view rest) {
  std::string out = QuotedExcerpt(text);
  out.append(rest);
  return out;
}

}  // namespace

StatusOr<int64_t> ParseDurationSeconds(std::string_view text) {
  const std::string_view given = text;  // quoted whole in the error, unit and all
  auto bad = [given] {
    return InvalidArgumentError(QuotedThen(given, " is not a duration"),
                                "write a whole number with a unit: 300s, 5m, 24h, 90d");
  };
  if (text.empty()) return bad();
  int64_t unit = 1;
  constexpr std::pair<char, int64_t> kUnits[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
  for (const auto& [suffix, seconds] : kUnits) {
    if (text.back() == suffix) {
      unit = seconds;
      text.remove_suffix(1);
      break;
    }
  }
  if (text.empty() || text.size() > 12) return bad();
  int64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return bad();
    n = n * 10 + (c - '0');
  }
  return n * unit;
}

std::string FormatDuration(int64_t s) {
  if (s > 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s > 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s > 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

StatusOr<int64_t> ParseTimeMs(std::string_view text, int64_t now_ms) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos &&
      text.size() <= 12) {
    return std::stoll(std::string(text)) * 1000;
  }
  if (text.find('-') != std::string_view::npos) {
    // Only a date has a '-': its own error says what is wrong with it.
    auto t = ParseRfc3339(text);
    if (!t.ok()) return t.status();
    return ToUnixSeconds(*t) * 1000;
  }
  auto d = ParseDurationSeconds(text);
  if (d.ok() && !text.empty() && (text.back() < '0' || text.back() > '9')) {
    // Up to 12 digits of days is 8.6e16 s: checked before it is made milliseconds.
    if (*d > now_ms / 1000) {
      return InvalidArgumentError(QuotedThen(text, " before now is before 1970"),
                                  "use a shorter duration, e.g. 7d, or an RFC 3339 time");
    }
    return now_ms - *d * 1000;
  }
  return InvalidArgumentError(QuotedThen(text, " is not a time"),
                              "write RFC 3339 UTC (2026-11-25T10:00:00Z), unix seconds, or a "
                              "duration before now (24h, 7d)");
}

nlohmann::json ScopeInfoToJson(const ScopeInfo& s) {
  return {{"scope", s.scope},
          {"dk_version", s.dk_version},
          {"ek_version", s.ek_version},
          {"created_at", JsonTime(s.created_at)},
          {"messages_reserved", s.messages_reserved}};
}

ScopeInfo ScopeInfoFromJson(const nlohmann::json& j) {
  ScopeInfo s;
  s.scope = j.value("scope", "");
  s.dk_version = j.value("dk_version", uint32_t{0});
  s.ek_version = j.value("ek_version", uint32_t{0});
  s.created_at = JsonTimeSeconds(j, "created_at");
  s.messages_reserved = j.value("messages_reserved", uint64_t{0});
  return s;
}

}  // namespace ekm
