#include "ekm/base/json_text.h"

#include "ekm/base/clock.h"

namespace ekm {

std::string JsonText(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string JsonText(const nlohmann::ordered_json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string JsonTime(int64_t s) { return FormatRfc3339(FromUnixSeconds(s)); }

nlohmann::json JsonTimeOrNull(int64_t s) {
  return s == 0 ? nlohmann::json(nullptr) : nlohmann::json(JsonTime(s));
}

std::string JsonTimeOrEmpty(int64_t s) { return s == 0 ? std::string() : JsonTime(s); }

int64_t JsonTimeSeconds(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return 0;
  auto t = ParseRfc3339(it->get_ref<const std::string&>());
  return t.ok() ? ToUnixSeconds(*t) : 0;
}

}  // namespace ekm
