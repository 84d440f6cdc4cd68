#include "ekm/api/resource_json.h"

#include "ekm/base/json_text.h"

namespace ekm {

using nlohmann::json;

json WorkspaceInfoToJson(const WorkspaceInfo& w) {
  return {{"name", w.name}, {"created_at", JsonTime(w.created_at)}};
}

WorkspaceInfo WorkspaceInfoFromJson(const json& j) {
  return WorkspaceInfo{j.value("name", ""), JsonTimeSeconds(j, "created_at")};
}

json EnvironmentInfoToJson(const EnvironmentInfo& e) {
  return {{"workspace", e.workspace},
          {"name", e.name},
          {"created_at", JsonTime(e.created_at)},
          {"cmk", {{"provider", e.cmk_provider}, {"key_id", e.cmk_key_id}}},
          {"ek_version", e.ek_version}};
}

EnvironmentInfo EnvironmentInfoFromJson(const json& j) {
  EnvironmentInfo e;
  e.workspace = j.value("workspace", "");
  e.name = j.value("name", "");
  e.created_at = JsonTimeSeconds(j, "created_at");
  if (j.contains("cmk") && j["cmk"].is_object()) {
    e.cmk_provider = j["cmk"].value("provider", "");
    e.cmk_key_id = j["cmk"].value("key_id", "");
  }
  e.ek_version = j.value("ek_version", 0u);
  return e;
}

json ApiTokenInfoToJson(const ApiTokenInfo& t, int64_t now) {
  json j = {{"id", t.id},
            {"role", t.role},
            {"workspace", t.workspace},
            {"environments", t.environments},
            {"description", t.description},
            {"created_at", JsonTime(t.created_at)},
            {"created_by", t.created_by},
            {"expires_at", JsonTimeOrNull(t.expires_at)},
            {"revoked_at", JsonTimeOrNull(t.revoked_at)}};
  j["state"] = t.revoked_at != 0                          ? "revoked"
               : t.expires_at != 0 && now >= t.expires_at ? "expired"
                                                          : "active";
  return j;
}

ApiTokenInfo ApiTokenInfoFromJson(const json& j) {
  ApiTokenInfo t;
  t.id = j.value("id", "");
  t.role = j.value("role", "");
  t.workspace = j.value("workspace", "");
  if (j.contains("environments") && j["environments"].is_array()) {
    for (const auto& e : j["environments"]) {
      if (e.is_string()) t.environments.push_back(e.get<std::string>());
    }
  }
  t.description = j.value("description", "");
  t.created_at = JsonTimeSeconds(j, "created_at");
  t.created_by = j.value("created_by", "");
  t.expires_at = JsonTimeSeconds(j, "expires_at");
  t.revoked_at = JsonTimeSeconds(j, "revoked_at");
  return t;
}

json CallerTokenToJson(const ApiTokenInfo& t) {
  return {{"id", t.id},
          {"role", t.role},
          {"workspace", t.workspace},
          {"environments", t.environments},
          {"expires_at", JsonTimeOrNull(t.expires_at)}};
}

}  // namespace ekm
