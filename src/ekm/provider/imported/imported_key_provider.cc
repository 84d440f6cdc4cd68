#include "ekm/provider/imported/imported_key_provider.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/endian.h"
#include "ekm/base/ossl.h"
#include "ekm/base/random.h"
#include "ekm/crypto/aes_gcm.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/provider/platform/platform_key_provider.h"

namespace ekm {

namespace {

constexpr uint8_t kImportedWrapVersion = 2;  // distinct from the platform blob's 0x01
constexpr uint8_t kSealVersion = 1;
constexpr std::string_view kKeyIdLabel = "ekm imported key id v1";
constexpr std::string_view kWrapLabel = "ekm imported wrap v1";
constexpr std::string_view kSealLabel = "ekm sealed secret v1";
constexpr size_t kKeyIdHexSize = 32;  // 16 bytes
constexpr size_t kMaxSealedSecret = 16 * 1024;

Bytes LabeledContext(std::string_view label, const EncryptionContext& context) {
  Bytes aad(label.begin(), label.end());
  aad.push_back(0);
  Append(aad, EncodeEncryptionContext(context));
  return aad;
}

Bytes WrapAad(std::string_view key_id, const EncryptionContext& context) {
  Bytes aad = LabeledContext(kWrapLabel, context);
  uint8_t len[4];
  StoreBigEndian32(len, static_cast<uint32_t>(key_id.size()));
  aad.insert(aad.end(), len, len + 4);
  Append(aad, AsBytes(key_id));
  return aad;
}

std::string ContextValue(const EncryptionContext& context, std::string_view name) {
  auto it = context.find(std::string(name));
  return it == context.end() ? std::string() : it->second;
}

}  // namespace

StatusOr<std::string> ImportedKeyId(const SecretBytes& material) {
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  auto m = material.RevealForCrypto();
  if (HMAC(EVP_sha256(), m.data(), static_cast<int>(m.size()),
           reinterpret_cast<const uint8_t*>(kKeyIdLabel.data()), kKeyIdLabel.size(), mac,
           &len) == nullptr) {
    return OsslError("HMAC-SHA256 of the key material");
  }
  std::string id = std::string(kImportedKeyIdPrefix) + HexEncode(ByteView(mac, 16));
  OPENSSL_cleanse(mac, sizeof(mac));
  return id;
}

EncryptionContext KeyMaterialSealContext(std::string_view workspace, std::string_view environment,
                                         std::string_view key_id) {
  return {{std::string(kEkContextWorkspace), std::string(workspace)},
          {std::string(kEkContextEnvironment), std::string(environment)},
          {"ekm:imported-key-id", std::string(key_id)},
          {"ekm:purpose", "imported key material"}};
}

EncryptionContext ImportWrappingKeySealContext(std::string_view workspace,
                                               std::string_view environment) {
  return {{std::string(kEkContextWorkspace), std::string(workspace)},
          {std::string(kEkContextEnvironment), std::string(environment)},
          {"ekm:purpose", "import wrapping key"}};
}

StatusOr<Bytes> SealSecret(KeyProvider& platform, const SecretBytes& secret,
                           const EncryptionContext& context) {
  EKM_ASSIGN_OR_RETURN(SecretBytes sealing_key, RandomSecret(kAesGcmKeySize));
  EKM_ASSIGN_OR_RETURN(Bytes wrapped_key, platform.Wrap(kPlatformRootKeyId, sealing_key, context));
  Bytes out;
  out.push_back(kSealVersion);
  uint8_t len[2] = {static_cast<uint8_t>(wrapped_key.size() >> 8),
                    static_cast<uint8_t>(wrapped_key.size() & 0xff)};
  out.insert(out.end(), len, len + 2);
  Append(out, wrapped_key);
  size_t nonce_at = out.size();
  out.resize(nonce_at + kAesGcmNonceSize + secret.size() + kAesGcmTagSize);
  EKM_RETURN_IF_ERROR(RandomBytes(std::span<uint8_t>(out.data() + nonce_at, kAesGcmNonceSize)));
  EKM_RETURN_IF_ERROR(AesGcmSeal(sealing_key, ByteView(out.data() + nonce_at, kAesGcmNonceSize),
                                 LabeledContext(kSealLabel, context), secret.RevealForCrypto(),
                                 out.data() + nonce_at + kAesGcmNonceSize));
  return out;
}

StatusOr<SecretBytes> UnsealSecret(KeyProvider& platform, ByteView sealed,
                                   const EncryptionContext& context) {
  if (sealed.size() < 3 || sealed.size() > kMaxSealedSecret || sealed[0] != kSealVersion) {
    return DataLossError("a sealed secret in the store is malformed (unknown format)");
  }
  size_t wrapped_len = size_t{sealed[1]} << 8 | sealed[2];
  if (sealed.size() < 3 + wrapped_len + kAesGcmNonceSize + kAesGcmTagSize) {
    return DataLossError("a sealed secret in the store is truncated");
  }
  EKM_ASSIGN_OR_RETURN(
      SecretBytes sealing_key,
      platform.Unwrap(kPlatformRootKeyId, sealed.subspan(3, wrapped_len), context));
  ByteView rest = sealed.subspan(3 + wrapped_len);
  SecretBytes secret(rest.size() - kAesGcmNonceSize - kAesGcmTagSize);
  Status s = AesGcmOpen(sealing_key, rest.subspan(0, kAesGcmNonceSize),
                        LabeledContext(kSealLabel, context), rest.subspan(kAesGcmNonceSize),
                        secret.MutableForCrypto().data());
  if (!s.ok()) {
    return DataLossError(
        "a sealed secret in the store failed authentication (modified, or "
        "sealed for another environment)");
  }
  return secret;
}

Status ImportedKeyProvider::ValidateKeyId(std::string_view key_id) const {
  bool ok = key_id.size() == kImportedKeyIdPrefix.size() + kKeyIdHexSize &&
            key_id.substr(0, kImportedKeyIdPrefix.size()) == kImportedKeyIdPrefix;
  for (size_t i = kImportedKeyIdPrefix.size(); ok && i < key_id.size(); ++i) {
    char c = key_id[i];
    ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  }
  if (!ok) {
    // Appended, not `"\"" + std::string(...)`: GCC 12 at -O3 misreports that temporary
    // (-Wrestrict), which broke the quickstart's Release build.
    std::string message = "\"";
    message.append(key_id);
    message +=
        "\" is not an imported key id (expected \"imported:\" and 32 lower-case hex "
        "characters)";
    return InvalidArgumentError(std::move(message),
                                "import key material with `ekm key import`; it sets the key id");
  }
  return Status::Ok();
}

StatusOr<SecretBytes> ImportedKeyProvider::Material(std::string_view key_id,
                                                    const EncryptionContext& context) {
  EKM_RETURN_IF_ERROR(ValidateKeyId(key_id));
  std::string workspace = ContextValue(context, kEkContextWorkspace);
  std::string environment = ContextValue(context, kEkContextEnvironment);
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, store_->GetEnvironment(workspace, environment));
  EKM_ASSIGN_OR_RETURN(std::optional<Store::KeyMaterialRecord> rec,
                       store_->GetKeyMaterial(env.id, key_id));
  const std::string where = workspace + "/" + environment;
  if (!rec) {
    return NotFoundError("no key material " + std::string(key_id) + " was imported into " + where,
                         "import it with `ekm key import --workspace " + workspace +
                             " --environment " + environment + "`");
  }
  if (rec->deleted_at != 0) {
    return FailedPreconditionError(
        "the imported key material of " + where + " (" + std::string(key_id) + ") was deleted at " +
            FormatRfc3339(FromUnixSeconds(rec->deleted_at)),
        "import the same material again to restore access (`ekm key import-params`, then "
        "`ekm key import`)");
  }
  EKM_ASSIGN_OR_RETURN(SecretBytes material,
                       UnsealSecret(*platform_, rec->sealed_material,
                                    KeyMaterialSealContext(workspace, environment, key_id)));
  // The row names its key id; the material must agree (a swapped row would not).
  EKM_ASSIGN_OR_RETURN(std::string actual, ImportedKeyId(material));
  if (material.size() != kImportedMaterialSize || actual != key_id) {
    return DataLossError("the stored key material of " + where + " does not match its key id " +
                         std::string(key_id));
  }
  return material;
}

