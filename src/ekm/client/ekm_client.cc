#include "ekm/client/ekm_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ekm/api/key_json.h"
#include "ekm/api/key_material_json.h"
#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/api/operations.h"
#include "ekm/api/repack_json.h"
#include "ekm/api/request_codec.h"
#include "ekm/api/resource_json.h"
#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/json_text.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/envelope/envelope.h"

namespace ekm {

namespace {

using nlohmann::json;

StatusCode CodeFromName(std::string_view name) {
  for (StatusCode c :
       {StatusCode::kInvalidArgument, StatusCode::kNotFound, StatusCode::kAlreadyExists,
        StatusCode::kFailedPrecondition, StatusCode::kPermissionDenied,
        StatusCode::kUnauthenticated, StatusCode::kResourceExhausted, StatusCode::kUnavailable,
        StatusCode::kDeadlineExceeded, StatusCode::kDataLoss, StatusCode::kInternal}) {
    if (StatusCodeName(c) == name) return c;
  }
  return StatusCode::kInternal;
}

// Turns ekmd's error body {"error":{code,message,hint}} into a Status.
Status StatusFromErrorBody(long http_status, std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const json& e = j["error"];
    std::string code = e.value("code", "internal");
    std::string message = e.value("message", "ekmd reported an error");
    std::string hint = e.value("hint", "");
    return Status(CodeFromName(code), message, hint);
  }
  std::string snippet(body.substr(0, 200));
  return UnavailableError("ekmd answered HTTP " + std::to_string(http_status) +
                          " without an ekm error body: " + snippet);
}

// A query string: "?name=value&…", each value percent-encoded; "" when empty.
class Query {
 public:
  Query& Add(std::string_view name, std::string_view value) {
    text_ += text_.empty() ? '?' : '&';
    text_.append(name);
    text_ += '=';
    AppendPercentEncoded(value, &text_);
    return *this;
  }
  Query& Add(std::string_view name, int64_t value) { return Add(name, std::to_string(value)); }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

}  // namespace

class EkmClient::Impl {
 public:
  Impl(std::string base, std::string token, CURL* curl, ClientTlsOptions tls = {})
      : base_(std::move(base)), token_(AsBytes(token)), curl_(curl), tls_(std::move(tls)) {
    OPENSSL_cleanse(token.data(), token.size());
  }
  ~Impl() { curl_easy_cleanup(curl_); }

  // The caller's request id (ctx.request_id), sent as X-Request-Id with the next requests so
  // that ekmd's logs and audit records carry it; "" lets ekmd make one.
  void UseContext(const CallContext& ctx) { request_id_ = ctx.request_id; }

  // A whole request to route `id` (method and path from the operation table) with a JSON `body`
  // (nullptr: none; a route that takes a body then gets {}), and its JSON answer.
  StatusOr<json> Call(RouteId id, const RouteNames& names, const json* body = nullptr,
                      std::string_view query = {}) {
    EKM_ASSIGN_OR_RETURN(std::string response, CallText(id, names, body, query));
    json j = json::parse(response, nullptr, false);
    if (j.is_discarded()) return UnavailableError("ekmd answered with invalid JSON");
    return j;
  }

  // A whole request; the response body as it came (JSON lines of an audit export).
  StatusOr<std::string> CallText(RouteId id, const RouteNames& names, const json* body,
                                 std::string_view query = {}) {
    const bool takes_body = RouteInfoFor(id).body != RouteBody::kNone;
    std::string payload = body ? body->dump() : takes_body ? "{}" : "";
    return Send(id, names, takes_body ? &payload : nullptr, query);
  }

