#include "ekm/server/route_handlers.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/api/repack_json.h"
#include "ekm/api/request_codec.h"
#include "ekm/api/resource_json.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/metrics/metrics.h"
#include "ekm/server/http_errors.h"

namespace ekm {

RouteResponse ErrorResponse(const Status& s) {
  return {HttpStatusFor(s.code()), ErrorJson(s), s.retry_after_seconds()};
}

namespace {

using nlohmann::json;

RouteResponse Error(const Status& s) { return ErrorResponse(s); }

// One item's error, the same shape as a whole response's error.
json ItemError(const Status& s) { return json::parse(ErrorJson(s)); }

// The answer of an operation: its error, or `status` with the JSON `encode` makes of its value.
template <typename T, typename Encode>
RouteResponse Reply(const HandlerCall& c, const StatusOr<T>& result, Encode encode) {
  if (!result.ok()) return Error(result.status());
  return {c.success, JsonText(encode(*result))};
}

// One page of a list, in the list's own order (names for workspaces and environments, creation
// for tokens): the items after the one whose key is `page.after`, at most `page.limit` (0: all),
// and `next_after` (the last item's key) when more remain. A cursor naming no item is refused:
// a list's items are never deleted, so it was not one of ours. `out` holds the answer's other
// fields.
template <typename T, typename KeyFn, typename ToJson>
RouteResponse Paged(const std::vector<T>& list, const ListPage& page, const char* member, KeyFn key,
                    ToJson to_json, json out = json::object()) {
  size_t begin = 0;
  if (!page.after.empty()) {
    while (begin < list.size() && key(list[begin]) != page.after) ++begin;
    if (begin == list.size()) {
      return Error(
          InvalidArgumentError("after=" + QuotedExcerpt(page.after) + " names nothing in this list",
                               "pass the next_after of the page before, or leave "
                               "after out for the first page"));
    }
    ++begin;
  }
  const size_t end = page.limit == 0 ? list.size() : std::min(list.size(), begin + page.limit);
  json arr = json::array();
  for (size_t i = begin; i < end; ++i) arr.push_back(to_json(list[i]));
  out[member] = std::move(arr);
  if (end < list.size() && end > begin) out["next_after"] = key(list[end - 1]);
  return {200, JsonText(out)};  // a list is a GET
}

RouteResponse HandleWhoAmI(const HandlerCall& c) {
  auto r = c.api.WhoAmI(c.ctx);
  if (!r.ok()) return Error(r.status());
  if (!r->has_value()) return Error(UnauthenticatedError("no token was given"));
  return {c.success, JsonText(CallerTokenToJson(**r))};
}

RouteResponse HandleCreateToken(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto decoded = DecodeCreateTokenBody(c.body);
  if (!decoded.ok()) return Error(decoded.status());
  auto t = c.api.CreateApiToken(c.ctx, *decoded);
  if (!t.ok()) return Error(t.status());
  json out = ApiTokenInfoToJson(t->info, now);
  auto text = t->token.RevealForCrypto();
  out["token"] = std::string(text.begin(), text.end());
  return {c.success, JsonText(out)};
}

RouteResponse HandleListTokens(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto page = DecodeListPage(c.m.query, {"workspace"});
  if (!page.ok()) return Error(page.status());
  bool ok = true;
  std::string ws = QueryValue(c.m.query, "workspace", &ok);
  if (!ok) return Error(InvalidArgumentError("query is not valid percent-encoding"));
  auto list = c.api.ListApiTokens(c.ctx, ws.empty() ? std::nullopt : std::optional(ws));
  if (!list.ok()) return Error(list.status());
  // In creation order: the cursor is the last token's id.
  return Paged(
      *list, *page, "tokens", [](const ApiTokenInfo& t) { return t.id; },
      [now](const ApiTokenInfo& t) { return ApiTokenInfoToJson(t, now); });
}

RouteResponse HandleRevokeToken(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto t = c.api.RevokeApiToken(c.ctx, c.m.id_param);
  if (!t.ok()) return Error(t.status());
  return {c.success, JsonText(ApiTokenInfoToJson(*t, now))};
}

RouteResponse HandleGetToken(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto found = c.api.GetApiToken(c.ctx, c.m.id_param);
  if (!found.ok()) return Error(found.status());
  return {c.success, JsonText(ApiTokenInfoToJson(*found, now))};
}

RouteResponse HandleHealth(const HandlerCall& c) { return {c.success, R"({"status":"ok"})"}; }

RouteResponse HandleListWorkspaces(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  auto list = c.api.ListWorkspaces(c.ctx);
  if (!list.ok()) return Error(list.status());
  return Paged(
      *list, *page, "workspaces", [](const WorkspaceInfo& w) { return w.name; },
      WorkspaceInfoToJson);
}

RouteResponse HandleCreateWorkspace(const HandlerCall& c) {
  auto name = DecodeNameBody(c.body);
  if (!name.ok()) return Error(name.status());
  return Reply(c, c.api.CreateWorkspace(c.ctx, *name), WorkspaceInfoToJson);
}

RouteResponse HandleListEnvironments(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  auto list = c.api.ListEnvironments(c.ctx, c.m.workspace);
  if (!list.ok()) return Error(list.status());
  return Paged(
      *list, *page, "environments", [](const EnvironmentInfo& e) { return e.name; },
      EnvironmentInfoToJson);
}

RouteResponse HandleCreateEnvironment(const HandlerCall& c) {
  auto name = DecodeNameBody(c.body);
  if (!name.ok()) return Error(name.status());
  return Reply(c, c.api.CreateEnvironment(c.ctx, c.m.workspace, *name), EnvironmentInfoToJson);
}

RouteResponse HandleEncrypt(const HandlerCall& c) {
  auto in = DecodeEncryptBody(c.body);
  if (!in.ok()) return Error(in.status());
  const std::string_view sc = in->scope.empty() ? std::string_view(c.m.scope) : in->scope;
  Bytes ct;
  Status s = c.api.Encrypt(c.ctx, c.m.workspace, c.m.environment, sc, in->plaintext, &ct);
  if (!s.ok()) return Error(s);
  // Written directly: the ciphertext is base64url and the scope passed ValidateScope, so
  // neither needs escaping (the bytes are what nlohmann::json would write).
  std::string out;
  out.reserve(48 + (ct.size() + 2) / 3 * 4 + sc.size());
  out.append(R"({"ciphertext":")").append(kEnvelopeTextPrefix);
  AppendBase64Url(ct, &out);
  out.append(R"(","scope":")").append(sc).append(R"("})");
  return {c.success, std::move(out)};
}

RouteResponse HandleDecrypt(const HandlerCall& c) {
  std::string storage;
  auto ciphertext = DecodeDecryptBody(c.body, &storage);
  if (!ciphertext.ok()) return Error(ciphertext.status());
  Bytes plain;
  Status s = c.api.Decrypt(c.ctx, c.m.workspace, c.m.environment, AsBytes(*ciphertext), &plain);
  if (!s.ok()) return Error(s);
  std::string out;
  out.reserve(20 + (plain.size() + 2) / 3 * 4);
  out.append(R"({"plaintext":")");
  AppendBase64(plain, &out);
  out.append(R"("})");
  return {c.success, std::move(out)};
}

