#include "ekm/provider/aws/aws_credentials.h"

#include <cctype>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "ekm/base/file_reader.h"
#include "ekm/base/secret_bytes.h"

namespace ekm {
namespace {

using Clk = std::chrono::system_clock;

SecretBytes ToSecret(std::string_view s) {
  return SecretBytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string NonEmpty(const std::optional<std::string>& v) {
  return v ? std::string(Trim(*v)) : std::string();
}

std::string DefaultSessionName(const Clock* clock) {
  return "ekm-" + std::to_string(ToUnixSeconds(clock->Now()));
}

// A small secret file (a token), trimmed of surrounding white space.
StatusOr<SecretBytes> ReadTokenFile(const std::string& path, std::string_view what) {
  EKM_ASSIGN_OR_RETURN(SecretBytes data, ReadSecretFile(path, what, 64u << 10));
  std::string_view text(reinterpret_cast<const char*>(data.RevealForCrypto().data()), data.size());
  SecretBytes out = ToSecret(Trim(text));
  if (out.empty()) {
    return FailedPreconditionError("the " + std::string(what) + " " + path + " is empty");
  }
  return out;
}

// Temporary credentials with an optional expiry, cached and refreshed before it.
class RefreshingProvider : public AwsCredentialsProvider {
 public:
  RefreshingProvider(const Clock* clock, std::chrono::seconds refresh_before)
      : clock_(clock), refresh_before_(refresh_before) {}

  StatusOr<AwsCredentials> Get() final {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = clock_->Now();
    if (cached_ && (!expiration_ || now < *expiration_ - refresh_before_)) {
      return CloneAwsCredentials(*cached_);
    }
    auto fetched = Fetch();
    if (!fetched.ok()) {
      // Still-valid credentials beat an error: the refresh is retried on the next call.
      if (cached_ && expiration_ && now < *expiration_) return CloneAwsCredentials(*cached_);
      return fetched.status();
    }
    cached_ = std::move(fetched->credentials);
    expiration_ = fetched->expiration;
    return CloneAwsCredentials(*cached_);
  }

 protected:
  struct Fetched {
    AwsCredentials credentials;
    std::optional<Clk::time_point> expiration;
  };
  virtual StatusOr<Fetched> Fetch() = 0;
  const Clock* clock_;

 private:
  const std::chrono::seconds refresh_before_;
  std::mutex mu_;
  std::optional<AwsCredentials> cached_;
  std::optional<Clk::time_point> expiration_;
};

class StaticProvider final : public AwsCredentialsProvider {
 public:
  StaticProvider(AwsCredentials c, std::string source)
      : credentials_(std::move(c)), source_(std::move(source)) {}
  StatusOr<AwsCredentials> Get() override { return CloneAwsCredentials(credentials_); }
  std::string Source() const override { return source_; }

 private:
  const AwsCredentials credentials_;
  const std::string source_;
};

class AssumeRoleProvider final : public RefreshingProvider {
 public:
  AssumeRoleProvider(AwsCredentialsProviderPtr source, std::shared_ptr<const StsClient> sts,
                     AssumeRoleProviderOptions options, const Clock* clock)
      : RefreshingProvider(clock, options.refresh_before),
        source_(std::move(source)),
        sts_(std::move(sts)),
        options_(std::move(options)) {
    if (options_.session_name.empty()) options_.session_name = DefaultSessionName(clock);
  }
  std::string Source() const override { return "assume-role " + options_.role_arn; }

 protected:
  StatusOr<Fetched> Fetch() override {
    auto base = source_->Get();
    if (!base.ok()) {
      return base.status().WithContext("credentials to assume " + options_.role_arn + " (from " +
                                       source_->Source() + ")");
    }
    AssumeRoleRequest req{options_.role_arn, options_.session_name, options_.external_id,
                          options_.duration};
    auto t = sts_->AssumeRole(*base, req);
    if (!t.ok()) {
      return t.status().WithContext("assuming " + options_.role_arn + " with credentials from " +
                                    source_->Source());
    }
    return Fetched{std::move(t->credentials), t->expiration};
  }

 private:
  const AwsCredentialsProviderPtr source_;
  const std::shared_ptr<const StsClient> sts_;
  AssumeRoleProviderOptions options_;
};

class WebIdentityProvider final : public RefreshingProvider {
 public:
  WebIdentityProvider(std::shared_ptr<const StsClient> sts, WebIdentityProviderOptions options,
                      const Clock* clock)
      : RefreshingProvider(clock, options.refresh_before),
        sts_(std::move(sts)),
        options_(std::move(options)) {
    if (options_.session_name.empty()) options_.session_name = DefaultSessionName(clock);
  }
  std::string Source() const override { return "web identity"; }

 protected:
  StatusOr<Fetched> Fetch() override {
    EKM_ASSIGN_OR_RETURN(SecretBytes token,
                         ReadTokenFile(options_.token_file, "web identity token file"));
    AssumeRoleWithWebIdentityRequest req{options_.role_arn, options_.session_name, std::move(token),
                                         options_.duration};
    auto t = sts_->AssumeRoleWithWebIdentity(req);
    if (!t.ok()) return t.status().WithContext("web identity for " + options_.role_arn);
    return Fetched{std::move(t->credentials), t->expiration};
  }

 private:
  const std::shared_ptr<const StsClient> sts_;
  WebIdentityProviderOptions options_;
};

// The JSON document of IMDS and the container endpoint:
// {"AccessKeyId": ..., "SecretAccessKey": ..., "Token": ..., "Expiration": ...}.
StatusOr<AwsCredentials> ParseCredentialsJson(std::string& body, std::string_view what,
                                              std::optional<Clk::time_point>& expiration) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  WipeString(body);
  auto malformed = [&](std::string_view why) {
    return UnavailableError(std::string(what) + " returned malformed credentials (" +
                            std::string(why) + ")");
  };
  if (!j.is_object()) return malformed("not a JSON object");
  auto str = [&](const char* k) -> std::string* {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? &it->get_ref<std::string&>() : nullptr;
  };
  if (std::string* code = str("Code"); code && *code != "Success") {
    return malformed("Code " + *code);
  }
  std::string* ak = str("AccessKeyId");
  std::string* sk = str("SecretAccessKey");
  std::string* token = str("Token");
  std::string* exp = str("Expiration");
  AwsCredentials c;
  if (ak) c.access_key_id = *ak;
  if (sk) c.secret_access_key = ToSecret(*sk);
  if (token && !token->empty()) c.session_token = *token;
  if (exp) {
    auto t = ParseRfc3339(*exp);
    if (!t.ok()) return malformed("bad Expiration");
    expiration = *t;
  }
  if (sk) WipeString(*sk);
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return malformed("no AccessKeyId or SecretAccessKey");
  }
  return c;
}

class InstanceMetadataProvider final : public RefreshingProvider {
 public:
  InstanceMetadataProvider(std::shared_ptr<HttpTransport> transport,
                           InstanceMetadataProviderOptions options, const Clock* clock)
      : RefreshingProvider(clock, options.refresh_before),
        transport_(std::move(transport)),
        options_(std::move(options)) {
    while (!options_.endpoint.empty() && options_.endpoint.back() == '/') {
      options_.endpoint.pop_back();
    }
  }
  std::string Source() const override { return "instance metadata (IMDSv2)"; }

