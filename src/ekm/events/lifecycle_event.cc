#include "ekm/events/lifecycle_event.h"

#include <spdlog/spdlog.h>

#include "ekm/base/encoding.h"
#include "ekm/base/json_text.h"

namespace ekm {

Status RecordLifecycleEvent(Store& store, const Clock& clock, std::string_view actor,
                            std::string_view workspace, std::string_view environment,
                            std::string_view type, const nlohmann::json& detail) {
  LifecycleEventRecord r;
  r.at_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock.Now().time_since_epoch()).count();
  r.workspace = std::string(workspace);
  r.environment = std::string(environment);
  r.type = std::string(type);
  r.actor = std::string(actor);
  r.detail = JsonText(detail);
  Status s = store.RecordLifecycleEvent(r);
  if (!s.ok()) {
    spdlog::error("could not record lifecycle event {} for {}/{}: {}", type, workspace, environment,
                  s.message());
  }
  return s;
}

nlohmann::json LifecycleEventJson(const LifecycleEventRecord& r) {
  nlohmann::json detail = nlohmann::json::parse(r.detail, nullptr, false);
  if (detail.is_discarded()) detail = nlohmann::json::object();
  return {{"id", r.id},
          {"at", FormatRfc3339(
                     std::chrono::system_clock::time_point(std::chrono::milliseconds(r.at_ms)))},
          {"workspace", r.workspace},
          {"environment", r.environment},
          {"type", r.type},
          {"actor", r.actor},
          {"detail", std::move(detail)}};
}

nlohmann::json AuditRecordJson(const LifecycleEventRecord& r) {
  nlohmann::json j = LifecycleEventJson(r);
  j["at_ms"] = r.at_ms;
  j["chain"] = r.chain;
  j["seq"] = r.seq;
  j["prev_hash"] = HexEncode(r.prev_hash);
  j["hash"] = HexEncode(r.hash);
  return j;
}

}  // namespace ekm