RouteResponse HandleShowKey(const HandlerCall& c) {
  return Reply(c, c.api.ShowCustomerKey(c.ctx, c.m.workspace, c.m.environment),
               CustomerKeyInfoToJson);
}

RouteResponse HandleSetKey(const HandlerCall& c) {
  auto in = DecodeSetKeyBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(c,
               c.api.SetCustomerKey(c.ctx, c.m.workspace, c.m.environment, in->key.provider,
                                    in->key.key_id, in->change),
               KeyValidationToJson);
}

RouteResponse HandleKeyPolicy(const HandlerCall& c) {
  return Reply(c, c.api.KeyPolicy(c.ctx, c.m.workspace, c.m.environment), KeyPolicyAdviceToJson);
}

RouteResponse HandleCheckPolicy(const HandlerCall& c) {
  auto policy = DecodeCheckPolicyBody(c.body);
  if (!policy.ok()) return Error(policy.status());
  auto report = c.api.CheckKeyPolicy(c.ctx, c.m.workspace, *policy);
  if (!report.ok()) return Error(report.status());
  return {c.success, *report};
}

RouteResponse HandleEnvironmentStatus(const HandlerCall& c) {
  return Reply(c, c.api.KeyStatus(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentKeyStatusToJson);
}

RouteResponse HandleKeyCacheStats(const HandlerCall& c) {
  return Reply(c, c.api.KeyCacheStatistics(c.ctx), KeyCacheStatsToJson);
}

RouteResponse HandleRepackStatus(const HandlerCall& c) {
  return Reply(c, c.api.GetRepackStatus(c.ctx, c.m.workspace, c.m.environment), RepackStatusToJson);
}

RouteResponse HandleRerunRepack(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a repack run");
  if (!empty.ok()) return Error(empty);
  return Reply(c, c.api.RerunRepack(c.ctx, c.m.workspace, c.m.environment), RepackStatusToJson);
}

RouteResponse HandleImportParams(const HandlerCall& c) {
  auto expires_in = DecodeImportParamsBody(c.body);
  if (!expires_in.ok()) return Error(expires_in.status());
  return Reply(c,
               c.api.CreateKeyImportParameters(c.ctx, c.m.workspace, c.m.environment,
                                               std::chrono::seconds(*expires_in)),
               KeyImportParametersToJson);
}

RouteResponse HandleImportKeyMaterial(const HandlerCall& c) {
  auto in = DecodeImportKeyMaterialBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(c,
               c.api.ImportKeyMaterial(c.ctx, c.m.workspace, c.m.environment, in->material,
                                       in->import_token, in->change),
               KeyValidationToJson);
}

RouteResponse HandleDeleteKeyMaterial(const HandlerCall& c) {
  return Reply(c,
               c.api.DeleteKeyMaterial(c.ctx, c.m.workspace, c.m.environment, c.m.material_key_id),
               KeyMaterialDeletionToJson);
}

RouteResponse HandleRotateEnvironmentKey(const HandlerCall& c) {
  auto r = c.api.RotateEnvironmentKey(c.ctx, c.m.workspace, c.m.environment);
  if (!r.ok()) return Error(r.status());
  return {c.success, JsonText(json{{"rotated", json::array({RotationResultToJson(*r)})}})};
}

RouteResponse HandleRotateDataKeys(const HandlerCall& c) {
  auto in = DecodeRotateDataKeysBody(c.body);
  if (!in.ok()) return Error(in.status());
  auto r = c.api.RotateDataKeys(c.ctx, c.m.workspace, c.m.environment, in->scopes, in->all_scopes);
  if (!r.ok()) return Error(r.status());
  json arr = json::array();
  for (const auto& x : *r) arr.push_back(RotationResultToJson(x));
  return {c.success, JsonText(json{{"rotated", arr}})};
}

RouteResponse HandleRewrap(const HandlerCall& c) {
  auto in = DecodeRewrapBody(c.body);
  if (!in.ok()) return Error(in.status());
  Bytes out;
  auto r = c.api.Rewrap(c.ctx, c.m.workspace, c.m.environment, AsBytes(*in), &out);
  if (!r.ok()) return Error(r.status());
  std::string text(AsChars(out));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return {c.success, JsonText(json{{"ciphertext", text},
                                   {"scope", r->scope},
                                   {"from_dk_version", r->from_dk_version},
                                   {"dk_version", r->dk_version}})};
}

RouteResponse HandleShred(const HandlerCall& c) {
  // Step one (no body, or no "confirmation"): a token. Step two: the token and the name.
  auto in = DecodeShredBody(c.body, c.m.environment);
  if (!in.ok()) return Error(in.status());
  if (!in->confirmation) {
    auto token = c.api.RequestShred(c.ctx, c.m.workspace, c.m.environment);
    if (!token.ok()) return Error(token.status());
    json out = ShredConfirmationToJson(*token);
    out["next"] = "POST this route again with {\"confirmation\": \"" + token->token +
                  "\", \"environment\": \"" + token->environment +
                  "\"}: every key of the environment is destroyed and its data can never "
                  "be read";
    return {c.success, JsonText(out)};
  }
  return Reply(c,
               c.api.ShredEnvironment(c.ctx, c.m.workspace, c.m.environment, *in->confirmation,
                                      in->environment),
               ShredResultToJson);
}

RouteResponse HandleGetSettings(const HandlerCall& c) {
  return Reply(c, c.api.GetEnvironmentSettings(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentSettingsToJson);
}

RouteResponse HandlePatchSettings(const HandlerCall& c) {
  auto in = DecodeSettingsPatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(
      c, c.api.UpdateEnvironmentSettings(c.ctx, c.m.workspace, c.m.environment, in->set, in->reset),
      EnvironmentSettingsToJson);
}

RouteResponse HandleGetDefaultKey(const HandlerCall& c) {
  return Reply(c, c.api.GetWorkspaceDefaultKey(c.ctx, c.m.workspace), WorkspaceDefaultKeyToJson);
}

RouteResponse HandleSetDefaultKey(const HandlerCall& c) {
  auto key = DecodeDefaultKeyBody(c.body);
  if (!key.ok()) return Error(key.status());
  return Reply(c, c.api.SetWorkspaceDefaultKey(c.ctx, c.m.workspace, key->provider, key->key_id),
               WorkspaceDefaultKeyToJson);
}

RouteResponse HandleResetDefaultKey(const HandlerCall& c) {
  return Reply(c, c.api.ResetWorkspaceDefaultKey(c.ctx, c.m.workspace), WorkspaceDefaultKeyToJson);
}

RouteResponse HandleListEvents(const HandlerCall& c) {
  auto q = DecodeEventQuery(c.m.workspace, c.m.query, ToUnixSeconds(c.clock.Now()) * 1000);
  if (!q.ok()) return Error(q.status());
  auto list = c.api.ListEvents(c.ctx, *q);
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const auto& e : *list) arr.push_back(LifecycleEventInfoToJson(e));
  json out = {{"events", arr}};
  if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
  return {c.success, JsonText(out)};
}

RouteResponse HandleListScopes(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  auto list = c.api.ListScopes(c.ctx, c.m.workspace, c.m.environment);
  if (!list.ok()) return Error(list.status());
  return Paged(
      list->scopes, *page, "scopes", [](const ScopeInfo& s) { return s.scope; }, ScopeInfoToJson,
      json{{"workspace", list->workspace},
           {"environment", list->environment},
           {"max_messages_per_dk", list->max_messages_per_dk}});
}

RouteResponse HandleKeyHistory(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  int64_t after = 0;
  if (!page->after.empty()) {
    if (page->after.size() > 18 ||
        page->after.find_first_not_of("0123456789") != std::string::npos) {
      return Error(
          InvalidArgumentError("after must be an event id, got " + QuotedExcerpt(page->after),
                               "pass the next_after of the page before"));
    }
    after = std::stoll(page->after);
  }
  const size_t limit = page->limit == 0 ? 100 : page->limit;
  auto list = c.api.KeyHistory(c.ctx, c.m.workspace, c.m.environment, after, limit);
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const auto& e : *list) arr.push_back(LifecycleEventInfoToJson(e));
  json out = {{"events", arr}};
  if (list->size() == limit) out["next_after"] = list->back().id;
  return {c.success, JsonText(out)};
}

