// JSON forms of workspaces, environments and API tokens, shared by ekmd's routes (which write
// them) and the client (which reads them back). None of them carries a secret: a new token's
// text is added by its route alone.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "ekm/api/types.h"

namespace ekm {

nlohmann::json WorkspaceInfoToJson(const WorkspaceInfo& w);
WorkspaceInfo WorkspaceInfoFromJson(const nlohmann::json& j);

nlohmann::json EnvironmentInfoToJson(const EnvironmentInfo& e);
EnvironmentInfo EnvironmentInfoFromJson(const nlohmann::json& j);

// `now` (unix seconds) decides the "state" member: active, expired or revoked.
nlohmann::json ApiTokenInfoToJson(const ApiTokenInfo& t, int64_t now);
ApiTokenInfo ApiTokenInfoFromJson(const nlohmann::json& j);
// GET /v1/token: the calling token, without what only its administrators see.
nlohmann::json CallerTokenToJson(const ApiTokenInfo& t);

}  // namespace ekm
