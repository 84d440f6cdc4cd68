#include "ekm/api/operations.h"

#include <array>
#include <cstdlib>

#include "ekm/api/operation_handlers.h"
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
    {RouteId::kHealth, "GET", "/healthz", "health", kOpen, kNoBody, 200, &HandleHealth},
    {RouteId::kKeyCacheStats, "GET", "/v1/key-cache", "key_cache.stats", kAdminOnly, kNoBody, 200,
     &HandleKeyCacheStats},
    {RouteId::kListWorkspaces, "GET", "/v1/workspaces", "workspace.list", kPlatformRead, kNoBody,
     200, &HandleListWorkspaces},
    {RouteId::kCreateWorkspace, "POST", "/v1/workspaces", "workspace.create", kAdminOnly, kJson,
     201, &HandleCreateWorkspace},
    {RouteId::kListEnvironments, "GET", "/v1/workspaces/{workspace}/environments",
     "environment.list", kWorkspaceRead, kNoBody, 200, &HandleListEnvironments},
    {RouteId::kCreateEnvironment, "POST", "/v1/workspaces/{workspace}/environments",
     "environment.create", kWorkspaceCreate, kJson, 201, &HandleCreateEnvironment},
    {RouteId::kEncrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/encrypt",
     "data.encrypt", kDataPlane, kStream, 200, &HandleEncrypt},
    {RouteId::kDecrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/decrypt",
     "data.decrypt", kDataPlane, kStream, 200, &HandleDecrypt},
    {RouteId::kShowKey, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.show", kEnvironmentRead, kNoBody, 200, &HandleShowKey},
    {RouteId::kSetKey, "PUT", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.set", kKeyChange, kJson, 200, &HandleSetKey},
    {RouteId::kKeyPolicy, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key/policy",
     "key.policy", kEnvironmentRead, kNoBody, 200, &HandleKeyPolicy},
    {RouteId::kCheckPolicy, "POST", "/v1/workspaces/{workspace}/key-policy/check",
     "key_policy.check", kPolicyCheck, kJson, 200, &HandleCheckPolicy},
    {RouteId::kEnvironmentStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/status", "environment.status",
     kEnvironmentRead, kNoBody, 200, &HandleEnvironmentStatus},
    {RouteId::kRepackStatus, "GET", "/v1/workspaces/{workspace}/environments/{environment}/repack",
     "repack.status", kEnvironmentRead, kNoBody, 200, &HandleRepackStatus},
    {RouteId::kRerunRepack, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/repack/run", "repack.run", kKeyChange,
     kJson, 200, &HandleRerunRepack},
    {RouteId::kListScopes, "GET", "/v1/workspaces/{workspace}/environments/{environment}/scopes",
     "scope.list", kEnvironmentRead, kNoBody, 200, &HandleListScopes},
    {RouteId::kKeyHistory, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/key/history", "key.history",
     kEnvironmentRead, kNoBody, 200, &HandleKeyHistory},
    {RouteId::kImportParams, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import-params", "key.import_params",
     kKeyChange, kJson, 200, &HandleImportParams},
    {RouteId::kImportKeyMaterial, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import", "key.import", kKeyChange,
     kJson, 200, &HandleImportKeyMaterial},
    {RouteId::kDeleteKeyMaterial, "DELETE",
     "/v1/workspaces/{workspace}/environments/{environment}/key/material", "key.delete_material",
     kKeyChange, kNoBody, 200, &HandleDeleteKeyMaterial},
    {RouteId::kRotateEnvironmentKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/rotate", "key.rotate", kKeyChange,
     kJson, 200, &HandleRotateEnvironmentKey},
    {RouteId::kRotateDataKeys, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/data-keys/rotate", "data_keys.rotate",
     kKeyChange, kJson, 200, &HandleRotateDataKeys},
    {RouteId::kRewrap, "POST", "/v1/workspaces/{workspace}/environments/{environment}/rewrap",
     "data.rewrap", kDataPlane, kJson, 200, &HandleRewrap},
    {RouteId::kShred, "POST", "/v1/workspaces/{workspace}/environments/{environment}/shred",
     "environment.shred", kOwnerOnly, kJson, 200, &HandleShred},
    {RouteId::kGetSettings, "GET", "/v1/workspaces/{workspace}/environments/{environment}/settings",
     "settings.show", kEnvironmentRead, kNoBody, 200, &HandleGetSettings},
    {RouteId::kPatchSettings, "PATCH",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.update",
     kKeyChange, kJson, 200, &HandlePatchSettings},
    {RouteId::kGetDefaultKey, "GET", "/v1/workspaces/{workspace}/default-key", "default_key.show",
     kWorkspaceRead, kNoBody, 200, &HandleGetDefaultKey},
    {RouteId::kSetDefaultKey, "PUT", "/v1/workspaces/{workspace}/default-key", "default_key.set",
     kWorkspaceKeyChange, kJson, 200, &HandleSetDefaultKey},
    {RouteId::kResetDefaultKey, "DELETE", "/v1/workspaces/{workspace}/default-key",
     "default_key.reset", kWorkspaceKeyChange, kNoBody, 200, &HandleResetDefaultKey},
    {RouteId::kListEvents, "GET", "/v1/workspaces/{workspace}/events", "events.list",
     kWorkspaceAudit, kNoBody, 200, &HandleListEvents},
    {RouteId::kCreateToken, "POST", "/v1/tokens", "token.create", kTokenAdministration, kJson, 201,
     &HandleCreateToken},
    {RouteId::kListTokens, "GET", "/v1/tokens", "token.list", kTokenAdministration, kNoBody, 200,
     &HandleListTokens},
    {RouteId::kRevokeToken, "DELETE", "/v1/tokens/{id}", "token.revoke", kTokenAdministration,
     kNoBody, 200, &HandleRevokeToken},
    {RouteId::kGetToken, "GET", "/v1/tokens/{id}", "token.get", kTokenAdministration, kNoBody, 200,
     &HandleGetToken},
    {RouteId::kWhoAmI, "GET", "/v1/token", "token.show", kAnyToken, kNoBody, 200, &HandleWhoAmI},

    {RouteId::kReady, "GET", "/readyz", "ready", kOpen, kNoBody, 200, &HandleReady},
    {RouteId::kMetrics, "GET", "/metrics", "metrics", kAdminOnly, kNoBody, 200, &HandleMetrics},
    {RouteId::kGetWorkspace, "GET", "/v1/workspaces/{workspace}", "workspace.show", kWorkspaceRead,
     kNoBody, 200, &HandleGetWorkspace},
    {RouteId::kGetEnvironment, "GET", "/v1/workspaces/{workspace}/environments/{environment}",
     "environment.show", kEnvironmentRead, kNoBody, 200, &HandleGetEnvironment},
    {RouteId::kValidateKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/validate", "key.validate",
     kKeyChange, kJson, 200, &HandleValidateKey},
    {RouteId::kGenerateDataKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/generate-data-key",
     "data.generate_data_key", kDataPlane, kJson, 200, &HandleGenerateDataKey},
    {RouteId::kEncryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/encrypt/batch", "data.encrypt_batch",
     kDataPlane, kJson, 200, &HandleEncryptBatch},
    {RouteId::kDecryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/decrypt/batch", "data.decrypt_batch",
     kDataPlane, kJson, 200, &HandleDecryptBatch},
    {RouteId::kAuditQuery, "GET", "/v1/workspaces/{workspace}/audit", "audit.query",
     kWorkspaceAudit, kNoBody, 200, &HandleAuditQuery},
    {RouteId::kAuditExport, "GET", "/v1/workspaces/{workspace}/audit/export", "audit.export",
     kWorkspaceAudit, kNoBody, 200, &HandleAuditExport},
    {RouteId::kAuditListCheckpoints, "GET", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.list", kWorkspaceAudit, kNoBody, 200, &HandleAuditListCheckpoints},
    {RouteId::kAuditCreateCheckpoint, "POST", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.create", kWorkspaceAudit, kJson, 201, &HandleAuditCreateCheckpoint},
    {RouteId::kPlatformAuditQuery, "GET", "/v1/audit", "platform_audit.query", kAdminOnly, kNoBody,
     200, &HandleAuditQuery},
    {RouteId::kPlatformAuditExport, "GET", "/v1/audit/export", "platform_audit.export", kAdminOnly,
     kNoBody, 200, &HandleAuditExport},
    {RouteId::kPlatformAuditListCheckpoints, "GET", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.list", kAdminOnly, kNoBody, 200, &HandleAuditListCheckpoints},
    {RouteId::kPlatformAuditCreateCheckpoint, "POST", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.create", kAdminOnly, kJson, 201, &HandleAuditCreateCheckpoint},
    {RouteId::kRunDueRotations, "POST", "/v1/rotations/run", "rotation.run_due", kAdminOnly, kJson,
     200, &HandleRunDueRotations},
    {RouteId::kAuditPublicKey, "GET", "/v1/audit/public-key", "audit.public_key",
     kAuditPublicKeyRead, kNoBody, 200, &HandleAuditPublicKey},
};

}  // namespace

std::span<const RouteInfo> RouteTable() { return kRoutes; }

RouteThreads ThreadsFor(RouteId id) {
  switch (id) {
    case RouteId::kHealth:
    case RouteId::kMetrics:
    case RouteId::kKeyCacheStats:
    case RouteId::kWhoAmI:
    case RouteId::kEncrypt:
    case RouteId::kDecrypt:
    case RouteId::kEncryptBatch:
    case RouteId::kDecryptBatch:
    case RouteId::kGenerateDataKey:
    case RouteId::kRewrap:
      return RouteThreads::kIoFirst;
    case RouteId::kReady:
      return RouteThreads::kProbe;
    default:
      return RouteThreads::kBlockingPool;
  }
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
  // Indexed by RouteId, built once: every request looks its row up.
  static const std::array<const RouteInfo*, kRouteIdCount> index = [] {
    std::array<const RouteInfo*, kRouteIdCount> rows{};
    for (const RouteInfo& r : kRoutes) rows[static_cast<size_t>(r.id)] = &r;
    return rows;
  }();
  const size_t i = static_cast<size_t>(id);
  if (i >= index.size() || index[i] == nullptr)
    std::abort();  // operations_test: every id has a row
  return *index[i];
}

}  // namespace ekm