  // A request whose JSON body the caller wrote (`payload`, or none).
  StatusOr<std::string> Send(RouteId id, const RouteNames& names, const std::string* payload,
                             std::string_view query = {}) {
    Reset();
    std::string response;
    curl_easy_setopt(curl_, CURLOPT_URL, Url(id, names, query).c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, RouteInfoFor(id).method.data());
    if (payload != nullptr) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, payload->c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload->size()));
    }
    curl_slist* headers = BaseHeaders();
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    // Room for any answer carrying a key (generate-data-key) before it arrives: a growing
    // string would leave copies of it behind.
    response.reserve(16 * 1024);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &AppendString);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &response);
    CURLcode rc = curl_easy_perform(curl_);
    FreeHeaders(headers);
    if (rc != CURLE_OK) return TransportError(rc);
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) return StatusFromErrorBody(status, response);
    return response;
  }

  // A streamed request to route `id` (encrypt, decrypt): `source` up, the answer to `sink`.
  Status Stream(RouteId id, const RouteNames& names, std::string_view query,
                const StreamSource& source, const StreamSink& sink) {
    Reset();
    StreamState st;
    st.source = &source;
    st.sink = &sink;
    curl_easy_setopt(curl_, CURLOPT_URL, Url(id, names, query).c_str());
    curl_easy_setopt(curl_, CURLOPT_POST, 1L);
    curl_easy_setopt(curl_, CURLOPT_READFUNCTION, &ReadSource);
    curl_easy_setopt(curl_, CURLOPT_READDATA, &st);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &WriteSink);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &st);
    curl_easy_setopt(curl_, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(curl_, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_slist* headers = BaseHeaders();
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
    headers = curl_slist_append(headers, "Expect:");
    // A failure after output began comes as the Ekm-Error trailer, with ekmd's message; without
    // this header ekmd cuts the connection instead (docs/api.md "Streaming protocol").
    headers = curl_slist_append(headers, "Ekm-Accept-Trailer: Ekm-Error");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    CURLcode rc = curl_easy_perform(curl_);
    FreeHeaders(headers);
    if (rc != CURLE_OK || !st.result_ok) {
      // ekmd may close the connection after a failed stream; a streamed body cannot be
      // rewound to retry on a fresh one, so never reuse this connection.
      DropConnections();
    }
    if (!st.source_status.ok()) return st.source_status;
    if (!st.sink_status.ok()) return st.sink_status;
    if (st.http_status != 0 && st.http_status != 200) {
      return StatusFromErrorBody(st.http_status, st.error_body);
    }
    if (!st.trailer_error.empty()) return StatusFromErrorBody(200, st.trailer_error);
    if (rc != CURLE_OK && st.http_status == 200) {
      // Output had begun: ekmd (or something between) cut the stream.
      return UnavailableError(std::string("the stream from ekmd at ") + base_ +
                                  " was cut after output began: " + curl_easy_strerror(rc),
                              "the output is incomplete: discard it and retry; ekmd's log names "
                              "the cause");
    }
    if (rc != CURLE_OK) return TransportError(rc);
    if (!st.result_ok) {
      return UnavailableError("ekmd ended the stream without confirming it",
                              "the output is incomplete: discard it and retry");
    }
    return Status::Ok();
  }

 private:
  std::string request_id_;  // see UseContext

  std::string Url(RouteId id, const RouteNames& names, std::string_view query) const {
    return base_ + RoutePath(id, names) + std::string(query);
  }

  struct StreamState {
    const StreamSource* source = nullptr;
    const StreamSink* sink = nullptr;
    size_t mapped_used = 0;
    Status source_status;
    Status sink_status;
    long http_status = 0;
    std::string error_body;
    std::string trailer_error;
    bool result_ok = false;
  };

  void DropConnections() {
    if (CURL* fresh = curl_easy_init()) {
      curl_easy_cleanup(curl_);
      curl_ = fresh;
    }
  }

  void Reset() {
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl_, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl_, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!tls_.ca_file.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, tls_.ca_file.c_str());
    if (!tls_.client_cert_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_SSLCERT, tls_.client_cert_file.c_str());
      curl_easy_setopt(curl_, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (!tls_.client_key_file.empty()) {
      curl_easy_setopt(curl_, CURLOPT_SSLKEY, tls_.client_key_file.c_str());
      curl_easy_setopt(curl_, CURLOPT_SSLKEYTYPE, "PEM");
    }
  }

  curl_slist* BaseHeaders() {
    curl_slist* h = nullptr;
    h = curl_slist_append(h, "Accept: application/json");
    if (!token_.empty()) {
      constexpr std::string_view kPrefix = "Authorization: Bearer ";
      std::string header;
      header.reserve(kPrefix.size() + token_.size());  // no copy of the token left by growth
      header.append(kPrefix);
      header.append(AsChars(token_.RevealForCrypto()));
      h = curl_slist_append(h, header.c_str());
      OPENSSL_cleanse(header.data(), header.size());
    }
    if (!request_id_.empty()) h = curl_slist_append(h, ("X-Request-Id: " + request_id_).c_str());
    return h;
  }

  // Frees a list from BaseHeaders, wiping libcurl's copy of the Authorization header first.
  static void FreeHeaders(curl_slist* headers) {
    for (curl_slist* h = headers; h != nullptr; h = h->next) {
      if (h->data != nullptr) OPENSSL_cleanse(h->data, std::strlen(h->data));
    }
    curl_slist_free_all(headers);
  }

  Status TransportError(CURLcode rc) {
    std::string what = curl_easy_strerror(rc);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_OPERATION_TIMEDOUT) {
      return UnavailableError("cannot reach ekmd at " + base_ + ": " + what,
                              "is ekmd running? start it with `ekmd --data-dir DIR`, or check "
                              "--server / EKM_SERVER");
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
      return UnavailableError("cannot verify ekmd's TLS certificate at " + base_ + ": " + what,
                              "give the CA that signed it with --ca-file / EKM_CA_FILE");
    }
    if (rc == CURLE_SSL_CERTPROBLEM) {
      return InvalidArgumentError("cannot use the client certificate: " + what,
                                  "check --client-cert and --client-key (PEM, matching)");
    }
    if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) {
      return UnavailableError("TLS with ekmd at " + base_ + " failed: " + what,
                              "https:// needs ekmd --tls-cert; a server with "
                              "--tls-client-auth require needs --client-cert and --client-key");
    }
    if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
      return InvalidArgumentError("server URL " + base_ + " is not valid: " + what,
                                  "use a URL such as http://127.0.0.1:8080");
    }
    return UnavailableError("request to ekmd at " + base_ + " failed: " + what);
  }

  static size_t AppendString(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
  }

  static size_t ReadSource(char* buf, size_t size, size_t n, void* user) {
    auto* st = static_cast<StreamState*>(user);
    const StreamSource& source = *st->source;
    if (!source.read) {  // mapped input only
      ByteView rest = source.mapped ? source.mapped->subspan(st->mapped_used) : ByteView();
      const size_t take = std::min(rest.size(), size * n);
      std::memcpy(buf, rest.data(), take);
      st->mapped_used += take;
      if (source.release) source.release(st->mapped_used);
      return take;
    }
    auto got = source.read(reinterpret_cast<uint8_t*>(buf), size * n);
    if (!got.ok()) {
      st->source_status = got.status();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }

  static size_t WriteSink(char* data, size_t size, size_t n, void* user) {
    auto* st = static_cast<StreamState*>(user);
    if (st->http_status != 200) {
      if (st->error_body.size() < 64 * 1024) st->error_body.append(data, size * n);
      return size * n;
    }
    Status s = (*st->sink)(ByteView(reinterpret_cast<const uint8_t*>(data), size * n));
    if (!s.ok()) {
      st->sink_status = s;
      return 0;
    }
    return size * n;
  }

  // Status line, headers and, after the body, the trailers.
  static size_t OnHeader(char* data, size_t size, size_t n, void* user) {
    auto* st = static_cast<StreamState*>(user);
    std::string_view line(data, size * n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (line.rfind("HTTP/", 0) == 0) {
      auto sp = line.find(' ');
      if (sp != std::string_view::npos)
        st->http_status = std::strtol(line.data() + sp + 1, nullptr, 10);
      return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "ekm-result" && value == "ok") st->result_ok = true;
    if (name == "ekm-error") st->trailer_error = std::string(value);
    return size * n;
  }

  std::string base_;
  SecretBytes token_;  // an API token is a credential
  CURL* curl_;
  ClientTlsOptions tls_;
};

EkmClient::EkmClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EkmClient::~EkmClient() = default;

StatusOr<std::unique_ptr<EkmClient>> EkmClient::Create(std::string base_url, std::string token,
                                                       ClientTlsOptions tls) {
  static const CURLcode global = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global != CURLE_OK) return InternalError("libcurl initialisation failed");
  while (!base_url.empty() && base_url.back() == '/') base_url.pop_back();
  if (base_url.rfind("http://", 0) != 0 && base_url.rfind("https://", 0) != 0) {
    return InvalidArgumentError(
        "server URL \"" + base_url + "\" must start with http:// or https://",
        "e.g. --server http://127.0.0.1:8080");
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return InternalError("curl_easy_init failed");
  return std::unique_ptr<EkmClient>(new EkmClient(
      std::make_unique<Impl>(std::move(base_url), std::move(token), curl, std::move(tls))));
}

namespace {

// The names of a route on an environment.
RouteNames In(std::string_view workspace, std::string_view environment = {}) {
  return RouteNames{.workspace = workspace, .environment = environment};
}

// The items of `j[member]` read by `from`; none when it is not an array.
template <typename T, typename From>
std::vector<T> ListFrom(const json& j, const char* member, From from) {
  std::vector<T> out;
  auto it = j.find(member);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& item : *it) out.push_back(from(item));
  return out;
}

// The platform chain's route ("" chain) or the workspace's.
RouteId AuditRoute(std::string_view chain, RouteId workspace_route, RouteId platform_route) {
  return chain.empty() ? platform_route : workspace_route;
}

}  // namespace