 protected:
  StatusOr<Fetched> Fetch() override {
    const std::string where = "instance metadata at " + options_.endpoint;
    HttpRequest put;
    put.method = "PUT";
    put.url = options_.endpoint + "/latest/api/token";
    put.headers = {
        {"X-aws-ec2-metadata-token-ttl-seconds", std::to_string(options_.token_ttl.count())}};
    put.timeout = options_.timeout;
    auto token = transport_->Send(put);
    if (!token.ok()) return token.status().WithContext(where);
    if (token->status != 200 || token->body.empty()) {
      return UnavailableError(
          where + ": IMDSv2 token request returned HTTP " + std::to_string(token->status),
          "is IMDSv2 enabled, with a hop limit that reaches this process?");
    }
    std::string session = std::string(Trim(token->body));
    WipeString(token->body);

    HttpRequest list;
    list.method = "GET";
    list.url = options_.endpoint + "/latest/meta-data/iam/security-credentials/";
    list.headers = {{"X-aws-ec2-metadata-token", session}};
    list.timeout = options_.timeout;
    auto roles = transport_->Send(list);
    if (!roles.ok()) {
      WipeString(session);
      return roles.status().WithContext(where);
    }
    std::string role(Trim(roles->body.substr(0, roles->body.find('\n'))));
    if (roles->status == 404 || (roles->status == 200 && role.empty())) {
      WipeString(session);
      return NotFoundError(where + ": no IAM role is attached to this instance",
                           "attach an instance profile with the platform's role");
    }
    if (roles->status != 200) {
      WipeString(session);
      return UnavailableError(where + ": listing the instance's role returned HTTP " +
                              std::to_string(roles->status));
    }
    HttpRequest get = list;
    get.url += SigV4UriEncode(role, false);
    auto creds = transport_->Send(get);
    WipeString(session);
    WipeString(list.headers[0].second);
    WipeString(get.headers[0].second);
    if (!creds.ok()) return creds.status().WithContext(where);
    if (creds->status != 200) {
      WipeString(creds->body);
      return UnavailableError(where + ": credentials of role " + role + " returned HTTP " +
                              std::to_string(creds->status));
    }
    Fetched f;
    EKM_ASSIGN_OR_RETURN(f.credentials, ParseCredentialsJson(creds->body, where, f.expiration));
    return f;
  }

