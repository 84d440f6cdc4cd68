#include "ekm/api/operations.h"

#include <cstdlib>

#include "ekm/base/encoding.h"

namespace ekm {

namespace {

using auth::RoleBit;
using auth::RouteRule;
using S = auth::RouteScope;
constexpr unsigned kAdmin = RoleBit(auth::Role::kAdmin);
constexpr unsigned kOwner = RoleBit(auth::Role::kOwner);
constexpr unsigned kKeyManager = RoleBit(auth::Role::kKeyManager);
constexpr unsigned kApp = RoleBit(auth::Role::kApp);
constexpr unsigned kAuditor = RoleBit(auth::Role::kAuditor);
constexpr unsigned kReaders = kAdmin | kOwner | kKeyManager | kAuditor;
constexpr unsigned kKeyChangers = kOwner | kKeyManager;

// The rules of docs/api.md "Authentication and roles", one per kind of route.
constexpr RouteRule kOpen{S::kOpen, 0};  // no token
constexpr RouteRule kAnyToken{S::kAnyToken, kReaders | kApp};
// The platform: the admin alone. (GET /metrics is open instead with --metrics-unauthenticated.)
constexpr RouteRule kAdminOnly{S::kPlatform, kAdmin};
constexpr RouteRule kPlatformRead{S::kPlatform, kReaders};  // a list the handler filters
constexpr RouteRule kWorkspaceRead{S::kWorkspace, kReaders};
constexpr RouteRule kEnvironmentRead{S::kEnvironment, kReaders};
constexpr RouteRule kWorkspaceCreate{S::kWorkspaceChange, kAdmin | kOwner};
constexpr RouteRule kPolicyCheck{S::kWorkspace, kAdmin | kOwner | kKeyManager};
constexpr RouteRule kKeyChange{S::kEnvironment, kKeyChangers};
constexpr RouteRule kWorkspaceKeyChange{S::kWorkspaceChange, kKeyChangers};
constexpr RouteRule kOwnerOnly{S::kEnvironment, kOwner};
constexpr RouteRule kDataPlane{S::kEnvironment, kApp};
constexpr RouteRule kWorkspaceAudit{S::kWorkspace, kAdmin | kOwner | kAuditor};
// Public metadata every auditor needs.
constexpr RouteRule kAuditPublicKeyRead{S::kPlatform, kAdmin | kOwner | kAuditor};
// The handler checks the workspace concerned (auth::AuthorizeTokenAdministration).
constexpr RouteRule kTokenAdministration{S::kPlatform, kAdmin | kOwner};

constexpr RouteBody kNoBody = RouteBody::kNone;
constexpr RouteBody kJson = RouteBody::kJson;
constexpr RouteBody kStream = RouteBody::kJsonOrStream;

constexpr RouteInfo kRoutes[] = {
    {RouteId::kHealth, "GET", "/healthz", "health", kOpen, kNoBody, 200},
    {RouteId::kKeyCacheStats, "GET", "/v1/key-cache", "key_cache.stats", kAdminOnly, kNoBody, 200},
    {RouteId::kListWorkspaces, "GET", "/v1/workspaces", "workspace.list", kPlatformRead, kNoBody,
     200},
    {RouteId::kCreateWorkspace, "POST", "/v1/workspaces", "workspace.create", kAdminOnly, kJson,
     201},
    {RouteId::kListEnvironments, "GET", "/v1/workspaces/{workspace}/environments",
     "environment.list", kWorkspaceRead, kNoBody, 200},
    {RouteId::kCreateEnvironment, "POST", "/v1/workspaces/{workspace}/environments",
     "environment.create", kWorkspaceCreate, kJson, 201},
    {RouteId::kEncrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/encrypt",
     "data.encrypt", kDataPlane, kStream, 200},
    {RouteId::kDecrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/decrypt",
     "data.decrypt", kDataPlane, kStream, 200},
    {RouteId::kShowKey, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.show", kEnvironmentRead, kNoBody, 200},
    {RouteId::kSetKey, "PUT", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.set", kKeyChange, kJson, 200},
    {RouteId::kKeyPolicy, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key/policy",
     "key.policy", kEnvironmentRead, kNoBody, 200},
    {RouteId::kCheckPolicy, "POST", "/v1/workspaces/{workspace}/key-policy/check",
     "key_policy.check", kPolicyCheck, kJson, 200},
    {RouteId::kEnvironmentStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/status", "environment.status",
     kEnvironmentRead, kNoBody, 200},
    {RouteId::kRepackStatus, "GET", "/v1/workspaces/{workspace}/environments/{environment}/repack",
     "repack.status", kEnvironmentRead, kNoBody, 200},
    {RouteId::kRerunRepack, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/repack/run", "repack.run", kKeyChange,
     kJson, 200},
    {RouteId::kListScopes, "GET", "/v1/workspaces/{workspace}/environments/{environment}/scopes",
     "scope.list", kEnvironmentRead, kNoBody, 200},
    {RouteId::kKeyHistory, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/key/history", "key.history",
     kEnvironmentRead, kNoBody, 200},
    {RouteId::kImportParams, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import-params", "key.import_params",
     kKeyChange, kJson, 200},
    {RouteId::kImportKeyMaterial, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import", "key.import", kKeyChange,
     kJson, 200},
    {RouteId::kDeleteKeyMaterial, "DELETE",
     "/v1/workspaces/{workspace}/environments/{environment}/key/material", "key.delete_material",
     kKeyChange, kNoBody, 200},
    {RouteId::kRotateEnvironmentKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/rotate", "key.rotate", kKeyChange,
     kJson, 200},
    {RouteId::kRotateDataKeys, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/data-keys/rotate", "data_keys.rotate",
     kKeyChange, kJson, 200},
    {RouteId::kRewrap, "POST", "/v1/workspaces/{workspace}/environments/{environment}/rewrap",
     "data.rewrap", kDataPlane, kJson, 200},
    {RouteId::kShred, "POST", "/v1/workspaces/{workspace}/environments/{environment}/shred",
     "environment.shred", kOwnerOnly, kJson, 200},
    {RouteId::kGetSettings, "GET", "/v1/workspaces/{workspace}/environments/{environment}/settings",
     "settings.show", kEnvironmentRead, kNoBody, 200},
    {RouteId::kPatchSettings, "PATCH",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.update",
     kKeyChange, kJson, 200},
    {RouteId::kGetDefaultKey, "GET", "/v1/workspaces/{workspace}/default-key", "default_key.show",
     kWorkspaceRead, kNoBody, 200},
    {RouteId::kSetDefaultKey, "PUT", "/v1/workspaces/{workspace}/default-key", "default_key.set",
     kWorkspaceKeyChange, kJson, 200},
    {RouteId::kResetDefaultKey, "DELETE", "/v1/workspaces/{workspace}/default-key",
     "default_key.reset", kWorkspaceKeyChange, kNoBody, 200},
    {RouteId::kListEvents, "GET", "/v1/workspaces/{workspace}/events", "events.list",
     kWorkspaceAudit, kNoBody, 200},
    {RouteId::kCreateToken, "POST", "/v1/tokens", "token.create", kTokenAdministration, kJson, 201},
    {RouteId::kListTokens, "GET", "/v1/tokens", "token.list", kTokenAdministration, kNoBody, 200},
    {RouteId::kRevokeToken, "DELETE", "/v1/tokens/{id}", "token.revoke", kTokenAdministration,
     kNoBody, 200},
    {RouteId::kGetToken, "GET", "/v1/tokens/{id}", "token.get", kTokenAdministration, kNoBody, 200},
    {RouteId::kWhoAmI, "GET", "/v1/token", "token.show", kAnyToken, kNoBody, 200},

    {RouteId::kReady, "GET", "/readyz", "ready", kOpen, kNoBody, 200},
    {RouteId::kMetrics, "GET", "/metrics", "metrics", kAdminOnly, kNoBody, 200},
    {RouteId::kGetWorkspace, "GET", "/v1/workspaces/{workspace}", "workspace.show", kWorkspaceRead,
     kNoBody, 200},
    {RouteId::kGetEnvironment, "GET", "/v1/workspaces/{workspace}/environments/{environment}",
     "environment.show", kEnvironmentRead, kNoBody, 200},
    {RouteId::kValidateKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/validate", "key.validate",
     kKeyChange, kJson, 200},
    {RouteId::kGenerateDataKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/generate-data-key",
     "data.generate_data_key", kDataPlane, kJson, 200},
    {RouteId::kEncryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/encrypt/batch", "data.encrypt_batch",
     kDataPlane, kJson, 200},
    {RouteId::kDecryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/decrypt/batch", "data.decrypt_batch",
     kDataPlane, kJson, 200},
    {RouteId::kAuditQuery, "GET", "/v1/workspaces/{workspace}/audit", "audit.query",
     kWorkspaceAudit, kNoBody, 200},
    {RouteId::kAuditExport, "GET", "/v1/workspaces/{workspace}/audit/export", "audit.export",
     kWorkspaceAudit, kNoBody, 200},
    {RouteId::kAuditListCheckpoints, "GET", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.list", kWorkspaceAudit, kNoBody, 200},
    {RouteId::kAuditCreateCheckpoint, "POST", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.create", kWorkspaceAudit, kJson, 201},
    {RouteId::kPlatformAuditQuery, "GET", "/v1/audit", "platform_audit.query", kAdminOnly, kNoBody,
     200},
    {RouteId::kPlatformAuditExport, "GET", "/v1/audit/export", "platform_audit.export", kAdminOnly,
     kNoBody, 200},
    {RouteId::kPlatformAuditListCheckpoints, "GET", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.list", kAdminOnly, kNoBody, 200},
    {RouteId::kPlatformAuditCreateCheckpoint, "POST", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.create", kAdminOnly, kJson, 201},
    {RouteId::kRunDueRotations, "POST", "/v1/rotations/run", "rotation.run_due", kAdminOnly, kJson,
     200},
    {RouteId::kAuditPublicKey, "GET", "/v1/audit/public-key", "audit.public_key",
     kAuditPublicKeyRead, kNoBody, 200},
};

}  // namespace

std::span<const RouteInfo> RouteTable() { return kRoutes; }

bool RunsBlocking(RouteId id) {
  // RSA-4096 key generation: seconds of CPU.
  return id == RouteId::kImportParams;
}

std::string RoutePath(RouteId id, const RouteNames& names) {
  std::string_view path = RouteInfoFor(id).path;
  std::string out;
  out.reserve(path.size() + 32);
  size_t i = 0;
  while (i < path.size()) {
    const size_t open = path.find('{', i);
    if (open == std::string_view::npos) break;
    const size_t close = path.find('}', open);
    out.append(path.substr(i, open - i));
    const std::string_view placeholder = path.substr(open, close + 1 - open);
    AppendPercentEncoded(placeholder == "{workspace}"     ? names.workspace
                         : placeholder == "{environment}" ? names.environment
                                                          : names.id,
                         &out);
    i = close + 1;
  }
  out.append(path.substr(i));
  return out;
}

const RouteInfo& RouteInfoFor(RouteId id) {
  for (const RouteInfo& r : kRoutes) {
    if (r.id == id) return r;
  }
  std::abort();  // every RouteId has a row: routes_test checks it
}

}  // namespace ekm
