#include "ekm/provider/aws/sigv4_signer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "ekm/base/encoding.h"
#include "ekm/base/ossl.h"
#include "ekm/crypto/hmac.h"

namespace ekm {

namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kTerminator = "aws4_request";

// Headers botocore leaves out of the signature: hop-by-hop headers that proxies may drop or
// rewrite, and ones HTTP clients set on their own. Signing them would make a valid request
// fail verification after a proxy touched it.
constexpr std::string_view kUnsignedHeaders[] = {"connection",
                                                 "expect",
                                                 "keep-alive",
                                                 "proxy-authenticate",
                                                 "proxy-authorization",
                                                 "te",
                                                 "trailer",
                                                 "transfer-encoding",
                                                 "upgrade",
                                                 "user-agent",
                                                 "x-amzn-trace-id"};

// Headers the signer itself adds; a caller-supplied copy would be ambiguous.
constexpr std::string_view kSignerOwnedHeaders[] = {"authorization", "x-amz-date",
                                                    "x-amz-security-token"};

bool Contains(std::span<const std::string_view> set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// RFC 7230 tchar: what a header name may consist of.
bool IsTokenChar(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsScopeChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// Header values reach the wire verbatim: a CR or LF would let a value inject headers, and
// other control or non-ASCII bytes are outside what SigV4 canonicalisation handles the same way
// everywhere (botocore trims with Python's Unicode-aware split()).
Status CheckHeaderValue(std::string_view name, std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    auto c = static_cast<unsigned char>(value[i]);
    if ((c < 0x20 && c != '\t') || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "0x%02X", c);
      return InvalidArgumentError("header '" + std::string(name) + "' has byte " + buf +
                                  " at offset " + std::to_string(i) +
                                  ": header values must be printable ASCII");
    }
  }
  return Status::Ok();
}

// SigV4 "Trimall": strip leading and trailing whitespace and collapse inner runs to one space.
std::string TrimAll(std::string_view v) {
  std::string out;
  size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) ++i;
    size_t start = i;
    while (i < v.size() && v[i] != ' ' && v[i] != '\t') ++i;
    if (i > start) {
      if (!out.empty()) out.push_back(' ');
      out.append(v.substr(start, i - start));
    }
  }
  return out;
}

// RFC 3986 §5.2.4 dot-segment removal plus collapsing of empty segments ("//"), which AWS
// services other than S3 expect; mirrors botocore.utils.remove_dot_segments.
std::string NormalizePath(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view seg = path.substr(pos, slash - pos);
    if (!seg.empty() && seg != ".") {
      if (seg == "..") {
        if (!out.empty()) out.pop_back();
      } else {
        out.push_back(seg);
      }
    }
    pos = slash + 1;
  }
  std::string result = path.front() == '/' ? "/" : "";
  for (size_t i = 0; i < out.size(); ++i) {
    if (i > 0) result.push_back('/');
    result.append(out[i]);
  }
  if (path.back() == '/' && !out.empty()) result.push_back('/');
  return result;
}

StatusOr<std::string> Sha256Hex(ByteView data) {
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EKM_OSSL_CHECK(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr),
                 "EVP_Digest(SHA-256)");
  return HexEncode(ByteView(md, len));
}

// HMAC-SHA256(key, msg): a derived signing key, hence SecretBytes (crypto/hmac.h).
StatusOr<SecretBytes> HmacSha256(const SecretBytes& key, std::string_view msg) {
  return HmacSha256Key(key, ByteView(reinterpret_cast<const uint8_t*>(msg.data()), msg.size()));
}

