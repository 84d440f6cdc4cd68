#include "ekm/api/operations.h"

#include <cstdlib>

namespace ekm {

namespace {

constexpr RouteInfo kRoutes[] = {
    {RouteId::kHealth, "GET", "/healthz", "health"},
    {RouteId::kKeyCacheStats, "GET", "/v1/key-cache", "key_cache.stats"},
    {RouteId::kListWorkspaces, "GET", "/v1/workspaces", "workspace.list"},
    {RouteId::kCreateWorkspace, "POST", "/v1/workspaces", "workspace.create"},
    {RouteId::kListEnvironments, "GET", "/v1/workspaces/{workspace}/environments",
     "environment.list"},
    {RouteId::kCreateEnvironment, "POST", "/v1/workspaces/{workspace}/environments",
     "environment.create"},
    {RouteId::kEncrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/encrypt",
     "data.encrypt"},
    {RouteId::kDecrypt, "POST", "/v1/workspaces/{workspace}/environments/{environment}/decrypt",
     "data.decrypt"},
    {RouteId::kShowKey, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.show"},
    {RouteId::kSetKey, "PUT", "/v1/workspaces/{workspace}/environments/{environment}/key",
     "key.set"},
    {RouteId::kKeyPolicy, "GET", "/v1/workspaces/{workspace}/environments/{environment}/key/policy",
     "key.policy"},
    {RouteId::kCheckPolicy, "POST", "/v1/workspaces/{workspace}/key-policy/check",
     "key_policy.check"},
    {RouteId::kEnvironmentStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/status", "environment.status"},
    {RouteId::kRepackStatus, "GET", "/v1/workspaces/{workspace}/environments/{environment}/repack",
     "repack.status"},
    {RouteId::kImportParams, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import-params",
     "key.import_params"},
    {RouteId::kImportKeyMaterial, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import", "key.import"},
    {RouteId::kDeleteKeyMaterial, "DELETE",
     "/v1/workspaces/{workspace}/environments/{environment}/key/material", "key.delete_material"},
    {RouteId::kRotateEnvironmentKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/rotate", "key.rotate"},
    {RouteId::kRotateDataKeys, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/data-keys/rotate", "data_keys.rotate"},
    {RouteId::kRewrap, "POST", "/v1/workspaces/{workspace}/environments/{environment}/rewrap",
     "data.rewrap"},
    {RouteId::kShred, "POST", "/v1/workspaces/{workspace}/environments/{environment}/shred",
     "environment.shred"},
    {RouteId::kGetSettings, "GET", "/v1/workspaces/{workspace}/environments/{environment}/settings",
     "settings.show"},
    {RouteId::kPatchSettings, "PATCH",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.update"},
    {RouteId::kGetDefaultKey, "GET", "/v1/workspaces/{workspace}/default-key", "default_key.show"},
    {RouteId::kSetDefaultKey, "PUT", "/v1/workspaces/{workspace}/default-key", "default_key.set"},
    {RouteId::kResetDefaultKey, "DELETE", "/v1/workspaces/{workspace}/default-key",
     "default_key.reset"},
    {RouteId::kListEvents, "GET", "/v1/workspaces/{workspace}/events", "events.list"},
    {RouteId::kCreateToken, "POST", "/v1/tokens", "token.create"},
    {RouteId::kListTokens, "GET", "/v1/tokens", "token.list"},
    {RouteId::kRevokeToken, "DELETE", "/v1/tokens/{id}", "token.revoke"},
    {RouteId::kGetToken, "GET", "/v1/tokens/{id}", "token.get"},
    {RouteId::kWhoAmI, "GET", "/v1/token", "token.show"},

    {RouteId::kReady, "GET", "/readyz", "ready"},
    {RouteId::kMetrics, "GET", "/metrics", "metrics"},
    {RouteId::kGetWorkspace, "GET", "/v1/workspaces/{workspace}", "workspace.show"},
    {RouteId::kGetEnvironment, "GET", "/v1/workspaces/{workspace}/environments/{environment}",
     "environment.show"},
    {RouteId::kValidateKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/validate", "key.validate"},
    {RouteId::kGenerateDataKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/generate-data-key",
     "data.generate_data_key"},
    {RouteId::kEncryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/encrypt/batch", "data.encrypt_batch"},
    {RouteId::kDecryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/decrypt/batch", "data.decrypt_batch"},
    {RouteId::kAuditQuery, "GET", "/v1/workspaces/{workspace}/audit", "audit.query"},
    {RouteId::kAuditExport, "GET", "/v1/workspaces/{workspace}/audit/export", "audit.export"},
    {RouteId::kAuditListCheckpoints, "GET", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.list"},
    {RouteId::kAuditCreateCheckpoint, "POST", "/v1/workspaces/{workspace}/audit/checkpoints",
     "audit.checkpoints.create"},
    {RouteId::kPlatformAuditQuery, "GET", "/v1/audit", "platform_audit.query"},
    {RouteId::kPlatformAuditExport, "GET", "/v1/audit/export", "platform_audit.export"},
    {RouteId::kPlatformAuditListCheckpoints, "GET", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.list"},
    {RouteId::kPlatformAuditCreateCheckpoint, "POST", "/v1/audit/checkpoints",
     "platform_audit.checkpoints.create"},
    {RouteId::kAuditPublicKey, "GET", "/v1/audit/public-key", "audit.public_key"},
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