StatusOr<WorkspaceInfo> EkmClient::CreateWorkspace(const CallContext& ctx, std::string_view name) {
  impl_->UseContext(ctx);
  json body = EncodeNameBody(name);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kCreateWorkspace, {}, &body));
  return WorkspaceInfoFromJson(j);
}

StatusOr<std::vector<WorkspaceInfo>> EkmClient::ListWorkspaces(const CallContext& ctx) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kListWorkspaces, {}));
  return ListFrom<WorkspaceInfo>(j, "workspaces", WorkspaceInfoFromJson);
}

StatusOr<EnvironmentInfo> EkmClient::CreateEnvironment(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view name) {
  impl_->UseContext(ctx);
  json body = EncodeNameBody(name);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kCreateEnvironment, In(workspace), &body));
  return EnvironmentInfoFromJson(j);
}

StatusOr<std::vector<EnvironmentInfo>> EkmClient::ListEnvironments(const CallContext& ctx,
                                                                   std::string_view workspace) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kListEnvironments, In(workspace)));
  return ListFrom<EnvironmentInfo>(j, "environments", EnvironmentInfoFromJson);
}

Status EkmClient::EncryptStream(const CallContext& ctx, std::string_view workspace,
                                std::string_view environment, std::string_view scope, bool text,
                                const StreamSource& source, const StreamSink& sink) {
  impl_->UseContext(ctx);
  Query query;
  query.Add("scope", scope);
  if (text) query.Add("format", "text");
  return impl_->Stream(RouteId::kEncrypt, In(workspace, environment), query.text(), source, sink);
}