 private:
  const std::shared_ptr<HttpTransport> transport_;
  InstanceMetadataProviderOptions options_;
};

class ContainerProvider final : public RefreshingProvider {
 public:
  ContainerProvider(std::shared_ptr<HttpTransport> transport, ContainerProviderOptions options,
                    const Clock* clock)
      : RefreshingProvider(clock, options.refresh_before),
        transport_(std::move(transport)),
        options_(std::move(options)) {}
  std::string Source() const override { return "container credentials"; }

 protected:
  StatusOr<Fetched> Fetch() override {
    HttpRequest req;
    req.method = "GET";
    req.url = options_.url;
    req.timeout = options_.timeout;
    std::optional<SecretBytes> token;
    if (!options_.authorization_token_file.empty()) {
      EKM_ASSIGN_OR_RETURN(token, ReadTokenFile(options_.authorization_token_file,
                                                "container authorization token file"));
    } else if (options_.authorization_token) {
      token = options_.authorization_token->Clone();
    }
    if (token) {
      std::string value(AsChars(token->RevealForCrypto()));
      if (value.find_first_of("\r\n") != std::string::npos) {
        WipeString(value);
        return InvalidArgumentError("the container authorization token has a line break");
      }
      req.headers.emplace_back("Authorization", std::move(value));
    }
    auto resp = transport_->Send(req);
    if (!req.headers.empty()) WipeString(req.headers[0].second);
    const std::string where = "container credentials endpoint";
    if (!resp.ok()) return resp.status().WithContext(where);
    if (resp->status != 200) {
      WipeString(resp->body);
      return UnavailableError(where + " returned HTTP " + std::to_string(resp->status),
                              resp->status == 401 || resp->status == 403
                                  ? "check AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)"
                                  : "");
    }
    Fetched f;
    EKM_ASSIGN_OR_RETURN(f.credentials, ParseCredentialsJson(resp->body, where, f.expiration));
    return f;
  }

 private:
  const std::shared_ptr<HttpTransport> transport_;
  const ContainerProviderOptions options_;
};

// ---- The default chain ----------------------------------------------------------------

struct ChainContext {
  const AwsCredentialsChainOptions& options;
  const AwsSharedConfig& config;
  std::shared_ptr<HttpTransport> transport;           // HTTPS (STS)
  std::shared_ptr<HttpTransport> metadata_transport;  // plain HTTP (IMDS, ECS)
  std::shared_ptr<const StsClient> sts;               // built on first use

