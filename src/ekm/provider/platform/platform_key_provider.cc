#include "ekm/provider/platform/platform_key_provider.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

#include "ekm/base/encoding.h"
#include "ekm/base/endian.h"
#include "ekm/base/key_file.h"
#include "ekm/base/ossl.h"
#include "ekm/base/random.h"
#include "ekm/crypto/hkdf.h"
#include "ekm/crypto/key_wrap.h"

namespace ekm {

namespace {

constexpr uint8_t kPlatformWrapVersion = 1;
constexpr size_t kRootKeySize = 32;
constexpr std::string_view kWrapLabel = "ekm platform wrap v1";
constexpr std::string_view kFingerprintLabel = "ekm platform root key fingerprint v1";
// HKDF-SHA256 labels (info) of the keys derived from the root key for the store
// (store/store_integrity.h). Distinct labels: each output says nothing about the others or the
// root key.
constexpr std::string_view kStoreFingerprintLabel = "ekm store root key fingerprint v1";
constexpr std::string_view kStoreIntegrityLabel = "ekm store integrity v1";
constexpr size_t kStoreFingerprintSize = 16;
constexpr size_t kStoreMacKeySize = 32;

Status ComputeFingerprint(const SecretBytes& key, uint8_t out[8]) {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx) return OsslError("EVP_MD_CTX_new");
  EKM_OSSL_CHECK(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr), "SHA-256 init");
  EKM_OSSL_CHECK(EVP_DigestUpdate(ctx.get(), kFingerprintLabel.data(), kFingerprintLabel.size()),
                 "SHA-256 update");
  auto k = key.RevealForCrypto();
  EKM_OSSL_CHECK(EVP_DigestUpdate(ctx.get(), k.data(), k.size()), "SHA-256 update");
  EKM_OSSL_CHECK(EVP_DigestFinal_ex(ctx.get(), digest, &len), "SHA-256 final");
  std::memcpy(out, digest, 8);
  return Status::Ok();
}

Bytes WrapAad(std::string_view key_id, const EncryptionContext& context) {
  Bytes aad(kWrapLabel.begin(), kWrapLabel.end());
  aad.push_back(0);
  Append(aad, EncodeEncryptionContext(context));
  uint8_t len[4];
  StoreBigEndian32(len, static_cast<uint32_t>(key_id.size()));
  aad.insert(aad.end(), len, len + 4);
  Append(aad, AsBytes(key_id));
  return aad;
}

}  // namespace

Status PlatformKeyProvider::CreateRootKeyFile(const std::string& path) {
  EKM_ASSIGN_OR_RETURN(SecretBytes key, RandomSecret(kRootKeySize));
  // 64 hex characters and a newline, written into a buffer of its final size: no copy of the
  // key is left behind by a growing string.
  SecretBytes text(2 * kRootKeySize + 1);
  static constexpr char kHex[] = "0123456789abcdef";
  auto out = text.MutableForCrypto();
  auto k = key.RevealForCrypto();
  for (size_t i = 0; i < kRootKeySize; ++i) {
    out[2 * i] = static_cast<uint8_t>(kHex[k[i] >> 4]);
    out[2 * i + 1] = static_cast<uint8_t>(kHex[k[i] & 0xf]);
  }
  out[2 * kRootKeySize] = '\n';
  return WriteNewKeyFile(path, "root key file", text.RevealForCrypto());
}

