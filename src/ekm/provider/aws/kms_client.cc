#include "ekm/provider/aws/kms_client.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "ekm/base/encoding.h"
#include "ekm/base/random.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/provider/aws/kms_arn.h"

namespace ekm {

namespace {

using json = nlohmann::json;

// Wipes a string that held key bytes (base64 of an EK) before it is freed.
// The value of the "Plaintext" member of a Decrypt answer, in place (base64 has no escapes),
// or nullopt. A Decrypt answer has no other member of that name; the text "Plaintext" inside
// another string value is quoted with backslashes and is not matched.
std::optional<std::string_view> PlaintextMember(std::string_view text) {
  constexpr std::string_view kName = "\"Plaintext\"";
  for (size_t at = text.find(kName); at != std::string_view::npos; at = text.find(kName, at + 1)) {
    if (at > 0 && text[at - 1] == '\\') continue;
    size_t i = at + kName.size();
    auto skip = [&] {
      while (i < text.size() &&
             (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) {
        ++i;
      }
    };
    skip();
    if (i >= text.size() || text[i] != ':') continue;
    ++i;
    skip();
    if (i >= text.size() || text[i] != '"') continue;
    size_t end = text.find('"', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    return text.substr(i + 1, end - i - 1);
  }
  return std::nullopt;
}

// "com.amazonaws.kms#AccessDeniedException" -> "AccessDeniedException";
// "AccessDeniedException:http://internal.amazon.com/..." -> "AccessDeniedException".
std::string BareErrorCode(std::string_view code) {
  if (auto hash = code.rfind('#'); hash != std::string_view::npos) code.remove_prefix(hash + 1);
  if (auto colon = code.find(':'); colon != std::string_view::npos) code = code.substr(0, colon);
  return std::string(code);
}

std::string XmlElement(std::string_view body, std::string_view name) {
  std::string open = "<" + std::string(name) + ">";
  std::string close = "</" + std::string(name) + ">";
  auto b = body.find(open);
  if (b == std::string_view::npos) return "";
  b += open.size();
  auto e = body.find(close, b);
  if (e == std::string_view::npos) return "";
  return std::string(body.substr(b, e - b));
}

bool IsRetryable(const KmsError& e) {
  static const char* kRetryable[] = {"ThrottlingException",        "Throttling",
                                     "ThrottledException",         "RequestLimitExceeded",
                                     "TooManyRequestsException",   "KMSInternalException",
                                     "DependencyTimeoutException", "InternalFailure",
                                     "ServiceUnavailable",         "ServiceUnavailableException",
                                     "KeyUnavailableException",    "RequestTimeout",
                                     "RequestTimeoutException"};
  if (e.http_status >= 500 || e.http_status == 429) return true;
  return std::any_of(std::begin(kRetryable), std::end(kRetryable),
                     [&](const char* c) { return e.code == c; });
}

constexpr std::string_view kHealthHint =
    "AWS KMS may be experiencing an outage: check the AWS Health Dashboard for KMS in the "
    "key's region, then try again";

// The status for an AWS KMS error answer `e`; the caller adds its code (KmsErrorToStatus).
Status KmsErrorStatus(std::string_view operation, std::string_view key, long http_status,
                      const KmsError& e) {
  std::string what = "AWS KMS " + std::string(operation) + " on " + std::string(key) +
                     " failed: " + e.code + (e.message.empty() ? "" : " (" + e.message + ")");
  const std::string& c = e.code;
  if (c == "AccessDeniedException" || c == "AccessDenied") {
    return PermissionDeniedError(
        what,
        "the key policy (or the platform's IAM policy) does not allow the platform "
        "principal kms:" +
            std::string(operation) +
            " on this key: add ekm's statement to the key policy's Statement array");
  }
  if (c == "NotFoundException") {
    return NotFoundError(what,
                         "check the key ARN: copy it again from the key's General configuration "
                         "in the AWS KMS console, and check that its region is the key's region");
  }
  if (c == "InvalidArnException" || c == "ValidationException" || c == "InvalidKeyUsageException" ||
      c == "InvalidGrantTokenException" || c == "UnsupportedOperationException") {
    return InvalidArgumentError(what, c == "InvalidKeyUsageException"
                                          ? "ekm needs a symmetric key (key spec "
                                            "SYMMETRIC_DEFAULT) with key usage ENCRYPT_DECRYPT"
                                          : "check the key ARN");
  }
  if (c == "DisabledException") {
    return FailedPreconditionError(what,
                                   "the key is disabled: enable it in the AWS KMS console "
                                   "(Key actions > Enable)");
  }
  if (c == "KMSInvalidStateException") {
    return FailedPreconditionError(
        what,
        "the key is not usable in its current state (pending deletion, pending import or "
        "unavailable): if deletion is scheduled, cancel it in the AWS KMS console and "
        "enable the key");
  }
  if (c == "InvalidCiphertextException" || c == "IncorrectKeyException") {
    return DataLossError(what,
                         "the wrapped key does not belong to this key or this encryption "
                         "context");
  }
  if (c == "SignatureDoesNotMatch" || c == "UnrecognizedClientException" ||
      c == "InvalidClientTokenId" || c == "IncompleteSignature" || c == "ExpiredTokenException" ||
      c == "ExpiredToken" || c == "InvalidSignatureException" ||
      c == "MissingAuthenticationToken" || c == "RequestExpired") {
    return UnauthenticatedError(
        what,
        "AWS rejected the platform's own AWS credentials, not the customer's key: the "
        "platform operator must check the AWS credentials ekm runs with (access key, secret key, "
        "session token, assumed role) and the system clock");
  }
  if (IsRetryable(e)) {
    return UnavailableError(what, std::string(kHealthHint));
  }
  if (http_status == 403) {
    return PermissionDeniedError(what, "AWS refused the request: check the key policy");
  }
  return InvalidArgumentError(what, "AWS KMS refused the request");
}

}  // namespace

Status KmsErrorToStatus(std::string_view operation, std::string_view key, long http_status,
                        std::string_view body, std::string_view error_type_header,
                        KmsError* error) {
  KmsError e;
  e.http_status = http_status;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    if (j.contains("__type") && j["__type"].is_string())
      e.code = BareErrorCode(j["__type"].get<std::string>());
    for (const char* m : {"message", "Message"}) {
      if (j.contains(m) && j[m].is_string()) e.message = j[m].get<std::string>();
    }
  } else if (body.find("<Code>") != std::string_view::npos) {
    // moto answers authentication failures as IAM XML: <ErrorResponse><Error><Code>…
    e.code = XmlElement(body, "Code");
    e.message = XmlElement(body, "Message");
  }
  if (e.code.empty() && !error_type_header.empty()) e.code = BareErrorCode(error_type_header);
  if (e.code.empty()) e.code = "HTTP " + std::to_string(http_status);
  if (error) *error = e;
  Status status = KmsErrorStatus(operation, key, http_status, e);
  // "HTTP 502" is what ekm calls an answer without an error name: not the KMS's own code.
  const bool named = e.code.rfind("HTTP ", 0) != 0;
  return named ? status.WithProviderCode(e.code) : status;
}

KmsClient::KmsClient(std::shared_ptr<HttpTransport> transport, KmsEndpointResolver endpoints,
                     AwsCredentialsSource credentials, Clock* clock, KmsClientOptions options)
    : transport_(std::move(transport)),
      endpoints_(std::move(endpoints)),
      credentials_(std::move(credentials)),
      clock_(clock),
      options_(options) {}

StatusOr<std::string> KmsClient::Call(std::string_view operation, std::string_view key,
                                      std::string& body, KmsError* error) {
  EKM_ASSIGN_OR_RETURN(KmsArn arn, ParseKmsArn(key));
  EKM_ASSIGN_OR_RETURN(AwsServiceEndpoint endpoint, endpoints_(arn.region));
  const std::string target = "TrentService." + std::string(operation);
  const auto deadline = clock_->Monotonic() + options_.deadline;
  Status last;
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    if (attempt > 0) {
      // Full jitter: a random delay in [0, min(cap, base * 2^attempt)].
      auto ceiling = std::min<int64_t>(options_.backoff_cap.count(), options_.backoff_base.count()
                                                                         << std::min(attempt, 16));
      auto r = RandomUint64();
      int64_t delay_ms =
          r.ok() ? static_cast<int64_t>(*r % static_cast<uint64_t>(ceiling + 1)) : ceiling;
      if (clock_->Monotonic() + std::chrono::milliseconds(delay_ms) >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    }
    auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_->Monotonic());
    if (remaining <= std::chrono::milliseconds(0)) break;

    EKM_ASSIGN_OR_RETURN(AwsCredentials creds, credentials_());
    SigV4Request sreq;
    sreq.method = "POST";
    sreq.path = endpoint.path;
    sreq.headers = {{"Host", endpoint.host},
                    {"Content-Type", "application/x-amz-json-1.1"},
                    {"X-Amz-Target", target}};
    sreq.payload = AsBytes(body);
    EKM_ASSIGN_OR_RETURN(SigV4Signature sig,
                         SignRequest(sreq, creds, {endpoint.signing_region, "kms"}, clock_->Now()));
    HttpRequest req;
    req.method = "POST";
    req.url = endpoint.url;
    req.headers = sreq.headers;
    for (auto& h : sig.headers_to_add) req.headers.push_back(std::move(h));
    req.body = body;
    req.timeout = std::min(options_.attempt_timeout, remaining);
    attempts_.fetch_add(1, std::memory_order_relaxed);
    auto res = transport_->Send(req);
    WipeString(req.body);
    if (!res.ok()) {
      Status s = res.status();
      if (s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kDeadlineExceeded) {
        return s;
      }
      if (error)
        *error = KmsError{s.code() == StatusCode::kDeadlineExceeded ? "timeout" : "network",
                          s.message(), 0};
      last = Status(s.code(),
                    "AWS KMS " + std::string(operation) + " on " + std::string(key) +
                        " failed: " + s.message(),
                    std::string(kHealthHint));
      continue;
    }
    if (res->status == 200) return std::move(res->body);
    KmsError e;
    last = KmsErrorToStatus(operation, key, res->status, res->body, res->Header("x-amzn-errortype"),
                            &e);
    if (error) *error = e;
    if (!IsRetryable(e)) return last;
  }
  if (last.ok()) {
    last = DeadlineExceededError("AWS KMS " + std::string(operation) + " on " + std::string(key) +
                                     " did not answer within " +
                                     std::to_string(options_.deadline.count()) + " ms",
                                 std::string(kHealthHint));
  }
  return last;
}

StatusOr<KmsEncryptResult> KmsClient::Encrypt(std::string_view key, const SecretBytes& plaintext,
                                              const EncryptionContext& context, KmsError* error) {
  // The body is written into a buffer of its final size: serialising the key through json (or
  // appending to a growing string) would leave copies of its base64 in freed memory.
  const std::string rest = json{{"KeyId", key}, {"EncryptionContext", context}}.dump();
  constexpr std::string_view kField = "{\"Plaintext\":\"";
  std::string body;
  body.reserve(kField.size() + (plaintext.size() + 2) / 3 * 4 + 2 + rest.size());
  body.append(kField);
  AppendBase64(plaintext.RevealForCrypto(), &body);
  body.append("\",");
  body.append(rest, 1);  // the other members, without their "{"
  auto res = Call("Encrypt", key, body, error);
  WipeString(body);
  if (!res.ok()) return res.status();
  json j = json::parse(*res, nullptr, false);
  if (!j.is_object() || !j.contains("CiphertextBlob") || !j["CiphertextBlob"].is_string()) {
    return UnavailableError("AWS KMS Encrypt on " + std::string(key) +
                            " answered without a CiphertextBlob");
  }
  EKM_ASSIGN_OR_RETURN(Bytes blob, Base64Decode(j["CiphertextBlob"].get<std::string>()));
  std::string key_arn =
      j.contains("KeyId") && j["KeyId"].is_string() ? j["KeyId"].get<std::string>() : "";
  return KmsEncryptResult{std::move(blob), std::move(key_arn)};
}

StatusOr<KmsDecryptResult> KmsClient::Decrypt(std::string_view key, ByteView ciphertext_blob,
                                              const EncryptionContext& context, KmsError* error) {
  // KeyId pins the key: AWS refuses (IncorrectKeyException) a blob of any other key.
  json req = {{"KeyId", key},
              {"CiphertextBlob", Base64Encode(ciphertext_blob)},
              {"EncryptionContext", context}};
  std::string body = req.dump();
  auto res = Call("Decrypt", key, body, error);
  if (!res.ok()) return res.status();
  std::string& text = *res;
  // The key is taken out of the answer in place and blanked before the JSON parser sees it
  // (its token buffer grows while it reads a string, and would leave copies behind).
  std::optional<std::string_view> b64 = PlaintextMember(text);
  if (!b64) {
    WipeString(text);
    return UnavailableError("AWS KMS Decrypt on " + std::string(key) +
                            " answered without a Plaintext");
  }
  auto plain = Base64Decode(*b64);
  std::fill(const_cast<char*>(b64->data()), const_cast<char*>(b64->data() + b64->size()), 'A');
  json j = json::parse(text, nullptr, false);
  WipeString(text);
  if (!plain.ok()) return plain.status();
  SecretBytes secret(plain->data(), plain->size());
  OPENSSL_cleanse(plain->data(), plain->size());
  std::string key_arn =
      j.contains("KeyId") && j["KeyId"].is_string() ? j["KeyId"].get<std::string>() : "";
  return KmsDecryptResult{std::move(secret), std::move(key_arn)};
}

StatusOr<KmsKeyMetadata> KmsClient::DescribeKey(std::string_view key, KmsError* error) {
  std::string body = json{{"KeyId", key}}.dump();
  EKM_ASSIGN_OR_RETURN(std::string text, Call("DescribeKey", key, body, error));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("KeyMetadata") || !j["KeyMetadata"].is_object()) {
    return UnavailableError("AWS KMS DescribeKey on " + std::string(key) +
                            " answered without KeyMetadata");
  }
  const json& m = j["KeyMetadata"];
  // Fields may be absent or null (moto sends nulls): read each defensively.
  auto str = [&m](const char* name) {
    auto it = m.find(name);
    return it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  KmsKeyMetadata out;
  out.key_arn = str("Arn");
  out.key_id = str("KeyId");
  out.key_state = str("KeyState");
  out.key_spec = str("KeySpec");
  if (out.key_spec.empty()) out.key_spec = str("CustomerMasterKeySpec");
  out.key_usage = str("KeyUsage");
  out.origin = str("Origin");
  out.key_manager = str("KeyManager");
  out.multi_region =
      m.contains("MultiRegion") && m["MultiRegion"].is_boolean() && m["MultiRegion"].get<bool>();
  out.description = str("Description");
  if (m.contains("DeletionDate") && m["DeletionDate"].is_number()) {
    out.deletion_date = static_cast<int64_t>(m["DeletionDate"].get<double>());
  }
  return out;
}

StatusOr<bool> KmsClient::GetKeyRotationStatus(std::string_view key, KmsError* error) {
  // GetKeyRotationStatus takes a key ARN or id, not an alias: callers pass the key ARN that
  // DescribeKey or Encrypt resolved.
  std::string body = json{{"KeyId", key}}.dump();
  EKM_ASSIGN_OR_RETURN(std::string text, Call("GetKeyRotationStatus", key, body, error));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("KeyRotationEnabled")) {
    return UnavailableError("AWS KMS GetKeyRotationStatus on " + std::string(key) +
                            " answered without KeyRotationEnabled");
  }
  return j["KeyRotationEnabled"].is_boolean() && j["KeyRotationEnabled"].get<bool>();
}

}  // namespace ekm