Status EkmClient::DecryptStream(const CallContext& ctx, std::string_view workspace,
                                std::string_view environment, const StreamSource& source,
                                const StreamSink& sink) {
  impl_->UseContext(ctx);
  return impl_->Stream(RouteId::kDecrypt, In(workspace, environment), "", source, sink);
}

Status EkmClient::Encrypt(const CallContext& ctx, std::string_view workspace,
                          std::string_view environment, std::string_view scope, ByteView plaintext,
                          Bytes* out) {
  impl_->UseContext(ctx);
  json body = EncodeEncryptBody(plaintext, scope);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kEncrypt, In(workspace, environment), &body));
  EKM_ASSIGN_OR_RETURN(Bytes binary, EnvelopeFromText(j.value("ciphertext", "")));
  out->insert(out->end(), binary.begin(), binary.end());
  return Status::Ok();
}

namespace {

// The plaintext of a JSON answer ({"plaintext":"<base64>"}) appended to `out`, its copies wiped.
Status AppendPlaintext(json& j, Bytes* out) {
  if (!j.contains("plaintext") || !j["plaintext"].is_string()) {
    return UnavailableError("ekmd's answer carries no plaintext");
  }
  std::string& text = j["plaintext"].get_ref<std::string&>();
  auto bytes = Base64Decode(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!bytes.ok()) return UnavailableError("ekmd answered a plaintext that is not base64");
  out->insert(out->end(), bytes->begin(), bytes->end());
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return Status::Ok();
}

// An envelope of either form as the JSON routes take it: the text form.
std::string TextForm(ByteView envelope) {
  std::string_view chars = AsChars(envelope);
  if (chars.rfind(kEnvelopeTextPrefix, 0) == 0) return std::string(chars);
  return EnvelopeToText(envelope);
}

// One item of a batch answer: its result, or its own error.
Status ItemStatus(const json& item) {
  if (item.contains("error") && item["error"].is_object()) {
    return StatusFromErrorBody(200, json{{"error", item["error"]}}.dump());
  }
  return Status::Ok();
}

// The items of a batch answer, each read by `read` unless it carries its own error; as many as
// were sent.
template <typename Read>
StatusOr<std::vector<StatusOr<Bytes>>> BatchResults(json& j, size_t sent, Read read) {
  if (!j.contains("items") || !j["items"].is_array()) {
    return UnavailableError("ekmd's answer carries no items");
  }
  std::vector<StatusOr<Bytes>> results;
  for (json& item : j["items"]) {
    Status s = ItemStatus(item);
    results.push_back(s.ok() ? read(item) : StatusOr<Bytes>(std::move(s)));
  }
  if (results.size() != sent) {
    return UnavailableError("ekmd answered " + std::to_string(results.size()) + " items for " +
                            std::to_string(sent));
  }
  return results;
}

}  // namespace

Status EkmClient::Decrypt(const CallContext& ctx, std::string_view workspace,
                          std::string_view environment, ByteView envelope, Bytes* out) {
  impl_->UseContext(ctx);
  json body = EncodeDecryptBody(TextForm(envelope));
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kDecrypt, In(workspace, environment), &body));
  return AppendPlaintext(j, out);
}

StatusOr<std::vector<StatusOr<Bytes>>> EkmClient::EncryptBatch(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<BatchEncryptItem>& items) {
  impl_->UseContext(ctx);
  json body = EncodeEncryptBatchBody(items);
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kEncryptBatch, In(workspace, environment), &body));
  return BatchResults(j, items.size(), [](const json& item) {
    return EnvelopeFromText(item.value("ciphertext", ""));
  });
}

