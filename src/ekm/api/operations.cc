#include "ekm/api/operations.h"

#include <cstdlib>

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

constexpr RouteInfo kRoutes[] = {
    {RouteId::kHealth, "GET", "/healthz", "health", kOpen},
    {RouteId::kKeyCacheStats, "GET", "/v1/key-cache", "key_cache.stats", kAdminOnly},
    {RouteId::kListWorkspaces, "GET", "/v1/workspaces", "workspace.list", kPlatformRead},
    {RouteId::kCreateWorkspace, "POST", "/v1/workspaces", "workspace.create", kAdminOnly},
    {RouteId::kListEnvironments, "GET", "/v1/workspaces/{workspace}/environments",
     "environment.list", kWorkspaceRead},
    {RouteId::kCreateEnvironment, "POST", "/v1/workspaces/{workspace}/environments",
     "environment.create", kWorkspaceCreate},
    {RouteId::kEncrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/encrypt",
     "data.encrypt", kDataPlane},
    {RouteId::kDecrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/decrypt",
     "data.decrypt", kDataPlane},
    {RouteId::kShowKey, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.show", kEnvironmentRead},
    {RouteId::kSetKey, "PUT", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.set", kKeyChange},
    {RouteId::kKeyPolicy, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key/policy",
     "key.policy", kEnvironmentRead},
    {RouteId::kCheckPolicy, "POST", "/v1/workspaces/{workspace}/key-policy/check",
     "key_policy.check", kPolicyCheck},
    {RouteId::kEnvironmentStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/status", "environment.status",
     kEnvironmentRead},
    {RouteId::kRepackStatus, "GET", "/v1/workspaces/{workspace}/environments/{environment}/repack",
     "repack.status", kEnvironmentRead},
    {RouteId::kRerunRepack, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/repack/run", "repack.run", kKeyChange},
    {RouteId::kListScopes, "GET", "/v1/workspaces/{workspace}/environments/{environment}/scopes",
     "scope.list", kEnvironmentRead},
    {RouteId::kKeyHistory, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/key/history", "key.history",
     kEnvironmentRead},
    {RouteId::kImportParams, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import-params", "key.import_params",
     kKeyChange},
    {RouteId::kImportKeyMaterial, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import", "key.import", kKeyChange},
    {RouteId::kDeleteKeyMaterial, "DELETE",
     "/v1/workspaces/{workspace}/environments/{environment}/key/material", "key.delete_material",
     kKeyChange},
    {RouteId::kRotateEnvironmentKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/rotate", "key.rotate", kKeyChange},
    {RouteId::kRotateDataKeys, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/data-keys/rotate", "data_keys.rotate",
     kKeyChange},
    {RouteId::kRewrap, "POST", "/v1/workspaces/{workspace}/environments/{environment}/rewrap",
     "data.rewrap", kDataPlane},
    {RouteId::kShred, "POST", "/v1/workspaces/{workspace}/environments/{environment}/shred",
     "environment.shred", kOwnerOnly},
    {RouteId::kGetSettings, "GET", "/v1/workspaces/{workspace}/environments/{environment}/settings",
     "settings.show", kEnvironmentRead},
    {RouteId::kPatchSettings, "PATCH",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.update",
     kKeyChange},
    {RouteId::kGetDefaultKey, "GET", "/v1/workspaces/{workspace}/default-key", "default_key.show",
     kWorkspaceRead},
    {RouteId::kSetDefaultKey, "PUT", "/v1/workspaces/{workspace}/default-key", "default_key.set",
     kWorkspaceKeyChange},
    {RouteId::kResetDefaultKey, "DELETE", "/v1/workspaces/{workspace}/default-key",
     "default_key.reset", kWorkspaceKeyChange},
    {RouteId::kListEvents, "GET", "/v1/workspaces/{workspace}/events", "events.list",
     kWorkspaceAudit},
    {RouteId::kCreateToken, "POST", "/v1/tokens", "token.create", kTokenAdministration},
    {RouteId::kListTokens, "GET", "/v1/tokens", "token.list", kTokenAdministration},
    {RouteId::kRevokeToken, "DELETE", "/v1/tokens/{id}", "token.revoke", kTokenAdministration},
    {RouteId::kGetToken, "GET", "/v1/tokens/{id}", "token.get", kTokenAdministration},
    {RouteId::kWhoAmI, "GET", "/v1/token", "token.show", kAnyToken},

    {RouteId::kReady, "GET", "/readyz", "ready", kOpen},
    {RouteId::kMetrics, "GET", "/metrics", "metrics", kAdminOnly},
    {RouteId::kGetWorkspace, "GET", "/v1/workspaces/{workspace}", "workspace.show", kWorkspaceRead},
    {RouteId::kGetEnvironment, "GET", "/v1/workspaces/{workspace}/environments/{environment}",
     "environment.show", kEnvironmentRead},
    {RouteId::kValidateKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/validate", "key.validate",
     kKeyChange},
    {RouteId::kGenerateDataKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/generate-data-key",
     "data.generate_data_key", kDataPlane},
    {RouteId::kEncryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/encrypt/batch", "data.encrypt_batch",
     kDataPlane},
    {RouteId::kDecryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/decrypt/batch", "data.decrypt_batch",
     kDataPlane},
    {RouteId::kAuditQuery, "GET", "/v1/workspaces/{workspace}/audit", "audit.query",
     kWorkspaceAudit},
    {RouteId::kAuditExport, "GET", "/v1/workspaces/{workspace}/audit/export", "audit.export",
     kWorkspaceAudit},
    {RouteId::kAuditListCheckpoints, "GET", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.list", kWorkspaceAudit},
    {RouteId::kAuditCreateCheckpoint, "POST", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.create", kWorkspaceAudit},
    {RouteId::kPlatformAuditQuery, "GET", "/v1/audit", "platform_audit.query", kAdminOnly},
    {RouteId::kPlatformAuditExport, "GET", "/v1/audit/export", "platform_audit.export", kAdminOnly},
    {RouteId::kPlatformAuditListCheckpoints, "GET", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.list", kAdminOnly},
    {RouteId::kPlatformAuditCreateCheckpoint, "POST", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.create", kAdminOnly},
    {RouteId::kRunDueRotations, "POST", "/v1/rotations/run", "rotation.run_due", kAdminOnly},
    {RouteId::kAuditPublicKey, "GET", "/v1/audit/public-key", "audit.public_key",
     kAuditPublicKeyRead},
};

}  // namespace

std::span<const RouteInfo> RouteTable() { return kRoutes; }

bool RunsBlocking(RouteId id) {
  // RSA-4096 key generation: seconds of CPU.
  return id == RouteId::kImportParams;
}

const RouteInfo& RouteInfoFor(RouteId id) {
  for (const RouteInfo& r : kRoutes) {
    if (r.id == id) return r;
  }
  std::abort();  // every RouteId has a row: routes_test checks it
}

}  // namespace ekm