RouteResponse HandleReady(const HandlerCall& c) {
  // The HTTP layer answers 503 itself while shutting down; here: does the store answer?
  Status s = c.api.CheckStore();
  if (!s.ok()) {
    return {503, JsonText(json{{"status", "unavailable"},
                               {"reason", "the store does not answer: " + s.message()}})};
  }
  return {c.success, R"({"status":"ready"})"};
}

RouteResponse HandleMetrics(const HandlerCall& c) {
  return {c.success, metrics::Default().Exposition(), 0,
          "text/plain; version=0.0.4; charset=utf-8"};
}

RouteResponse HandleGetWorkspace(const HandlerCall& c) {
  return Reply(c, c.api.GetWorkspace(c.ctx, c.m.workspace), WorkspaceInfoToJson);
}

RouteResponse HandleGetEnvironment(const HandlerCall& c) {
  return Reply(c, c.api.GetEnvironment(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentInfoToJson);
}

RouteResponse HandleValidateKey(const HandlerCall& c) {
  auto key = DecodeValidateKeyBody(c.body);
  if (!key.ok()) return Error(key.status());
  return Reply(
      c,
      c.api.ValidateCustomerKey(c.ctx, c.m.workspace, c.m.environment, key->provider, key->key_id),
      KeyValidationToJson);
}

RouteResponse HandleGenerateDataKey(const HandlerCall& c) {
  auto in = DecodeGenerateDataKeyBody(c.body);
  if (!in.ok()) return Error(in.status());
  const std::string& sc = in->scope.empty() ? c.m.scope : in->scope;
  auto k = c.api.GenerateDataKey(c.ctx, c.m.workspace, c.m.environment, sc, in->bytes,
                                 in->with_plaintext);
  if (!k.ok()) return Error(k.status());
  json out = {
      {"ciphertext", EnvelopeToText(k->ciphertext)}, {"scope", k->scope}, {"bytes", in->bytes}};
  // The key bytes leave SecretBytes only here, encoded into the response.
  if (in->with_plaintext) out["plaintext"] = Base64Encode(k->plaintext.RevealForCrypto());
  return {c.success, JsonText(out)};
}

RouteResponse HandleEncryptBatch(const HandlerCall& c) {
  auto in = DecodeEncryptBatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  // Items with bad fields have their own error; the rest go to the service.
  for (BatchEncryptItem& item : in->items) {
    if (item.scope.empty()) item.scope = c.m.scope;
  }
  std::vector<StatusOr<Bytes>> results;
  if (!in->items.empty()) {
    auto r = c.api.EncryptBatch(c.ctx, c.m.workspace, c.m.environment, in->items);
    if (!r.ok()) return Error(r.status());
    results = std::move(r).value();
  }
  std::vector<json> out_items(in->count);
  for (size_t i = 0; i < in->count; ++i) {
    if (in->errors[i]) out_items[i] = ItemError(*in->errors[i]);
  }
  for (size_t k = 0; k < results.size(); ++k) {
    out_items[in->positions[k]] =
        results[k].ok()
            ? json{{"ciphertext", EnvelopeToText(*results[k])}, {"scope", in->items[k].scope}}
            : ItemError(results[k].status());
  }
  return {c.success, JsonText(json{{"items", out_items}})};
}

RouteResponse HandleDecryptBatch(const HandlerCall& c) {
  auto in = DecodeDecryptBatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  std::vector<StatusOr<Bytes>> results;
  if (!in->items.empty()) {
    auto r = c.api.DecryptBatch(c.ctx, c.m.workspace, c.m.environment, in->items);
    if (!r.ok()) return Error(r.status());
    results = std::move(r).value();
  }
  std::vector<json> out_items(in->count);
  for (size_t i = 0; i < in->count; ++i) {
    if (in->errors[i]) out_items[i] = ItemError(*in->errors[i]);
  }
  for (size_t k = 0; k < results.size(); ++k) {
    out_items[in->positions[k]] = results[k].ok() ? json{{"plaintext", Base64Encode(*results[k])}}
                                                  : ItemError(results[k].status());
  }
  return {c.success, JsonText(json{{"items", out_items}})};
}

RouteResponse HandleAuditQuery(const HandlerCall& c) {
  auto q = DecodeEventQuery(c.m.id == RouteId::kAuditQuery ? c.m.workspace : "", c.m.query,
                            ToUnixSeconds(c.clock.Now()) * 1000);
  if (!q.ok()) return Error(q.status());
  auto list = c.api.QueryAudit(c.ctx, *q);
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const auto& r : *list) arr.push_back(AuditRecordJson(r));
  json out = {{"records", arr}};
  if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
  return {c.success, JsonText(out)};
}