StatusOr<std::vector<StatusOr<Bytes>>> EkmClient::DecryptBatch(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<Bytes>& envelopes) {
  impl_->UseContext(ctx);
  std::vector<std::string> texts;
  texts.reserve(envelopes.size());
  for (const Bytes& e : envelopes) texts.push_back(TextForm(e));
  json body = EncodeDecryptBatchBody(texts);
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kDecryptBatch, In(workspace, environment), &body));
  return BatchResults(j, envelopes.size(), [](json& item) -> StatusOr<Bytes> {
    Bytes plaintext;
    EKM_RETURN_IF_ERROR(AppendPlaintext(item, &plaintext));
    return plaintext;
  });
}

StatusOr<KeyValidation> EkmClient::SetCustomerKey(const CallContext& ctx,
                                                  std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view provider,
                                                  std::string_view key_id) {
  return SetCustomerKey(ctx, workspace, environment, provider, key_id, KeyChangeOptions{});
}

StatusOr<CustomerKeyInfo> EkmClient::ShowCustomerKey(const CallContext& ctx,
                                                     std::string_view workspace,
                                                     std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kShowKey, In(workspace, environment)));
  return CustomerKeyInfoFromJson(j);
}

StatusOr<KeyPolicyAdvice> EkmClient::KeyPolicy(const CallContext& ctx, std::string_view workspace,
                                               std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kKeyPolicy, In(workspace, environment)));
  return KeyPolicyAdviceFromJson(j);
}

StatusOr<std::string> EkmClient::CheckKeyPolicy(const CallContext& ctx, std::string_view workspace,
                                                std::string_view policy_text) {
  impl_->UseContext(ctx);
  json body = EncodeCheckPolicyBody(policy_text);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kCheckPolicy, In(workspace), &body));
  return j.dump();
}

StatusOr<std::string> EkmClient::Health() {
  impl_->UseContext(CallContext{});  // a probe: no caller's id
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kHealth, {}));
  return j.value("status", "");
}

Status EkmClient::CheckStore() {
  impl_->UseContext(CallContext{});  // a probe: no caller's id
  return impl_->Call(RouteId::kReady, {}).status();
}

StatusOr<EnvironmentKeyStatus> EkmClient::KeyStatus(const CallContext& ctx,
                                                    std::string_view workspace,
                                                    std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kEnvironmentStatus, In(workspace, environment)));
  return EnvironmentKeyStatusFromJson(j);
}

StatusOr<KeyCacheStats> EkmClient::KeyCacheStatistics(const CallContext& ctx) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kKeyCacheStats, {}));
  return KeyCacheStatsFromJson(j);
}

StatusOr<KeyValidation> EkmClient::SetCustomerKey(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    std::string_view provider, std::string_view key_id, const KeyChangeOptions& options) {
  impl_->UseContext(ctx);
  json body = EncodeSetKeyBody({{std::string(provider), std::string(key_id)}, options});
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kSetKey, In(workspace, environment), &body));
  return KeyValidationFromJson(j);
}

StatusOr<RepackStatus> EkmClient::GetRepackStatus(const CallContext& ctx,
                                                  std::string_view workspace,
                                                  std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kRepackStatus, In(workspace, environment)));
  return RepackStatusFromJson(j);
}

StatusOr<RepackStatus> EkmClient::RerunRepack(const CallContext& ctx, std::string_view workspace,
                                              std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kRerunRepack, In(workspace, environment)));
  return RepackStatusFromJson(j);
}

StatusOr<KeyImportParameters> EkmClient::CreateKeyImportParameters(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    std::chrono::seconds expires_in) {
  impl_->UseContext(ctx);
  json body = EncodeImportParamsBody(static_cast<int64_t>(expires_in.count()));
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kImportParams, In(workspace, environment), &body));
  return KeyImportParametersFromJson(j);
}

StatusOr<KeyValidation> EkmClient::ImportKeyMaterial(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    ByteView wrapped_material, std::string_view import_token, const KeyChangeOptions& change) {
  impl_->UseContext(ctx);
  std::string payload = EncodeImportKeyMaterialBody(wrapped_material, import_token, change);
  auto text = impl_->Send(RouteId::kImportKeyMaterial, In(workspace, environment), &payload);
  OPENSSL_cleanse(payload.data(), payload.size());
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return UnavailableError("ekmd answered with invalid JSON");
  return KeyValidationFromJson(j);
}

