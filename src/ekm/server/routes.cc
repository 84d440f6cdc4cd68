#include "ekm/server/routes.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "ekm/api/http_errors.h"
#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/api/operation_handlers.h"
#include "ekm/api/repack_json.h"
#include "ekm/api/request_codec.h"
#include "ekm/auth/authorization.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/metrics/metrics.h"
#include "ekm/provider/imported/key_material_import.h"

namespace ekm {

namespace {

using nlohmann::json;

std::string MediaType(std::string_view content_type) {
  std::string t(content_type.substr(0, content_type.find(';')));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return t;
}

// (EnvironmentKeyStatusToJson, KeyCacheStatsToJson: service/key_status_json.h)

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

namespace {

// The row of `method` and the path's segments `seg`, its names filled into `m`; nullptr with
// `m->status` saying why not (405 naming the methods the path allows, or 404).
const RouteInfo* FindRoute(const std::string& method, std::string_view path,
                           const std::vector<std::string>& seg, RouteMatch* m) {
  for (const RouteInfo& route : RouteTable()) {
    RouteMatch probe;
    if (!PathFits(route.path, seg, &probe)) continue;
    if (route.method != method) {
      m->allow += (m->allow.empty() ? "" : ", ") + std::string(route.method);
      continue;
    }
    m->workspace = std::move(probe.workspace);
    m->environment = std::move(probe.environment);
    m->id_param = std::move(probe.id_param);
    return &route;
  }
  if (!m->allow.empty()) {
    m->method_not_allowed = true;
    m->status = InvalidArgumentError("method " + method + " is not allowed on " +
                                     std::string(path) + "; use " + m->allow);
  } else {
    m->status = NotFoundError("no such API route: " + method + " " + std::string(path),
                              "see docs/api.md for the routes of API v1");
  }
  return nullptr;
}

// The body the route takes (its row's `body`): encrypt and decrypt take an octet stream (decrypt
// a text/plain one too) or JSON, every other route with a body JSON.
void CheckBodyKind(const RouteRequest& r, const RouteInfo& route, const std::string& format,
                   RouteMatch* out) {
  RouteMatch& m = *out;
  if (route.body == RouteBody::kNone) return;
  const std::string type = MediaType(r.content_type);
  if (route.body == RouteBody::kJsonOrStream) {
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
    return;
  }
  if (!r.content_type.empty() && type != "application/json") {
    m.unsupported_media_type = true;
    m.status = InvalidArgumentError("Content-Type \"" + r.content_type + "\" is not supported here",
                                    "send application/json (curl: -H \"Content-Type: "
                                    "application/json\")");
  }
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

  const RouteInfo* found = FindRoute(r.method, path, seg, &m);
  if (found == nullptr) return m;
  m.id = found->id;
  m.found = true;
  m.remote_address = r.remote_address;
  m.request_id = r.request_id;
  m.allow.clear();
  m.query = std::string(query);

  CheckBodyKind(r, *found, format, &m);
  if (m.id == RouteId::kDeleteKeyMaterial) {
    m.material_key_id = QueryValue(query, "key_id", &ok);
    if (!ok) m.status = InvalidArgumentError("query is not valid percent-encoding");
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

RouteResponse Router::Handle(const RouteMatch& m, const std::string& body) {
  // Never serve a match whose caller was not checked (e.g. one from MatchRoute).
  if (!m.authenticated) {
    return ErrorResponse(UnauthenticatedError("the request was not authenticated"));
  }
  const RouteInfo& row = RouteInfoFor(m.id);
  // Lifecycle events name the caller: "token:<id>" ("api" on the open routes).
  const CallContext ctx = CallContext::Request(m.principal, m.request_id, m.remote_address);
  return row.handler(HandlerCall{*api_, ctx, m, body, *clock_, row.success_status});
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
