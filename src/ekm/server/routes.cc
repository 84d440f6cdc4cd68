#include "ekm/server/routes.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/api/repack_json.h"
#include "ekm/auth/authorization.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/metrics/metrics.h"
#include "ekm/provider/imported/key_material_import.h"
#include "ekm/server/http_errors.h"
#include "ekm/server/request_decoding.h"

namespace ekm {

namespace {

using nlohmann::json;

std::string MediaType(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

std::string TimeText(int64_t unix_seconds) { return FormatRfc3339(FromUnixSeconds(unix_seconds)); }

json WorkspaceJson(const WorkspaceInfo& w) {
  return {{"name", w.name}, {"created_at", TimeText(w.created_at)}};
}

json EnvironmentJson(const EnvironmentInfo& e) {
  return {{"workspace", e.workspace},
          {"name", e.name},
          {"created_at", TimeText(e.created_at)},
          {"cmk", {{"provider", e.cmk_provider}, {"key_id", e.cmk_key_id}}},
          {"ek_version", e.ek_version}};
}

RouteResponse Error(const Status& s) {
  return {HttpStatusFor(s.code()), ErrorJson(s), s.retry_after_seconds()};
}

// (EnvironmentKeyStatusToJson, KeyCacheStatsToJson: service/key_status_json.h)

// One item's error, the same shape as a whole response's error.
json ItemError(const Status& s) { return json::parse(ErrorJson(s)); }

class EncryptTransform : public StreamTransform {
 public:
  explicit EncryptTransform(std::unique_ptr<EnvelopeEncoder> e) : e_(std::move(e)) {}
  Status Update(ByteView chunk, Bytes* out) override { return e_->Update(chunk, out); }
  Status Finish(Bytes* out) override { return e_->Finish(out); }

 private:
  std::unique_ptr<EnvelopeEncoder> e_;
};

class DecryptTransform : public StreamTransform {
 public:
  explicit DecryptTransform(std::unique_ptr<EnvelopeDecoder> d) : d_(std::move(d)) {}
  Status Update(ByteView chunk, Bytes* out) override { return d_->Update(chunk, out); }
  Status Finish(Bytes* out) override { return d_->Finish(out); }

 private:
  std::unique_ptr<EnvelopeDecoder> d_;
};

}  // namespace

namespace {

// Splits a template or a request path into segments ("/a/b" -> {"a","b"}).
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Whether decoded segments `seg` fit `templ`; fills the placeholders of `m`.
bool PathFits(std::string_view templ, const std::vector<std::string>& seg, RouteMatch* m) {
  auto t = Segments(templ);
  if (t.size() != seg.size()) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i].front() == '{') continue;
    if (t[i] != seg[i]) return false;
  }
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == "{workspace}") m->workspace = seg[i];
    if (t[i] == "{environment}") m->environment = seg[i];
    if (t[i] == "{id}") m->id_param = seg[i];
  }
  return true;
}

}  // namespace

