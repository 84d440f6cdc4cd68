// AWS client configuration as the AWS SDKs read it: the environment, the shared config and
// credentials files (profiles), the region and the service endpoints (KMS, STS).
//
// Everything takes the environment as an injected GetEnvFn, so tests never depend on the real
// process environment; RealGetEnv() is the production one.
//
// Resolution orders (the AWS SDKs' documented behaviour):
//  - region: explicit setting > AWS_REGION > AWS_DEFAULT_REGION > `region` of the profile in
//    the config file;
//  - endpoint: explicit setting > AWS_ENDPOINT_URL_<SERVICE> > AWS_ENDPOINT_URL > the profile's
//    `services` section (`kms =` / `  endpoint_url = ...`) > the profile's `endpoint_url` >
//    the default (https://kms.REGION.amazonaws.com, .amazonaws.com.cn for cn-* regions;
//    https://sts.REGION.amazonaws.com). AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true (or
//    `ignore_configured_endpoint_urls = true` in the profile) skips the environment and files.
//  - profile: AWS_PROFILE > AWS_DEFAULT_PROFILE > "default"; files: AWS_CONFIG_FILE
//    (~/.aws/config) and AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials). In the config file a
//    profile is `[profile NAME]` (or `[default]`), in the credentials file `[NAME]`; a key in the
//    credentials file overrides the same key in the config file.
//
// Not supported (named, not ignored): FIPS and dual-stack endpoint flags.
// Thread-safety: all functions are pure or only read files; AwsSharedConfig is an immutable
// value once loaded.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// getenv, injectable. Returns nullopt for an unset variable (an empty value is returned as "").
using GetEnvFn = std::function<std::optional<std::string>(std::string_view)>;

// The real process environment.
GetEnvFn RealGetEnv();
// A fixed environment, for tests.
GetEnvFn MapGetEnv(std::map<std::string, std::string> vars);

// One profile (or services section): key -> value. Nested sub-properties ("kms =" followed by
// indented "endpoint_url = ...") are stored as "kms.endpoint_url". Keys are lower-cased.
using AwsIniSection = std::map<std::string, std::string>;

// The parsed ~/.aws/config and ~/.aws/credentials. Move-only: it may hold secret access keys,
// which are wiped when it is destroyed; read them only through GetSecret().
class AwsSharedConfig {
 public:
  AwsSharedConfig() = default;
  ~AwsSharedConfig();
  AwsSharedConfig(AwsSharedConfig&&) = default;
  AwsSharedConfig& operator=(AwsSharedConfig&&) = default;
  AwsSharedConfig(const AwsSharedConfig&) = delete;
  AwsSharedConfig& operator=(const AwsSharedConfig&) = delete;

  // Reads both files named by the environment. A missing file is not an error (its absence is
  // recorded for diagnostics); an unreadable one is kFailedPrecondition and a malformed one
  // kInvalidArgument, naming the file and line (never a value).
  static StatusOr<AwsSharedConfig> Load(const GetEnvFn& env);
  // From file contents, for tests. The paths only label errors and diagnostics.
  static StatusOr<AwsSharedConfig> Parse(std::string_view config_text,
                                         std::string_view credentials_text,
                                         std::string config_path = "config",
                                         std::string credentials_path = "credentials");

  // Whether the profile is in either file.
  bool HasProfile(const std::string& profile) const;
  // A key of the profile: the credentials file's value over the config file's.
  std::optional<std::string> Get(const std::string& profile, const std::string& key) const;
  // The same, for secrets (aws_secret_access_key).
  std::optional<SecretBytes> GetSecret(const std::string& profile, const std::string& key) const;
  // Which file holds the key for that profile: "shared credentials file", "config file" or "".
  std::string FileOf(const std::string& profile, const std::string& key) const;
  // A key of `[services NAME]` in the config file ("kms.endpoint_url").
  std::optional<std::string> GetService(const std::string& services, const std::string& key) const;

  const std::string& config_path() const { return config_path_; }
  const std::string& credentials_path() const { return credentials_path_; }
  // Why a file contributed nothing ("no such file"), "" when it was read.
  const std::string& config_missing() const { return config_missing_; }
  const std::string& credentials_missing() const { return credentials_missing_; }

 private:
  std::map<std::string, AwsIniSection> config_profiles_;
  std::map<std::string, AwsIniSection> credentials_profiles_;
  std::map<std::string, AwsIniSection> services_;
  std::string config_path_;
  std::string credentials_path_;
  std::string config_missing_;
  std::string credentials_missing_;
};

// The active profile's name: AWS_PROFILE > AWS_DEFAULT_PROFILE > "default".
std::string AwsProfileName(const GetEnvFn& env);
// The files' paths: AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/{config,credentials}
// (HOME from `env`; a leading "~/" in the variables is expanded too).
std::string AwsConfigFilePath(const GetEnvFn& env);
std::string AwsCredentialsFilePath(const GetEnvFn& env);

// Checks a region's shape (lower-case letters, digits and '-', e.g. "eu-west-1"), because it
// becomes part of a host name. kInvalidArgument naming the offending character.
Status ValidateAwsRegion(std::string_view region);

// The region, by the order above. `config` may be null (files not consulted).
// Errors: kFailedPrecondition "no AWS region configured" with a hint listing where to set it;
// kInvalidArgument for a malformed region (naming where it came from).
StatusOr<std::string> ResolveAwsRegion(const GetEnvFn& env, const AwsSharedConfig* config,
                                       std::string_view explicit_region = {});

// A service endpoint, ready for a request.
struct AwsEndpoint {
  std::string
      url;  // scheme://host[:port][/path], no trailing '/': "https://kms.eu-west-1.amazonaws.com"
  std::string scheme;          // "https" or "http"
  std::string host;            // "kms.eu-west-1.amazonaws.com", "127.0.0.1", "::1" (no brackets)
  std::string host_header;     // the Host header: host, plus ":port" if not the scheme's default
  std::string path = "/";      // the request path for Query/JSON protocols ("/" or the URL's path)
  std::string signing_region;  // the SigV4 credential-scope region
  std::string source;          // where it came from: "AWS_ENDPOINT_URL_KMS", "default", ...
};

// Parses an endpoint URL ("https://host[:port][/path]"); `signing_region` is chosen with
// SigningRegionForHost(host, region). kInvalidArgument for anything else (user info, query,
// fragment, another scheme, an empty host, a bad port), naming `source`.
StatusOr<AwsEndpoint> ParseAwsEndpoint(std::string_view url, std::string_view region,
                                       std::string_view source);

// The SigV4 region for a host: the region in an AWS host name (kms.REGION.amazonaws.com,
// kms-fips.REGION..., vpce-...kms.REGION.vpce.amazonaws.com, .amazonaws.com.cn), us-east-1 for
// the global sts.amazonaws.com, otherwise (custom/VPC/test endpoints) `configured_region`.
std::string SigningRegionForHost(std::string_view host, std::string_view configured_region);

// The endpoint of `service` ("kms" or "sts", lower-case) in `region`, by the order above.
// `config` may be null.
StatusOr<AwsEndpoint> ResolveAwsEndpoint(std::string_view service, std::string_view region,
                                         const GetEnvFn& env, const AwsSharedConfig* config,
                                         std::string_view explicit_endpoint = {});

}  // namespace ekm
