// JSON forms of the environment key status and the key cache statistics,
// shared by ekmd's routes and the client, so `ekm` prints the same in local and server mode.
// Times are RFC 3339 strings, or null when there is none. No key material.
#pragma once

#include <nlohmann/json.hpp>

#include "ekm/api/types.h"

namespace ekm {

nlohmann::json EnvironmentKeyStatusToJson(const EnvironmentKeyStatus& s);
EnvironmentKeyStatus EnvironmentKeyStatusFromJson(const nlohmann::json& j);

nlohmann::json KeyCacheStatsToJson(const KeyCacheStats& s);
KeyCacheStats KeyCacheStatsFromJson(const nlohmann::json& j);

}  // namespace ekm