StatusOr<std::unique_ptr<PlatformKeyProvider>> PlatformKeyProvider::Open(const std::string& path) {
  // Raw 32 bytes, or 64 hex characters with optional trailing whitespace.
  auto read = ReadKeyFile(path, "root key file", 130);
  if (!read.ok()) {
    if (read.status().code() == StatusCode::kNotFound) {
      return NotFoundError(read.status().message(),
                           "run `ekm init` to create one, or pass the right --root-key-file");
    }
    return read.status();
  }
  const size_t got = read->size();
  const uint8_t* b = read->RevealForCrypto().data();
  SecretBytes key;
  if (got == kRootKeySize) {
    key = SecretBytes(b, kRootKeySize);
  } else {
    size_t n = got;
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' ')) --n;
    if (n != 2 * kRootKeySize) {
      return FailedPreconditionError("root key file " + path +
                                         " is not a root key (expected 32 raw bytes or 64 hex "
                                         "characters, found " +
                                         std::to_string(got) + " bytes)",
                                     "point --root-key-file at the key file created by `ekm init`");
    }
    key = SecretBytes(kRootKeySize);
    auto out = key.MutableForCrypto();
    for (size_t i = 0; i < kRootKeySize; ++i) {
      auto nib = [](uint8_t c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = nib(b[2 * i]), lo = nib(b[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return FailedPreconditionError(
            "root key file " + path + " has a non-hex character at position " +
                std::to_string(2 * i + (hi < 0 ? 1 : 2)),
            "point --root-key-file at the key file created by `ekm init`");
      }
      out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
  key.LockInMemory();
  auto provider =
      std::unique_ptr<PlatformKeyProvider>(new PlatformKeyProvider(std::move(key), path));
  EKM_RETURN_IF_ERROR(ComputeFingerprint(provider->root_key_, provider->fingerprint_));
  provider->fingerprint_hex_ = HexEncode(ByteView(provider->fingerprint_, 8));
  return provider;
}

StatusOr<StoreBinding> PlatformKeyProvider::BindStore() const {
  StoreBinding b;
  EKM_ASSIGN_OR_RETURN(
      SecretBytes fingerprint,
      HkdfSha256(root_key_, {}, AsBytes(kStoreFingerprintLabel), kStoreFingerprintSize));
  auto f = fingerprint.RevealForCrypto();
  b.root_key_fingerprint.assign(f.begin(), f.end());  // public: a PRF output, not the key
  EKM_ASSIGN_OR_RETURN(b.mac_key,
                       HkdfSha256(root_key_, {}, AsBytes(kStoreIntegrityLabel), kStoreMacKeySize));
  b.root_key_source = "the root key in " + path_;
  // Before the rows were MAC'd, a platform EK names the root key that wrapped it by the
  // fingerprint in its blob: the upgrade refuses to vouch for EKs of another root key.
  b.check_legacy_ek = [this](const EnvironmentKeyRecord& ek) -> Status {
    if (ek.cmk_provider != kPlatformProviderName || ek.wrapped.empty()) return Status::Ok();
    if (ek.wrapped.size() >= 9 && ek.wrapped[0] == kPlatformWrapVersion &&
        std::equal(fingerprint_, fingerprint_ + 8, ek.wrapped.begin() + 1)) {  // public value
      return Status::Ok();
    }
    return FailedPreconditionError(
        "it was wrapped under another platform root key" +
            (ek.wrapped.size() >= 9
                 ? " (fingerprint " + HexEncode(ByteView(ek.wrapped).subspan(1, 8)) + ")"
                 : std::string()) +
            " than the one in " + path_ + " (fingerprint " + fingerprint_hex_ + ")",
        "start with the root key file this store was created with (--root-key-file)");
  };
  return b;
}

PlatformKeyProvider::PlatformKeyProvider(SecretBytes root_key, std::string path)
    : root_key_(std::move(root_key)), path_(std::move(path)) {}

Status PlatformKeyProvider::CheckKeyId(std::string_view key_id) const {
  if (key_id != kPlatformRootKeyId) {
    return InvalidArgumentError("platform provider has no key \"" + std::string(key_id) + "\"",
                                "the platform-managed CMK is called \"root\"");
  }
  return Status::Ok();
}

StatusOr<Bytes> PlatformKeyProvider::Wrap(std::string_view key_id, const SecretBytes& key,
                                          const EncryptionContext& context) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  EKM_ASSIGN_OR_RETURN(Bytes inner, WrapKey(root_key_, key, WrapAad(key_id, context)));
  Bytes out;
  out.reserve(1 + 8 + inner.size());
  out.push_back(kPlatformWrapVersion);
  out.insert(out.end(), fingerprint_, fingerprint_ + 8);
  Append(out, inner);
  return out;
}

StatusOr<SecretBytes> PlatformKeyProvider::Unwrap(std::string_view key_id, ByteView wrapped,
                                                  const EncryptionContext& context) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  if (wrapped.size() < 9 || wrapped[0] != kPlatformWrapVersion) {
    return DataLossError("wrapped environment key is malformed (not a platform provider blob)");
  }
  if (!std::equal(fingerprint_, fingerprint_ + 8, wrapped.begin() + 1)) {  // public value
    return FailedPreconditionError(
        "this environment key was wrapped under another platform root key (fingerprint " +
            HexEncode(wrapped.subspan(1, 8)) + "); the root key in " + path_ + " has fingerprint " +
            fingerprint_hex_,
        "point --root-key-file at the original root key file");
  }
  return UnwrapKey(root_key_, wrapped.subspan(9), WrapAad(key_id, context));
}

StatusOr<CmkDescription> PlatformKeyProvider::Describe(std::string_view key_id) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  CmkDescription d;
  d.provider = std::string(kPlatformProviderName);
  d.key_id = std::string(key_id);
  d.generation = fingerprint_hex_;
  d.state = CmkKeyState::kEnabled;
  d.provider_state = "Enabled";
  d.rotation = CmkRotation::kDisabled;
  d.describe_permitted = true;
  d.detail = "platform-managed root key in " + path_;
  return d;
}

}  // namespace ekm
