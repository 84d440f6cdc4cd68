// Lifecycle events: every change in the life of a customer main key and the hierarchy under it
// (validation, replacement, repack, rotation, detected revocation, restore, shred…), recorded
// with time, actor and environment. The audit log (API issue) builds on these records.
// Details are JSON objects of public metadata: never key material.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/store/store.h"

namespace ekm {

// Event types. Stable strings: they are stored and queried.
namespace event {
inline constexpr std::string_view kEnvironmentCreated = "environment.created";
inline constexpr std::string_view kKeyValidated = "key.validated";  // passed
inline constexpr std::string_view kKeyValidationFailed = "key.validation_failed";
inline constexpr std::string_view kKeySet = "key.set";            // first customer CMK
inline constexpr std::string_view kKeyReplaced = "key.replaced";  // CMK -> another CMK
inline constexpr std::string_view kKeyReplacementRefused = "key.replacement_refused";
inline constexpr std::string_view kRepackStarted = "repack.started";
inline constexpr std::string_view kRepackProgress = "repack.progress";
inline constexpr std::string_view kRepackFinished = "repack.finished";
inline constexpr std::string_view kEnvironmentKeyRotated = "ek.rotated";
inline constexpr std::string_view kDataKeyRotated = "dk.rotated";
inline constexpr std::string_view kCmkRevocationDetected = "cmk.revocation_detected";
inline constexpr std::string_view kCmkOutageDetected = "cmk.outage_detected";
inline constexpr std::string_view kCmkRestored = "cmk.restored";
inline constexpr std::string_view kKeyMaterialImported = "key_material.imported";
inline constexpr std::string_view kKeyMaterialDeleted = "key_material.deleted";
inline constexpr std::string_view kEnvironmentShredded = "environment.shredded";
inline constexpr std::string_view kWorkspaceDefaultKeySet = "workspace.default_key_set";
inline constexpr std::string_view kEnvironmentSettingsChanged = "environment.settings_changed";
inline constexpr std::string_view kKeyEmergencyReplaced = "key.emergency_replaced";
inline constexpr std::string_view kTokenCreated = "token.created";
inline constexpr std::string_view kTokenRevoked = "token.revoked";
inline constexpr std::string_view kTokenAuthFailed = "token.auth_failed";
inline constexpr std::string_view kTokenPermissionDenied = "token.permission_denied";
inline constexpr std::string_view kWorkspaceCreated = "workspace.created";
inline constexpr std::string_view kImportParamsCreated = "key_material.import_params_created";
inline constexpr std::string_view kShredRequested = "environment.shred_requested";
inline constexpr std::string_view kDataPlaneUsage = "data_plane.usage";  // per-minute counts
}  // namespace event

// Records one event for `workspace`/`environment` (environment empty for workspace events), done
// by `actor` ("token:<id>", "cli:alice", "system:repack"), at clock.Now(). An event that cannot be
// stored is logged as an error and returned; callers whose operation already happened log it and go
// on.
Status RecordLifecycleEvent(Store& store, const Clock& clock, std::string_view actor,
                            std::string_view workspace, std::string_view environment,
                            std::string_view type,
                            const nlohmann::json& detail = nlohmann::json::object());

// One event as JSON: {"id","at","workspace","environment","type","actor","detail"}.
nlohmann::json LifecycleEventJson(const LifecycleEventRecord& record);

// One audit record as the audit query shows it: the event's JSON plus "chain", "seq",
// "prev_hash" and "hash" (hex), and "at_ms". (The export form, for verification, is
// audit/audit_log.h's.)
nlohmann::json AuditRecordJson(const LifecycleEventRecord& record);

}  // namespace ekm
