// KmsClient: the AWS KMS JSON 1.1 protocol (X-Amz-Target: TrentService.*) over an
// HttpTransport, every request signed with SigV4. The operations ekm needs: Encrypt and Decrypt
// with an encryption context (an EK is the only plaintext ever sent), DescribeKey and
// GetKeyRotationStatus.
//
// Errors, from AWS's error code (the JSON "__type", or the XML <Code> that moto sends for auth
// failures) to the provider contract of provider/key_provider.h, each with the seed guide's
// troubleshooting advice as the hint:
//   AccessDeniedException                         -> kPermissionDenied (key policy)
//   NotFoundException, InvalidArnException        -> kNotFound / kInvalidArgument (ARN, region)
//   DisabledException, KMSInvalidStateException   -> kFailedPrecondition (key state)
//   InvalidCiphertextException, IncorrectKey...   -> kDataLoss
//   SignatureDoesNotMatch, UnrecognizedClient..., InvalidClientTokenId, ExpiredToken...
//                                                 -> kUnauthenticated (the platform's own
//                                                 credentials)
//   ThrottlingException, KMSInternalException, 5xx, timeouts, network
//                                                 -> kUnavailable / kDeadlineExceeded (retried)
// Every message starts with "AWS KMS <Operation>" and names the AWS code, so the admin sees
// exactly what AWS said (the code is also in KmsError below, for the audit log).
//
// Retries: throttling, 5xx and network errors are retried with capped exponential backoff and
// full jitter, within the call's deadline; every other error is returned at once.
//
// Thread-safe: a KmsClient is shared by every request thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/provider/aws/http_transport.h"
#include "ekm/provider/aws/sigv4_signer.h"
#include "ekm/provider/key_provider.h"

namespace ekm {

// Where to send a service's requests and how to sign them.
struct AwsServiceEndpoint {
  std::string url;             // "https://kms.us-east-1.amazonaws.com/": where to POST
  std::string path = "/";      // the request path in that URL, as signed
  std::string host;            // the Host header: "kms.us-east-1.amazonaws.com" (with :port if any)
  std::string signing_region;  // "us-east-1"
};

// The KMS endpoint for a key's region (AWS_ENDPOINT_URL_KMS and friends; aws_config.h).
using KmsEndpointResolver = std::function<StatusOr<AwsServiceEndpoint>(std::string_view region)>;
// The platform's current AWS credentials (the credential chain; aws_credentials.h).
using AwsCredentialsSource = std::function<StatusOr<AwsCredentials>()>;

struct KmsClientOptions {
  std::chrono::milliseconds attempt_timeout{5000};  // one HTTP exchange
  std::chrono::milliseconds deadline{15000};        // all attempts of one call together
  int max_attempts = 4;
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_cap{2000};
};

// What AWS said when a call failed: kept apart from the Status for the audit log and tests.
struct KmsError {
  std::string code;     // "AccessDeniedException", "HTTP 503", "timeout", …
  std::string message;  // AWS's message, may be empty
  long http_status = 0;
};

struct KmsEncryptResult {
  Bytes ciphertext_blob;
  std::string key_arn;  // the key that encrypted (an alias resolves to its key)
};

struct KmsDecryptResult {
  SecretBytes plaintext;
  std::string key_arn;
};

struct KmsKeyMetadata {
  std::string key_arn;
  std::string key_id;
  std::string key_state;    // "Enabled", "Disabled", "PendingDeletion", "PendingImport", …
  std::string key_spec;     // "SYMMETRIC_DEFAULT", …
  std::string key_usage;    // "ENCRYPT_DECRYPT", …
  std::string origin;       // "AWS_KMS", "EXTERNAL", …
  std::string key_manager;  // "CUSTOMER" or "AWS"
  bool multi_region = false;
  std::string description;
  int64_t deletion_date = 0;  // unix seconds, when pending deletion
};

class KmsClient {
 public:
  KmsClient(std::shared_ptr<HttpTransport> transport, KmsEndpointResolver endpoints,
            AwsCredentialsSource credentials, Clock* clock, KmsClientOptions options = {});

  // `key` is a key ARN or alias ARN (kms_arn.h); its region picks the endpoint.
  StatusOr<KmsEncryptResult> Encrypt(std::string_view key, const SecretBytes& plaintext,
                                     const EncryptionContext& context, KmsError* error = nullptr);
  StatusOr<KmsDecryptResult> Decrypt(std::string_view key, ByteView ciphertext_blob,
                                     const EncryptionContext& context, KmsError* error = nullptr);
  StatusOr<KmsKeyMetadata> DescribeKey(std::string_view key, KmsError* error = nullptr);
  StatusOr<bool> GetKeyRotationStatus(std::string_view key, KmsError* error = nullptr);

  // Calls made (each attempt counts), for metrics and tests.
  uint64_t attempts() const { return attempts_.load(); }

 private:
  StatusOr<std::string> Call(std::string_view operation, std::string_view key, std::string& body,
                             KmsError* error);

  std::shared_ptr<HttpTransport> transport_;
  KmsEndpointResolver endpoints_;
  AwsCredentialsSource credentials_;
  Clock* clock_;
  KmsClientOptions options_;
  std::atomic<uint64_t> attempts_{0};
};

// The Status for an AWS KMS error response (exposed for tests): `operation` and `key` name the
// call, `error` is filled with the parsed code and message.
Status KmsErrorToStatus(std::string_view operation, std::string_view key, long http_status,
                        std::string_view body, std::string_view error_type_header, KmsError* error);

}  // namespace ekm
