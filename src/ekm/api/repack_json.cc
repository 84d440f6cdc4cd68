#include "ekm/api/repack_json.h"

#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"

namespace ekm {

namespace {

void PutTime(nlohmann::json& j, const char* name, const std::optional<int64_t>& ms) {
  if (!ms) return;
  j[std::string(name) + "_ms"] = *ms;
  j[name] = FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms)));
}

std::optional<int64_t> GetTime(const nlohmann::json& j, const char* name) {
  auto it = j.find(std::string(name) + "_ms");
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace

std::string HumanDuration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds >= 2 * 86400) {
    return std::to_string(seconds / 86400) + " d " + std::to_string(seconds % 86400 / 3600) + " h";
  }
  const int64_t h = seconds / 3600, m = seconds % 3600 / 60, s = seconds % 60;
  if (h > 0) return std::to_string(h) + " h " + std::to_string(m) + " min";
  if (m >= 10) return std::to_string(m) + " min";
  if (m > 0) return std::to_string(m) + " min " + std::to_string(s) + " s";
  return std::to_string(s) + " s";
}

nlohmann::json RepackStatusToJson(const RepackStatus& s) {
  nlohmann::json j = {{"workspace", s.workspace},
                      {"environment", s.environment},
                      {"state", s.state},
                      {"ek_version", s.target_ek_version},
                      {"done", s.done},
                      {"total", s.total},
                      {"rate", s.rate}};
  if (s.eta_seconds) j["eta_seconds"] = *s.eta_seconds;
  PutTime(j, "started_at", s.started_at_ms);
  PutTime(j, "updated_at", s.updated_at_ms);
  PutTime(j, "finished_at", s.finished_at_ms);
  PutTime(j, "retry_at", s.retry_at_ms);
  if (!s.last_error.empty()) j["last_error"] = s.last_error;
  nlohmann::json inv = nlohmann::json::array();
  for (const EkInventoryEntry& e : s.inventory) {
    nlohmann::json k = {{"ek_version", e.ek_version},
                        {"cmk", {{"provider", e.cmk_provider}, {"key_id", e.cmk_key_id}}},
                        {"state", e.state},
                        {"data_keys", e.data_keys},
                        {"created_at", JsonTime(e.created_at)},
                        {"created_at_ms", e.created_at * 1000}};
    if (e.destroyed_at) {
      k["destroyed_at"] = JsonTime(*e.destroyed_at);
      k["destroyed_at_ms"] = *e.destroyed_at * 1000;
    }
    inv.push_back(std::move(k));
  }
  j["inventory"] = std::move(inv);
  return j;
}

RepackStatus RepackStatusFromJson(const nlohmann::json& j) {
  RepackStatus s;
  if (!j.is_object()) return s;
  s.workspace = j.value("workspace", "");
  s.environment = j.value("environment", "");
  s.state = j.value("state", "none");
  s.target_ek_version = j.value("ek_version", 0u);
  s.done = j.value("done", uint64_t{0});
  s.total = j.value("total", uint64_t{0});
  s.rate = j.value("rate", 0.0);
  if (j.contains("eta_seconds") && j["eta_seconds"].is_number()) {
    s.eta_seconds = j["eta_seconds"].get<double>();
  }
  s.started_at_ms = GetTime(j, "started_at");
  s.updated_at_ms = GetTime(j, "updated_at");
  s.finished_at_ms = GetTime(j, "finished_at");
  s.retry_at_ms = GetTime(j, "retry_at");
  s.last_error = j.value("last_error", "");
  for (const auto& k : j.value("inventory", nlohmann::json::array())) {
    if (!k.is_object()) continue;
    EkInventoryEntry e;
    e.ek_version = k.value("ek_version", 0u);
    if (k.contains("cmk") && k["cmk"].is_object()) {
      e.cmk_provider = k["cmk"].value("provider", "");
      e.cmk_key_id = k["cmk"].value("key_id", "");
    }
    e.state = k.value("state", "");
    e.data_keys = k.value("data_keys", uint64_t{0});
    e.created_at = k.value("created_at_ms", int64_t{0}) / 1000;
    if (k.contains("destroyed_at_ms"))
      e.destroyed_at = k.value("destroyed_at_ms", int64_t{0}) / 1000;
    s.inventory.push_back(std::move(e));
  }
  return s;
}

}  // namespace ekm