RouteMatch Router::MatchRoute(const RouteRequest& r) const {
  RouteMatch m;
  std::string_view target = r.target;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);
  std::vector<std::string> seg;
  bool ok = !path.empty() && path[0] == '/';
  if (ok) {
    for (std::string_view s : Segments(path)) seg.push_back(PercentDecode(s, &ok));
  }
  if (!ok) {
    m.status = InvalidArgumentError("request path is not valid percent-encoding");
    return m;
  }
  // Query: scope=…, format=text|binary (the routes' own parameters are read by their handlers).
  m.scope = QueryValue(query, "scope", &ok);
  const std::string format = QueryValue(query, "format", &ok);
  if (!ok) {
    m.status =
        InvalidArgumentError("the query string is not valid percent-encoding", "write a % as %25");
    return m;
  }

  const RouteInfo* found = nullptr;
  for (const RouteInfo& route : RouteTable()) {
    RouteMatch probe;
    if (!PathFits(route.path, seg, &probe)) continue;
    if (route.method != r.method) {
      m.allow += (m.allow.empty() ? "" : ", ") + std::string(route.method);
      continue;
    }
    found = &route;
    m.workspace = std::move(probe.workspace);
    m.environment = std::move(probe.environment);
    m.id_param = std::move(probe.id_param);
    break;
  }
  if (found == nullptr) {
    if (!m.allow.empty()) {
      m.method_not_allowed = true;
      m.status = InvalidArgumentError("method " + r.method + " is not allowed on " +
                                      std::string(path) + "; use " + m.allow);
    } else {
      m.status = NotFoundError("no such API route: " + r.method + " " + std::string(path),
                               "see docs/api.md for the routes of API v1");
    }
    return m;
  }
  m.id = found->id;
  m.found = true;
  m.remote_address = r.remote_address;
  m.request_id = r.request_id;
  m.allow.clear();
  m.query = std::string(query);

  if (m.id == RouteId::kEncrypt || m.id == RouteId::kDecrypt) {
    std::string type = MediaType(r.content_type);
    if (type == "application/octet-stream" || (m.id == RouteId::kDecrypt && type == "text/plain")) {
      m.streaming = true;
      if (format == "text") {
        m.text_output = m.id == RouteId::kEncrypt;
      } else if (!format.empty() && format != "binary") {
        m.status = InvalidArgumentError("format \"" + format + "\" is not known",
                                        "use format=text or format=binary");
      }
    } else if (type != "application/json") {
      m.unsupported_media_type = true;
      m.status =
          InvalidArgumentError("Content-Type \"" + r.content_type + "\" is not supported here",
                               "send application/json ({\"plaintext\"|\"ciphertext\": …}) or "
                               "application/octet-stream (a stream of any size)");
    }
  }
  if (m.id == RouteId::kDeleteKeyMaterial) {
    m.material_key_id = QueryValue(query, "key_id", &ok);
    if (!ok) m.status = InvalidArgumentError("query is not valid percent-encoding");
  }
  if (m.status.ok() && (r.method == "POST" || r.method == "PUT" || r.method == "PATCH") &&
      !m.streaming && !r.content_type.empty() && MediaType(r.content_type) != "application/json") {
    m.unsupported_media_type = true;
    m.status = InvalidArgumentError("Content-Type \"" + r.content_type + "\" is not supported here",
                                    "send application/json (curl: -H \"Content-Type: "
                                    "application/json\")");
  }
  if (m.scope.empty()) m.scope = std::string(kDefaultScope);
  return m;
}

namespace {

// The token of "Authorization: Bearer <token>"; "" when there is no header. A header of
// another scheme gives a text that fails as malformed.
std::string BearerToken(std::string_view header) {
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
  if (header.empty()) return "";
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return std::string(1, '?');
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) {
      return std::string(1, '?');
    }
  }
  header.remove_prefix(kScheme.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  return std::string(header);
}

json ApiTokenJson(const ApiTokenInfo& t, int64_t now) {
  json j = {{"id", t.id},
            {"role", t.role},
            {"workspace", t.workspace},
            {"environments", t.environments},
            {"description", t.description},
            {"created_at", TimeText(t.created_at)},
            {"created_by", t.created_by},
            {"expires_at", t.expires_at == 0 ? json(nullptr) : json(TimeText(t.expires_at))},
            {"revoked_at", t.revoked_at == 0 ? json(nullptr) : json(TimeText(t.revoked_at))}};
  j["state"] = t.revoked_at != 0                          ? "revoked"
               : t.expires_at != 0 && now >= t.expires_at ? "expired"
                                                          : "active";
  return j;
}

}  // namespace

