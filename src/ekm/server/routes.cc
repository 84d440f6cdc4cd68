#include "ekm/server/routes.h"

#include <openssl/crypto.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <optional>
#include <vector>

#include "ekm/auth/authorization.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/metrics/metrics.h"
#include "ekm/provider/imported/key_material_import.h"
#include "ekm/repack/repack_json.h"
#include "ekm/server/flat_json.h"
#include "ekm/server/http_errors.h"
#include "ekm/service/key_json.h"
#include "ekm/service/key_material_json.h"
#include "ekm/service/key_status_json.h"
#include "ekm/service/lifecycle_json.h"

namespace ekm {

namespace {

using nlohmann::json;

std::string PercentDecode(std::string_view s, bool* ok) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      if (i + 2 >= s.size()) {
        *ok = false;
        return {};
      }
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) {
        *ok = false;
        return {};
      }
      out.push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

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

// "emergency" and "reason" of PUT …/key: an emergency replacement inside the replacement period.
StatusOr<KeyChangeOptions> KeyChangeOptionsFrom(const json& j) {
  KeyChangeOptions o;
  if (auto it = j.find("emergency"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return InvalidArgumentError("field \"emergency\" must be true or false",
                                  "send {\"emergency\": true, \"reason\": \"why\"} for an "
                                  "emergency replacement");
    }
    o.emergency = it->get<bool>();
  }
  if (auto it = j.find("reason"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) {
      return InvalidArgumentError("field \"reason\" must be a string");
    }
    o.reason = it->get<std::string>();
  }
  return o;
}

// The value of `name` in a query string ("" when absent).
std::string QueryValue(std::string_view query, std::string_view name, bool* ok) {
  for (size_t i = 0; i < query.size();) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    size_t eq = kv.find('=');
    if (PercentDecode(kv.substr(0, eq), ok) == name) {
      return eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), ok);
    }
    i = amp + 1;
  }
  return "";
}

// The query parameters of GET /v1/workspaces/{w}/events.
StatusOr<EventQuery> EventQueryFromQueryString(const std::string& workspace,
                                               std::string_view query) {
  EventQuery q;
  q.workspace = workspace;
  const int64_t now_ms = ToUnixSeconds(Clock::Real().Now()) * 1000;
  for (size_t i = 0; i < query.size();) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    i = amp + 1;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    bool ok = true;
    std::string key = PercentDecode(kv.substr(0, eq), &ok);
    std::string value = eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), &ok);
    if (!ok) return InvalidArgumentError("the query string is not valid percent-encoding");
    auto number = [&](const char* what) -> StatusOr<int64_t> {
      if (value.empty() || value.size() > 18 ||
          value.find_first_not_of("0123456789") != std::string::npos) {
        return InvalidArgumentError(std::string(what) + " must be a whole number, got \"" +
                                    value + "\"");
      }
      return std::stoll(value);
    };
    if (key == "environment") {
      if (!value.empty()) q.environment = value;
    } else if (key == "type") {
      q.type = value;
    } else if (key == "since" || key == "until") {
      EKM_ASSIGN_OR_RETURN(int64_t ms, ParseTimeMs(value, now_ms));
      (key == "since" ? q.since_ms : q.until_ms) = ms;
    } else if (key == "after") {
      EKM_ASSIGN_OR_RETURN(q.after_id, number("after"));
    } else if (key == "limit") {
      EKM_ASSIGN_OR_RETURN(int64_t n, number("limit"));
      q.limit = static_cast<size_t>(n);
    } else {
      return InvalidArgumentError("unknown query parameter \"" + key + "\"",
                                  "use environment, type, since, until, after, limit");
    }
  }
  return q;
}

// The first error nlohmann's parser meets in a text: a syntax error, or a number beyond the
// range of a double (1e309), which json::parse throws as out_of_range, not as parse_error.
class JsonErrorFinder : public nlohmann::json_sax<json> {
 public:
  size_t position = 0;  // bytes read when the error was found: just past the offending token
  std::string token;
  int id = 0;  // nlohmann's exception id: 101.. syntax, 406 number overflow
  std::string what;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t pos, const std::string& last_token,
                   const json::exception& ex) override {
    position = pos;
    token = last_token;
    id = ex.id;
    what = ex.what();
    return false;
  }
};