StatusOr<std::string> Signature(const SecretBytes& secret, std::string_view date,
                                const SigV4Scope& scope, std::string_view string_to_sign) {
  // kSecret = "AWS4" + secret access key, built directly in wiped memory.
  auto s = secret.RevealForCrypto();
  SecretBytes k_secret(4 + s.size());
  std::memcpy(k_secret.MutableForCrypto().data(), "AWS4", 4);
  if (!s.empty()) std::memcpy(k_secret.MutableForCrypto().data() + 4, s.data(), s.size());
  EKM_ASSIGN_OR_RETURN(SecretBytes k_date, HmacSha256(k_secret, date));
  EKM_ASSIGN_OR_RETURN(SecretBytes k_region, HmacSha256(k_date, scope.region));
  EKM_ASSIGN_OR_RETURN(SecretBytes k_service, HmacSha256(k_region, scope.service));
  EKM_ASSIGN_OR_RETURN(SecretBytes k_signing, HmacSha256(k_service, kTerminator));
  EKM_ASSIGN_OR_RETURN(SecretBytes sig, HmacSha256(k_signing, string_to_sign));
  // The final MAC is the public signature.
  return HexEncode(sig.RevealForCrypto());
}

Status ValidateInputs(const SigV4Request& request, const AwsCredentials& credentials,
                      const SigV4Scope& scope) {
  if (request.method.empty()) return InvalidArgumentError("SigV4: the HTTP method is empty");
  for (unsigned char c : request.method) {
    if (!IsTokenChar(c)) {
      return InvalidArgumentError("SigV4: the HTTP method '" + request.method +
                                  "' has a character that is not allowed in a method");
    }
  }
  if (request.path.empty() || request.path.front() != '/') {
    return InvalidArgumentError("SigV4: the path must start with '/'");
  }
  for (unsigned char c : request.path) {
    if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
      return InvalidArgumentError(
          "SigV4: the path must be percent-encoded as it goes on the request line "
          "(no spaces, controls, non-ASCII, '?' or '#'); build it with UriEncodePath");
    }
  }
  for (const auto* part : {&scope.region, &scope.service}) {
    const char* what = part == &scope.region ? "region" : "service";
    if (part->empty()) return InvalidArgumentError(std::string("SigV4: the ") + what + " is empty");
    for (unsigned char c : *part) {
      if (!IsScopeChar(c)) {
        return InvalidArgumentError(std::string("SigV4: the ") + what + " '" + *part +
                                    "' may contain only a-z, 0-9 and '-'");
      }
    }
  }
  if (credentials.access_key_id.empty()) {
    return InvalidArgumentError("SigV4: the access key id is empty");
  }
  for (unsigned char c : credentials.access_key_id) {
    if (!std::isalnum(c)) {
      return InvalidArgumentError("SigV4: the access key id may contain only A-Z, a-z and 0-9");
    }
  }
  if (credentials.secret_access_key.empty()) {
    return InvalidArgumentError("SigV4: the secret access key is empty");
  }
  if (credentials.session_token) {
    if (credentials.session_token->empty()) {
      return InvalidArgumentError("SigV4: the session token is present but empty");
    }
    // Not echoing the token: it is a credential.
    for (unsigned char c : *credentials.session_token) {
      if (c <= 0x20 || c >= 0x7f) {
        return InvalidArgumentError(
            "SigV4: the session token has a space, control or non-ASCII "
            "character");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

std::string SigV4UriEncode(std::string_view in, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (unsigned char c : in) {
    if (IsUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string UriEncodePath(const std::vector<std::string>& raw_segments) {
  if (raw_segments.empty()) return "/";
  std::string out;
  for (const auto& seg : raw_segments) {
    out.push_back('/');
    out += SigV4UriEncode(seg, /*keep_slash=*/false);
  }
  return out;
}

std::string SigV4Timestamp(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::floor<std::chrono::seconds>(t).time_since_epoch().count();
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

StatusOr<SigV4Signature> SignRequest(const SigV4Request& request, const AwsCredentials& credentials,
                                     const SigV4Scope& scope,
                                     std::chrono::system_clock::time_point now) {
  EKM_RETURN_IF_ERROR(ValidateInputs(request, credentials, scope));
  const std::string timestamp = SigV4Timestamp(now);
  const std::string date = timestamp.substr(0, 8);

  SigV4Signature out;
  out.headers_to_add.emplace_back("X-Amz-Date", timestamp);
  if (credentials.session_token) {
    out.headers_to_add.emplace_back("X-Amz-Security-Token", *credentials.session_token);
  }

  // Canonical headers: lower-case names, sorted; repeated names joined with ',' in order.
  std::map<std::string, std::vector<std::string>> signed_headers;
  std::optional<std::string> content_sha256;
  for (const auto& [name, value] : request.headers) {
    if (name.empty()) return InvalidArgumentError("SigV4: a header has an empty name");
    for (unsigned char c : name) {
      if (!IsTokenChar(c)) {
        return InvalidArgumentError("SigV4: header name '" + name +
                                    "' has a character that is not allowed in a header name");
      }
    }
    EKM_RETURN_IF_ERROR(CheckHeaderValue(name, value));
    std::string lname = ToLower(name);
    if (Contains(kSignerOwnedHeaders, lname)) {
      return InvalidArgumentError("SigV4: header '" + name +
                                  "' is added by the signer; do not pass it in");
    }
    if (lname == "x-amz-content-sha256" && !content_sha256) content_sha256 = value;
    if (Contains(kUnsignedHeaders, lname)) continue;
    signed_headers[lname].push_back(TrimAll(value));
  }
  if (!signed_headers.contains("host")) {
    return InvalidArgumentError("SigV4: the request has no Host header; SigV4 requires signing it");
  }
  for (const auto& [name, value] : out.headers_to_add) {
    signed_headers[ToLower(name)].push_back(value);
  }

  std::string canonical_headers;
  for (const auto& [name, values] : signed_headers) {
    if (!out.signed_headers.empty()) out.signed_headers.push_back(';');
    out.signed_headers += name;
    canonical_headers += name;
    canonical_headers.push_back(':');
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) canonical_headers.push_back(',');
      canonical_headers += values[i];
    }
    canonical_headers.push_back('\n');
  }

  // Canonical query: encode names and values, then sort by name and, for repeats, by value.
  std::vector<std::pair<std::string, std::string>> query;
  query.reserve(request.query.size());
  for (const auto& [k, v] : request.query) {
    query.emplace_back(SigV4UriEncode(k, false), SigV4UriEncode(v, false));
  }
  std::sort(query.begin(), query.end());
  for (const auto& [k, v] : query) {
    if (!out.canonical_query.empty()) out.canonical_query.push_back('&');
    out.canonical_query += k;
    out.canonical_query.push_back('=');
    out.canonical_query += v;
  }

  std::string payload_hash;
  if (content_sha256) {
    payload_hash = *content_sha256;
  } else {
    EKM_ASSIGN_OR_RETURN(payload_hash, Sha256Hex(request.payload));
  }

  // The path arrives encoded as on the wire; encoding it again (keeping '/') is what SigV4
  // requires for every service except S3.
  out.canonical_request = ToUpper(request.method) + "\n" +
                          SigV4UriEncode(NormalizePath(request.path), /*keep_slash=*/true) + "\n" +
                          out.canonical_query + "\n" + canonical_headers + "\n" +
                          out.signed_headers + "\n" + payload_hash;

  const std::string credential_scope =
      date + "/" + scope.region + "/" + scope.service + "/" + std::string(kTerminator);
  EKM_ASSIGN_OR_RETURN(std::string cr_hash, Sha256Hex(AsBytes(out.canonical_request)));
  out.string_to_sign =
      std::string(kAlgorithm) + "\n" + timestamp + "\n" + credential_scope + "\n" + cr_hash;

  EKM_ASSIGN_OR_RETURN(out.signature,
                       Signature(credentials.secret_access_key, date, scope, out.string_to_sign));
  out.authorization = std::string(kAlgorithm) + " Credential=" + credentials.access_key_id + "/" +
                      credential_scope + ", SignedHeaders=" + out.signed_headers +
                      ", Signature=" + out.signature;
  out.headers_to_add.emplace_back("Authorization", out.authorization);
  return out;
}

}  // namespace ekm
