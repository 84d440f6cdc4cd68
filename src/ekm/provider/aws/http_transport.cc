#include "ekm/provider/aws/http_transport.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
#include <string_view>

#include "ekm/base/non_blocking_scope.h"

namespace ekm {

std::string HttpResponse::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return "";
}

namespace {

// Idle easy handles kept for reuse; each keeps its own keep-alive connection cache.
constexpr size_t kMaxIdleHandles = 16;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  // 127.0.0.0/8, written as a dotted quad.
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

// Instance metadata and container credential endpoints are link-local: a proxy must never
// see them (it would get the credentials).
bool IsLinkLocalHost(std::string_view host) {
  return host.starts_with("169.254.") || host.starts_with("[fd00:ec2::") ||
         host.starts_with("fd00:ec2::");
}

struct ParsedUrl {
  std::string scheme;
  std::string host;
};

StatusOr<ParsedUrl> ParseUrl(const std::string& url) {
  CURLU* u = curl_url();
  if (u == nullptr) return InternalError("curl_url() failed");
  ParsedUrl out;
  CURLUcode rc = curl_url_set(u, CURLUPART_URL, url.c_str(), 0);
  char* part = nullptr;
  if (rc == CURLUE_OK && curl_url_get(u, CURLUPART_SCHEME, &part, 0) == CURLUE_OK) {
    out.scheme = Lower(part);
    curl_free(part);
    part = nullptr;
  }
  if (rc == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &part, 0) == CURLUE_OK) {
    out.host = Lower(part);
    curl_free(part);
  }
  curl_url_cleanup(u);
  // The URL itself is not quoted: a query string could carry a presigned credential.
  if (rc != CURLUE_OK || out.host.empty()) {
    return InvalidArgumentError("malformed URL (" + std::string(curl_url_strerror(rc)) + ")",
                                "check the endpoint URL");
  }
  if (out.scheme != "https" && out.scheme != "http") {
    return InvalidArgumentError("unsupported URL scheme \"" + out.scheme + "\"",
                                "use https:// (or http:// to a loopback address)");
  }
  return out;
}

