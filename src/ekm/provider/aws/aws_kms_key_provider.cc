#include "ekm/provider/aws/aws_kms_key_provider.h"

#include "ekm/base/clock.h"
#include "ekm/provider/aws/kms_arn.h"

namespace ekm {

namespace {

CmkKeyState KeyStateOf(std::string_view aws_state) {
  if (aws_state == "Enabled") return CmkKeyState::kEnabled;
  if (aws_state == "Disabled") return CmkKeyState::kDisabled;
  if (aws_state == "PendingDeletion" || aws_state == "PendingReplicaDeletion") {
    return CmkKeyState::kPendingDeletion;
  }
  // PendingImport, Unavailable, Creating, Updating: not a state ekm can act on.
  return CmkKeyState::kUnknown;
}

// AWS KMS's rules for a CMK: a symmetric encryption key, enabled.
Status UsableAsCmk(const CmkDescription& d) {
  if (!d.key_spec.empty() && d.key_spec != "SYMMETRIC_DEFAULT") {
    return InvalidArgumentError(
        "the key's spec is " + d.key_spec +
            "; ekm needs a symmetric encryption key "
            "(SYMMETRIC_DEFAULT)",
        "create a symmetric key (Key type: Symmetric, Key usage: Encrypt and decrypt) and use "
        "its ARN");
  }
  if (!d.key_usage.empty() && d.key_usage != "ENCRYPT_DECRYPT") {
    return InvalidArgumentError(
        "the key's usage is " + d.key_usage + "; ekm needs ENCRYPT_DECRYPT",
        "create a symmetric key with key usage Encrypt and decrypt and use its ARN");
  }
  if (!d.provider_state.empty() && d.provider_state != "Enabled") {
    return FailedPreconditionError(
               "the key's state is " + d.provider_state + ", not Enabled",
               d.state == CmkKeyState::kPendingDeletion
                   ? "cancel the key deletion in the AWS KMS console and enable the key"
                   : "enable the key in the AWS KMS console")
        .WithProviderCode(d.state == CmkKeyState::kDisabled ? "DisabledException"
                                                            : "KMSInvalidStateException");
  }
  return Status::Ok();
}

}  // namespace

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
    d.provider_state = meta->key_state;
    d.state = KeyStateOf(meta->key_state);
    d.key_spec = meta->key_spec;
    d.key_usage = meta->key_usage;
    d.resolved_key_id = meta->key_arn;
    d.describe_permitted = true;
    d.usable = UsableAsCmk(d);
    if (!meta->key_arn.empty()) key_arn = meta->key_arn;
  } else if (meta.status().code() == StatusCode::kPermissionDenied) {
    d.provider_state = "unknown";
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
    if (!*rot) {
      d.rotation_advice =
          "enable automatic rotation in AWS KMS (recommended): ekm then uses the newest "
          "generation by itself, nothing to replace";
    }
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

StatusOr<std::string> AwsKmsKeyProvider::PlatformIdentity() {
  if (identity_) return identity_();
  return FailedPreconditionError(
      "the platform principal (the IAM role ekm uses to call AWS KMS) is not configured",
      "start ekmd with --aws-principal-arn arn:aws:iam::ACCOUNT:role/NAME, or give it AWS "
      "credentials so it can ask STS who it is");
}

std::string AwsKmsKeyProvider::RefusalAdvice(const Status& cause, int64_t last_success) const {
  const std::string& code = cause.provider_code();
  if (code == "AccessDeniedException" || code == "AccessDenied" ||
      cause.code() == StatusCode::kPermissionDenied) {
    return "the key policy (or the platform's IAM policy) no longer lets the platform principal "
           "use the key: restore ekm's statement in the key policy (`ekm key policy` prints it); "
           "data decrypts again as soon as access is back";
  }
  if (code == "DisabledException") {
    return "the key is disabled: enable it in the AWS KMS console (Key actions > Enable); data "
           "decrypts again as soon as it is enabled";
  }
  if (code == "KMSInvalidStateException") {
    return "the key is pending deletion or otherwise unusable: cancel the key deletion in the "
           "AWS KMS console (possible during its waiting period of 7 to 30 days) and enable the "
           "key; data decrypts again as soon as it is usable";
  }
  if (code == "NotFoundException" || cause.code() == StatusCode::kNotFound) {
    // The key id is the one that wrapped this environment's keys: it cannot be mistyped now.
    const std::string worked =
        last_success > 0 ? "this key unwrapped the environment's keys until " +
                               FormatRfc3339(FromUnixSeconds(last_success)) +
                               ", and AWS KMS no longer finds it: "
                         : "AWS KMS no longer finds the key that wrapped the environment's keys: ";
    return worked +
           "it was deleted (a scheduled deletion's waiting period ended), and the data under it "
           "cannot be recovered; a deleted key cannot be restored, so re-entering its ARN does "
           "not help. If the key still shows in the AWS KMS console of its account and region, "
           "the platform's AWS region or endpoint settings changed: the platform operator must "
           "restore them";
  }
  return KeyProvider::RefusalAdvice(cause, last_success);
}

}  // namespace ekm