  StatusOr<std::shared_ptr<const StsClient>> Sts() {
    if (sts) return sts;
    std::string region = options.region;
    if (region.empty()) {
      auto r = ResolveAwsRegion(options.env, &config);
      region = r.ok() ? *r : "us-east-1";  // as the SDKs do for STS without a region
    }
    EKM_ASSIGN_OR_RETURN(AwsEndpoint ep, ResolveAwsEndpoint("sts", region, options.env, &config));
    StsClientOptions so;
    so.endpoint = std::move(ep);
    so.transport = transport;
    so.clock = options.clock;
    sts = std::make_shared<StsClient>(std::move(so));
    return sts;
  }
};

AwsCredentialsProviderPtr NewImdsFromEnv(ChainContext& ctx) {
  InstanceMetadataProviderOptions o;
  std::string ep = NonEmpty(ctx.options.env("AWS_EC2_METADATA_SERVICE_ENDPOINT"));
  if (ep.empty() && NonEmpty(ctx.options.env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")) == "IPv6") {
    ep = "http://[fd00:ec2::254]";
  }
  if (!ep.empty()) o.endpoint = ep;
  o.timeout = ctx.options.metadata_timeout;
  return NewInstanceMetadataAwsCredentialsProvider(ctx.metadata_transport, o, ctx.options.clock);
}

StatusOr<AwsCredentialsProviderPtr> NewContainerFromEnv(ChainContext& ctx) {
  EKM_ASSIGN_OR_RETURN(std::string url, ContainerCredentialsUrlFromEnv(ctx.options.env));
  ContainerProviderOptions o;
  o.url = url;
  o.timeout = ctx.options.metadata_timeout;
  o.authorization_token_file = NonEmpty(ctx.options.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"));
  if (auto t = ctx.options.env("AWS_CONTAINER_AUTHORIZATION_TOKEN"); t && !t->empty()) {
    o.authorization_token = ToSecret(*t);
  }
  return NewContainerAwsCredentialsProvider(ctx.metadata_transport, std::move(o),
                                            ctx.options.clock);
}

// The provider for one profile; kNotFound with a reason when it holds no credentials.
StatusOr<AwsCredentialsProviderPtr> ProfileProvider(ChainContext& ctx, const std::string& profile,
                                                    std::set<std::string>& visited) {
  const AwsSharedConfig& cfg = ctx.config;
  const std::string where = "profile " + profile;
  auto unsupported = [&](std::string_view what) {
    return FailedPreconditionError(
        where + " uses " + std::string(what) + ", which ekm does not support",
        "use static keys, role_arn with source_profile or credential_source, web identity, or "
        "environment variables");
  };
  if (!cfg.HasProfile(profile)) {
    return NotFoundError("profile " + profile + " not found in " + cfg.credentials_path() + " or " +
                         cfg.config_path());
  }
  if (!visited.insert(profile).second) {
    return InvalidArgumentError(where + ": source_profile chain loops back to itself",
                                "fix source_profile in the AWS config file");
  }
  std::string role_arn = NonEmpty(cfg.Get(profile, "role_arn"));
  std::string ak = NonEmpty(cfg.Get(profile, "aws_access_key_id"));
  auto static_keys = [&]() -> StatusOr<AwsCredentialsProviderPtr> {
    AwsCredentials c;
    c.access_key_id = ak;
    auto sk = cfg.GetSecret(profile, "aws_secret_access_key");
    if (!sk || sk->empty()) {
      return InvalidArgumentError(where + " has aws_access_key_id but no aws_secret_access_key",
                                  "add aws_secret_access_key to the profile");
    }
    c.secret_access_key = std::move(*sk);
    std::string token = NonEmpty(cfg.Get(profile, "aws_session_token"));
    if (!token.empty()) c.session_token = token;
    return NewStaticAwsCredentialsProvider(
        std::move(c), where + " (" + cfg.FileOf(profile, "aws_access_key_id") + ")");
  };
  if (role_arn.empty()) {
    if (!ak.empty()) return static_keys();
    if (cfg.Get(profile, "credential_process")) return unsupported("credential_process");
    if (cfg.Get(profile, "sso_start_url") || cfg.Get(profile, "sso_session")) {
      return unsupported("AWS IAM Identity Center (SSO)");
    }
    return NotFoundError(where + " has no credentials");
  }

  std::string token_file = NonEmpty(cfg.Get(profile, "web_identity_token_file"));
  std::string session_name = NonEmpty(cfg.Get(profile, "role_session_name"));
  std::chrono::seconds duration{3600};
  if (auto d = cfg.Get(profile, "duration_seconds"); d && !Trim(*d).empty()) {
    std::string v(Trim(*d));
    if (v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos) {
      return InvalidArgumentError(where + ": duration_seconds is not a number of seconds");
    }
    duration = std::chrono::seconds(std::stol(v));
  }
  EKM_ASSIGN_OR_RETURN(auto sts, ctx.Sts());
  if (!token_file.empty()) {
    return NewWebIdentityAwsCredentialsProvider(
        sts, WebIdentityProviderOptions{role_arn, token_file, session_name, duration},
        ctx.options.clock);
  }
  std::string source_profile = NonEmpty(cfg.Get(profile, "source_profile"));
  std::string credential_source = NonEmpty(cfg.Get(profile, "credential_source"));
  if (source_profile.empty() == credential_source.empty()) {
    return InvalidArgumentError(
        where + " has role_arn but " +
            (source_profile.empty() ? "neither source_profile nor credential_source"
                                    : "both source_profile and credential_source"),
        "set exactly one of them");
  }
  AwsCredentialsProviderPtr base;
  if (!source_profile.empty()) {
    if (source_profile == profile) {
      // A profile that names itself uses its own static keys (as botocore does).
      if (ak.empty()) {
        return InvalidArgumentError(where + " is its own source_profile but has no keys");
      }
      EKM_ASSIGN_OR_RETURN(base, static_keys());
    } else {
      auto p = ProfileProvider(ctx, source_profile, visited);
      if (!p.ok()) {
        return Status(p.status().code() == StatusCode::kNotFound ? StatusCode::kInvalidArgument
                                                                 : p.status().code(),
                      where + ": source_profile " + source_profile + ": " + p.status().message(),
                      p.status().hint().empty() ? "fix source_profile in the AWS config file"
                                                : p.status().hint());
      }
      base = *p;
    }
  } else if (credential_source == "Environment") {
    auto e = NewEnvironmentAwsCredentialsProvider(ctx.options.env);
    if (!e.ok()) return e.status().WithContext(where + ": credential_source Environment");
    base = *e;
  } else if (credential_source == "Ec2InstanceMetadata") {
    base = NewImdsFromEnv(ctx);
  } else if (credential_source == "EcsContainer") {
    auto c = NewContainerFromEnv(ctx);
    if (!c.ok()) return c.status().WithContext(where + ": credential_source EcsContainer");
    base = *c;
  } else {
    return InvalidArgumentError(where + ": unknown credential_source \"" + credential_source + "\"",
                                "use Environment, Ec2InstanceMetadata or EcsContainer");
  }
  AssumeRoleProviderOptions o;
  o.role_arn = role_arn;
  o.external_id = NonEmpty(cfg.Get(profile, "external_id"));
  o.session_name = session_name;
  o.duration = duration;
  return NewAssumeRoleAwsCredentialsProvider(base, sts, std::move(o), ctx.options.clock);
}

class DefaultChain final : public AwsCredentialsProvider {
 public:
  explicit DefaultChain(AwsCredentialsChainOptions options) : options_(std::move(options)) {}

  StatusOr<AwsCredentials> Get() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!chosen_) {
      EKM_ASSIGN_OR_RETURN(AwsCredentialsProviderPtr p, Resolve());
      auto c = p->Get();
      if (!c.ok()) return c.status();
      chosen_ = std::move(p);
      return c;
    }
    return chosen_->Get();
  }

  std::string Source() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return chosen_ ? chosen_->Source() : "default chain (not resolved yet)";
  }

