// Assembles the AWS KMS provider as ekmd and the CLI run it: one curl transport, the default
// credential chain (aws_credentials.h), KMS endpoints per key region (aws_config.h), and the
// platform principal, asked of STS GetCallerIdentity when it is not configured.
// Nothing here calls AWS until a key is used: a platform without AWS credentials starts fine
// and gets a clear error the first time an admin sets an AWS key.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "ekm/base/clock.h"
#include "ekm/provider/aws/aws_config.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/provider_factory.h"

namespace ekm {

struct AwsKmsSetupOptions {
  std::string ca_file;        // PEM bundle instead of the system store; empty: system store
  std::string principal_arn;  // the platform principal; empty: STS GetCallerIdentity
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds call_deadline{15000};
  GetEnvFn env = RealGetEnv();
  Clock* clock = &Clock::Real();
};

// The AWS KMS provider on libcurl, the default credentials chain and endpoint resolution; its
// PlatformIdentity is the configured principal or STS GetCallerIdentity's (an assumed-role
// session maps back to its role), cached after the first success.
std::unique_ptr<AwsKmsKeyProvider> NewAwsKmsKeyProvider(AwsKmsSetupOptions options);

// The factory of that provider (provider_factory.h): config section "aws".
ProviderFactory AwsKmsProviderFactory(AwsKmsSetupOptions options);

}  // namespace ekm
