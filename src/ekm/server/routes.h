// The API v1 routes: matching a request line to a handler, and the handlers, which call
// EkmService. Transport-free, so the HTTP layer stays small. docs/api.md lists every route.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <string>

#include "ekm/auth/token.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

struct RouteRequest {
  std::string method;
  std::string target;  // path and query, percent-encoded
  std::string content_type;
  std::string authorization;
  std::string remote_address;  // the peer's IP, for audit records and rate limits
  std::string request_id;      // X-Request-Id (given or generated), for logs and audit records
};

enum class RouteId {
  kHealth,
  kListWorkspaces,
  kCreateWorkspace,
  kListEnvironments,
  kCreateEnvironment,
  kEncrypt,
  kDecrypt,
  kShowKey,        // GET  …/environments/{e}/key
  kSetKey,         // PUT  …/environments/{e}/key            ("Update key")
  kKeyPolicy,      // GET  …/environments/{e}/key/policy     ("Permission to access key")
  kCheckPolicy,    // POST /v1/workspaces/{w}/key-policy/check (the policy doctor)
  kEnvironmentStatus,  // GET …/environments/{e}/status  (CMK health, cache settings)
  kKeyCacheStats,      // GET /v1/key-cache              (this node's key cache)

  kRepackStatus,  // GET  …/environments/{e}/repack            (progress and key inventory)

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

  // --- issue5-A ---
  kCreateToken,  // POST   /v1/tokens
  kListTokens,   // GET    /v1/tokens[?workspace=W]
  kRevokeToken,  // DELETE /v1/tokens/{id}
  kWhoAmI,       // GET    /v1/token (the calling token)
  // --- issue5-C ---
  kReady,    // GET /readyz  (the store answers and the server is not shutting down)
  kMetrics,  // GET /metrics (Prometheus text; admin-only unless --metrics-unauthenticated)
  // --- issue5-D ---
  kGetWorkspace,          // GET    /v1/workspaces/{w}
  kGetEnvironment,        // GET    …/environments/{e}
  kValidateKey,           // POST   …/environments/{e}/key/validate  (Update key's checks only)
  kGenerateDataKey,       // POST   …/environments/{e}/generate-data-key
  kEncryptBatch,          // POST   …/environments/{e}/encrypt/batch
  kDecryptBatch,          // POST   …/environments/{e}/decrypt/batch
  // --- issue5-B ---
  kAuditQuery,                    // GET  /v1/workspaces/{w}/audit
  kAuditExport,                   // GET  /v1/workspaces/{w}/audit/export (JSON lines)
  kAuditListCheckpoints,          // GET  /v1/workspaces/{w}/audit/checkpoints
  kAuditCreateCheckpoint,         // POST /v1/workspaces/{w}/audit/checkpoints
  kPlatformAuditQuery,            // GET  /v1/audit
  kPlatformAuditExport,           // GET  /v1/audit/export
  kPlatformAuditListCheckpoints,  // GET  /v1/audit/checkpoints
  kPlatformAuditCreateCheckpoint, // POST /v1/audit/checkpoints
  kAuditPublicKey,                // GET  /v1/audit/public-key

};

// One row per API route: the single table that matching, metrics and logs (route names),
// authorization and the OpenAPI check all read. `path` is a template: `{workspace}`,
// `{environment}` and `{id}` match one path segment each.
struct RouteInfo {
  RouteId id;
  std::string_view method;
  std::string_view path;
  std::string_view name;  // stable, for metrics labels and logs: "key.set"
};

// Every route, in matching order.
std::span<const RouteInfo> RouteTable();
// The row of `id`.
const RouteInfo& RouteInfoFor(RouteId id);
// --- issue12-http ---
// Whether the route's handler may hold its thread for long (CPU-heavy or blocking work): the
// HTTP layer runs those on its blocking pool (server/blocking_pool.h), never on an I/O thread.
bool RunsBlocking(RouteId id);

struct RouteMatch {
  Status status;  // not OK: answer with this error
  bool method_not_allowed = false;
  bool unsupported_media_type = false;
  std::string allow;  // for 405
  RouteId id = RouteId::kHealth;
  std::string workspace;
  std::string environment;
  std::string scope;
  bool streaming = false;    // body and response are streamed
  bool text_output = false;  // streamed encrypt writes the text form

  std::string material_key_id;  // DELETE …/key/material?key_id=

  std::string id_param;  // {id} in the path (routes that name a resource by id)
  std::string query;  // the raw query string, for routes that take query parameters

  // --- issue5-A ---
  bool found = false;          // a row of the route table matched
  bool authenticated = false;  // Match checked the caller's token (or the route is open)
  auth::Principal principal;   // the caller (Match fills it)
  std::string remote_address;  // for audit records
};

struct RouteResponse {
  int status = 200;
  std::string body;  // JSON
  int64_t retry_after = 0;  // seconds, sent as Retry-After when > 0 (a transient error)
  std::string content_type = "";  // --- issue5-C --- empty: application/json
};

// A streamed encrypt or decrypt.
class StreamTransform {
 public:
  virtual ~StreamTransform() = default;
  virtual Status Update(ByteView chunk, Bytes* out) = 0;
  virtual Status Finish(Bytes* out) = 0;
};

class Router {
 public:
  explicit Router(EkmService* service) : service_(service) {}
  // Matches the route, then authenticates the caller's token and authorizes the route for it
  // (auth/authorization.h); a refusal is the match's status (401 or 403).
  RouteMatch Match(const RouteRequest& request) const;
  // Only the route table: no token check (tests of the table).
  RouteMatch MatchRoute(const RouteRequest& request) const;
  RouteResponse Handle(const RouteMatch& match, const std::string& body);
  StatusOr<std::unique_ptr<StreamTransform>> OpenStream(const RouteMatch& match);

  // --- issue5-C ---
  // `ekmd --metrics-unauthenticated`: GET /metrics needs no token (authorization reads it).
  void set_metrics_unauthenticated(bool open) { metrics_unauthenticated_ = open; }
  bool metrics_unauthenticated() const { return metrics_unauthenticated_; }

 private:
  // --- issue5-A ---
  RouteResponse HandleToken(const RouteMatch& m, const std::string& body);
  // A 403 decided in a handler (it needed the body or the store), recorded like Match's.
  RouteResponse Denied(const RouteMatch& m, const Status& why);

  EkmService* service_;
  bool metrics_unauthenticated_ = false;
};

}  // namespace ekm