RouteMatch Router::Match(const RouteRequest& r) const {
  RouteMatch m = MatchRoute(r);
  if (!m.found) return m;  // 404/405: no route, nothing to authorize
  const RouteInfo& info = RouteInfoFor(m.id);
  if (info.rule.scope == auth::RouteScope::kOpen ||
      (m.id == RouteId::kMetrics && metrics_unauthenticated_)) {
    m.authenticated = true;
    return m;
  }
  auto refuse = [&](Status s) {
    m.status = std::move(s);
    m.unsupported_media_type = false;
    m.method_not_allowed = false;
    return m;
  };
  if (service_ == nullptr) return refuse(UnavailableError("no service to check tokens"));
  std::string token = BearerToken(r.authorization);
  auto principal = service_->Authenticate(token, info.name, r.remote_address);
  OPENSSL_cleanse(token.data(), token.size());
  if (!principal.ok()) return refuse(principal.status());
  m.principal = std::move(*principal);
  Status allowed = auth::Authorize(m.principal, info.rule, info.name, m.workspace, m.environment);
  if (!allowed.ok()) {
    service_->RecordPermissionDenied(m.principal, info.name, m.workspace, m.environment,
                                     r.remote_address, allowed);
    return refuse(allowed);
  }
  m.authenticated = true;
  return m;
}

RouteResponse Router::HandleToken(const CallContext& ctx, const RouteMatch& m,
                                  const std::string& body) {
  const int64_t now = ToUnixSeconds(clock_->Now());
  switch (m.id) {
    case RouteId::kWhoAmI: {
      auto r = api_->WhoAmI(ctx);
      if (!r.ok()) return Error(r.status());
      if (!r->has_value()) return Error(UnauthenticatedError("no token was given"));
      const ApiTokenInfo& t = **r;
      return {200,
              JsonText(json{{"id", t.id},
                            {"role", t.role},
                            {"workspace", t.workspace},
                            {"environments", t.environments},
                            {"expires_at",
                             t.expires_at == 0 ? json(nullptr) : json(TimeText(t.expires_at))}})};
    }
    case RouteId::kCreateToken: {
      auto decoded = DecodeCreateTokenBody(body);
      if (!decoded.ok()) return Error(decoded.status());
      auto t = api_->CreateApiToken(ctx, *decoded);
      if (!t.ok()) return Error(t.status());
      json out = ApiTokenJson(t->info, now);
      auto text = t->token.RevealForCrypto();
      out["token"] = std::string(text.begin(), text.end());
      return {201, JsonText(out)};
    }
    case RouteId::kListTokens: {
      bool ok = true;
      std::string ws = QueryValue(m.query, "workspace", &ok);
      if (!ok) return Error(InvalidArgumentError("query is not valid percent-encoding"));
      auto list = api_->ListApiTokens(ctx, ws.empty() ? std::nullopt : std::optional(ws));
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& t : *list) arr.push_back(ApiTokenJson(t, now));
      return {200, JsonText(json{{"tokens", arr}})};
    }
    case RouteId::kRevokeToken: {
      auto t = api_->RevokeApiToken(ctx, m.id_param);
      if (!t.ok()) return Error(t.status());
      return {200, JsonText(ApiTokenJson(*t, now))};
    }
    case RouteId::kGetToken: {
      auto found = api_->GetApiToken(ctx, m.id_param);
      if (!found.ok()) return Error(found.status());
      return {200, JsonText(ApiTokenJson(*found, now))};
    }
    default:
      return Error(InternalError("not a token route"));
  }
}