// "line L, column C" of byte `offset` (0-based) of `text`.
std::string LineAndColumn(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// Why `body` is not JSON, naming where (what json::parse's exceptions say, worded for a caller).
Status JsonSyntaxError(const std::string& body) {
  JsonErrorFinder finder;
  json::sax_parse(body, &finder);
  const std::string hint =
      "send one JSON object with Content-Type: application/json (with curl, --data '{\"name\": "
      "\"acme\"}'); a key policy goes in as a JSON string: {\"policy\": \"...\"}";
  if (finder.id == 406) {
    // The offending token ends where the parser stopped: name where it starts.
    const size_t start =
        finder.position >= finder.token.size() ? finder.position - finder.token.size() : 0;
    std::string number = finder.token.size() > 40 ? finder.token.substr(0, 40) + "…"
                                                   : finder.token;
    return InvalidArgumentError("request body is not valid JSON at " +
                                    LineAndColumn(body, start) + ": the number " + number +
                                    " is out of range (beyond ±1.8e308)",
                                "send numbers within the range of a double: every number ekm "
                                "reads is a whole number of modest size, e.g. "
                                "{\"expires_in_seconds\": 86400}");
  }
  // parse_error's position is 1-based: the byte that could not be read.
  const size_t at = finder.position > 0 ? finder.position - 1 : 0;
  auto pos = finder.what.find("syntax error");
  return InvalidArgumentError("request body is not valid JSON at " + LineAndColumn(body, at) +
                                  (pos != std::string::npos ? ": " + finder.what.substr(pos) : ""),
                              hint);
}

// Parses a JSON object body; a parse error names line and column.
StatusOr<json> ParseObject(const std::string& body) {
  if (body.empty()) {
    return InvalidArgumentError("request body is empty", "send a JSON object");
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return JsonSyntaxError(body);
  if (!j.is_object()) {
    return InvalidArgumentError("request body must be a JSON object, got " +
                                    std::string(j.type_name()),
                                "send one JSON object, e.g. {\"name\": \"acme\"}; docs/api.md "
                                "lists each route's fields");
  }
  return j;
}

StatusOr<std::string> StringField(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (required) return InvalidArgumentError(std::string("field \"") + name + "\" is missing");
    return std::string();
  }
  if (!it->is_string()) {
    return InvalidArgumentError(std::string("field \"") + name + "\" must be a string, got " +
                                it->type_name());
  }
  return it->get<std::string>();
}

// --- issue5-D ---
// The "items" array of a batch body: present, an array, 1..kMaxBatchItems long.
StatusOr<const json*> BatchItems(const json& j) {
  auto it = j.find("items");
  if (it == j.end() || !it->is_array()) {
    return InvalidArgumentError("field \"items\" must be an array",
                                "send {\"items\": [ … ]} with 1 to " +
                                    std::to_string(kMaxBatchItems) + " items");
  }
  if (it->size() > kMaxBatchItems) {
    return InvalidArgumentError("a batch holds at most " + std::to_string(kMaxBatchItems) +
                                    " items, got " + std::to_string(it->size()),
                                "split the items into batches of " +
                                    std::to_string(kMaxBatchItems) + " or fewer");
  }
  if (it->empty()) {
    return InvalidArgumentError("field \"items\" is empty",
                                "send 1 to " + std::to_string(kMaxBatchItems) + " items");
  }
  return &*it;
}

// One item's error, the same shape as a whole response's error.
json ItemError(const Status& s) { return json::parse(ErrorJson(s)); }

// The CMK named by a key body: {"aws_kms_arn"} or {"provider","key_id"} (PUT …/key and
// POST …/key/validate).
struct KeyRef {
  std::string provider;
  std::string key_id;
};
StatusOr<KeyRef> KeyRefFrom(const json& j) {
  EKM_ASSIGN_OR_RETURN(std::string arn, StringField(j, "aws_kms_arn", false));
  KeyRef k;
  EKM_ASSIGN_OR_RETURN(k.provider, StringField(j, "provider", false));
  EKM_ASSIGN_OR_RETURN(k.key_id, StringField(j, "key_id", false));
  if (!arn.empty() && (!k.provider.empty() || !k.key_id.empty())) {
    return InvalidArgumentError(
        "give either \"aws_kms_arn\" or \"provider\" and \"key_id\", not both");
  }
  if (!arn.empty()) {
    k.provider = "aws-kms";
    k.key_id = std::move(arn);
  }
  if (k.provider.empty() || k.key_id.empty()) {
    return InvalidArgumentError(
        "the key is missing",
        "send {\"aws_kms_arn\": \"arn:aws:kms:REGION:ACCOUNT:key/KEY-ID\"}, or "
        "{\"provider\": \"platform\", \"key_id\": \"root\"}");
  }
  return k;
}

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
    {RouteId::kKeyPolicy, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/key/policy", "key.policy"},
    {RouteId::kCheckPolicy, "POST", "/v1/workspaces/{workspace}/key-policy/check",
     "key_policy.check"},
    {RouteId::kEnvironmentStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/status", "environment.status"},
    {RouteId::kRepackStatus, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/repack", "repack.status"},
    {RouteId::kImportParams, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import-params",
     "key.import_params"},
    {RouteId::kImportKeyMaterial, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/import", "key.import"},
    {RouteId::kDeleteKeyMaterial, "DELETE",
     "/v1/workspaces/{workspace}/environments/{environment}/key/material",
     "key.delete_material"},
    {RouteId::kRotateEnvironmentKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/rotate", "key.rotate"},
    {RouteId::kRotateDataKeys, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/data-keys/rotate",
     "data_keys.rotate"},
    {RouteId::kRewrap, "POST", "/v1/workspaces/{workspace}/environments/{environment}/rewrap",
     "data.rewrap"},
    {RouteId::kShred, "POST", "/v1/workspaces/{workspace}/environments/{environment}/shred",
     "environment.shred"},
    {RouteId::kGetSettings, "GET",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.show"},
    {RouteId::kPatchSettings, "PATCH",
     "/v1/workspaces/{workspace}/environments/{environment}/settings", "settings.update"},
    {RouteId::kGetDefaultKey, "GET", "/v1/workspaces/{workspace}/default-key",
     "default_key.show"},
    {RouteId::kSetDefaultKey, "PUT", "/v1/workspaces/{workspace}/default-key",
     "default_key.set"},
    {RouteId::kResetDefaultKey, "DELETE", "/v1/workspaces/{workspace}/default-key",
     "default_key.reset"},
    {RouteId::kListEvents, "GET", "/v1/workspaces/{workspace}/events", "events.list"},
    // --- issue5-A ---
    {RouteId::kCreateToken, "POST", "/v1/tokens", "token.create"},
    {RouteId::kListTokens, "GET", "/v1/tokens", "token.list"},
    {RouteId::kRevokeToken, "DELETE", "/v1/tokens/{id}", "token.revoke"},
    {RouteId::kWhoAmI, "GET", "/v1/token", "token.show"},

    // --- issue5-C ---
    {RouteId::kReady, "GET", "/readyz", "ready"},
    {RouteId::kMetrics, "GET", "/metrics", "metrics"},
    // --- issue5-D ---
    {RouteId::kGetWorkspace, "GET", "/v1/workspaces/{workspace}", "workspace.show"},
    {RouteId::kGetEnvironment, "GET", "/v1/workspaces/{workspace}/environments/{environment}",
     "environment.show"},
    {RouteId::kValidateKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/key/validate", "key.validate"},
    {RouteId::kGenerateDataKey, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/generate-data-key",
     "data.generate_data_key"},
    {RouteId::kEncryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/encrypt/batch",
     "data.encrypt_batch"},
    {RouteId::kDecryptBatch, "POST",
     "/v1/workspaces/{workspace}/environments/{environment}/decrypt/batch",
     "data.decrypt_batch"},
    // --- issue5-B ---
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
  // Query: scope=…, format=text|binary.
  std::string format;
  for (size_t i = 0; i <= query.size() && !query.empty();) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view kv = query.substr(i, amp - i);
    size_t eq = kv.find('=');
    std::string key = PercentDecode(kv.substr(0, eq), &ok);
    std::string value = eq == std::string_view::npos ? "" : PercentDecode(kv.substr(eq + 1), &ok);
    if (key == "scope") m.scope = value;
    if (key == "format") format = value;
    i = amp + 1;
  }

  const RouteInfo* found = nullptr;
  for (const RouteInfo& route : kRoutes) {
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
      m.status = InvalidArgumentError(
          "Content-Type \"" + r.content_type + "\" is not supported here",
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
    m.status = InvalidArgumentError("Content-Type \"" + r.content_type +
                                        "\" is not supported here",
                                    "send application/json (curl: -H \"Content-Type: "
                                    "application/json\")");
  }
  if (m.scope.empty()) m.scope = std::string(kDefaultScope);
  return m;
}


// --- issue5-A ---
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
  const auth::RouteRule rule = auth::RuleFor(m.id);
  if (rule.scope == auth::RouteScope::kOpen ||
      (m.id == RouteId::kMetrics && metrics_unauthenticated_)) {
    m.authenticated = true;
    return m;
  }
  const RouteInfo& info = RouteInfoFor(m.id);
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
  Status allowed = auth::Authorize(m.principal, m.id, info.name, m.workspace, m.environment);
  if (!allowed.ok()) {
    service_->RecordPermissionDenied(m.principal, info.name, m.workspace, m.environment,
                                     r.remote_address, allowed);
    return refuse(allowed);
  }
  m.authenticated = true;
  return m;
}

RouteResponse Router::Denied(const RouteMatch& m, const Status& why) {
  service_->RecordPermissionDenied(m.principal, RouteInfoFor(m.id).name, m.workspace,
                                   m.environment, m.remote_address, why);
  return Error(why);
}

RouteResponse Router::HandleToken(const RouteMatch& m, const std::string& body) {
  const auth::Principal& p = m.principal;
  const int64_t now = ToUnixSeconds(Clock::Real().Now());
  switch (m.id) {
    case RouteId::kWhoAmI:
      return {200, JsonText(json{{"id", p.token_id},
                                 {"role", auth::RoleName(p.role)},
                                 {"workspace", p.workspace},
                                 {"environments", p.environments},
                                 {"expires_at", p.expires_at == 0 ? json(nullptr)
                                                                  : json(TimeText(p.expires_at))}})};
    case RouteId::kCreateToken: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      // A misspelt field must not silently widen a credential (e.g. "enviroments" ignored
      // would mint a token for every environment).
      for (const auto& [key, value] : j->items()) {
        (void)value;
        if (key != "role" && key != "workspace" && key != "environments" &&
            key != "description" && key != "expires_in_seconds") {
          return Error(InvalidArgumentError(
              "unknown field \"" + key + "\" in a token request",
              "the fields are role, workspace, environments, description, expires_in_seconds"));
        }
      }
      ApiTokenRequest req;
      auto role = StringField(*j, "role", true);
      if (!role.ok()) return Error(role.status().WithHint("e.g. {\"role\": \"app\", \"workspace\": \"acme\"}"));
      auto ws = StringField(*j, "workspace", false);
      if (!ws.ok()) return Error(ws.status());
      auto desc = StringField(*j, "description", false);
      if (!desc.ok()) return Error(desc.status());
      req.role = *role;
      req.workspace = *ws;
      // A workspace's owner mints tokens of its own workspace unless it names one.
      if (req.workspace.empty() && !p.IsAdmin() && !p.local_operator) req.workspace = p.workspace;
      req.description = *desc;
      if (auto it = j->find("environments"); it != j->end() && !it->is_null()) {
        if (!it->is_array()) {
          return Error(InvalidArgumentError("field \"environments\" must be an array of strings"));
        }
        for (const auto& e : *it) {
          if (!e.is_string()) {
            return Error(InvalidArgumentError("field \"environments\" must be an array of strings"));
          }
          req.environments.push_back(e.get<std::string>());
        }
      }
      if (auto it = j->find("expires_in_seconds"); it != j->end() && !it->is_null()) {
        if (!it->is_number_integer()) {
          return Error(InvalidArgumentError("field \"expires_in_seconds\" must be an integer",
                                            "e.g. {\"expires_in_seconds\": 2592000} (30 days)"));
        }
        req.expires_in = std::chrono::seconds(it->get<int64_t>());
      }
      Status allowed =
          auth::AuthorizeTokenAdministration(p, auth::TokenAction::kCreate, req.workspace, req.role);
      if (!allowed.ok()) return Denied(m, allowed);
      if (!p.local_operator) req.requested_by = p.role;
      auto t = service_->CreateApiToken(req);
      // The admin asking for the owner of a workspace that has one is refused there.
      if (t.status().code() == StatusCode::kPermissionDenied) return Denied(m, t.status());
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
      std::optional<std::string> filter;
      if (!p.IsAdmin()) {
        if (ws.empty()) ws = p.workspace;
        filter = ws;
      } else if (!ws.empty()) {
        filter = ws;
      }
      if (!p.IsAdmin()) {
        Status allowed = auth::AuthorizeTokenAdministration(p, auth::TokenAction::kList, ws);
        if (!allowed.ok()) return Denied(m, allowed);
      }
      auto list = service_->ListApiTokens(filter);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& t : *list) arr.push_back(ApiTokenJson(t, now));
      return {200, JsonText(json{{"tokens", arr}})};
    }
    case RouteId::kRevokeToken: {
      constexpr auto kRevoke = auth::TokenAction::kRevoke;
      auto found = service_->GetApiToken(m.id_param);
      if (!found.ok() && found.status().code() != StatusCode::kNotFound &&
          found.status().code() != StatusCode::kInvalidArgument) {
        return Error(found.status());
      }
      if (!p.IsAdmin()) {
        // An unknown id and another workspace's token get the same 403: no existence leak.
        Status allowed =
            found.ok() ? auth::AuthorizeTokenAdministration(p, kRevoke, found->workspace,
                                                            found->role)
                       : auth::AuthorizeTokenAdministration(p, kRevoke, "\x01");
        if (!allowed.ok()) return Denied(m, allowed);
      } else if (found.ok()) {
        Status allowed =
            auth::AuthorizeTokenAdministration(p, kRevoke, found->workspace, found->role);
        if (!allowed.ok()) return Denied(m, allowed);
      }
      auto t = service_->RevokeApiToken(
          m.id_param, p.local_operator ? std::nullopt : std::optional<auth::Role>(p.role));
      if (!t.ok()) return Error(t.status());
      return {200, JsonText(ApiTokenJson(*t, now))};
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
  ScopedActor actor(m.principal.token_id.empty() ? std::string("api") : m.principal.Actor());
  const auth::Principal& caller = m.principal;
  switch (m.id) {
    case RouteId::kHealth:
      return {200, R"({"status":"ok"})"};
    case RouteId::kListWorkspaces: {
      auto list = service_->ListWorkspaces();
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& w : *list) {
        if (!caller.IsAdmin() && w.name != caller.workspace) continue;  // scoped: its own only
        arr.push_back(WorkspaceJson(w));
      }
      return {200, JsonText(json{{"workspaces", arr}})};
    }
    case RouteId::kCreateWorkspace: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto name = StringField(*j, "name", true);
      if (!name.ok()) return Error(name.status());
      auto w = service_->CreateWorkspace(*name);
      if (!w.ok()) return Error(w.status());
      return {201, JsonText(WorkspaceJson(*w))};
    }
    case RouteId::kListEnvironments: {
      auto list = service_->ListEnvironments(m.workspace);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& e : *list) {
        if (!caller.MayUseEnvironment(e.name)) continue;  // restricted: its own only
        arr.push_back(EnvironmentJson(e));
      }
      return {200, JsonText(json{{"environments", arr}})};
    }
    case RouteId::kCreateEnvironment: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto name = StringField(*j, "name", true);
      if (!name.ok()) return Error(name.status());
      auto e = service_->CreateEnvironment(m.workspace, *name);
      if (!e.ok()) return Error(e.status());
      return {201, JsonText(EnvironmentJson(*e))};
    }
    case RouteId::kEncrypt: {
      std::string plaintext_field, scope_field;
      std::string_view plaintext_text, scope_text;
      FlatFields flat;
      size_t flat_count = 0;
      const std::string_view* flat_plaintext = nullptr;
      if (ParseFlatStringObject(body, &flat, &flat_count) &&
          (flat_plaintext = FlatValue(flat, flat_count, "plaintext")) != nullptr) {
        plaintext_text = *flat_plaintext;
        if (const std::string_view* sc = FlatValue(flat, flat_count, "scope")) scope_text = *sc;
      } else {
        auto j = ParseObject(body);
        if (!j.ok()) return Error(j.status());
        auto plaintext = StringField(*j, "plaintext", true);
        if (!plaintext.ok()) return Error(plaintext.status());
        auto scope = StringField(*j, "scope", false);
        if (!scope.ok()) return Error(scope.status());
        plaintext_field = std::move(plaintext).value();
        scope_field = std::move(scope).value();
        plaintext_text = plaintext_field;
        scope_text = scope_field;
      }
      auto bytes = Base64Decode(plaintext_text);
      if (!bytes.ok()) {
        return Error(InvalidArgumentError("field \"plaintext\" must be base64: " +
                                          bytes.status().message()));
      }
      const std::string_view sc = scope_text.empty() ? std::string_view(m.scope) : scope_text;
      Bytes ct;
      Status s = service_->Encrypt(m.workspace, m.environment, sc, *bytes, &ct);
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
      std::string ciphertext_field;
      std::string_view ciphertext_text;
      FlatFields flat;
      size_t flat_count = 0;
      const std::string_view* flat_ciphertext = nullptr;
      if (ParseFlatStringObject(body, &flat, &flat_count) &&
          (flat_ciphertext = FlatValue(flat, flat_count, "ciphertext")) != nullptr) {
        ciphertext_text = *flat_ciphertext;
      } else {
        auto j = ParseObject(body);
        if (!j.ok()) return Error(j.status());
        auto ciphertext = StringField(*j, "ciphertext", true);
        if (!ciphertext.ok()) return Error(ciphertext.status());
        ciphertext_field = std::move(ciphertext).value();
        ciphertext_text = ciphertext_field;
      }
      Bytes plain;
      Status s = service_->Decrypt(m.workspace, m.environment, AsBytes(ciphertext_text), &plain);
      if (!s.ok()) return Error(s);
      std::string out;
      out.reserve(20 + (plain.size() + 2) / 3 * 4);
      out.append(R"({"plaintext":")");
      AppendBase64(plain, &out);
      out.append(R"("})");
      return {200, std::move(out)};
    }
    case RouteId::kShowKey: {
      auto info = service_->ShowCustomerKey(m.workspace, m.environment);
      if (!info.ok()) return Error(info.status());
      return {200, JsonText(CustomerKeyInfoToJson(*info))};
    }
    case RouteId::kSetKey: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto key = KeyRefFrom(*j);
      if (!key.ok()) return Error(key.status());
      std::string* provider = &key->provider;
      std::string* key_id = &key->key_id;
      auto change = KeyChangeOptionsFrom(*j);  // emergency replacement
      if (!change.ok()) return Error(change.status());
      if (change->emergency) {
        Status owner = auth::AuthorizeOwnerOnly(caller, "an emergency replacement");
        if (!owner.ok()) return Denied(m, owner);
      }
      auto v = service_->SetCustomerKey(m.workspace, m.environment, *provider, *key_id, *change);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kKeyPolicy: {
      auto a = service_->KeyPolicy(m.workspace, m.environment);
      if (!a.ok()) return Error(a.status());
      return {200, JsonText(KeyPolicyAdviceToJson(*a))};
    }
    case RouteId::kCheckPolicy: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto policy = StringField(*j, "policy", true);
      if (!policy.ok()) {
        return Error(policy.status().WithHint(
            "send the key policy as pasted, as a JSON string: {\"policy\": \"{ ... }\"}"));
      }
      auto report = service_->CheckKeyPolicy(m.workspace, *policy);
      if (!report.ok()) return Error(report.status());
      return {200, *report};
    }
    case RouteId::kEnvironmentStatus: {
      auto st = service_->KeyStatus(m.workspace, m.environment);
      if (!st.ok()) return Error(st.status());
      return {200, JsonText(EnvironmentKeyStatusToJson(*st))};
    }
    case RouteId::kKeyCacheStats:
      return {200, JsonText(KeyCacheStatsToJson(service_->KeyCacheStatistics()))};

    case RouteId::kRepackStatus: {
      auto st = service_->GetRepackStatus(m.workspace, m.environment);
      if (!st.ok()) return Error(st.status());
      return {200, JsonText(RepackStatusToJson(*st))};
    }

    case RouteId::kImportParams: {
      int64_t expires_in = kDefaultImportTokenLifetimeSeconds;
      if (!body.empty()) {  // the body is optional here
        auto j = ParseObject(body);
        if (!j.ok()) return Error(j.status());
        auto it = j->find("expires_in_seconds");
        if (it != j->end()) {
          if (!it->is_number_integer()) {
            return Error(InvalidArgumentError("field \"expires_in_seconds\" must be an integer",
                                              "send e.g. {\"expires_in_seconds\": 86400}"));
          }
          expires_in = it->get<int64_t>();
        }
      }
      auto p = service_->CreateKeyImportParameters(m.workspace, m.environment,
                                                   std::chrono::seconds(expires_in));
      if (!p.ok()) return Error(p.status());
      return {200, JsonText(KeyImportParametersToJson(*p))};
    }
    case RouteId::kImportKeyMaterial: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto material = StringField(*j, "material", true);
      if (!material.ok()) {
        return Error(material.status().WithHint(
            "send {\"material\": base64 of material.wrapped, \"import_token\": \"…\"}"));
      }
      auto token = StringField(*j, "import_token", true);
      if (!token.ok()) {
        return Error(token.status().WithHint(
            "send the token from POST …/key/import-params as \"import_token\""));
      }
      auto bytes = Base64Decode(*material);
      if (!bytes.ok()) {
        return Error(InvalidArgumentError("field \"material\" must be base64: " +
                                          bytes.status().message(),
                                          "base64-encode the binary material.wrapped file"));
      }
      auto change = KeyChangeOptionsFrom(*j);
      if (!change.ok()) return Error(change.status());
      if (change->emergency) {
        Status owner = auth::AuthorizeOwnerOnly(caller, "an emergency replacement");
        if (!owner.ok()) return Denied(m, owner);
      }
      auto v = service_->ImportKeyMaterial(m.workspace, m.environment, *bytes, *token, *change);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kDeleteKeyMaterial: {
      auto d = service_->DeleteKeyMaterial(m.workspace, m.environment, m.material_key_id);
      if (!d.ok()) return Error(d.status());
      return {200, JsonText(KeyMaterialDeletionToJson(*d))};
    }

    case RouteId::kRotateEnvironmentKey: {
      auto r = service_->RotateEnvironmentKey(m.workspace, m.environment);
      if (!r.ok()) return Error(r.status());
      return {200, JsonText(json{{"rotated", json::array({RotationResultToJson(*r)})}})};
    }
    case RouteId::kRotateDataKeys: {
      auto j = ParseObject(body.empty() ? "{}" : body);
      if (!j.ok()) return Error(j.status());
      std::vector<std::string> scopes;
      if (auto it = j->find("scopes"); it != j->end()) {
        if (!it->is_array()) return Error(InvalidArgumentError("field \"scopes\" must be an array of strings", "e.g. {\"scopes\": [\"orders\"]}, or {\"all_scopes\": true}"));
        for (const auto& sc : *it) {
          if (!sc.is_string()) return Error(InvalidArgumentError("field \"scopes\" must be an array of strings", "e.g. {\"scopes\": [\"orders\"]}, or {\"all_scopes\": true}"));
          scopes.push_back(sc.get<std::string>());
        }
      }
      auto all = j->find("all_scopes");
      if (all != j->end() && !all->is_boolean()) {
        return Error(InvalidArgumentError("field \"all_scopes\" must be true or false", "send {\"all_scopes\": true}, or name them in \"scopes\""));
      }
      auto r = service_->RotateDataKeys(m.workspace, m.environment, scopes,
                                        all != j->end() && all->get<bool>());
      if (!r.ok()) return Error(r.status());
      json arr = json::array();
      for (const auto& x : *r) arr.push_back(RotationResultToJson(x));
      return {200, JsonText(json{{"rotated", arr}})};
    }
    case RouteId::kRewrap: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto ciphertext = StringField(*j, "ciphertext", true);
      if (!ciphertext.ok()) return Error(ciphertext.status());
      // The text form in, the text form out (JSON carries text).
      std::string in = *ciphertext;
      if (!in.starts_with(kEnvelopeTextPrefix)) {
        return Error(InvalidArgumentError("field \"ciphertext\" must be the text form (ekm1:…)",
                                          "send the ciphertext as the encrypt route returned it"));
      }
      Bytes out;
      auto r = service_->Rewrap(m.workspace, m.environment, AsBytes(in), &out);
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
      json j = json::object();
      if (!body.empty()) {
        auto parsed = ParseObject(body);
        if (!parsed.ok()) return Error(parsed.status());
        j = *parsed;
      }
      if (!j.contains("confirmation")) {
        auto c = service_->RequestShred(m.workspace, m.environment);
        if (!c.ok()) return Error(c.status());
        json out = ShredConfirmationToJson(*c);
        out["next"] = "POST this route again with {\"confirmation\": \"" + c->token +
                      "\", \"environment\": \"" + c->environment +
                      "\"}: every key of the environment is destroyed and its data can never "
                      "be read";
        return {200, JsonText(out)};
      }
      auto token = StringField(j, "confirmation", true);
      if (!token.ok()) return Error(token.status());
      auto name = StringField(j, "environment", true);
      if (!name.ok()) {
        return Error(name.status().WithHint("type the environment's name again: {\"environment\": \"" +
                                            m.environment + "\"}"));
      }
      auto r = service_->ShredEnvironment(m.workspace, m.environment, *token, *name);
      if (!r.ok()) return Error(r.status());
      return {200, JsonText(ShredResultToJson(*r))};
    }
    case RouteId::kGetSettings: {
      auto s = service_->GetEnvironmentSettings(m.workspace, m.environment);
      if (!s.ok()) return Error(s.status());
      return {200, JsonText(EnvironmentSettingsToJson(*s))};
    }
    case RouteId::kPatchSettings: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      EnvironmentSettings set;
      std::vector<std::string> reset;
      Status p = EnvironmentSettingsPatchFromJson(*j, &set, &reset);
      if (!p.ok()) return Error(p);
      // The replacement period guards CMK replacements, which key-managers make; like the
      // emergency replacement that bypasses it, changing (or resetting) it is the owner's.
      if (set.replacement_period_seconds ||
          std::find(reset.begin(), reset.end(), kSettingReplacementPeriod) != reset.end()) {
        Status owner = auth::AuthorizeOwnerOnly(
            caller, "changing " + std::string(kSettingReplacementPeriod));
        if (!owner.ok()) return Denied(m, owner);
      }
      auto s = service_->UpdateEnvironmentSettings(m.workspace, m.environment, set, reset);
      if (!s.ok()) return Error(s.status());
      return {200, JsonText(EnvironmentSettingsToJson(*s))};
    }
    case RouteId::kGetDefaultKey: {
      auto k = service_->GetWorkspaceDefaultKey(m.workspace);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kSetDefaultKey: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto arn = StringField(*j, "aws_kms_arn", false);
      if (!arn.ok()) return Error(arn.status());
      auto provider = StringField(*j, "provider", false);
      if (!provider.ok()) return Error(provider.status());
      auto key_id = StringField(*j, "key_id", false);
      if (!key_id.ok()) return Error(key_id.status());
      if (!arn->empty()) {
        *provider = "aws-kms";
        *key_id = *arn;
      }
      if (provider->empty() || key_id->empty()) {
        return Error(InvalidArgumentError(
            "the key is missing",
            "send {\"aws_kms_arn\": \"arn:aws:kms:REGION:ACCOUNT:key/KEY-ID\"}; DELETE this "
            "route to go back to the platform key"));
      }
      auto k = service_->SetWorkspaceDefaultKey(m.workspace, *provider, *key_id);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kResetDefaultKey: {
      auto k = service_->ResetWorkspaceDefaultKey(m.workspace);
      if (!k.ok()) return Error(k.status());
      return {200, JsonText(WorkspaceDefaultKeyToJson(*k))};
    }
    case RouteId::kListEvents: {
      auto q = EventQueryFromQueryString(m.workspace, m.query);
      if (!q.ok()) return Error(q.status());
      if (caller.EnvironmentRestricted() &&
          (!q->environment || !caller.MayUseEnvironment(*q->environment))) {
        return Denied(m, PermissionDeniedError(
                             "this token may read only the events of its own environments",
                             "add ?environment=E for one of the token's environments"));
      }
      auto list = service_->ListEvents(*q);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& e : *list) arr.push_back(LifecycleEventInfoToJson(e));
      json out = {{"events", arr}};
      if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
      return {200, JsonText(out)};
    }

    // --- issue5-A ---
    case RouteId::kCreateToken:
    case RouteId::kListTokens:
    case RouteId::kRevokeToken:
    case RouteId::kWhoAmI:
      return HandleToken(m, body);
    // --- issue5-C ---
    case RouteId::kReady: {
      // The HTTP layer answers 503 itself while shutting down; here: does the store answer?
      Status s = service_->CheckStore();
      if (!s.ok()) {
        return {503, JsonText(json{{"status", "unavailable"},
                                   {"reason", "the store does not answer: " + s.message()}})};
      }
      return {200, R"({"status":"ready"})"};
    }
    case RouteId::kMetrics:
      return {200, metrics::Default().Exposition(), 0, "text/plain; version=0.0.4; charset=utf-8"};
    // --- issue5-D ---
    case RouteId::kGetWorkspace: {
      auto w = service_->GetWorkspace(m.workspace);
      if (!w.ok()) return Error(w.status());
      return {200, JsonText(WorkspaceJson(*w))};
    }
    case RouteId::kGetEnvironment: {
      auto e = service_->GetEnvironment(m.workspace, m.environment);
      if (!e.ok()) return Error(e.status());
      return {200, JsonText(EnvironmentJson(*e))};
    }
    case RouteId::kValidateKey: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto key = KeyRefFrom(*j);
      if (!key.ok()) return Error(key.status());
      std::string* provider = &key->provider;
      std::string* key_id = &key->key_id;
      auto v = service_->ValidateCustomerKey(m.workspace, m.environment, *provider, *key_id);
      if (!v.ok()) return Error(v.status());
      return {200, JsonText(KeyValidationToJson(*v))};
    }
    case RouteId::kGenerateDataKey: {
      auto j = ParseObject(body.empty() ? "{}" : body);
      if (!j.ok()) return Error(j.status());
      auto scope = StringField(*j, "scope", false);
      if (!scope.ok()) return Error(scope.status());
      size_t size = kDefaultDataKeyBytes;
      if (auto it = j->find("bytes"); it != j->end()) {
        if (!it->is_number_integer() || it->get<int64_t>() < int64_t{kMinDataKeyBytes} ||
            it->get<int64_t>() > int64_t{kMaxDataKeyBytes}) {
          return Error(InvalidArgumentError(
              "field \"bytes\": a data key is " + std::to_string(kMinDataKeyBytes) + " to " +
                  std::to_string(kMaxDataKeyBytes) + " bytes (a whole number), got " +
                  it->dump(),
              "send \"bytes\": 32 for an AES-256 key (the default)"));
        }
        size = static_cast<size_t>(it->get<int64_t>());
      }
      bool with_plaintext = true;
      if (auto it = j->find("plaintext"); it != j->end()) {
        if (!it->is_boolean()) {
          return Error(InvalidArgumentError(
              "field \"plaintext\" must be true or false",
              "send \"plaintext\": false for the wrapped key only"));
        }
        with_plaintext = it->get<bool>();
      }
      std::string sc = scope->empty() ? m.scope : *scope;
      auto k = service_->GenerateDataKey(m.workspace, m.environment, sc, size, with_plaintext);
      if (!k.ok()) return Error(k.status());
      json out = {{"ciphertext", EnvelopeToText(k->ciphertext)},
                  {"scope", k->scope},
                  {"bytes", size}};
      // The key bytes leave SecretBytes only here, encoded into the response.
      if (with_plaintext) out["plaintext"] = Base64Encode(k->plaintext.RevealForCrypto());
      return {200, JsonText(out)};
    }
    case RouteId::kEncryptBatch: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto items = BatchItems(*j);
      if (!items.ok()) return Error(items.status());
      // Items with bad fields get their own error; the rest go to the service.
      std::vector<BatchEncryptItem> in;
      std::vector<std::optional<Status>> bad((*items)->size());
      std::vector<size_t> index;  // position of each service item in the request
      for (size_t i = 0; i < (*items)->size(); ++i) {
        const json& item = (**items)[i];
        if (!item.is_object()) {
          bad[i] = InvalidArgumentError("item " + std::to_string(i) + " must be an object",
                                        "send {\"plaintext\": base64, \"scope\": \"…\"}");
          continue;
        }
        auto plaintext = StringField(item, "plaintext", true);
        auto scope = StringField(item, "scope", false);
        if (!plaintext.ok() || !scope.ok()) {
          bad[i] = !plaintext.ok() ? plaintext.status() : scope.status();
          continue;
        }
        auto bytes = Base64Decode(*plaintext);
        if (!bytes.ok()) {
          bad[i] = InvalidArgumentError("field \"plaintext\" must be base64: " +
                                        bytes.status().message());
          continue;
        }
        in.push_back({scope->empty() ? m.scope : *scope, std::move(bytes).value()});
        index.push_back(i);
      }
      std::vector<StatusOr<Bytes>> results;
      if (!in.empty()) {
        auto r = service_->EncryptBatch(m.workspace, m.environment, in);
        if (!r.ok()) return Error(r.status());
        results = std::move(r).value();
      }
      std::vector<json> out_items((*items)->size());
      for (size_t i = 0; i < bad.size(); ++i) {
        if (bad[i]) out_items[i] = ItemError(*bad[i]);
      }
      for (size_t k = 0; k < results.size(); ++k) {
        out_items[index[k]] = results[k].ok()
                                  ? json{{"ciphertext", EnvelopeToText(*results[k])},
                                         {"scope", in[k].scope}}
                                  : ItemError(results[k].status());
      }
      return {200, JsonText(json{{"items", out_items}})};
    }
    case RouteId::kDecryptBatch: {
      auto j = ParseObject(body);
      if (!j.ok()) return Error(j.status());
      auto items = BatchItems(*j);
      if (!items.ok()) return Error(items.status());
      std::vector<Bytes> in;
      std::vector<std::optional<Status>> bad((*items)->size());
      std::vector<size_t> index;
      for (size_t i = 0; i < (*items)->size(); ++i) {
        const json& item = (**items)[i];
        if (!item.is_object()) {
          bad[i] = InvalidArgumentError("item " + std::to_string(i) + " must be an object",
                                        "send {\"ciphertext\": \"ekm1:…\"}");
          continue;
        }
        auto ciphertext = StringField(item, "ciphertext", true);
        if (!ciphertext.ok()) {
          bad[i] = ciphertext.status();
          continue;
        }
        in.push_back(Bytes(ciphertext->begin(), ciphertext->end()));
        index.push_back(i);
      }
      std::vector<StatusOr<Bytes>> results;
      if (!in.empty()) {
        auto r = service_->DecryptBatch(m.workspace, m.environment, in);
        if (!r.ok()) return Error(r.status());
        results = std::move(r).value();
      }
      std::vector<json> out_items((*items)->size());
      for (size_t i = 0; i < bad.size(); ++i) {
        if (bad[i]) out_items[i] = ItemError(*bad[i]);
      }
      for (size_t k = 0; k < results.size(); ++k) {
        out_items[index[k]] = results[k].ok() ? json{{"plaintext", Base64Encode(*results[k])}}
                                              : ItemError(results[k].status());
      }
      return {200, JsonText(json{{"items", out_items}})};
    }

    // --- issue5-B --- (chain: the workspace's, or "" = the platform's)
    case RouteId::kAuditQuery:
    case RouteId::kPlatformAuditQuery: {
      auto q = EventQueryFromQueryString(m.id == RouteId::kAuditQuery ? m.workspace : "",
                                         m.query);
      if (!q.ok()) return Error(q.status());
      if (caller.EnvironmentRestricted() &&
          (!q->environment || !caller.MayUseEnvironment(*q->environment))) {
        return Denied(m, PermissionDeniedError(
                             "this token may read only the audit records of its own environments",
                             "add ?environment=E for one of the token's environments"));
      }
      auto list = service_->QueryAudit(*q);
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& r : *list) arr.push_back(AuditRecordJson(r));
      json out = {{"records", arr}};
      if (list->size() == q->limit && !list->empty()) out["next_after"] = list->back().id;
      return {200, JsonText(out)};
    }
    case RouteId::kAuditExport:
    case RouteId::kPlatformAuditExport: {
      if (caller.EnvironmentRestricted()) {
        // The export is the whole chain of the workspace, other environments included.
        return Denied(m, PermissionDeniedError(
                             "this token is restricted to some environments; the export is the "
                             "whole workspace's chain",
                             "use a token of the workspace without --environment"));
      }
      if (!m.query.empty()) {
        return Error(InvalidArgumentError("the export takes no query parameters",
                                          "it is always the whole chain; filter with the audit "
                                          "query route"));
      }
      std::string lines;
      Status s = service_->ExportAudit(m.id == RouteId::kAuditExport ? m.workspace : "",
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
      auto list = service_->ListAuditCheckpoints(
          m.id == RouteId::kAuditListCheckpoints ? m.workspace : "");
      if (!list.ok()) return Error(list.status());
      json arr = json::array();
      for (const auto& c : *list) arr.push_back(AuditCheckpointJson(c));
      return {200, JsonText(json{{"checkpoints", arr}})};
    }
    case RouteId::kAuditCreateCheckpoint:
    case RouteId::kPlatformAuditCreateCheckpoint: {
      if (!body.empty()) {
        auto j = ParseObject(body);
        if (!j.ok()) return Error(j.status());
        if (!j->empty()) {
          return Error(InvalidArgumentError("a checkpoint request takes no fields",
                                            "send an empty body or {}"));
        }
      }
      auto c = service_->CreateAuditCheckpoint(
          m.id == RouteId::kAuditCreateCheckpoint ? m.workspace : "");
      if (!c.ok()) return Error(c.status());
      return {201, JsonText(AuditCheckpointJson(*c))};
    }
    case RouteId::kAuditPublicKey: {
      const AuditPublicKey& k = service_->AuditSigningPublicKey();
      return {200, JsonText(json{{"algorithm", "Ed25519"},
                                 {"key_id", k.key_id()},
                                 {"public_key_pem", k.pem()}})};
    }

  }
  return Error(InternalError("unhandled route"));
}

StatusOr<std::unique_ptr<StreamTransform>> Router::OpenStream(const RouteMatch& m) {
  if (!m.authenticated) return UnauthenticatedError("the request was not authenticated");
  ScopedActor actor(m.principal.Actor());
  if (m.id == RouteId::kEncrypt) {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> enc,
                         service_->NewEncryptStream(m.workspace, m.environment, m.scope,
                                                    m.text_output));
    return std::unique_ptr<StreamTransform>(new EncryptTransform(std::move(enc)));
  }
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> dec,
                       service_->NewDecryptStream(m.workspace, m.environment));
  return std::unique_ptr<StreamTransform>(new DecryptTransform(std::move(dec)));
}

}  // namespace ekm
