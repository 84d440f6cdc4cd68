// A minimal AWS STS client: AssumeRole, AssumeRoleWithWebIdentity and GetCallerIdentity over
// the Query protocol (POST form-encoded `Action=...&Version=2011-06-15`, SigV4 service "sts",
// XML responses parsed with libxml2 without network access or entity expansion).
//
// Errors (from the XML ErrorResponse's Code and Message, which are quoted; bodies never are):
//  - AccessDenied                                       -> kPermissionDenied (trust/IAM policy)
//  - InvalidClientTokenId, SignatureDoesNotMatch,
//    IncompleteSignature, ExpiredToken, ...             -> kUnauthenticated (platform credentials)
//  - InvalidIdentityToken, IDPRejectedClaim, ...        -> kUnauthenticated (web identity token)
//  - Throttling, 5xx, IDPCommunicationError             -> kUnavailable (retry)
//  - RegionDisabledException                            -> kFailedPrecondition
//  - ValidationError, MalformedPolicyDocument, other 4xx-> kInvalidArgument
//  - transport failures pass through (kUnavailable, kDeadlineExceeded, ...).
// Secrets: the secret access key of the response goes straight into SecretBytes, and the
// response body and the web identity request body are wiped after use.
// Thread-safety: StsClient is immutable after construction; call it from any thread (the
// transport is thread-safe).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/provider/aws/aws_config.h"
#include "ekm/provider/aws/http_transport.h"
#include "ekm/provider/aws/sigv4_signer.h"

namespace ekm {

struct StsClientOptions {
  AwsEndpoint endpoint;  // ResolveAwsEndpoint("sts", region, ...)
  std::shared_ptr<HttpTransport> transport;
  const Clock* clock = &Clock::Real();
  std::chrono::milliseconds timeout{10000};
};

struct AwsTemporaryCredentials {
  AwsCredentials credentials;  // with session_token
  std::chrono::system_clock::time_point expiration;
  std::string assumed_role_arn;  // AssumedRoleUser/Arn: arn:aws:sts::ACCT:assumed-role/ROLE/SESSION
};

struct AssumeRoleRequest {
  std::string role_arn;
  std::string role_session_name;        // 2-64 of [\w+=,.@-]
  std::string external_id;              // empty: not sent
  std::chrono::seconds duration{3600};  // 900 s to the role's maximum (1-12 h)
};

struct AssumeRoleWithWebIdentityRequest {
  std::string role_arn;
  std::string role_session_name;
  SecretBytes web_identity_token;  // the OIDC JWT (a bearer credential)
  std::chrono::seconds duration{3600};
};

struct CallerIdentity {
  std::string arn;  // arn:aws:iam::ACCT:user/NAME or arn:aws:sts::ACCT:assumed-role/ROLE/SESSION
  std::string account;  // 12 digits
  std::string user_id;  // AIDA... or AROA...:SESSION
};

class StsClient {
 public:
  explicit StsClient(StsClientOptions options);

  StatusOr<CallerIdentity> GetCallerIdentity(const AwsCredentials& credentials) const;
  StatusOr<AwsTemporaryCredentials> AssumeRole(const AwsCredentials& credentials,
                                               const AssumeRoleRequest& request) const;
  // Unsigned: the token is the credential.
  StatusOr<AwsTemporaryCredentials> AssumeRoleWithWebIdentity(
      const AssumeRoleWithWebIdentityRequest& request) const;

  const AwsEndpoint& endpoint() const { return options_.endpoint; }

 private:
  // Sends a form body; signs it when `credentials` is given.
  StatusOr<HttpResponse> Call(std::string_view action, std::string& body,
                              const AwsCredentials* credentials) const;

  StsClientOptions options_;
};

// The IAM principal ARN behind a GetCallerIdentity ARN: an assumed-role session
// `arn:PARTITION:sts::ACCT:assumed-role/ROLE/SESSION` becomes `arn:PARTITION:iam::ACCT:role/ROLE`;
// every other ARN (users, roots, federated users) is returned unchanged.
// Note: a role with a path (arn:aws:iam::ACCT:role/team/ROLE) appears in the session ARN
// without it, so the result is then `role/ROLE`, which key policies still match only if the
// role has no path; configure the principal explicitly for roles with paths.
std::string PrincipalArnFromCallerIdentity(std::string_view arn);

// Pure helpers, exposed for tests and fuzzing.
// Maps an STS error response (status + XML body) to a Status; `action` names the call.
Status StsErrorToStatus(std::string_view action, long http_status, std::string_view body);
// application/x-www-form-urlencoded encoding of one value (RFC 3986 unreserved kept).
std::string FormUrlEncode(std::string_view value);

}  // namespace ekm
