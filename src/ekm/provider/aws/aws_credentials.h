// AWS credentials for the platform's own calls (KMS, STS), resolved as the AWS SDKs do.
//
// The default chain tries, in order, and uses the first source that is configured:
//  1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY [, AWS_SESSION_TOKEN];
//  2. shared files: the profile (AWS_PROFILE, else "default") of AWS_SHARED_CREDENTIALS_FILE /
//     AWS_CONFIG_FILE (~/.aws/credentials, ~/.aws/config; `[profile x]` in config):
//     static keys, or role_arn with source_profile / credential_source (Environment,
//     Ec2InstanceMetadata, EcsContainer) [+ external_id, role_session_name, duration_seconds]
//     -> STS AssumeRole, or role_arn + web_identity_token_file; credential_process and SSO
//     profiles are reported as unsupported (an error, not skipped);
//  3. web identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE [+ AWS_ROLE_SESSION_NAME]
//     -> STS AssumeRoleWithWebIdentity (unsigned; the token file is re-read on each refresh);
//  4. ECS container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) or
//     AWS_CONTAINER_CREDENTIALS_FULL_URI (https, loopback, or the ECS/EKS link-local hosts), with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE / AWS_CONTAINER_AUTHORIZATION_TOKEN;
//  5. EC2 instance metadata, IMDSv2 only (token PUT, then the role's credentials), at
//     AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254, 1 s timeouts;
//     AWS_EC2_METADATA_DISABLED=true skips it.
// A source that is configured but fails (e.g. AssumeRole denied, a profile naming a missing
// source_profile) is an error: the chain does not silently fall through to the next source.
// When nothing is configured the error lists every source and why it was skipped:
//   "no AWS credentials found: environment (AWS_ACCESS_KEY_ID not set), shared credentials
//    file (/root/.aws/credentials: no such file), ..."
//
// Temporary credentials (STS, metadata) are cached and refreshed `refresh_before` (5 min)
// before they expire; if a refresh fails while the cached ones are still valid, those are
// returned. Time comes from an injected Clock.
//
// Secrets: secret access keys live only in SecretBytes; no error message holds a credential.
// Thread-safety: every provider is thread-safe (a mutex serialises refreshes).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/provider/aws/aws_config.h"
#include "ekm/provider/aws/http_transport.h"
#include "ekm/provider/aws/sigv4_signer.h"
#include "ekm/provider/aws/sts_client.h"

namespace ekm {

class AwsCredentialsProvider {  // thread-safe; caches and refreshes before expiry
 public:
  virtual ~AwsCredentialsProvider() = default;
  // A fresh copy (SecretBytes cloned) of valid credentials.
  virtual StatusOr<AwsCredentials> Get() = 0;
  // Where they come from, for logs and `ekm key show`: "environment",
  // "profile default (shared credentials file)", "assume-role arn:...", "web identity",
  // "instance metadata (IMDSv2)", "container credentials".
  virtual std::string Source() const = 0;
};

using AwsCredentialsProviderPtr = std::shared_ptr<AwsCredentialsProvider>;

// A deep copy (the secret cloned).
AwsCredentials CloneAwsCredentials(const AwsCredentials& c);

// Fixed credentials.
AwsCredentialsProviderPtr NewStaticAwsCredentialsProvider(AwsCredentials credentials,
                                                          std::string source);

// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read once now.
// kNotFound if AWS_ACCESS_KEY_ID is unset; kInvalidArgument if only one of the pair is set.
StatusOr<AwsCredentialsProviderPtr> NewEnvironmentAwsCredentialsProvider(const GetEnvFn& env);

struct AssumeRoleProviderOptions {
  std::string role_arn;
  std::string external_id;   // empty: none
  std::string session_name;  // empty: "ekm-<unix seconds>"
  std::chrono::seconds duration{3600};
  std::chrono::seconds refresh_before{300};
};

// STS AssumeRole with credentials from `source`; the temporary credentials are cached and
// refreshed before expiry. Source(): "assume-role ROLE_ARN".
AwsCredentialsProviderPtr NewAssumeRoleAwsCredentialsProvider(AwsCredentialsProviderPtr source,
                                                              std::shared_ptr<const StsClient> sts,
                                                              AssumeRoleProviderOptions options,
                                                              const Clock* clock = &Clock::Real());

struct WebIdentityProviderOptions {
  std::string role_arn;
  std::string token_file;    // read on every refresh (Kubernetes rotates it)
  std::string session_name;  // empty: "ekm-<unix seconds>"
  std::chrono::seconds duration{3600};
  std::chrono::seconds refresh_before{300};
};

// STS AssumeRoleWithWebIdentity. Source(): "web identity".
AwsCredentialsProviderPtr NewWebIdentityAwsCredentialsProvider(std::shared_ptr<const StsClient> sts,
                                                               WebIdentityProviderOptions options,
                                                               const Clock* clock = &Clock::Real());

struct InstanceMetadataProviderOptions {
  std::string endpoint = "http://169.254.169.254";  // scheme://host[:port], no trailing '/'
  std::chrono::milliseconds timeout{1000};          // per request
  std::chrono::seconds token_ttl{21600};
  std::chrono::seconds refresh_before{300};
};

// EC2 instance metadata, IMDSv2. `transport` must allow plain HTTP to the endpoint.
// Source(): "instance metadata (IMDSv2)".
AwsCredentialsProviderPtr NewInstanceMetadataAwsCredentialsProvider(
    std::shared_ptr<HttpTransport> transport, InstanceMetadataProviderOptions options,
    const Clock* clock = &Clock::Real());

struct ContainerProviderOptions {
  std::string url;                                 // full URL of the credentials endpoint
  std::optional<SecretBytes> authorization_token;  // sent as Authorization
  std::string authorization_token_file;            // read on every fetch; wins over the token
  std::chrono::milliseconds timeout{1000};
  std::chrono::seconds refresh_before{300};
};

// ECS/EKS container credentials. Source(): "container credentials".
AwsCredentialsProviderPtr NewContainerAwsCredentialsProvider(
    std::shared_ptr<HttpTransport> transport, ContainerProviderOptions options,
    const Clock* clock = &Clock::Real());

// The container credentials URL from the environment: kNotFound if neither variable is set,
// kInvalidArgument for a FULL_URI that is not https, loopback or an ECS/EKS link-local host.
StatusOr<std::string> ContainerCredentialsUrlFromEnv(const GetEnvFn& env);

struct AwsCredentialsChainOptions {
  GetEnvFn env = RealGetEnv();
  // Region of STS for AssumeRole / web identity; empty: resolved as for KMS (environment,
  // profile), else us-east-1. The STS endpoint honours AWS_ENDPOINT_URL_STS etc.
  std::string region;
  // HTTPS for STS; null: NewCurlHttpTransport().
  std::shared_ptr<HttpTransport> transport;
  // Plain HTTP to the metadata and container endpoints; null: a curl transport that allows it.
  std::shared_ptr<HttpTransport> metadata_transport;
  const Clock* clock = &Clock::Real();
  std::chrono::milliseconds metadata_timeout{1000};
};

// The default chain above. Resolution happens on the first Get() (and again after a failed
// one); once a source has produced credentials the chain sticks to it. Source() is the chosen
// source's, or "default chain (not resolved yet)".
AwsCredentialsProviderPtr NewDefaultAwsCredentialsChain(AwsCredentialsChainOptions options);

}  // namespace ekm