StatusOr<KeyMaterialDeletion> EkmClient::DeleteKeyMaterial(const CallContext& ctx,
                                                           std::string_view workspace,
                                                           std::string_view environment,
                                                           std::string_view key_id) {
  impl_->UseContext(ctx);
  Query query;
  if (!key_id.empty()) query.Add("key_id", key_id);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kDeleteKeyMaterial, In(workspace, environment),
                                           nullptr, query.text()));
  return KeyMaterialDeletionFromJson(j);
}

StatusOr<RotationResult> EkmClient::RotateEnvironmentKey(const CallContext& ctx,
                                                         std::string_view workspace,
                                                         std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kRotateEnvironmentKey, In(workspace, environment)));
  auto rotated = ListFrom<RotationResult>(j, "rotated", RotationResultFromJson);
  if (rotated.empty()) return UnavailableError("ekmd answered without a rotation");
  return rotated[0];
}

StatusOr<std::vector<RotationResult>> EkmClient::RotateDataKeys(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<std::string>& scopes, bool all_scopes) {
  impl_->UseContext(ctx);
  json body = EncodeRotateDataKeysBody({scopes, all_scopes});
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kRotateDataKeys, In(workspace, environment), &body));
  return ListFrom<RotationResult>(j, "rotated", RotationResultFromJson);
}

StatusOr<ScheduledRotationReport> EkmClient::RunScheduledRotations(const CallContext& ctx) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kRunDueRotations, {}));
  ScheduledRotationReport report;
  report.rotated = ListFrom<RotationResult>(j, "rotated", RotationResultFromJson);
  for (const json& f : ListFrom<json>(j, "failures", [](const json& f) { return f; })) {
    if (f.is_string()) report.failures.push_back(f.get<std::string>());
  }
  return report;
}

StatusOr<RewrapResult> EkmClient::Rewrap(const CallContext& ctx, std::string_view workspace,
                                         std::string_view environment, ByteView envelope,
                                         Bytes* out) {
  impl_->UseContext(ctx);
  // The API carries the text form; the caller gets back the form it gave.
  std::string_view as_text(reinterpret_cast<const char*>(envelope.data()), envelope.size());
  size_t first = as_text.find_first_not_of(" \t\r\n");
  const bool text =
      first != std::string_view::npos && as_text.substr(first).starts_with(kEnvelopeTextPrefix);
  std::string sent;
  if (text) {
    EKM_ASSIGN_OR_RETURN(Bytes binary, EnvelopeFromText(as_text));
    sent = EnvelopeToText(binary);  // one line, no whitespace
  } else {
    sent = EnvelopeToText(envelope);
  }
  json body = EncodeRewrapBody(sent);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kRewrap, In(workspace, environment), &body));
  std::string back = j.value("ciphertext", "");
  if (text) {
    Append(*out, AsBytes(back));
    if (!as_text.empty() && as_text.back() == '\n') out->push_back('\n');
  } else {
    EKM_ASSIGN_OR_RETURN(Bytes binary, EnvelopeFromText(back));
    Append(*out, binary);
  }
  return RewrapResult{j.value("scope", ""), j.value("from_dk_version", 0u),
                      j.value("dk_version", 0u)};
}

StatusOr<ShredConfirmation> EkmClient::RequestShred(const CallContext& ctx,
                                                    std::string_view workspace,
                                                    std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kShred, In(workspace, environment)));
  return ShredConfirmationFromJson(j);
}

StatusOr<ShredResult> EkmClient::ShredEnvironment(const CallContext& ctx,
                                                  std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view token,
                                                  std::string_view confirm_environment) {
  impl_->UseContext(ctx);
  json body = EncodeShredBody({std::string(token), std::string(confirm_environment)});
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kShred, In(workspace, environment), &body));
  return ShredResultFromJson(j);
}

StatusOr<WorkspaceDefaultKey> EkmClient::SetWorkspaceDefaultKey(const CallContext& ctx,
                                                                std::string_view workspace,
                                                                std::string_view provider,
                                                                std::string_view key_id) {
  impl_->UseContext(ctx);
  json body = EncodeKeyRefBody({std::string(provider), std::string(key_id)});
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kSetDefaultKey, In(workspace), &body));
  return WorkspaceDefaultKeyFromJson(j);
}

StatusOr<WorkspaceDefaultKey> EkmClient::GetWorkspaceDefaultKey(const CallContext& ctx,
                                                                std::string_view workspace) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kGetDefaultKey, In(workspace)));
  return WorkspaceDefaultKeyFromJson(j);
}

StatusOr<WorkspaceDefaultKey> EkmClient::ResetWorkspaceDefaultKey(const CallContext& ctx,
                                                                  std::string_view workspace) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kResetDefaultKey, In(workspace)));
  return WorkspaceDefaultKeyFromJson(j);
}

