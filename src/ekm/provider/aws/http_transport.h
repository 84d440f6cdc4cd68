// HttpTransport: one HTTPS (or loopback HTTP) request and its response, for the AWS clients
// (KMS, STS, instance metadata). The libcurl implementation reuses connections, verifies
// certificates and enforces timeouts; tests and the fault-injecting proxy talk to the same code.
//
// Errors: a response with any HTTP status is a *successful* Send (the caller maps AWS errors);
// Send fails only when no complete response arrived:
//  - kDeadlineExceeded: connect or total timeout;
//  - kUnavailable: connection refused/reset, DNS, TLS handshake or certificate failure (the
//    message says which, e.g. "certificate verify failed"), a response cut short;
//  - kInvalidArgument: a malformed URL or an unsupported scheme, plain http:// to a
//    non-loopback host without allow_insecure_http, a line break in a header;
//  - kResourceExhausted: the response body is larger than max_response_bytes.
// Certificate failures read "TLS certificate verification failed for HOST: ..." with a hint
// about the CA file. *_proxy variables are ignored for loopback and link-local (instance
// metadata) hosts. Redirects are not followed.
// Messages never hold request bodies or headers (they may carry credentials or key bytes).
// Thread-safe: one transport is shared by every thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ekm/base/status.h"

namespace ekm {

struct HttpRequest {
  std::string method = "POST";
  std::string url;  // "https://kms.us-east-1.amazonaws.com/" (the query string included)
  std::vector<std::pair<std::string, std::string>> headers;  // sent exactly as given
  std::string body;
  // Total time for this request, connect included. The connect timeout is the smaller of this
  // and HttpTransportOptions::connect_timeout.
  std::chrono::milliseconds timeout{10000};
};

struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  // The first header of that (lower-case) name, or "".
  std::string Header(std::string_view lower_name) const;
};

struct HttpTransportOptions {
  std::chrono::milliseconds connect_timeout{3000};
  // PEM bundle of CAs to trust instead of the system store (tests: a throwaway CA; production:
  // a private CA in front of a VPC endpoint). Empty: the system store.
  std::string ca_file;
  // Plain http:// is refused unless the host is a loopback address, or this is set.
  bool allow_insecure_http = false;
  size_t max_response_bytes = 1 << 20;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

// libcurl, with a pool of easy handles so keep-alive connections are reused across calls.
std::unique_ptr<HttpTransport> NewCurlHttpTransport(HttpTransportOptions options = {});

}  // namespace ekm
