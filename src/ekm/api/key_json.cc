#include "ekm/api/key_json.h"

#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"

namespace ekm {

namespace {

using json = nlohmann::json;

std::string Str(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json DescriptionToJson(const CmkDescription& d) {
  json j = {{"provider", d.provider},
            {"key_id", d.key_id},
            {"state", d.provider_state},
            {"key_state", std::string(CmkKeyStateName(d.state))},
            {"rotation", std::string(CmkRotationName(d.rotation))},
            {"describe_permitted", d.describe_permitted},
            {"notes", d.notes}};
  if (!d.region.empty()) j["region"] = d.region;
  if (!d.key_spec.empty()) j["key_spec"] = d.key_spec;
  if (!d.key_usage.empty()) j["key_usage"] = d.key_usage;
  if (!d.resolved_key_id.empty()) j["resolved_key_id"] = d.resolved_key_id;
  if (!d.generation.empty()) j["generation"] = d.generation;
  if (!d.detail.empty()) j["detail"] = d.detail;
  if (!d.rotation_advice.empty()) j["rotation_advice"] = d.rotation_advice;
  return j;
}

CmkDescription DescriptionFromJson(const json& j) {
  CmkDescription d;
  d.provider = Str(j, "provider");
  d.key_id = Str(j, "key_id");
  d.provider_state = Str(j, "state");
  const std::string state = Str(j, "key_state");
  for (CmkKeyState s : {CmkKeyState::kEnabled, CmkKeyState::kDisabled,
                        CmkKeyState::kPendingDeletion, CmkKeyState::kDestroyed}) {
    if (state == CmkKeyStateName(s)) d.state = s;
  }
  std::string r = Str(j, "rotation");
  d.rotation = r == "enabled"    ? CmkRotation::kEnabled
               : r == "disabled" ? CmkRotation::kDisabled
                                 : CmkRotation::kUnknown;
  d.describe_permitted = j.value("describe_permitted", false);
  if (j.contains("notes") && j["notes"].is_array()) {
    for (const auto& n : j["notes"]) {
      if (n.is_string()) d.notes.push_back(n.get<std::string>());
    }
  }
  d.region = Str(j, "region");
  d.key_spec = Str(j, "key_spec");
  d.key_usage = Str(j, "key_usage");
  d.resolved_key_id = Str(j, "resolved_key_id");
  d.generation = Str(j, "generation");
  d.detail = Str(j, "detail");
  d.rotation_advice = Str(j, "rotation_advice");
  return d;
}

}  // namespace

std::string_view CmkRotationName(CmkRotation r) {
  switch (r) {
    case CmkRotation::kEnabled:
      return "enabled";
    case CmkRotation::kDisabled:
      return "disabled";
    case CmkRotation::kUnknown:
      break;
  }
  return "unknown";
}

json KeyValidationToJson(const KeyValidation& v) {
  json checks = json::array();
  for (const auto& c : v.checks) {
    checks.push_back({{"name", c.name}, {"outcome", c.outcome}, {"detail", c.detail}});
  }
  json j = {{"provider", v.provider},
            {"key_id", v.key_id},
            {"checked_at", JsonTimeOrEmpty(v.checked_at)},
            {"ok", v.ok},
            {"checks", checks}};
  if (!v.ok) {
    j["error"] = {{"code", v.error_code},
                  {"provider_code", v.provider_code},
                  {"message", v.message},
                  {"hint", v.hint}};
  }
  return j;
}

KeyValidation KeyValidationFromJson(const json& j) {
  KeyValidation v;
  v.provider = Str(j, "provider");
  v.key_id = Str(j, "key_id");
  v.checked_at = JsonTimeSeconds(j, "checked_at");
  v.ok = j.value("ok", false);
  if (j.contains("checks") && j["checks"].is_array()) {
    for (const auto& c : j["checks"]) {
      if (c.is_object()) v.checks.push_back({Str(c, "name"), Str(c, "outcome"), Str(c, "detail")});
    }
  }
  if (j.contains("error") && j["error"].is_object()) {
    const json& e = j["error"];
    v.error_code = Str(e, "code");
    v.provider_code = Str(e, "provider_code");
    v.message = Str(e, "message");
    v.hint = Str(e, "hint");
  }
  return v;
}

json CustomerKeyInfoToJson(const CustomerKeyInfo& info) {
  json j = {{"workspace", info.workspace},
            {"environment", info.environment},
            {"cmk", {{"provider", info.provider}, {"key_id", info.key_id}}},
            {"ek_version", info.ek_version}};
  if (info.description) j["description"] = DescriptionToJson(*info.description);
  if (!info.description_error.empty()) j["description_error"] = info.description_error;
  j["last_validation"] = info.last_validation ? KeyValidationToJson(*info.last_validation) : json();
  return j;
}

CustomerKeyInfo CustomerKeyInfoFromJson(const json& j) {
  CustomerKeyInfo info;
  info.workspace = Str(j, "workspace");
  info.environment = Str(j, "environment");
  if (j.contains("cmk") && j["cmk"].is_object()) {
    info.provider = Str(j["cmk"], "provider");
    info.key_id = Str(j["cmk"], "key_id");
  }
  info.ek_version = j.value("ek_version", 0u);
  if (j.contains("description") && j["description"].is_object()) {
    info.description = DescriptionFromJson(j["description"]);
  }
  info.description_error = Str(j, "description_error");
  if (j.contains("last_validation") && j["last_validation"].is_object()) {
    info.last_validation = KeyValidationFromJson(j["last_validation"]);
  }
  return info;
}

json KeyPolicyAdviceToJson(const KeyPolicyAdvice& a) {
  json statement = json::parse("[" + a.statement + "]", nullptr, false);
  json example = json::parse(a.example_policy, nullptr, false);
  return {{"principal_arn", a.principal_arn},
          {"statement_text", a.statement},
          {"statements", statement.is_discarded() ? json::array() : statement},
          {"example_policy", example.is_discarded() ? json() : example}};
}

KeyPolicyAdvice KeyPolicyAdviceFromJson(const json& j) {
  KeyPolicyAdvice a;
  a.principal_arn = Str(j, "principal_arn");
  a.statement = Str(j, "statement_text");
  if (j.contains("example_policy") && !j["example_policy"].is_null()) {
    a.example_policy = j["example_policy"].dump(2);
  }
  return a;
}

}  // namespace ekm
