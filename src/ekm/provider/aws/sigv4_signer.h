// AWS Signature Version 4 (SigV4) request signing on OpenSSL 3 (HMAC-SHA256 via EVP_MAC,
// SHA-256 via EVP_Digest).
//
// Implements the header form of SigV4 ("Authorization: AWS4-HMAC-SHA256 ...") exactly as AWS
// specifies it and as botocore's SigV4Auth computes it; testdata/sigv4/vectors.json holds
// botocore's answers for the cases we rely on (scripts/gen_sigv4_vectors.py).
//
//   canonical request = METHOD \n canonical URI \n canonical query \n
//                       canonical headers \n \n signed headers \n hex(SHA-256(payload))
//   string to sign    = "AWS4-HMAC-SHA256" \n YYYYMMDDTHHMMSSZ \n
//                       YYYYMMDD/region/service/aws4_request \n hex(SHA-256(canonical request))
//   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
//                            "aws4_request")
//
// Security: the secret access key and every derived key (kDate, kRegion, kService, kSigning)
// live only in SecretBytes and are wiped when the call returns. The signature, the canonical
// request and the string to sign are not secret. The session token is a bearer credential that
// travels in the clear in a header anyway, so it is a std::string here; do not log it.
//
// Thread-safety: SignRequest is a pure function of its arguments; call it from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// Long-term (AKIA...) or temporary (ASIA... + session token) AWS credentials. Move-only.
struct AwsCredentials {
  std::string access_key_id;
  SecretBytes secret_access_key;
  // Present for temporary credentials (STS); sent as X-Amz-Security-Token and signed.
  std::optional<std::string> session_token;
};

using HttpHeader = std::pair<std::string, std::string>;

// One HTTP request to sign. Nothing here is modified by signing.
struct SigV4Request {
  std::string method = "POST";  // "GET", "POST", ... (upper-cased for signing)
  // The absolute path exactly as it goes on the request line, i.e. already percent-encoded
  // (use UriEncodePath to build it from raw segments). For every service but S3, SigV4 encodes
  // it once more for the canonical URI, and normalises "." / ".." / "//" first, as botocore does.
  std::string path = "/";
  // Raw (not encoded) query parameters, in any order; repeated names are allowed. The signer
  // encodes them and returns the canonical query string, which is also the one to send.
  std::vector<HttpHeader> query;
  // Headers to send and sign. Must include Host (as it goes on the wire: "kms.us-east-1.
  // amazonaws.com", or "127.0.0.1:5055" with a non-default port). Names are case-insensitive;
  // repeated names are signed as one comma-joined value, in the order given. Hop-by-hop and
  // proxy-rewritten headers (user-agent, connection, expect, transfer-encoding, ...) are sent
  // but not signed, as in botocore. Authorization, X-Amz-Date and X-Amz-Security-Token are
  // added by the signer and must not be passed in. An X-Amz-Content-SHA256 header, if given,
  // is used as the payload hash (e.g. "UNSIGNED-PAYLOAD") instead of hashing the payload.
  std::vector<HttpHeader> headers;
  ByteView payload;  // the exact body bytes that will be sent
};

// What to sign for: the region and service of the credential scope ("us-east-1", "kms").
struct SigV4Scope {
  std::string region;
  std::string service;
};

struct SigV4Signature {
  // Headers the caller must add to the request, in this order: X-Amz-Date,
  // X-Amz-Security-Token (only with a session token), Authorization.
  std::vector<HttpHeader> headers_to_add;
  // The query string to send (without '?'); empty when there are no parameters.
  std::string canonical_query;
  // For tests and debugging (not secret):
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "content-type;host;x-amz-date;x-amz-target"
  std::string signature;       // 64 lower-case hex digits
  std::string authorization;   // the Authorization header's value
};

// Signs `request` for `scope` with `credentials` at time `now` (injected; the request is valid
// for about 15 minutes around it on AWS).
// Errors: kInvalidArgument naming the offending field (missing Host, a header the signer owns,
// a control character in a header, an empty region, ...); kInternal if OpenSSL fails.
StatusOr<SigV4Signature> SignRequest(const SigV4Request& request, const AwsCredentials& credentials,
                                     const SigV4Scope& scope,
                                     std::chrono::system_clock::time_point now);

// RFC 3986 percent-encoding as SigV4 defines it: unreserved characters (A-Z a-z 0-9 - . _ ~)
// stay, every other byte becomes %XY with upper-case hex; '/' stays if `keep_slash`.
std::string SigV4UriEncode(std::string_view in, bool keep_slash);

// Builds a request-line path from raw segments: "/" + encode(seg1) + "/" + encode(seg2)...
std::string UriEncodePath(const std::vector<std::string>& raw_segments);

// "20150830T123600Z" (UTC), the X-Amz-Date format.
std::string SigV4Timestamp(std::chrono::system_clock::time_point t);

}  // namespace ekm