 private:
  StatusOr<AwsCredentialsProviderPtr> Resolve() {
    std::vector<std::string> skipped;
    const GetEnvFn& env = options_.env;

    // 1. Environment.
    auto e = NewEnvironmentAwsCredentialsProvider(env);
    if (e.ok()) return *e;
    if (e.status().code() != StatusCode::kNotFound) return e.status();
    skipped.push_back("environment (" + e.status().message() + ")");

    // 2. Shared files.
    auto loaded = AwsSharedConfig::Load(env);
    if (!loaded.ok()) return loaded.status();
    const AwsSharedConfig& cfg = *loaded;
    if (!transport_) transport_ = options_.transport;
    if (!transport_) transport_ = NewCurlHttpTransport();
    if (!metadata_transport_) metadata_transport_ = options_.metadata_transport;
    if (!metadata_transport_) {
      HttpTransportOptions mo;
      mo.allow_insecure_http = true;  // IMDS and ECS speak plain HTTP on link-local addresses
      mo.connect_timeout = options_.metadata_timeout;
      metadata_transport_ = NewCurlHttpTransport(mo);
    }
    ChainContext ctx{options_, cfg, transport_, metadata_transport_, nullptr};
    const std::string profile = AwsProfileName(env);
    const bool profile_explicit =
        !NonEmpty(env("AWS_PROFILE")).empty() || !NonEmpty(env("AWS_DEFAULT_PROFILE")).empty();
    std::set<std::string> visited;
    auto p = ProfileProvider(ctx, profile, visited);
    if (p.ok()) return *p;
    if (p.status().code() != StatusCode::kNotFound) return p.status();
    if (profile_explicit && !cfg.HasProfile(profile)) {
      return FailedPreconditionError("AWS profile " + profile +
                                         " (from AWS_PROFILE) not found in " +
                                         cfg.credentials_path() + " or " + cfg.config_path(),
                                     "add the profile or unset AWS_PROFILE");
    }
    std::string files;
    if (!cfg.credentials_missing().empty() && !cfg.config_missing().empty()) {
      files = cfg.credentials_path() + ": " + cfg.credentials_missing() + "; " + cfg.config_path() +
              ": " + cfg.config_missing();
    } else {
      files = p.status().message();
    }
    skipped.push_back("shared credentials file (" + files + ")");

    // 3. Web identity.
    std::string role = NonEmpty(env("AWS_ROLE_ARN"));
    std::string token_file = NonEmpty(env("AWS_WEB_IDENTITY_TOKEN_FILE"));
    if (!role.empty() && !token_file.empty()) {
      EKM_ASSIGN_OR_RETURN(auto sts, ctx.Sts());
      return NewWebIdentityAwsCredentialsProvider(
          sts,
          WebIdentityProviderOptions{role, token_file, NonEmpty(env("AWS_ROLE_SESSION_NAME")),
                                     std::chrono::seconds(3600)},
          options_.clock);
    }
    skipped.push_back(std::string("web identity (") +
                      (role.empty() && token_file.empty()
                           ? "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE not set"
                       : role.empty() ? "AWS_ROLE_ARN not set"
                                      : "AWS_WEB_IDENTITY_TOKEN_FILE not set") +
                      ")");

    // 4. Container.
    auto c = NewContainerFromEnv(ctx);
    if (c.ok()) return *c;
    if (c.status().code() != StatusCode::kNotFound) return c.status();
    skipped.push_back("container credentials (" + c.status().message() + ")");

    // 5. Instance metadata: tried for real, since nothing says whether we run on EC2.
    bool imds_unreachable = false;
    if (NonEmpty(env("AWS_EC2_METADATA_DISABLED")) == "true") {
      skipped.push_back("instance metadata (AWS_EC2_METADATA_DISABLED=true)");
    } else {
      auto imds = NewImdsFromEnv(ctx);
      auto got = imds->Get();
      if (got.ok()) return imds;  // caches what it fetched
      // Answered without a role (kNotFound) is "no credentials"; no answer may be an outage.
      imds_unreachable = got.status().code() == StatusCode::kUnavailable ||
                         got.status().code() == StatusCode::kDeadlineExceeded;
      skipped.push_back("instance metadata (" + got.status().message() + ")");
    }

    std::string list;
    for (const auto& s : skipped) list += (list.empty() ? "" : ", ") + s;
    const std::string give =
        "give ekm credentials: an IAM role (instance profile, ECS task role, EKS service "
        "account), a profile in ~/.aws, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
    if (imds_unreachable) {
      // On EC2 the instance metadata service being out of reach is an outage: transient.
      return UnavailableError("no AWS credentials found: " + list,
                              "on EC2 the instance metadata service could not be reached (an "
                              "outage: try again); anywhere else " +
                                  give + ", and set AWS_EC2_METADATA_DISABLED=true");
    }
    // Nothing configured: the platform operator must act; retrying changes nothing.
    return FailedPreconditionError("no AWS credentials found: " + list,
                                   "the platform operator must " + give);
  }

