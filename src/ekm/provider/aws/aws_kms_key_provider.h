// The AWS KMS key provider: the customer's CMK is a symmetric key in their AWS account; ekm
// holds only its ARN and the EKs it wrapped (AWS CiphertextBlobs, opaque). Every wrap and
// unwrap sends the EK's encryption context (workspace, environment, EK version), which the
// customer sees in CloudTrail and which the key policy statement pins to the workspace.
//
// Key ids are key ARNs or alias ARNs (kms_arn.h); the ARN's region picks the endpoint.
// Errors follow provider/key_provider.h (through kms_client.h's mapping).
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ekm/provider/aws/kms_client.h"
#include "ekm/provider/key_provider.h"

namespace ekm {

inline constexpr std::string_view kAwsKmsProviderName = "aws-kms";

class AwsKmsKeyProvider : public KeyProvider {
 public:
  // `client` is shared with nothing else; the provider owns it. `identity` answers
  // PlatformIdentity (the IAM principal ARN; aws_kms_setup.h); empty: not known.
  explicit AwsKmsKeyProvider(std::unique_ptr<KmsClient> client,
                             std::function<StatusOr<std::string>()> identity = {})
      : client_(std::move(client)), identity_(std::move(identity)) {}

  std::string_view Name() const override { return kAwsKmsProviderName; }
  Status ValidateKeyId(std::string_view key_id) const override;
  StatusOr<Bytes> Wrap(std::string_view key_id, const SecretBytes& key,
                       const EncryptionContext& context) override;
  StatusOr<SecretBytes> Unwrap(std::string_view key_id, ByteView wrapped,
                               const EncryptionContext& context) override;
  // DescribeKey and GetKeyRotationStatus, each only where the key policy permits it: a refusal
  // leaves the fields "unknown" and says so in `detail`, it is not an error.
  StatusOr<CmkDescription> Describe(std::string_view key_id) override;
  // By the AWS error code: restore the key policy statement, enable the key, cancel its
  // deletion; a key not found after it worked was deleted, which re-entering the ARN does not
  // undo.
  std::string RefusalAdvice(const Status& refusal, int64_t last_success) const override;
  // The platform principal's IAM ARN: configured, or asked of STS GetCallerIdentity.
  StatusOr<std::string> PlatformIdentity() override;

  KmsClient& client() { return *client_; }

 private:
  std::unique_ptr<KmsClient> client_;
  std::function<StatusOr<std::string>()> identity_;
};

}  // namespace ekm
