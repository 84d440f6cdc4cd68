// KeyProvider: what holds a customer main key (CMK) and wraps/unwraps environment keys (EKs)
// for ekm. Only EKs ever reach a provider; data and data keys never do.
//
// Implementations: platform (the embedded default root key, platform/), and in later work
// aws-kms, imported key material, pkcs11 and kmip.
//
// Error contract (the key cache and environment status depend on it):
//  - kUnavailable / kDeadlineExceeded: the provider could not be reached (network, 5xx,
//    throttling). Transient: retry, serve from cache within the TTL. -> environment "degraded".
//  - kPermissionDenied / kFailedPrecondition / kNotFound: a definitive refusal (access revoked,
//    key disabled, pending deletion, deleted). -> environment "unavailable".
//  - kDataLoss: the wrapped blob or its context does not authenticate.
//  - kInvalidArgument: the key reference is malformed.
// Messages name the provider's own reason (e.g. the AWS error code) and never hold key bytes.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// The context bound to every wrap: workspace, environment and EK version. Sent to the KMS as
// its encryption context (AWS shows it in CloudTrail) and bound as associated data.
using EncryptionContext = std::map<std::string, std::string>;

// The keys of the context of every EK wrap (the AWS key policy statement pins
// kEkContextWorkspace). Here, below keys/, because providers that bind the context themselves
// (uploaded key material) read it.
inline constexpr std::string_view kEkContextWorkspace = "ekm:workspace";
inline constexpr std::string_view kEkContextEnvironment = "ekm:environment";
inline constexpr std::string_view kEkContextEkVersion = "ekm:ek-version";

// Canonical bytes of an encryption context, for associated data: for each entry in key order,
// len(key) (4 BE) | key | len(value) (4 BE) | value.
Bytes EncodeEncryptionContext(const EncryptionContext& context);

// A reference to one CMK inside one provider.
struct CmkRef {
  std::string provider;  // "platform", "aws-kms", …
  std::string key_id;    // provider-specific: "root", a key ARN, …
  bool operator==(const CmkRef&) const = default;
};

enum class CmkRotation { kUnknown, kEnabled, kDisabled };

// A CMK's state in every provider's terms; CmkDescription::provider_state keeps its own word.
enum class CmkKeyState { kUnknown, kEnabled, kDisabled, kPendingDeletion, kDestroyed };
// "unknown", "enabled", "disabled", "pending_deletion", "destroyed"
std::string_view CmkKeyStateName(CmkKeyState state);

struct CmkDescription {
  std::string provider;
  std::string key_id;
  std::string generation;  // the key's current version inside the provider, if known
  CmkKeyState state = CmkKeyState::kUnknown;
  std::string provider_state;  // as the provider says it: "Enabled", "PendingDeletion", …
  // Ok, or why this key cannot be a CMK by the provider's own rules (not a symmetric
  // encryption key, not enabled), with what to do and the provider's error code. Decided only
  // when `describe_permitted`.
  Status usable;
  CmkRotation rotation = CmkRotation::kUnknown;  // the provider's own automatic rotation
  // When `rotation` is kDisabled and the provider recommends turning it on: what to do.
  std::string rotation_advice;
  std::string region;               // where the key lives, if the provider has regions
  std::string key_spec;             // "SYMMETRIC_DEFAULT", … when readable
  std::string key_usage;            // "ENCRYPT_DECRYPT", … when readable
  std::string resolved_key_id;      // the key behind an alias, when readable
  bool describe_permitted = false;  // the provider let us read the key's metadata
  std::vector<std::string> notes;   // what could not be read, and why
  std::string detail;               // human-readable extra
};

class KeyProvider {
 public:
  virtual ~KeyProvider() = default;
  // "platform", "aws-kms", …
  virtual std::string_view Name() const = 0;
  // Checks the shape of a key id as an admin typed it, before any call: InvalidArgument naming
  // what is wrong and where.
  virtual Status ValidateKeyId(std::string_view key_id) const {
    (void)key_id;
    return Status::Ok();
  }
  // Encrypts `key` (an EK) under the CMK `key_id`, binding `context`. Returns an opaque blob.
  virtual StatusOr<Bytes> Wrap(std::string_view key_id, const SecretBytes& key,
                               const EncryptionContext& context) = 0;
  // Reverses Wrap; the context must be the same.
  virtual StatusOr<SecretBytes> Unwrap(std::string_view key_id, ByteView wrapped,
                                       const EncryptionContext& context) = 0;
  // Whether a call leaves the process (a KMS, an HSM): those wait, and ekmd bounds how many are
  // in flight to one provider (KeyHierarchyOptions::max_calls_per_provider). The platform key
  // and imported key material are local crypto.
  virtual bool CallsOut() const { return true; }
  // State and current generation of the CMK, as far as the provider lets us read it.
  virtual StatusOr<CmkDescription> Describe(std::string_view key_id) = 0;
  // What the customer does to give the platform its key back after `refusal`, an Unwrap refused
  // for an environment whose keys this CMK wraps (its state becomes UNAVAILABLE): the error and
  // `environment status` both show it. `last_success` (unix seconds, 0: none recorded) tells a
  // key that worked before from one that never did. By default, the refusal's own hint.
  // Who the platform is at this KMS: the principal a customer's key policy (or IAM binding,
  // role assignment) must name to grant the platform its key. FailedPrecondition saying how to
  // configure it when it is not known.
  virtual StatusOr<std::string> PlatformIdentity() {
    return FailedPreconditionError("key provider " + std::string(Name()) +
                                   " has no platform identity to grant access to");
  }
  virtual std::string RefusalAdvice(const Status& refusal, int64_t last_success) const {
    (void)last_success;
    return refusal.hint().empty() ? "restore the platform's access to the key" : refusal.hint();
  }
};

using KeyProviderPtr = std::unique_ptr<KeyProvider>;

// Providers by name. Thread-safe after set-up (register everything before use).
class ProviderRegistry {
 public:
  void Register(KeyProviderPtr provider);
  // NotFound naming the provider and the ones that are configured.
  StatusOr<KeyProvider*> Get(std::string_view name) const;

 private:
  std::map<std::string, KeyProviderPtr, std::less<>> providers_;
};

}  // namespace ekm
