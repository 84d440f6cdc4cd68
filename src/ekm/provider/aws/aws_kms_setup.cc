#include "ekm/provider/aws/aws_kms_setup.h"

#include <mutex>

#include "ekm/provider/aws/aws_credentials.h"
#include "ekm/provider/aws/sts_client.h"

namespace ekm {

namespace {

// The shared config files, loaded once; a malformed file is reported on every use.
struct SharedConfig {
  explicit SharedConfig(const GetEnvFn& env) : loaded(AwsSharedConfig::Load(env)) {}
  const AwsSharedConfig* get() const { return loaded.ok() ? &*loaded : nullptr; }
  StatusOr<AwsSharedConfig> loaded;
};

AwsServiceEndpoint ToServiceEndpoint(const AwsEndpoint& e) {
  AwsServiceEndpoint out;
  out.url = e.url;
  if (!e.path.empty() &&
      (out.url.size() < e.path.size() ||
       out.url.compare(out.url.size() - e.path.size(), e.path.size(), e.path) != 0)) {
    out.url += e.path;
  }
  out.path = e.path.empty() ? "/" : e.path;
  out.host = e.host_header;
  out.signing_region = e.signing_region;
  return out;
}

}  // namespace

std::unique_ptr<AwsKmsKeyProvider> NewAwsKmsKeyProvider(AwsKmsSetupOptions options) {
  HttpTransportOptions t;
  t.ca_file = options.ca_file;
  std::shared_ptr<HttpTransport> transport = NewCurlHttpTransport(t);
  auto config = std::make_shared<SharedConfig>(options.env);

  AwsCredentialsChainOptions chain;
  chain.env = options.env;
  chain.transport = transport;
  chain.clock = options.clock;
  AwsCredentialsProviderPtr credentials = NewDefaultAwsCredentialsChain(chain);

  GetEnvFn env = options.env;
  KmsEndpointResolver endpoints =
      [env, config](std::string_view region) -> StatusOr<AwsServiceEndpoint> {
    EKM_ASSIGN_OR_RETURN(AwsEndpoint e, ResolveAwsEndpoint("kms", region, env, config->get()));
    return ToServiceEndpoint(e);
  };
  AwsCredentialsSource source = [credentials]() { return credentials->Get(); };
  KmsClientOptions kms;
  kms.attempt_timeout = options.call_timeout;
  kms.deadline = options.call_deadline;

  struct PrincipalCache {
    std::mutex mu;
    std::string arn;
  };
  auto cache = std::make_shared<PrincipalCache>();
  std::string configured = options.principal_arn;
  const Clock* clock = options.clock;
  auto identity = [=]() -> StatusOr<std::string> {
    if (!configured.empty()) return configured;
    std::lock_guard<std::mutex> lock(cache->mu);
    if (!cache->arn.empty()) return cache->arn;
    auto creds = credentials->Get();
    if (!creds.ok()) {
      return FailedPreconditionError(
          "the platform principal is not configured and ekm has no AWS credentials to ask STS "
          "who it is: " +
              creds.status().message(),
          "give ekm AWS credentials (the IAM role it calls KMS with), or name the principal "
          "with --aws-principal-arn arn:aws:iam::ACCOUNT:role/NAME (ekmd and the CLI both take "
          "it, or EKM_AWS_PRINCIPAL_ARN)");
    }
    auto region = ResolveAwsRegion(env, config->get());
    EKM_ASSIGN_OR_RETURN(
        AwsEndpoint sts_endpoint,
        ResolveAwsEndpoint("sts", region.ok() ? *region : "us-east-1", env, config->get()));
    StsClientOptions so;
    so.endpoint = sts_endpoint;
    so.transport = transport;
    so.clock = clock;
    StsClient sts(so);
    auto who = sts.GetCallerIdentity(*creds);
    if (!who.ok()) {
      return who.status().WithContext("asking AWS STS for the platform principal");
    }
    cache->arn = PrincipalArnFromCallerIdentity(who->arn);
    return cache->arn;
  };
  return std::make_unique<AwsKmsKeyProvider>(
      std::make_unique<KmsClient>(transport, endpoints, source, options.clock, kms),
      std::move(identity));
}

ProviderFactory AwsKmsProviderFactory(AwsKmsSetupOptions options) {
  return ProviderFactory{
      std::string(kAwsKmsProviderName), "aws",
      "a key ARN or alias ARN: arn:aws:kms:REGION:ACCOUNT:key/ID or …:alias/NAME",
      [options](const ProviderDependencies& deps) -> StatusOr<KeyProviderPtr> {
        AwsKmsSetupOptions o = options;
        if (deps.clock != nullptr) o.clock = deps.clock;
        return KeyProviderPtr(NewAwsKmsKeyProvider(std::move(o)));
      }};
}

}  // namespace ekm
