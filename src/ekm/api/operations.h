// The operations of API v1: one row per route (method, path template, stable name, authorization
// rule). Every front end reads this table: ekmd's router and metrics, authorization (the rule
// column, checked by auth::Authorize), the access log, and the test that docs/openapi.yaml
// describes exactly these routes.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "ekm/auth/authorization.h"

namespace ekm {

enum class RouteId {
  kHealth,
  kListWorkspaces,
  kCreateWorkspace,
  kListEnvironments,
  kCreateEnvironment,
  kEncrypt,
  kDecrypt,
  kShowKey,            // GET  …/environments/{e}/key
  kSetKey,             // PUT  …/environments/{e}/key            ("Update key")
  kKeyPolicy,          // GET  …/environments/{e}/key/policy     ("Permission to access key")
  kCheckPolicy,        // POST /v1/workspaces/{w}/key-policy/check (the policy doctor)
  kEnvironmentStatus,  // GET …/environments/{e}/status  (CMK health, cache settings)
  kKeyCacheStats,      // GET /v1/key-cache              (this node's key cache)

  kRepackStatus,  // GET  …/environments/{e}/repack            (progress and key inventory)
  kRerunRepack,   // POST …/environments/{e}/repack/run        (now, not at the next retry)
  kListScopes,    // GET  …/environments/{e}/scopes            (current DK version, messages)
  kKeyHistory,    // GET  …/environments/{e}/key/history       (validations, CMK changes)

  kImportParams,       // POST   …/environments/{e}/key/import-params
  kImportKeyMaterial,  // POST   …/environments/{e}/key/import
  kDeleteKeyMaterial,  // DELETE …/environments/{e}/key/material[?key_id=imported:…]

  kRotateEnvironmentKey,  // POST   …/environments/{e}/key/rotate
  kRotateDataKeys,        // POST   …/environments/{e}/data-keys/rotate
  kRewrap,                // POST   …/environments/{e}/rewrap
  kShred,                 // POST   …/environments/{e}/shred (two steps)
  kGetSettings,           // GET    …/environments/{e}/settings
  kPatchSettings,         // PATCH  …/environments/{e}/settings
  kGetDefaultKey,         // GET    /v1/workspaces/{w}/default-key
  kSetDefaultKey,         // PUT    /v1/workspaces/{w}/default-key
  kResetDefaultKey,       // DELETE /v1/workspaces/{w}/default-key
  kListEvents,            // GET    /v1/workspaces/{w}/events

  kCreateToken,      // POST   /v1/tokens
  kListTokens,       // GET    /v1/tokens[?workspace=W]
  kRevokeToken,      // DELETE /v1/tokens/{id}
  kGetToken,         // GET    /v1/tokens/{id}
  kWhoAmI,           // GET    /v1/token (the calling token)
  kReady,            // GET /readyz  (the store answers and the server is not shutting down)
  kMetrics,          // GET /metrics (Prometheus text; admin-only unless --metrics-unauthenticated)
  kGetWorkspace,     // GET    /v1/workspaces/{w}
  kGetEnvironment,   // GET    …/environments/{e}
  kValidateKey,      // POST   …/environments/{e}/key/validate  (Update key's checks only)
  kGenerateDataKey,  // POST   …/environments/{e}/generate-data-key
  kEncryptBatch,     // POST   …/environments/{e}/encrypt/batch
  kDecryptBatch,     // POST   …/environments/{e}/decrypt/batch
  kAuditQuery,       // GET  /v1/workspaces/{w}/audit
  kAuditExport,      // GET  /v1/workspaces/{w}/audit/export (JSON lines)
  kAuditListCheckpoints,           // GET  /v1/workspaces/{w}/audit/checkpoints
  kAuditCreateCheckpoint,          // POST /v1/workspaces/{w}/audit/checkpoints
  kPlatformAuditQuery,             // GET  /v1/audit
  kPlatformAuditExport,            // GET  /v1/audit/export
  kPlatformAuditListCheckpoints,   // GET  /v1/audit/checkpoints
  kPlatformAuditCreateCheckpoint,  // POST /v1/audit/checkpoints
  kAuditPublicKey,                 // GET  /v1/audit/public-key
  kRunDueRotations,                // POST /v1/rotations/run (what the schedules say is due)

};

// The number of RouteIds (the last one plus one).
inline constexpr size_t kRouteIdCount = static_cast<size_t>(RouteId::kRunDueRotations) + 1;

struct HandlerCall;
struct OperationResponse;
// Decodes the request, calls the row's EkmApi member, encodes its answer (operation_handlers.h).
using OperationHandler = OperationResponse (*)(const HandlerCall&);

// What a route's request carries.
enum class RouteBody {
  kNone,          // nothing (GET, DELETE)
  kJson,          // a JSON object; the routes that take no fields accept {} or nothing
  kJsonOrStream,  // a JSON object, or an octet stream of any size (encrypt, decrypt)
};

// One row per API route: the single table that matching, dispatch (the handler), metrics and
// logs (route names), authorization, the HTTP client (method and path of each call) and the
// OpenAPI check all read.
// `path` is a template: `{workspace}`, `{environment}` and `{id}` match one path segment each.
struct RouteInfo {
  RouteId id;
  std::string_view method;
  std::string_view path;
  std::string_view name;     // stable, for metrics labels and logs: "key.set"
  auth::RouteRule rule;      // who may call it (docs/api.md "Authentication and roles")
  RouteBody body;            // what the request carries (the router refuses other media types)
  int success_status;        // the HTTP status of a success: 201 for a create, else 200
  OperationHandler handler;  // the EkmApi member it calls, with its request and answer codecs
};

// The names a path template's placeholders stand for.
struct RouteNames {
  std::string_view workspace = {};
  std::string_view environment = {};
  std::string_view id = {};
};

// Every route, in matching order.
std::span<const RouteInfo> RouteTable();
// The row of `id`.
const RouteInfo& RouteInfoFor(RouteId id);
// The path of `id` with its placeholders filled in from `names`, each percent-encoded as one
// path segment ("/v1/workspaces/acme/environments/prod/key"); no query.
std::string RoutePath(RouteId id, const RouteNames& names);
// Where ekmd runs a route's handler. An HTTP I/O thread serves many connections, so it never
// waits on the store, a KMS or a long computation (docs/architecture.md, "Threads").
enum class RouteThreads {
  // On the I/O thread inside a NonBlockingScope (base/non_blocking_scope.h), and again on the
  // blocking pool if it would wait: the data plane, whose cached keys need no thread hop, and
  // what reads only memory.
  kIoFirst,
  // On the blocking pool (server/blocking_pool.h): every call needs the store or a KMS, or
  // seconds of CPU (import-params' RSA key generation).
  kBlockingPool,
  // On a thread of its own: /readyz asks the store, and must not queue behind tenants' work.
  kProbe,
};
RouteThreads ThreadsFor(RouteId id);

}  // namespace ekm