RouteResponse HandleAuditExport(const HandlerCall& c) {
  if (!c.m.query.empty()) {
    return Error(InvalidArgumentError("the export takes no query parameters",
                                      "it is always the whole chain; filter with the audit "
                                      "query route"));
  }
  std::string lines;
  Status s = c.api.ExportAudit(c.ctx, c.m.id == RouteId::kAuditExport ? c.m.workspace : "",
                               [&lines](const LifecycleEventRecord& r) {
                                 lines += JsonText(AuditRecordExportJson(r));
                                 lines += '\n';
                                 return Status::Ok();
                               });
  if (!s.ok()) return Error(s);
  RouteResponse res{c.success, std::move(lines)};
  res.content_type = "application/x-ndjson";
  return res;
}

RouteResponse HandleAuditListCheckpoints(const HandlerCall& c) {
  auto list = c.api.ListAuditCheckpoints(
      c.ctx, c.m.id == RouteId::kAuditListCheckpoints ? c.m.workspace : "");
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const auto& checkpoint : *list) arr.push_back(AuditCheckpointJson(checkpoint));
  return {c.success, JsonText(json{{"checkpoints", arr}})};
}

RouteResponse HandleAuditCreateCheckpoint(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a checkpoint request");
  if (!empty.ok()) return Error(empty);
  return Reply(c,
               c.api.CreateAuditCheckpoint(
                   c.ctx, c.m.id == RouteId::kAuditCreateCheckpoint ? c.m.workspace : ""),
               AuditCheckpointJson);
}

