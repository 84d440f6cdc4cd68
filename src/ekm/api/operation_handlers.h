// The handler of each operation, the table's `handler` column (api/operations.h): decode the
// request (request_codec.h), call the one EkmApi member of its row, answer with the row's success
// status and the response's JSON (api/*_json.h). A handler decides nothing (front ends call it
// through the authorizing service, which makes every authorization decision) and knows no
// transport: ekmd's router (server/routes.h) gives it what it matched and sends what it answers.
#pragma once

#include <cstdint>
#include <string>

#include "ekm/api/call_context.h"
#include "ekm/api/ekm_api.h"
#include "ekm/api/operations.h"
#include "ekm/base/clock.h"
#include "ekm/base/status.h"

namespace ekm {

// What a front end decoded from a request before calling the operation: the row, the path's
// names and the query.
struct OperationRequest {
  RouteId id = RouteId::kHealth;
  std::string workspace;
  std::string environment;
  std::string id_param;         // {id} in the path (routes that name a resource by id)
  std::string scope;            // ?scope= (the default scope when absent)
  std::string material_key_id;  // DELETE …/key/material?key_id=
  std::string query;            // the raw query string, for routes that take query parameters
};

// An operation's answer as the API writes it.
struct OperationResponse {
  int status = 200;
  std::string body;               // JSON
  int64_t retry_after = 0;        // seconds, sent as Retry-After when > 0 (a transient error)
  std::string content_type = "";  // empty: application/json
};

// What a handler is given.
struct HandlerCall {
  EkmApi& api;  // behind the authorizing service
  const CallContext& ctx;
  const OperationRequest& m;  // the path's names, the query
  const std::string& body;
  const Clock& clock;  // relative query times, token expiry
  int success;         // the status of a success: the row's success_status
};

// An error as the API answers it (http_errors.h), with Retry-After for a transient one.
OperationResponse ErrorResponse(const Status& s);

// One per row of the operation table (the audit handlers serve the workspace's and the
// platform's chain alike).
OperationResponse HandleHealth(const HandlerCall& c);
OperationResponse HandleReady(const HandlerCall& c);
OperationResponse HandleMetrics(const HandlerCall& c);
OperationResponse HandleKeyCacheStats(const HandlerCall& c);
OperationResponse HandleListWorkspaces(const HandlerCall& c);
OperationResponse HandleCreateWorkspace(const HandlerCall& c);
OperationResponse HandleGetWorkspace(const HandlerCall& c);
OperationResponse HandleListEnvironments(const HandlerCall& c);
OperationResponse HandleCreateEnvironment(const HandlerCall& c);
OperationResponse HandleGetEnvironment(const HandlerCall& c);
OperationResponse HandleEncrypt(const HandlerCall& c);
OperationResponse HandleDecrypt(const HandlerCall& c);
OperationResponse HandleEncryptBatch(const HandlerCall& c);
OperationResponse HandleDecryptBatch(const HandlerCall& c);
OperationResponse HandleGenerateDataKey(const HandlerCall& c);
OperationResponse HandleRewrap(const HandlerCall& c);
OperationResponse HandleShowKey(const HandlerCall& c);
OperationResponse HandleSetKey(const HandlerCall& c);
OperationResponse HandleValidateKey(const HandlerCall& c);
OperationResponse HandleKeyPolicy(const HandlerCall& c);
OperationResponse HandleCheckPolicy(const HandlerCall& c);
OperationResponse HandleEnvironmentStatus(const HandlerCall& c);
OperationResponse HandleKeyHistory(const HandlerCall& c);
OperationResponse HandleRepackStatus(const HandlerCall& c);
OperationResponse HandleRerunRepack(const HandlerCall& c);
OperationResponse HandleListScopes(const HandlerCall& c);
OperationResponse HandleImportParams(const HandlerCall& c);
OperationResponse HandleImportKeyMaterial(const HandlerCall& c);
OperationResponse HandleDeleteKeyMaterial(const HandlerCall& c);
OperationResponse HandleRotateEnvironmentKey(const HandlerCall& c);
OperationResponse HandleRotateDataKeys(const HandlerCall& c);
OperationResponse HandleRunDueRotations(const HandlerCall& c);
OperationResponse HandleShred(const HandlerCall& c);
OperationResponse HandleGetSettings(const HandlerCall& c);
OperationResponse HandlePatchSettings(const HandlerCall& c);
OperationResponse HandleGetDefaultKey(const HandlerCall& c);
OperationResponse HandleSetDefaultKey(const HandlerCall& c);
OperationResponse HandleResetDefaultKey(const HandlerCall& c);
OperationResponse HandleListEvents(const HandlerCall& c);
OperationResponse HandleAuditQuery(const HandlerCall& c);
OperationResponse HandleAuditExport(const HandlerCall& c);
OperationResponse HandleAuditListCheckpoints(const HandlerCall& c);
OperationResponse HandleAuditCreateCheckpoint(const HandlerCall& c);
OperationResponse HandleAuditPublicKey(const HandlerCall& c);
OperationResponse HandleCreateToken(const HandlerCall& c);
OperationResponse HandleListTokens(const HandlerCall& c);
OperationResponse HandleGetToken(const HandlerCall& c);
OperationResponse HandleRevokeToken(const HandlerCall& c);
OperationResponse HandleWhoAmI(const HandlerCall& c);

}  // namespace ekm