StatusOr<EnvironmentSettings> EkmClient::GetEnvironmentSettings(const CallContext& ctx,
                                                                std::string_view workspace,
                                                                std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kGetSettings, In(workspace, environment)));
  return EnvironmentSettingsFromJson(j);
}

StatusOr<EnvironmentSettings> EkmClient::UpdateEnvironmentSettings(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const EnvironmentSettings& set, const std::vector<std::string>& reset) {
  impl_->UseContext(ctx);
  json body = EncodeSettingsPatchBody({set, reset});
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kPatchSettings, In(workspace, environment), &body));
  return EnvironmentSettingsFromJson(j);
}

StatusOr<ScopeList> EkmClient::ListScopes(const CallContext& ctx, std::string_view workspace,
                                          std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kListScopes, In(workspace, environment)));
  ScopeList list;
  list.workspace = j.value("workspace", "");
  list.environment = j.value("environment", "");
  list.max_messages_per_dk = j.value("max_messages_per_dk", uint64_t{0});
  list.scopes = ListFrom<ScopeInfo>(j, "scopes", ScopeInfoFromJson);
  return list;
}

StatusOr<std::vector<LifecycleEventInfo>> EkmClient::KeyHistory(const CallContext& ctx,
                                                                std::string_view workspace,
                                                                std::string_view environment,
                                                                int64_t after_id, size_t limit) {
  impl_->UseContext(ctx);
  Query query;
  query.Add("limit", static_cast<int64_t>(limit));
  if (after_id > 0) query.Add("after", after_id);
  EKM_ASSIGN_OR_RETURN(
      json j, impl_->Call(RouteId::kKeyHistory, In(workspace, environment), nullptr, query.text()));
  return ListFrom<LifecycleEventInfo>(j, "events", LifecycleEventInfoFromJson);
}

StatusOr<std::vector<LifecycleEventInfo>> EkmClient::ListEvents(const CallContext& ctx,
                                                                const EventQuery& q) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(
      json j, impl_->Call(RouteId::kListEvents, In(q.workspace), nullptr, EncodeEventQuery(q)));
  return ListFrom<LifecycleEventInfo>(j, "events", LifecycleEventInfoFromJson);
}

StatusOr<NewApiToken> EkmClient::CreateApiToken(const CallContext& ctx, const ApiTokenRequest& r) {
  impl_->UseContext(ctx);
  json body = EncodeCreateTokenBody(r);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kCreateToken, {}, &body));
  NewApiToken out;
  out.info = ApiTokenInfoFromJson(j);
  if (j.contains("token") && j["token"].is_string()) {
    std::string& held = j["token"].get_ref<std::string&>();
    out.token = SecretBytes(reinterpret_cast<const uint8_t*>(held.data()), held.size());
    OPENSSL_cleanse(held.data(), held.size());
  }
  return out;
}

StatusOr<std::vector<ApiTokenInfo>> EkmClient::ListApiTokens(const CallContext& ctx,
                                                             std::optional<std::string> workspace) {
  impl_->UseContext(ctx);
  Query query;
  if (workspace) query.Add("workspace", *workspace);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kListTokens, {}, nullptr, query.text()));
  return ListFrom<ApiTokenInfo>(j, "tokens", ApiTokenInfoFromJson);
}

StatusOr<ApiTokenInfo> EkmClient::GetApiToken(const CallContext& ctx, std::string_view id) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kGetToken, {.id = id}));
  return ApiTokenInfoFromJson(j);
}

StatusOr<ApiTokenInfo> EkmClient::RevokeApiToken(const CallContext& ctx, std::string_view id) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kRevokeToken, {.id = id}));
  return ApiTokenInfoFromJson(j);
}

StatusOr<std::optional<ApiTokenInfo>> EkmClient::WhoAmI(const CallContext& ctx) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kWhoAmI, {}));
  return std::optional<ApiTokenInfo>(ApiTokenInfoFromJson(j));
}

StatusOr<WorkspaceInfo> EkmClient::GetWorkspace(const CallContext& ctx,
                                                std::string_view workspace) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kGetWorkspace, In(workspace)));
  return WorkspaceInfoFromJson(j);
}

StatusOr<EnvironmentInfo> EkmClient::GetEnvironment(const CallContext& ctx,
                                                    std::string_view workspace,
                                                    std::string_view environment) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kGetEnvironment, In(workspace, environment)));
  return EnvironmentInfoFromJson(j);
}

StatusOr<KeyValidation> EkmClient::ValidateCustomerKey(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       std::string_view provider,
                                                       std::string_view key_id) {
  impl_->UseContext(ctx);
  json body = EncodeKeyRefBody({std::string(provider), std::string(key_id)});
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kValidateKey, In(workspace, environment), &body));
  return KeyValidationFromJson(j);
}