RouteResponse HandleRunDueRotations(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a rotation run");
  if (!empty.ok()) return Error(empty);
  auto report = c.api.RunScheduledRotations(c.ctx);
  if (!report.ok()) return Error(report.status());
  json rotated = json::array();
  for (const auto& r : report->rotated) rotated.push_back(RotationResultToJson(r));
  return {c.success, JsonText(json{{"rotated", rotated}, {"failures", report->failures}})};
}

RouteResponse HandleAuditPublicKey(const HandlerCall& c) {
  auto k = c.api.GetAuditPublicKey(c.ctx);
  if (!k.ok()) return Error(k.status());
  return {c.success, JsonText(json{{"algorithm", k->algorithm},
                                   {"key_id", k->key_id},
                                   {"public_key_pem", k->public_key_pem}})};
}

constexpr std::pair<RouteId, RouteHandler> kHandlers[] = {
    {RouteId::kWhoAmI, &HandleWhoAmI},
    {RouteId::kCreateToken, &HandleCreateToken},
    {RouteId::kListTokens, &HandleListTokens},
    {RouteId::kRevokeToken, &HandleRevokeToken},
    {RouteId::kGetToken, &HandleGetToken},
    {RouteId::kHealth, &HandleHealth},
    {RouteId::kListWorkspaces, &HandleListWorkspaces},
    {RouteId::kCreateWorkspace, &HandleCreateWorkspace},
    {RouteId::kListEnvironments, &HandleListEnvironments},
    {RouteId::kCreateEnvironment, &HandleCreateEnvironment},
    {RouteId::kEncrypt, &HandleEncrypt},
    {RouteId::kDecrypt, &HandleDecrypt},
    {RouteId::kShowKey, &HandleShowKey},
    {RouteId::kSetKey, &HandleSetKey},
    {RouteId::kKeyPolicy, &HandleKeyPolicy},
    {RouteId::kCheckPolicy, &HandleCheckPolicy},
    {RouteId::kEnvironmentStatus, &HandleEnvironmentStatus},
    {RouteId::kKeyCacheStats, &HandleKeyCacheStats},
    {RouteId::kRepackStatus, &HandleRepackStatus},
    {RouteId::kRerunRepack, &HandleRerunRepack},
    {RouteId::kListScopes, &HandleListScopes},
    {RouteId::kKeyHistory, &HandleKeyHistory},
    {RouteId::kImportParams, &HandleImportParams},
    {RouteId::kImportKeyMaterial, &HandleImportKeyMaterial},
    {RouteId::kDeleteKeyMaterial, &HandleDeleteKeyMaterial},
    {RouteId::kRotateEnvironmentKey, &HandleRotateEnvironmentKey},
    {RouteId::kRotateDataKeys, &HandleRotateDataKeys},
    {RouteId::kRewrap, &HandleRewrap},
    {RouteId::kShred, &HandleShred},
    {RouteId::kGetSettings, &HandleGetSettings},
    {RouteId::kPatchSettings, &HandlePatchSettings},
    {RouteId::kGetDefaultKey, &HandleGetDefaultKey},
    {RouteId::kSetDefaultKey, &HandleSetDefaultKey},
    {RouteId::kResetDefaultKey, &HandleResetDefaultKey},
    {RouteId::kListEvents, &HandleListEvents},
    {RouteId::kReady, &HandleReady},
    {RouteId::kMetrics, &HandleMetrics},
    {RouteId::kGetWorkspace, &HandleGetWorkspace},
    {RouteId::kGetEnvironment, &HandleGetEnvironment},
    {RouteId::kValidateKey, &HandleValidateKey},
    {RouteId::kGenerateDataKey, &HandleGenerateDataKey},
    {RouteId::kEncryptBatch, &HandleEncryptBatch},
    {RouteId::kDecryptBatch, &HandleDecryptBatch},
    {RouteId::kAuditQuery, &HandleAuditQuery},
    {RouteId::kPlatformAuditQuery, &HandleAuditQuery},
    {RouteId::kAuditExport, &HandleAuditExport},
    {RouteId::kPlatformAuditExport, &HandleAuditExport},
    {RouteId::kAuditListCheckpoints, &HandleAuditListCheckpoints},
    {RouteId::kPlatformAuditListCheckpoints, &HandleAuditListCheckpoints},
    {RouteId::kAuditCreateCheckpoint, &HandleAuditCreateCheckpoint},
    {RouteId::kPlatformAuditCreateCheckpoint, &HandleAuditCreateCheckpoint},
    {RouteId::kRunDueRotations, &HandleRunDueRotations},
    {RouteId::kAuditPublicKey, &HandleAuditPublicKey},
};

// Indexed by RouteId, built once: a request finds its handler without a search.
constexpr size_t kRouteIds = static_cast<size_t>(RouteId::kRunDueRotations) + 1;
const std::array<RouteHandler, kRouteIds>& HandlerIndex() {
  static const std::array<RouteHandler, kRouteIds> index = [] {
    std::array<RouteHandler, kRouteIds> a{};
    for (const auto& [id, handler] : kHandlers) a[static_cast<size_t>(id)] = handler;
    return a;
  }();
  return index;
}

}  // namespace

RouteHandler HandlerFor(RouteId id) {
  const size_t i = static_cast<size_t>(id);
  return i < kRouteIds ? HandlerIndex()[i] : nullptr;
}

}  // namespace ekm