RouteResponse Router::Handle(const RouteMatch& m, const std::string& body) {
  // Never serve a match whose caller was not checked (e.g. one from MatchRoute).
  if (!m.authenticated) {
    return Error(UnauthenticatedError("the request was not authenticated"));
  }
  // Lifecycle events name the caller: "token:<id>" ("api" on the open routes).
  const CallContext ctx = CallContext::Request(m.principal, m.request_id, m.remote_address);
  switch (m.id) {
    case RouteId::kHealth:
      return {200, R"({"status":"ok"})"};
    case RouteId::kListWorkspaces: {
      auto list = api_->ListWorkspaces(ctx);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& w : *list) arr.push_back(WorkspaceJson(w));
      return {200, JsonText(json{{"workspaces", arr}})};
    }
    case RouteId::kCreateWorkspace: {
      auto name = DecodeNameBody(body);
      if (!name.ok()) return Error(name.status());
      auto w = api_->CreateWorkspace(ctx, *name);
      if (!w.ok()) return Error(w.status());
      return {201, JsonText(WorkspaceJson(*w))};
    }
    case RouteId::kListEnvironments: {
      auto list = api_->ListEnvironments(ctx, m.workspace);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& e : *list) arr.push_back(EnvironmentJson(e));
      return {200, JsonText(json{{"environments", arr}})};
    }
    case RouteId::kCreateEnvironment: {
      auto name = DecodeNameBody(body);
      if (!name.ok()) return Error(name.status());
      auto e = api_->CreateEnvironment(ctx, m.workspace, *name);
      if (!e.ok()) return Error(e.status());
      return {201, JsonText(EnvironmentJson(*e))};
    }
    case RouteId::kEncrypt: {
      auto in = DecodeEncryptBody(body);
      if (!in.ok()) return Error(in.status());
      const std::string_view sc = in->scope.empty() ? std::string_view(m.scope) : in->scope;
      Bytes ct;
      Status s = api_->Encrypt(ctx, m.workspace, m.environment, sc, in->plaintext, &ct);
      if (!s.ok()) return Error(s);
      // Written directly: the ciphertext is base64url and the scope passed ValidateScope, so
      // neither needs escaping (the bytes are what nlohmann::json would write).
      std::string out;
      out.reserve(48 + (ct.size() + 2) / 3 * 4 + sc.size());
      out.append(R"({"ciphertext":")").append(kEnvelopeTextPrefix);
      AppendBase64Url(ct, &out);
      out.append(R"(","scope":")").append(sc).append(R"("})");
      return {200, std::move(out)};
    }
    case RouteId::kDecrypt: {
      std::string storage;
      auto ciphertext = DecodeDecryptBody(body, &storage);
      if (!ciphertext.ok()) return Error(ciphertext.status());
      Bytes plain;
      Status s = api_->Decrypt(ctx, m.workspace, m.environment, AsBytes(*ciphertext), &plain);
      if (!s.ok()) return Error(s);
      std::string out;
      out.reserve(20 + (plain.size() + 2) / 3 * 4);
      out.append(R"({"plaintext":")");
      AppendBase64(plain, &out);
      out.append(R"("})");
      return {200, std::move(out)};
    }
    case RouteId::kShowKey: {
      auto info = api_->ShowCustomerKey(ctx, m.workspace, m.environment);
      if (!info.ok()) return Error(info.status());
      return {200, JsonText(CustomerKeyInfoToJson(*info))};
    }
    case RouteId::kSetKey: {
      auto in = DecodeSetKeyBody(body);
      if (!in.ok()) return Error(in.status());
      auto v = api_->SetCustomerKey(ctx, m.workspace, m.environment, in->key.provider,
                                    in->key.key_id, in->change);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kKeyPolicy: {
      auto a = api_->KeyPolicy(ctx, m.workspace, m.environment);
      if (!a.ok()) return Error(a.status());
      return {200, JsonText(KeyPolicyAdviceToJson(*a))};
    }
    case RouteId::kCheckPolicy: {
      auto policy = DecodeCheckPolicyBody(body);
      if (!policy.ok()) return Error(policy.status());
      auto report = api_->CheckKeyPolicy(ctx, m.workspace, *policy);
      if (!report.ok()) return Error(report.status());
      return {200, *report};
    }
    case RouteId::kEnvironmentStatus: {
      auto st = api_->KeyStatus(ctx, m.workspace, m.environment);
      if (!st.ok()) return Error(st.status());
      return {200, JsonText(EnvironmentKeyStatusToJson(*st))};
    }
    case RouteId::kKeyCacheStats: {
      auto stats = api_->KeyCacheStatistics(ctx);
      if (!stats.ok()) return Error(stats.status());
      return {200, JsonText(KeyCacheStatsToJson(*stats))};
    }

    case RouteId::kRepackStatus: {
      auto st = api_->GetRepackStatus(ctx, m.workspace, m.environment);
      if (!st.ok()) return Error(st.status());
      return {200, JsonText(RepackStatusToJson(*st))};
    }

    case RouteId::kImportParams: {
      auto expires_in = DecodeImportParamsBody(body);
      if (!expires_in.ok()) return Error(expires_in.status());
      auto p = api_->CreateKeyImportParameters(ctx, m.workspace, m.environment,
                                               std::chrono::seconds(*expires_in));
      if (!p.ok()) return Error(p.status());
      return {200, JsonText(KeyImportParametersToJson(*p))};
    }
    case RouteId::kImportKeyMaterial: {
      auto in = DecodeImportKeyMaterialBody(body);
      if (!in.ok()) return Error(in.status());
      auto v = api_->ImportKeyMaterial(ctx, m.workspace, m.environment, in->material,
                                       in->import_token, in->change);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kDeleteKeyMaterial: {
      auto d = api_->DeleteKeyMaterial(ctx, m.workspace, m.environment, m.material_key_id);
      if (!d.ok()) return Error(d.status());
      return {200, JsonText(KeyMaterialDeletionToJson(*d))};
    }

    case RouteId::kRotateEnvironmentKey: {
      auto r = api_->RotateEnvironmentKey(ctx, m.workspace, m.environment);
      if (!r.ok()) return Error(r.status());
      return {200, JsonText(json{{"rotated", json::array({RotationResultToJson(*r)})}})};
    }
    case RouteId::kRotateDataKeys: {
      auto in = DecodeRotateDataKeysBody(body);
      if (!in.ok()) return Error(in.status());
      auto r = api_->RotateDataKeys(ctx, m.workspace, m.environment, in->scopes, in->all_scopes);
      if (!r.ok()) return Error(r.status());
      json arr = json::array();
      for (const auto& x : *r) arr.push_back(RotationResultToJson(x));
      return {200, JsonText(json{{"rotated", arr}})};
    }
    case RouteId::kRewrap: {
      auto in = DecodeRewrapBody(body);
      if (!in.ok()) return Error(in.status());
      Bytes out;
      auto r = api_->Rewrap(ctx, m.workspace, m.environment, AsBytes(*in), &out);
      if (!r.ok()) return Error(r.status());
      std::string text(AsChars(out));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      return {200, JsonText(json{{"ciphertext", text},
                                 {"scope", r->scope},
                                 {"from_dk_version", r->from_dk_version},
                                 {"dk_version", r->dk_version}})};
    }
    case RouteId::kShred: {
      // Step one (no body, or no "confirmation"): a token. Step two: the token and the name.
      auto in = DecodeShredBody(body, m.environment);
      if (!in.ok()) return Error(in.status());
      if (!in->confirmation) {
        auto c = api_->RequestShred(ctx, m.workspace, m.environment);
        if (!c.ok()) return Error(c.status());
        json out = ShredConfirmationToJson(*c);
        out["next"] = "POST this route again with {\"confirmation\": \"" + c->token +
                      "\", \"environment\": \"" + c->environment +
                      "\"}: every key of the environment is destroyed and its data can never "
                      "be read";
        return {200, JsonText(out)};
      }
      auto r = api_->ShredEnvironment(ctx, m.workspace, m.environment, *in->confirmation,
                                      in->environment);
      if (!r.ok()) return Error(r.status());
      return {200, JsonText(ShredResultToJson(*r))};
    }
    case RouteId::kGetSettings: {
      auto s = api_->GetEnvironmentSettings(ctx, m.workspace, m.environment);
      if (!s.ok()) return Error(s.status());
      return {200, JsonText(EnvironmentSettingsToJson(*s))};
    }
    case RouteId::kPatchSettings: {
      auto in = DecodeSettingsPatchBody(body);
      if (!in.ok()) return Error(in.status());
      auto s = api_->UpdateEnvironmentSettings(ctx, m.workspace, m.environment, in->set, in->reset);
      if (!s.ok()) return Error(s.status());
      return {200, JsonText(EnvironmentSettingsToJson(*s))};
    }
    case RouteId::kGetDefaultKey: {
      auto k = api_->GetWorkspaceDefaultKey(ctx, m.workspace);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kSetDefaultKey: {
      auto key = DecodeDefaultKeyBody(body);
      if (!key.ok()) return Error(key.status());
      auto k = api_->SetWorkspaceDefaultKey(ctx, m.workspace, key->provider, key->key_id);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kResetDefaultKey: {
      auto k = api_->ResetWorkspaceDefaultKey(ctx, m.workspace);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kListEvents: {
      auto q = DecodeEventQuery(m.workspace, m.query, ToUnixSeconds(clock_->Now()) * 1000);
      if (!q.ok()) return Error(q.status());
      auto list = api_->ListEvents(ctx, *q);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& e : *list) arr.push_back(LifecycleEventInfoToJson(e));
      json out = {{"events", arr}};
      if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
      return {200, JsonText(out)};
    }

    case RouteId::kCreateToken:
    case RouteId::kListTokens:
    case RouteId::kRevokeToken:
    case RouteId::kGetToken:
    case RouteId::kWhoAmI:
      return HandleToken(ctx, m, body);
    case RouteId::kReady: {
      // The HTTP layer answers 503 itself while shutting down; here: does the store answer?
      Status s = api_->CheckStore();
      if (!s.ok()) {
        return {503, JsonText(json{{"status", "unavailable"},
                                   {"reason", "the store does not answer: " + s.message()}})};
      }
      return {200, R"({"status":"ready"})"};
    }
    case RouteId::kMetrics:
      return {200, metrics::Default().Exposition(), 0, "text/plain; version=0.0.4; charset=utf-8"};
    case RouteId::kGetWorkspace: {
      auto w = api_->GetWorkspace(ctx, m.workspace);
      if (!w.ok()) return Error(w.status());
      return {200, JsonText(WorkspaceJson(*w))};
    }
    case RouteId::kGetEnvironment: {
      auto e = api_->GetEnvironment(ctx, m.workspace, m.environment);
      if (!e.ok()) return Error(e.status());
      return {200, JsonText(EnvironmentJson(*e))};
    }
    case RouteId::kValidateKey: {
      auto key = DecodeValidateKeyBody(body);
      if (!key.ok()) return Error(key.status());
      auto v =
          api_->ValidateCustomerKey(ctx, m.workspace, m.environment, key->provider, key->key_id);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kGenerateDataKey: {
      auto in = DecodeGenerateDataKeyBody(body);
      if (!in.ok()) return Error(in.status());
      const std::string& sc = in->scope.empty() ? m.scope : in->scope;
      auto k =
          api_->GenerateDataKey(ctx, m.workspace, m.environment, sc, in->bytes, in->with_plaintext);
      if (!k.ok()) return Error(k.status());
      json out = {
          {"ciphertext", EnvelopeToText(k->ciphertext)}, {"scope", k->scope}, {"bytes", in->bytes}};
      // The key bytes leave SecretBytes only here, encoded into the response.
      if (in->with_plaintext) out["plaintext"] = Base64Encode(k->plaintext.RevealForCrypto());
      return {200, JsonText(out)};
    }
    case RouteId::kEncryptBatch: {
      auto in = DecodeEncryptBatchBody(body);
      if (!in.ok()) return Error(in.status());
      // Items with bad fields have their own error; the rest go to the service.
      for (BatchEncryptItem& item : in->items) {
        if (item.scope.empty()) item.scope = m.scope;
      }
      std::vector<StatusOr<Bytes>> results;
      if (!in->items.empty()) {
        auto r = api_->EncryptBatch(ctx, m.workspace, m.environment, in->items);
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
      return {200, JsonText(json{{"items", out_items}})};
    }
    case RouteId::kDecryptBatch: {
      auto in = DecodeDecryptBatchBody(body);
      if (!in.ok()) return Error(in.status());
      std::vector<StatusOr<Bytes>> results;
      if (!in->items.empty()) {
        auto r = api_->DecryptBatch(ctx, m.workspace, m.environment, in->items);
        if (!r.ok()) return Error(r.status());
        results = std::move(r).value();
      }
      std::vector<json> out_items(in->count);
      for (size_t i = 0; i < in->count; ++i) {
        if (in->errors[i]) out_items[i] = ItemError(*in->errors[i]);
      }
      for (size_t k = 0; k < results.size(); ++k) {
        out_items[in->positions[k]] = results[k].ok()
                                          ? json{{"plaintext", Base64Encode(*results[k])}}
                                          : ItemError(results[k].status());
      }
      return {200, JsonText(json{{"items", out_items}})};
    }
    // (chain: the workspace's, or "" = the platform's)
    case RouteId::kAuditQuery:
    case RouteId::kPlatformAuditQuery: {
      auto q = DecodeEventQuery(m.id == RouteId::kAuditQuery ? m.workspace : "", m.query,
                                ToUnixSeconds(clock_->Now()) * 1000);
      if (!q.ok()) return Error(q.status());
      auto list = api_->QueryAudit(ctx, *q);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& r : *list) arr.push_back(AuditRecordJson(r));
      json out = {{"records", arr}};
      if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
      return {200, JsonText(out)};
    }
    case RouteId::kAuditExport:
    case RouteId::kPlatformAuditExport: {
      if (!m.query.empty()) {
        return Error(InvalidArgumentError("the export takes no query parameters",
                                          "it is always the whole chain; filter with the audit "
                                          "query route"));
      }
      std::string lines;
      Status s = api_->ExportAudit(ctx, m.id == RouteId::kAuditExport ? m.workspace : "",
                                   [&lines](const LifecycleEventRecord& r) {
                                     lines += JsonText(AuditRecordExportJson(r));
                                     lines += '\n';
                                     return Status::Ok();
                                   });
      if (!s.ok()) return Error(s);
      RouteResponse res{200, std::move(lines)};
      res.content_type = "application/x-ndjson";
      return res;
    }
    case RouteId::kAuditListCheckpoints:
    case RouteId::kPlatformAuditListCheckpoints: {
      auto list = api_->ListAuditCheckpoints(
          ctx, m.id == RouteId::kAuditListCheckpoints ? m.workspace : "");
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& c : *list) arr.push_back(AuditCheckpointJson(c));
      return {200, JsonText(json{{"checkpoints", arr}})};
    }
    case RouteId::kAuditCreateCheckpoint:
    case RouteId::kPlatformAuditCreateCheckpoint: {
      Status empty = DecodeEmptyBody(body, "a checkpoint request");
      if (!empty.ok()) return Error(empty);
      auto c = api_->CreateAuditCheckpoint(
          ctx, m.id == RouteId::kAuditCreateCheckpoint ? m.workspace : "");
      if (!c.ok()) return Error(c.status());
      return {201, JsonText(AuditCheckpointJson(*c))};
    }
    case RouteId::kRunDueRotations: {
      Status empty = DecodeEmptyBody(body, "a rotation run");
      if (!empty.ok()) return Error(empty);
      auto report = api_->RunScheduledRotations(ctx);
      if (!report.ok()) return Error(report.status());
      json rotated = json::array();
      for (const auto& r : report->rotated) rotated.push_back(RotationResultToJson(r));
      return {200, JsonText(json{{"rotated", rotated}, {"failures", report->failures}})};
    }
    case RouteId::kAuditPublicKey: {
      auto k = api_->GetAuditPublicKey(ctx);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(json{{"algorithm", k->algorithm},
                                 {"key_id", k->key_id},
                                 {"public_key_pem", k->public_key_pem}})};
    }
  }
  return Error(InternalError("unhandled route"));
}

StatusOr<std::unique_ptr<StreamTransform>> Router::OpenStream(const RouteMatch& m) {
  if (!m.authenticated) return UnauthenticatedError("the request was not authenticated");
  const CallContext ctx = CallContext::Request(m.principal, m.request_id, m.remote_address);
  if (m.id == RouteId::kEncrypt) {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<EnvelopeEncoder> enc,
        api_->NewEncryptStream(ctx, m.workspace, m.environment, m.scope, m.text_output));
    return std::unique_ptr<StreamTransform>(new EncryptTransform(std::move(enc)));
  }
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> dec,
                       api_->NewDecryptStream(ctx, m.workspace, m.environment));
  return std::unique_ptr<StreamTransform>(new DecryptTransform(std::move(dec)));
}

}  // namespace ekm
