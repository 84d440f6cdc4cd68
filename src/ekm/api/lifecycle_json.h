// JSON forms of the lifecycle results (rotation, shred, workspace default CMK, settings,
// events), shared by ekmd's routes and the client, and the duration/time arguments the CLI and
// the API accept. None of these types holds key material.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ekm/api/types.h"
#include "ekm/audit/audit_record.h"
#include "ekm/base/status.h"

namespace ekm {

nlohmann::json RotationResultToJson(const RotationResult& r);
// One scope of GET …/scopes: scope, dk_version, ek_version, created_at, messages_reserved.
nlohmann::json ScopeInfoToJson(const ScopeInfo& s);
ScopeInfo ScopeInfoFromJson(const nlohmann::json& j);
RotationResult RotationResultFromJson(const nlohmann::json& j);

nlohmann::json ShredConfirmationToJson(const ShredConfirmation& c);
ShredConfirmation ShredConfirmationFromJson(const nlohmann::json& j);
nlohmann::json ShredResultToJson(const ShredResult& r);
ShredResult ShredResultFromJson(const nlohmann::json& j);

nlohmann::json WorkspaceDefaultKeyToJson(const WorkspaceDefaultKey& k);
WorkspaceDefaultKey WorkspaceDefaultKeyFromJson(const nlohmann::json& j);

// Every setting by name: its value, or null where the deployment default applies.
nlohmann::json EnvironmentSettingsToJson(const EnvironmentSettings& s);
EnvironmentSettings EnvironmentSettingsFromJson(const nlohmann::json& j);
// A PATCH body: a number sets a setting, null resets it; unknown names and other types are
// InvalidArgument naming the field.
Status EnvironmentSettingsPatchFromJson(const nlohmann::json& j, EnvironmentSettings* set,
                                        std::vector<std::string>* reset);

// {"id","at","workspace","environment","type","actor","detail"} (detail as a JSON object).
nlohmann::json LifecycleEventInfoToJson(const LifecycleEventInfo& e);
LifecycleEventInfo LifecycleEventInfoFromJson(const nlohmann::json& j);
// A record of GET …/audit (events/lifecycle_event.h AuditRecordJson): the event with at_ms, chain,
// seq and the hex prev_hash and hash.
LifecycleEventRecord AuditRecordFromJson(const nlohmann::json& j);

// "300s", "5m", "24h", "90d", or plain seconds "3600".
StatusOr<int64_t> ParseDurationSeconds(std::string_view text);
// "90d", "24h" … where the duration divides evenly, else "NNNs".
std::string FormatDuration(int64_t seconds);
// A point in time as unix milliseconds: RFC 3339 UTC ("2026-11-25T10:00:00Z"), unix seconds, or
// a duration meaning that long before `now_ms` ("24h" = a day ago).
StatusOr<int64_t> ParseTimeMs(std::string_view text, int64_t now_ms);

}  // namespace ekm
