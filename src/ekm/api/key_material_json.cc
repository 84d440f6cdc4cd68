#include "ekm/api/key_material_json.h"

#include <ctime>

#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"

namespace ekm {

namespace {

using json = nlohmann::json;

std::string Str(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

json KeyImportParametersToJson(const KeyImportParameters& p) {
  return {{"workspace", p.workspace},
          {"environment", p.environment},
          {"wrapping_key_pem", p.wrapping_key_pem},
          {"import_token", p.import_token},
          {"expires_at", JsonTimeOrEmpty(p.expires_at)},
          {"algorithm", p.algorithm},
          {"material_size", p.material_size}};
}

KeyImportParameters KeyImportParametersFromJson(const json& j) {
  KeyImportParameters p;
  p.workspace = Str(j, "workspace");
  p.environment = Str(j, "environment");
  p.wrapping_key_pem = Str(j, "wrapping_key_pem");
  p.import_token = Str(j, "import_token");
  p.expires_at = JsonTimeSeconds(j, "expires_at");
  p.algorithm = Str(j, "algorithm");
  auto it = j.find("material_size");
  if (it != j.end() && it->is_number_unsigned()) p.material_size = it->get<size_t>();
  return p;
}

json KeyMaterialDeletionToJson(const KeyMaterialDeletion& d) {
  return {{"workspace", d.workspace},
          {"environment", d.environment},
          {"key_id", d.key_id},
          {"deleted_at", JsonTimeOrEmpty(d.deleted_at)},
          {"in_use", d.in_use}};
}

KeyMaterialDeletion KeyMaterialDeletionFromJson(const json& j) {
  KeyMaterialDeletion d;
  d.workspace = Str(j, "workspace");
  d.environment = Str(j, "environment");
  d.key_id = Str(j, "key_id");
  d.deleted_at = JsonTimeSeconds(j, "deleted_at");
  auto it = j.find("in_use");
  d.in_use = it != j.end() && it->is_boolean() && it->get<bool>();
  return d;
}

}  // namespace ekm