StatusOr<Bytes> ImportedKeyProvider::Wrap(std::string_view key_id, const SecretBytes& key,
                                          const EncryptionContext& context) {
  EKM_ASSIGN_OR_RETURN(SecretBytes material, Material(key_id, context));
  EKM_ASSIGN_OR_RETURN(Bytes inner, WrapKey(material, key, WrapAad(key_id, context)));
  Bytes out;
  out.reserve(1 + inner.size());
  out.push_back(kImportedWrapVersion);
  Append(out, inner);
  return out;
}

StatusOr<SecretBytes> ImportedKeyProvider::Unwrap(std::string_view key_id, ByteView wrapped,
                                                  const EncryptionContext& context) {
  if (wrapped.size() < 2 || wrapped[0] != kImportedWrapVersion) {
    return DataLossError("wrapped environment key is malformed (not an imported provider blob)");
  }
  EKM_ASSIGN_OR_RETURN(SecretBytes material, Material(key_id, context));
  return UnwrapKey(material, wrapped.subspan(1), WrapAad(key_id, context));
}

StatusOr<CmkDescription> ImportedKeyProvider::Describe(std::string_view key_id) {
  EKM_RETURN_IF_ERROR(ValidateKeyId(key_id));
  EKM_ASSIGN_OR_RETURN(std::vector<Store::KeyMaterialRecord> rows, store_->FindKeyMaterial(key_id));
  if (rows.empty()) {
    return NotFoundError("no key material " + std::string(key_id) + " was ever imported",
                         "import it with `ekm key import`");
  }
  CmkDescription d;
  d.provider = std::string(kImportedProviderName);
  d.key_id = std::string(key_id);
  d.key_spec = "AES_256";  // 32 bytes of customer material
  d.key_usage = "ENCRYPT_DECRYPT";
  d.rotation = CmkRotation::kDisabled;  // material never changes; import new material instead
  d.describe_permitted = true;
  int64_t imported_at = 0, deleted_at = 0;
  for (const auto& r : rows) {
    if (r.deleted_at == 0) imported_at = std::max(imported_at, r.imported_at);
    deleted_at = std::max(deleted_at, r.deleted_at);
  }
  if (imported_at != 0) {
    d.state = CmkKeyState::kEnabled;
    d.provider_state = "Enabled";
    d.detail = "uploaded key material, imported " + FormatRfc3339(FromUnixSeconds(imported_at)) +
               ", sealed under the platform root key";
  } else {
    // Not destroyed: the customer may import the same material again (AWS calls this state
    // PendingImport).
    d.state = CmkKeyState::kDisabled;
    d.provider_state = "Deleted";
    d.detail = "the key material was deleted at " + FormatRfc3339(FromUnixSeconds(deleted_at)) +
               "; import the same material again to restore access";
    d.usable = FailedPreconditionError(
        "the imported key material was deleted at " + FormatRfc3339(FromUnixSeconds(deleted_at)),
        "import the same material again to restore access");
  }
  return d;
}

ProviderFactory ImportedKeyProviderFactory() {
  return ProviderFactory{
      std::string(kImportedProviderName), "",
      "the id `ekm key import` printed for the uploaded material",
      [](const ProviderDependencies& deps) -> StatusOr<KeyProviderPtr> {
        if (deps.store == nullptr || deps.platform == nullptr) {
          return InternalError("uploaded key material needs the store and the platform key");
        }
        return KeyProviderPtr(std::make_unique<ImportedKeyProvider>(deps.store, deps.platform));
      }};
}

}  // namespace ekm
