#include "ekm/api/operation_handlers.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "ekm/api/http_errors.h"
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

namespace ekm {

OperationResponse ErrorResponse(const Status& s) {
  return {HttpStatusFor(s.code()), ErrorJson(s), s.retry_after_seconds()};
}

namespace {

using nlohmann::json;

OperationResponse Error(const Status& s) { return ErrorResponse(s); }

// One item's error, the same shape as a whole response's error.
json ItemError(const Status& s) { return json::parse(ErrorJson(s)); }

// The answer of an operation: its error, or `status` with the JSON `encode` makes of its value.
template <typename T, typename Encode>
OperationResponse Reply(const HandlerCall& c, const StatusOr<T>& result, Encode encode) {
  if (!result.ok()) return Error(result.status());
  return {c.success, JsonText(encode(*result))};
}

// One page of a list, in the list's own order (names for workspaces and environments, creation
// for tokens): the items after the one whose key is `page.after`, at most `page.limit` (0: all),
// and `next_after` (the last item's key) when more remain. A cursor naming no item is refused:
// a list's items are never deleted, so it was not one of ours. `out` holds the answer's other
// fields.
template <typename T, typename KeyFn, typename ToJson>
OperationResponse Paged(const std::vector<T>& list, const ListPage& page, const char* member,
                        KeyFn key, ToJson to_json, json out = json::object()) {
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

// A page of events or audit records under `member`, with `next_after` (the last id) when the
// page is full: the next page starts after it.
template <typename T, typename ToJson>
OperationResponse EventPage(const HandlerCall& c, const StatusOr<std::vector<T>>& list,
                            size_t limit, const char* member, ToJson to_json) {
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const T& e : *list) arr.push_back(to_json(e));
  json out = {{member, std::move(arr)}};
  if (list->size() == limit && !list->empty()) out["next_after"] = list->back().id;
  return {c.success, JsonText(out)};
}

// A batch's answer: the well-formed items through `call` (one service call for all), each
// result written by `encode(k, bytes)` at its position, and every item that failed to decode or
// to run as its own error.
template <typename Item, typename Encode>
OperationResponse BatchAnswer(const HandlerCall& c, const BatchBody<Item>& in,
                              StatusOr<std::vector<StatusOr<Bytes>>> (EkmApi::*call)(
                                  const CallContext&, std::string_view, std::string_view,
                                  const std::vector<Item>&),
                              Encode encode) {
  std::vector<StatusOr<Bytes>> results;
  if (!in.items.empty()) {
    auto r = (c.api.*call)(c.ctx, c.m.workspace, c.m.environment, in.items);
    if (!r.ok()) return Error(r.status());
    results = std::move(r).value();
  }
  std::vector<json> out_items(in.count);
  for (size_t i = 0; i < in.count; ++i) {
    if (in.errors[i]) out_items[i] = ItemError(*in.errors[i]);
  }
  for (size_t k = 0; k < results.size(); ++k) {
    out_items[in.positions[k]] =
        results[k].ok() ? encode(k, *results[k]) : ItemError(results[k].status());
  }
  return {c.success, JsonText(json{{"items", out_items}})};
}

}  // namespace

OperationResponse HandleWhoAmI(const HandlerCall& c) {
  auto r = c.api.WhoAmI(c.ctx);
  if (!r.ok()) return Error(r.status());
  if (!r->has_value()) return Error(UnauthenticatedError("no token was given"));
  return {c.success, JsonText(CallerTokenToJson(**r))};
}

OperationResponse HandleCreateToken(const HandlerCall& c) {
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

OperationResponse HandleListTokens(const HandlerCall& c) {
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

OperationResponse HandleRevokeToken(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto t = c.api.RevokeApiToken(c.ctx, c.m.id_param);
  if (!t.ok()) return Error(t.status());
  return {c.success, JsonText(ApiTokenInfoToJson(*t, now))};
}

OperationResponse HandleGetToken(const HandlerCall& c) {
  const int64_t now = ToUnixSeconds(c.clock.Now());
  auto found = c.api.GetApiToken(c.ctx, c.m.id_param);
  if (!found.ok()) return Error(found.status());
  return {c.success, JsonText(ApiTokenInfoToJson(*found, now))};
}

OperationResponse HandleHealth(const HandlerCall& c) { return {c.success, R"({"status":"ok"})"}; }

OperationResponse HandleListWorkspaces(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  auto list = c.api.ListWorkspaces(c.ctx);
  if (!list.ok()) return Error(list.status());
  return Paged(
      *list, *page, "workspaces", [](const WorkspaceInfo& w) { return w.name; },
      WorkspaceInfoToJson);
}

OperationResponse HandleCreateWorkspace(const HandlerCall& c) {
  auto name = DecodeNameBody(c.body);
  if (!name.ok()) return Error(name.status());
  return Reply(c, c.api.CreateWorkspace(c.ctx, *name), WorkspaceInfoToJson);
}

OperationResponse HandleListEnvironments(const HandlerCall& c) {
  auto page = DecodeListPage(c.m.query);
  if (!page.ok()) return Error(page.status());
  auto list = c.api.ListEnvironments(c.ctx, c.m.workspace);
  if (!list.ok()) return Error(list.status());
  return Paged(
      *list, *page, "environments", [](const EnvironmentInfo& e) { return e.name; },
      EnvironmentInfoToJson);
}

OperationResponse HandleCreateEnvironment(const HandlerCall& c) {
  auto name = DecodeNameBody(c.body);
  if (!name.ok()) return Error(name.status());
  return Reply(c, c.api.CreateEnvironment(c.ctx, c.m.workspace, *name), EnvironmentInfoToJson);
}

OperationResponse HandleEncrypt(const HandlerCall& c) {
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

OperationResponse HandleDecrypt(const HandlerCall& c) {
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

OperationResponse HandleShowKey(const HandlerCall& c) {
  return Reply(c, c.api.ShowCustomerKey(c.ctx, c.m.workspace, c.m.environment),
               CustomerKeyInfoToJson);
}

OperationResponse HandleSetKey(const HandlerCall& c) {
  auto in = DecodeSetKeyBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(c,
               c.api.SetCustomerKey(c.ctx, c.m.workspace, c.m.environment, in->key.provider,
                                    in->key.key_id, in->change),
               KeyValidationToJson);
}

OperationResponse HandleKeyPolicy(const HandlerCall& c) {
  return Reply(c, c.api.KeyPolicy(c.ctx, c.m.workspace, c.m.environment), KeyPolicyAdviceToJson);
}

OperationResponse HandleCheckPolicy(const HandlerCall& c) {
  auto policy = DecodeCheckPolicyBody(c.body);
  if (!policy.ok()) return Error(policy.status());
  auto report = c.api.CheckKeyPolicy(c.ctx, c.m.workspace, *policy);
  if (!report.ok()) return Error(report.status());
  return {c.success, *report};
}

OperationResponse HandleEnvironmentStatus(const HandlerCall& c) {
  return Reply(c, c.api.KeyStatus(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentKeyStatusToJson);
}

OperationResponse HandleKeyCacheStats(const HandlerCall& c) {
  return Reply(c, c.api.KeyCacheStatistics(c.ctx), KeyCacheStatsToJson);
}

OperationResponse HandleRepackStatus(const HandlerCall& c) {
  return Reply(c, c.api.GetRepackStatus(c.ctx, c.m.workspace, c.m.environment), RepackStatusToJson);
}

OperationResponse HandleRerunRepack(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a repack run");
  if (!empty.ok()) return Error(empty);
  return Reply(c, c.api.RerunRepack(c.ctx, c.m.workspace, c.m.environment), RepackStatusToJson);
}

OperationResponse HandleImportParams(const HandlerCall& c) {
  auto expires_in = DecodeImportParamsBody(c.body);
  if (!expires_in.ok()) return Error(expires_in.status());
  return Reply(c,
               c.api.CreateKeyImportParameters(c.ctx, c.m.workspace, c.m.environment,
                                               std::chrono::seconds(*expires_in)),
               KeyImportParametersToJson);
}

OperationResponse HandleImportKeyMaterial(const HandlerCall& c) {
  auto in = DecodeImportKeyMaterialBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(c,
               c.api.ImportKeyMaterial(c.ctx, c.m.workspace, c.m.environment, in->material,
                                       in->import_token, in->change),
               KeyValidationToJson);
}

OperationResponse HandleDeleteKeyMaterial(const HandlerCall& c) {
  return Reply(c,
               c.api.DeleteKeyMaterial(c.ctx, c.m.workspace, c.m.environment, c.m.material_key_id),
               KeyMaterialDeletionToJson);
}

OperationResponse HandleRotateEnvironmentKey(const HandlerCall& c) {
  auto r = c.api.RotateEnvironmentKey(c.ctx, c.m.workspace, c.m.environment);
  if (!r.ok()) return Error(r.status());
  return {c.success, JsonText(json{{"rotated", json::array({RotationResultToJson(*r)})}})};
}

OperationResponse HandleRotateDataKeys(const HandlerCall& c) {
  auto in = DecodeRotateDataKeysBody(c.body);
  if (!in.ok()) return Error(in.status());
  auto r = c.api.RotateDataKeys(c.ctx, c.m.workspace, c.m.environment, in->scopes, in->all_scopes);
  if (!r.ok()) return Error(r.status());
  json arr = json::array();
  for (const auto& x : *r) arr.push_back(RotationResultToJson(x));
  return {c.success, JsonText(json{{"rotated", arr}})};
}

OperationResponse HandleRewrap(const HandlerCall& c) {
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

OperationResponse HandleShred(const HandlerCall& c) {
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

OperationResponse HandleGetSettings(const HandlerCall& c) {
  return Reply(c, c.api.GetEnvironmentSettings(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentSettingsToJson);
}

OperationResponse HandlePatchSettings(const HandlerCall& c) {
  auto in = DecodeSettingsPatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  return Reply(
      c, c.api.UpdateEnvironmentSettings(c.ctx, c.m.workspace, c.m.environment, in->set, in->reset),
      EnvironmentSettingsToJson);
}

OperationResponse HandleGetDefaultKey(const HandlerCall& c) {
  return Reply(c, c.api.GetWorkspaceDefaultKey(c.ctx, c.m.workspace), WorkspaceDefaultKeyToJson);
}

OperationResponse HandleSetDefaultKey(const HandlerCall& c) {
  auto key = DecodeDefaultKeyBody(c.body);
  if (!key.ok()) return Error(key.status());
  return Reply(c, c.api.SetWorkspaceDefaultKey(c.ctx, c.m.workspace, key->provider, key->key_id),
               WorkspaceDefaultKeyToJson);
}

OperationResponse HandleResetDefaultKey(const HandlerCall& c) {
  return Reply(c, c.api.ResetWorkspaceDefaultKey(c.ctx, c.m.workspace), WorkspaceDefaultKeyToJson);
}

OperationResponse HandleListEvents(const HandlerCall& c) {
  auto q = DecodeEventQuery(c.m.workspace, c.m.query, ToUnixSeconds(c.clock.Now()) * 1000);
  if (!q.ok()) return Error(q.status());
  return EventPage(c, c.api.ListEvents(c.ctx, *q), q->limit, "events", LifecycleEventInfoToJson);
}

OperationResponse HandleListScopes(const HandlerCall& c) {
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

OperationResponse HandleKeyHistory(const HandlerCall& c) {
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

OperationResponse HandleReady(const HandlerCall& c) {
  // The HTTP layer answers 503 itself while shutting down; here: does the store answer?
  Status s = c.api.CheckStore();
  if (!s.ok()) {
    return {503, JsonText(json{{"status", "unavailable"},
                               {"reason", "the store does not answer: " + s.message()}})};
  }
  return {c.success, R"({"status":"ready"})"};
}

OperationResponse HandleMetrics(const HandlerCall& c) {
  return {c.success, metrics::Default().Exposition(), 0,
          "text/plain; version=0.0.4; charset=utf-8"};
}

OperationResponse HandleGetWorkspace(const HandlerCall& c) {
  return Reply(c, c.api.GetWorkspace(c.ctx, c.m.workspace), WorkspaceInfoToJson);
}

OperationResponse HandleGetEnvironment(const HandlerCall& c) {
  return Reply(c, c.api.GetEnvironment(c.ctx, c.m.workspace, c.m.environment),
               EnvironmentInfoToJson);
}

OperationResponse HandleValidateKey(const HandlerCall& c) {
  auto key = DecodeValidateKeyBody(c.body);
  if (!key.ok()) return Error(key.status());
  return Reply(
      c,
      c.api.ValidateCustomerKey(c.ctx, c.m.workspace, c.m.environment, key->provider, key->key_id),
      KeyValidationToJson);
}

OperationResponse HandleGenerateDataKey(const HandlerCall& c) {
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

OperationResponse HandleEncryptBatch(const HandlerCall& c) {
  auto in = DecodeEncryptBatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  // Items with bad fields have their own error; the rest go to the service.
  for (BatchEncryptItem& item : in->items) {
    if (item.scope.empty()) item.scope = c.m.scope;
  }
  return BatchAnswer(c, *in, &EkmApi::EncryptBatch, [&](size_t k, const Bytes& envelope) {
    return json{{"ciphertext", EnvelopeToText(envelope)}, {"scope", in->items[k].scope}};
  });
}

OperationResponse HandleDecryptBatch(const HandlerCall& c) {
  auto in = DecodeDecryptBatchBody(c.body);
  if (!in.ok()) return Error(in.status());
  return BatchAnswer(c, *in, &EkmApi::DecryptBatch, [](size_t, const Bytes& plaintext) {
    return json{{"plaintext", Base64Encode(plaintext)}};
  });
}

OperationResponse HandleAuditQuery(const HandlerCall& c) {
  auto q = DecodeEventQuery(c.m.id == RouteId::kAuditQuery ? c.m.workspace : "", c.m.query,
                            ToUnixSeconds(c.clock.Now()) * 1000);
  if (!q.ok()) return Error(q.status());
  return EventPage(c, c.api.QueryAudit(c.ctx, *q), q->limit, "records", AuditRecordJson);
}

OperationResponse HandleAuditExport(const HandlerCall& c) {
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
  OperationResponse res{c.success, std::move(lines)};
  res.content_type = "application/x-ndjson";
  return res;
}

OperationResponse HandleAuditListCheckpoints(const HandlerCall& c) {
  auto list = c.api.ListAuditCheckpoints(
      c.ctx, c.m.id == RouteId::kAuditListCheckpoints ? c.m.workspace : "");
  if (!list.ok()) return Error(list.status());
  json arr = json::array();
  for (const auto& checkpoint : *list) arr.push_back(AuditCheckpointJson(checkpoint));
  return {c.success, JsonText(json{{"checkpoints", arr}})};
}

OperationResponse HandleAuditCreateCheckpoint(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a checkpoint request");
  if (!empty.ok()) return Error(empty);
  return Reply(c,
               c.api.CreateAuditCheckpoint(
                   c.ctx, c.m.id == RouteId::kAuditCreateCheckpoint ? c.m.workspace : ""),
               AuditCheckpointJson);
}

OperationResponse HandleRunDueRotations(const HandlerCall& c) {
  Status empty = DecodeEmptyBody(c.body, "a rotation run");
  if (!empty.ok()) return Error(empty);
  auto report = c.api.RunScheduledRotations(c.ctx);
  if (!report.ok()) return Error(report.status());
  json rotated = json::array();
  for (const auto& r : report->rotated) rotated.push_back(RotationResultToJson(r));
  return {c.success, JsonText(json{{"rotated", rotated}, {"failures", report->failures}})};
}

OperationResponse HandleAuditPublicKey(const HandlerCall& c) {
  auto k = c.api.GetAuditPublicKey(c.ctx);
  if (!k.ok()) return Error(k.status());
  return {c.success, JsonText(json{{"algorithm", k->algorithm},
                                   {"key_id", k->key_id},
                                   {"public_key_pem", k->public_key_pem}})};
}

}  // namespace ekm