struct Collector {
  HttpResponse* response;
  size_t max_bytes;
  bool too_large = false;
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* userp) {
  auto* c = static_cast<Collector*>(userp);
  size_t n = size * nmemb;
  if (c->response->body.size() + n > c->max_bytes) {
    c->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  c->response->body.append(data, n);
  return n;
}

size_t WriteHeader(char* data, size_t size, size_t nmemb, void* userp) {
  auto* c = static_cast<Collector*>(userp);
  size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    // A new response (after 100 Continue or a redirect we do not follow): start over.
    c->response->headers.clear();
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return n;  // the blank line ending the headers
  if (c->response->headers.size() >= 200) return n;
  c->response->headers.emplace_back(Lower(Trim(line.substr(0, colon))),
                                    std::string(Trim(line.substr(colon + 1))));
  return n;
}

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

class CurlHttpTransport final : public HttpTransport {
 public:
  explicit CurlHttpTransport(HttpTransportOptions options) : options_(std::move(options)) {
    GlobalInitOnce();
  }
  ~CurlHttpTransport() override {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    EKM_RETURN_IF_ERROR(MayBlock("an AWS call"));  // never on an HTTP I/O thread
    EKM_ASSIGN_OR_RETURN(ParsedUrl url, ParseUrl(request.url));
    const bool loopback = IsLoopbackHost(url.host);
    if (url.scheme == "http" && !loopback && !options_.allow_insecure_http) {
      return InvalidArgumentError("plain http:// to " + url.host + " is refused",
                                  "use https://, or allow insecure HTTP explicitly (loopback "
                                  "addresses are always allowed)");
    }
    for (const auto& [name, value] : request.headers) {
      if (name.empty() || HasControlChar(name) || name.find(':') != std::string::npos) {
        return InvalidArgumentError("invalid HTTP header name \"" + name + "\"");
      }
      if (HasControlChar(value)) {
        return InvalidArgumentError("HTTP header " + name + " has a line break in its value");
      }
    }

    CURL* h = Acquire();
    if (h == nullptr) return InternalError("curl_easy_init() failed");
    HttpResponse response;
    // KMS Decrypt answers carry an EK (base64): room for a whole small answer up front, so the
    // body never grows and leaves a copy of it behind.
    response.body.reserve(std::min<size_t>(options_.max_response_bytes, 16 * 1024));
    Collector collector{&response, options_.max_response_bytes};
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_slist* headers = nullptr;
    bool has_expect = false;
    for (const auto& [name, value] : request.headers) {
      if (Lower(name) == "expect") has_expect = true;
      // "Name;" is curl's syntax for a header with an empty value.
      std::string line = value.empty() ? name + ";" : name + ": " + value;
      headers = curl_slist_append(headers, line.c_str());
    }
    // curl adds "Expect: 100-continue" to larger bodies; AWS does not need the round trip.
    if (!has_expect) headers = curl_slist_append(headers, "Expect:");

    const auto total =
        std::max<std::chrono::milliseconds>(request.timeout, std::chrono::milliseconds(1));
    const auto connect = std::min(total, options_.connect_timeout);
    curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(total.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect.count()));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    // No proxy from *_proxy variables for loopback or instance metadata.
    if (loopback || IsLinkLocalHost(url.host)) curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &collector);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, WriteHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &collector);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(options_.max_response_bytes));

    const std::string method = request.method.empty() ? "GET" : request.method;
    if (method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
      // POSTFIELDS sends the body with a Content-Length (also 0, as IMDSv2's PUT needs);
      // CUSTOMREQUEST puts the method on the request line.
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      if (method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    }

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    Release(h, rc == CURLE_OK);
    if (rc != CURLE_OK) {
      return MapError(rc, errbuf, url.host, total, collector.too_large);
    }
    response.status = status;
    return response;
  }

 private:
  CURL* Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        // Resets options but keeps live connections, the DNS cache and TLS sessions.
        curl_easy_reset(h);
        return h;
      }
    }
    return curl_easy_init();
  }

  void Release(CURL* h, bool healthy) {
    // A handle whose transfer failed may hold a half-used connection: drop it.
    if (healthy) {
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.size() < kMaxIdleHandles) {
        idle_.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }

  Status MapError(CURLcode rc, const char* errbuf, const std::string& host,
                  std::chrono::milliseconds total, bool too_large) const {
    std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        return DeadlineExceededError(
            "request to " + host + " timed out after " + std::to_string(total.count()) + " ms",
            "the service is slow or unreachable; try again");
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return UnavailableError(
            "TLS certificate verification failed for " + host + ": " + detail,
            options_.ca_file.empty()
                ? "the server's certificate is not trusted by the system CA store; if it is "
                  "issued by a private CA (VPC endpoint proxy, test), configure its CA file"
                : "the server's certificate is not issued by a CA in " + options_.ca_file +
                      " or does not name " + host + "; check the CA file");
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_USE_SSL_FAILED:
        return UnavailableError("TLS handshake with " + host + " failed: " + detail,
                                "the server must speak TLS 1.2 or later");
      case CURLE_COULDNT_RESOLVE_HOST:
        return UnavailableError("cannot resolve host " + host + ": " + detail,
                                "check the endpoint's host name and DNS");
      case CURLE_COULDNT_CONNECT:
        return UnavailableError("cannot connect to " + host + ": " + detail,
                                "check that the endpoint is reachable (network, firewall)");
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return InvalidArgumentError("invalid URL for " + host + ": " + detail,
                                    "check the endpoint URL");
      case CURLE_WRITE_ERROR:
      case CURLE_FILESIZE_EXCEEDED:
        if (too_large || rc == CURLE_FILESIZE_EXCEEDED) {
          return ResourceExhaustedError("response from " + host + " is larger than " +
                                            std::to_string(options_.max_response_bytes) + " bytes",
                                        "is the endpoint an AWS service?");
        }
        break;
      case CURLE_GOT_NOTHING:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
      case CURLE_PARTIAL_FILE:
        return UnavailableError("connection to " + host +
                                    " was closed or reset before a "
                                    "complete response: " +
                                    detail,
                                "try again");
      default:
        break;
    }
    return UnavailableError("request to " + host + " failed: " + detail);
  }

  const HttpTransportOptions options_;
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

}  // namespace

std::unique_ptr<HttpTransport> NewCurlHttpTransport(HttpTransportOptions options) {
  return std::make_unique<CurlHttpTransport>(std::move(options));
}

}  // namespace ekm