  AwsCredentialsChainOptions options_;
  mutable std::mutex mu_;
  AwsCredentialsProviderPtr chosen_;
  std::shared_ptr<HttpTransport> transport_;
  std::shared_ptr<HttpTransport> metadata_transport_;
};

bool IsAllowedContainerHost(std::string_view host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]" ||
         host == "169.254.170.2" || host == "169.254.170.23" || host == "[fd00:ec2::23]" ||
         host == "fd00:ec2::23" || (host.starts_with("127.") && host.size() <= 15);
}

}  // namespace

AwsCredentials CloneAwsCredentials(const AwsCredentials& c) {
  AwsCredentials out;
  out.access_key_id = c.access_key_id;
  out.secret_access_key = c.secret_access_key.Clone();
  out.session_token = c.session_token;
  return out;
}

AwsCredentialsProviderPtr NewStaticAwsCredentialsProvider(AwsCredentials credentials,
                                                          std::string source) {
  return std::make_shared<StaticProvider>(std::move(credentials), std::move(source));
}

StatusOr<AwsCredentialsProviderPtr> NewEnvironmentAwsCredentialsProvider(const GetEnvFn& env) {
  std::string ak = NonEmpty(env("AWS_ACCESS_KEY_ID"));
  auto sk = env("AWS_SECRET_ACCESS_KEY");
  if (ak.empty()) {
    if (sk && !sk->empty()) {
      return InvalidArgumentError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
                                  "set both, or neither");
    }
    return NotFoundError("AWS_ACCESS_KEY_ID not set");
  }
  if (!sk || Trim(*sk).empty()) {
    return InvalidArgumentError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                                "set both, or neither");
  }
  AwsCredentials c;
  c.access_key_id = ak;
  c.secret_access_key = ToSecret(Trim(*sk));
  WipeString(*sk);
  std::string token = NonEmpty(env("AWS_SESSION_TOKEN"));
  if (!token.empty()) c.session_token = token;
  return NewStaticAwsCredentialsProvider(std::move(c), "environment");
}