StatusOr<GeneratedDataKey> EkmClient::GenerateDataKey(const CallContext& ctx,
                                                      std::string_view workspace,
                                                      std::string_view environment,
                                                      std::string_view scope, size_t size,
                                                      bool with_plaintext) {
  impl_->UseContext(ctx);
  json body = EncodeGenerateDataKeyBody({std::string(scope), size, with_plaintext});
  EKM_ASSIGN_OR_RETURN(json j,
                       impl_->Call(RouteId::kGenerateDataKey, In(workspace, environment), &body));
  GeneratedDataKey k;
  k.scope = j.value("scope", "");
  EKM_ASSIGN_OR_RETURN(k.ciphertext, EnvelopeFromText(j.value("ciphertext", "")));
  if (with_plaintext) {
    if (!j.contains("plaintext") || !j["plaintext"].is_string()) {
      return InternalError("ekmd answered no plaintext data key");
    }
    std::string& text = j["plaintext"].get_ref<std::string&>();
    auto bytes = Base64Decode(text);
    OPENSSL_cleanse(text.data(), text.size());
    if (!bytes.ok()) return InternalError("ekmd answered a data key that is not base64");
    k.plaintext = SecretBytes(*bytes);
    OPENSSL_cleanse(bytes->data(), bytes->size());
  }
  return k;
}

StatusOr<std::vector<LifecycleEventRecord>> EkmClient::QueryAudit(const CallContext& ctx,
                                                                  const EventQuery& q) {
  impl_->UseContext(ctx);
  const RouteId route = AuditRoute(q.workspace, RouteId::kAuditQuery, RouteId::kPlatformAuditQuery);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(route, In(q.workspace), nullptr, EncodeEventQuery(q)));
  return ListFrom<LifecycleEventRecord>(j, "records", AuditRecordFromJson);
}

Status EkmClient::ExportAudit(const CallContext& ctx, std::string_view chain,
                              const std::function<Status(const LifecycleEventRecord&)>& sink) {
  impl_->UseContext(ctx);
  const RouteId route = AuditRoute(chain, RouteId::kAuditExport, RouteId::kPlatformAuditExport);
  EKM_ASSIGN_OR_RETURN(std::string text, impl_->CallText(route, In(chain), nullptr));
  size_t line_no = 0;
  for (size_t i = 0; i < text.size();) {
    size_t nl = text.find('\n', i);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + i, nl - i);
    i = nl + 1;
    ++line_no;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    auto r = ParseAuditRecordExportJson(j);
    if (!r.ok()) {
      return UnavailableError("ekmd's audit export line " + std::to_string(line_no) +
                              " is not an audit record: " + r.status().message());
    }
    EKM_RETURN_IF_ERROR(sink(*r));
  }
  return Status::Ok();
}

StatusOr<AuditCheckpoint> EkmClient::CreateAuditCheckpoint(const CallContext& ctx,
                                                           std::string_view chain) {
  impl_->UseContext(ctx);
  const RouteId route =
      AuditRoute(chain, RouteId::kAuditCreateCheckpoint, RouteId::kPlatformAuditCreateCheckpoint);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(route, In(chain)));
  return ParseAuditCheckpointJson(j);
}

StatusOr<std::vector<AuditCheckpoint>> EkmClient::ListAuditCheckpoints(const CallContext& ctx,
                                                                       std::string_view chain) {
  impl_->UseContext(ctx);
  const RouteId route =
      AuditRoute(chain, RouteId::kAuditListCheckpoints, RouteId::kPlatformAuditListCheckpoints);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(route, In(chain)));
  std::vector<AuditCheckpoint> out;
  for (const json& c : ListFrom<json>(j, "checkpoints", [](const json& c) { return c; })) {
    EKM_ASSIGN_OR_RETURN(AuditCheckpoint cp, ParseAuditCheckpointJson(c));
    out.push_back(std::move(cp));
  }
  return out;
}

StatusOr<AuditPublicKeyInfo> EkmClient::GetAuditPublicKey(const CallContext& ctx) {
  impl_->UseContext(ctx);
  EKM_ASSIGN_OR_RETURN(json j, impl_->Call(RouteId::kAuditPublicKey, {}));
  if (!j["public_key_pem"].is_string()) {
    return UnavailableError("ekmd's answer carries no public_key_pem");
  }
  AuditPublicKeyInfo info;
  info.algorithm = j.value("algorithm", "");
  info.key_id = j.value("key_id", "");
  info.public_key_pem = j["public_key_pem"].get<std::string>();
  return info;
}

}  // namespace ekm
