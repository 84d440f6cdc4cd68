#include "ekm/provider/aws/aws_kms_key_provider.h"

#include "ekm/provider/aws/kms_arn.h"

namespace ekm {

Status AwsKmsKeyProvider::ValidateKeyId(std::string_view key_id) const {
  return ParseKmsArn(key_id).status();
}

StatusOr<Bytes> AwsKmsKeyProvider::Wrap(std::string_view key_id, const SecretBytes& key,
                                        const EncryptionContext& context) {
  EKM_ASSIGN_OR_RETURN(KmsEncryptResult r, client_->Encrypt(key_id, key, context));
  return std::move(r.ciphertext_blob);
}

StatusOr<SecretBytes> AwsKmsKeyProvider::Unwrap(std::string_view key_id, ByteView wrapped,
                                                const EncryptionContext& context) {
  EKM_ASSIGN_OR_RETURN(KmsDecryptResult r, client_->Decrypt(key_id, wrapped, context));
  if (r.plaintext.size() != 32) {
    return DataLossError("AWS KMS Decrypt on " + std::string(key_id) + " returned " +
                         std::to_string(r.plaintext.size()) +
                         " bytes, not a 32-byte environment key");
  }
  return std::move(r.plaintext);
}

StatusOr<CmkDescription> AwsKmsKeyProvider::Describe(std::string_view key_id) {
  EKM_ASSIGN_OR_RETURN(KmsArn arn, ParseKmsArn(key_id));
  CmkDescription d;
  d.provider = std::string(kAwsKmsProviderName);
  d.key_id = std::string(key_id);
  d.region = arn.region;
  std::string key_arn = arn.resource_type == KmsResourceType::kKey ? std::string(key_id) : "";
  auto meta = client_->DescribeKey(key_id);
  if (meta.ok()) {
    d.state = meta->key_state;
    d.key_spec = meta->key_spec;
    d.key_usage = meta->key_usage;
    d.resolved_key_id = meta->key_arn;
    d.describe_permitted = true;
    if (!meta->key_arn.empty()) key_arn = meta->key_arn;
  } else if (meta.status().code() == StatusCode::kPermissionDenied) {
    d.state = "unknown";
    d.notes.push_back(
        "DescribeKey is not permitted (key policy or IAM policy; optional): key "
        "state and spec are not checked");
  } else {
    return meta.status();
  }
  if (key_arn.empty()) {
    d.notes.push_back("rotation status needs the key ARN behind the alias (DescribeKey)");
    return d;
  }
  auto rot = client_->GetKeyRotationStatus(key_arn);
  if (rot.ok()) {
    d.rotation = *rot ? CmkRotation::kEnabled : CmkRotation::kDisabled;
  } else if (rot.status().code() == StatusCode::kPermissionDenied) {
    d.notes.push_back("GetKeyRotationStatus is not permitted (key policy or IAM policy; optional)");
  } else if (rot.status().code() == StatusCode::kUnavailable ||
             rot.status().code() == StatusCode::kDeadlineExceeded) {
    return rot.status();
  } else {
    d.notes.push_back("rotation status unreadable: " + rot.status().message());
  }
  return d;
}

}  // namespace ekm