AwsCredentialsProviderPtr NewAssumeRoleAwsCredentialsProvider(AwsCredentialsProviderPtr source,
                                                              std::shared_ptr<const StsClient> sts,
                                                              AssumeRoleProviderOptions options,
                                                              const Clock* clock) {
  return std::make_shared<AssumeRoleProvider>(std::move(source), std::move(sts), std::move(options),
                                              clock);
}

AwsCredentialsProviderPtr NewWebIdentityAwsCredentialsProvider(std::shared_ptr<const StsClient> sts,
                                                               WebIdentityProviderOptions options,
                                                               const Clock* clock) {
  return std::make_shared<WebIdentityProvider>(std::move(sts), std::move(options), clock);
}

AwsCredentialsProviderPtr NewInstanceMetadataAwsCredentialsProvider(
    std::shared_ptr<HttpTransport> transport, InstanceMetadataProviderOptions options,
    const Clock* clock) {
  return std::make_shared<InstanceMetadataProvider>(std::move(transport), std::move(options),
                                                    clock);
}

AwsCredentialsProviderPtr NewContainerAwsCredentialsProvider(
    std::shared_ptr<HttpTransport> transport, ContainerProviderOptions options,
    const Clock* clock) {
  return std::make_shared<ContainerProvider>(std::move(transport), std::move(options), clock);
}

StatusOr<std::string> ContainerCredentialsUrlFromEnv(const GetEnvFn& env) {
  std::string rel = NonEmpty(env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
  if (!rel.empty()) {
    if (rel[0] != '/') rel = "/" + rel;
    return "http://169.254.170.2" + rel;
  }
  std::string full = NonEmpty(env("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
  if (full.empty()) {
    return NotFoundError(
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set");
  }
  // Parsed as an endpoint to check scheme and host; the original URL (with its path) is used.
  auto ep = ParseAwsEndpoint(full.substr(0, full.find('?')), "us-east-1",
                             "AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (!ep.ok()) return ep.status();
  if (ep->scheme != "https" && !IsAllowedContainerHost(ep->host)) {
    return InvalidArgumentError(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI uses plain http to " + ep->host +
            ", which is neither loopback nor the ECS/EKS credentials address",
        "use https, a loopback address, 169.254.170.2 or 169.254.170.23");
  }
  return full;
}

AwsCredentialsProviderPtr NewDefaultAwsCredentialsChain(AwsCredentialsChainOptions options) {
  return std::make_shared<DefaultChain>(std::move(options));
}

}  // namespace ekm
