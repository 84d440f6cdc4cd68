// How `ekm` prints what the API answers: tables on a terminal, JSON with --json.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ekm/api/types.h"

namespace ekm::cli {

// Lifecycle events as a table (or JSON lines with --json); `none` is said on stderr when empty.
void PrintEvents(const std::vector<LifecycleEventInfo>& list, bool json, const char* none);

// `ekm environment scopes`: each scope's current DK version and its share of the message budget.
void PrintScopes(const ScopeList& list);

// `now` (unix seconds) tells an expired token's state.
nlohmann::json ApiTokenInfoJson(const ApiTokenInfo& t, int64_t now);

void PrintWorkspaces(const std::vector<WorkspaceInfo>& list, bool json);
void PrintEnvironments(const std::string& ws, const std::vector<EnvironmentInfo>& list, bool json);

// The checks of a key validation, one a line.
void PrintChecks(const KeyValidation& v);
void PrintKeyInfo(const CustomerKeyInfo& info);
void PrintKeyStatus(const EnvironmentKeyStatus& s);
void PrintKeyCacheStats(const KeyCacheStats& s);
void PrintRotations(const std::vector<RotationResult>& list, bool json);
void PrintSettings(const std::string& ws, const std::string& env, const EnvironmentSettings& s,
                   bool json);

}  // namespace ekm::cli
