// The "imported" key provider: BYOK without a KMS. The customer uploads 32 bytes of key
// material (wrapped under an RSA-4096 wrapping key ekm issued, see key_material_import.h); that
// material is the CMK. ekm keeps it only sealed under the platform root key, per environment.
//
// key id: "imported:" + hex of the first 16 bytes of HMAC-SHA256(material, "ekm imported key id
// v1"), a public fingerprint, so importing the same material again gives the same key id.
//
// Wrapped EK format (docs/format.md): 0x02 | crypto/key_wrap.h blob under the material, whose
// associated data is "ekm imported wrap v1" 0x00 | the encryption context | len(key id) | key id.
//
// Errors follow provider/key_provider.h: material deleted -> FailedPrecondition naming when;
// never imported in this environment -> NotFound. Thread-safe (the store is).
#pragma once

#include <string>
#include <string_view>

#include "ekm/provider/imported/import_unwrap.h"
#include "ekm/provider/key_provider.h"
#include "ekm/provider/provider_factory.h"
#include "ekm/store/store.h"

namespace ekm {

inline constexpr std::string_view kImportedProviderName = "imported";
inline constexpr std::string_view kImportedKeyIdPrefix = "imported:";

// The key id of `material` (public: a one-way fingerprint).
StatusOr<std::string> ImportedKeyId(const SecretBytes& material);

// Seals a secret under the platform root key, bound to `context` (docs/format.md, "sealed
// secret"): 0x01 | len(wrapped sealing key) (2 BE) | platform-wrapped random 32-byte sealing
// key | nonce (12) | AES-256-GCM ciphertext | tag (16), associated data "ekm sealed secret v1"
// 0x00 | the encoded context.
StatusOr<Bytes> SealSecret(KeyProvider& platform, const SecretBytes& secret,
                           const EncryptionContext& context);
StatusOr<SecretBytes> UnsealSecret(KeyProvider& platform, ByteView sealed,
                                   const EncryptionContext& context);

// The contexts the material and the import wrapping key are sealed with.
EncryptionContext KeyMaterialSealContext(std::string_view workspace, std::string_view environment,
                                         std::string_view key_id);
EncryptionContext ImportWrappingKeySealContext(std::string_view workspace,
                                               std::string_view environment);

class ImportedKeyProvider : public KeyProvider {
 public:
  // `store` and `platform` must outlive the provider.
  ImportedKeyProvider(Store* store, KeyProvider* platform) : store_(store), platform_(platform) {}

  std::string_view Name() const override { return kImportedProviderName; }
  bool CallsOut() const override { return false; }
  Status ValidateKeyId(std::string_view key_id) const override;
  StatusOr<Bytes> Wrap(std::string_view key_id, const SecretBytes& key,
                       const EncryptionContext& context) override;
  StatusOr<SecretBytes> Unwrap(std::string_view key_id, ByteView wrapped,
                               const EncryptionContext& context) override;
  // Enabled while some environment holds this material; "Deleted" when every copy was deleted.
  StatusOr<CmkDescription> Describe(std::string_view key_id) override;

 private:
  // The unsealed material of `key_id` for the environment the context names.
  StatusOr<SecretBytes> Material(std::string_view key_id, const EncryptionContext& context);

  Store* store_;
  KeyProvider* platform_;
};

// The factory of this provider (provider_factory.h): it needs the store and the platform key.
ProviderFactory ImportedKeyProviderFactory();

}  // namespace ekm
