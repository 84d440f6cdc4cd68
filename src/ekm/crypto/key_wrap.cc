#include "ekm/crypto/key_wrap.h"

#include "ekm/base/random.h"
#include "ekm/crypto/aes_gcm.h"

namespace ekm {

namespace {
constexpr size_t kMinKeySize = 16;
constexpr size_t kMaxKeySize = 64;
constexpr size_t kOverhead = 1 + kAesGcmNonceSize + kAesGcmTagSize;
}  // namespace

StatusOr<Bytes> WrapKey(const SecretBytes& kek, const SecretBytes& key, ByteView aad) {
  if (key.size() < kMinKeySize || key.size() > kMaxKeySize) {
    return InvalidArgumentError("can only wrap keys of 16 to 64 bytes");
  }
  Bytes out(kOverhead + key.size());
  out[0] = kWrappedKeyVersion;
  ByteView nonce(out.data() + 1, kAesGcmNonceSize);
  EKM_RETURN_IF_ERROR(RandomBytes(std::span<uint8_t>(out.data() + 1, kAesGcmNonceSize)));
  EKM_RETURN_IF_ERROR(
      AesGcmSeal(kek, nonce, aad, key.RevealForCrypto(), out.data() + 1 + kAesGcmNonceSize));
  return out;
}

StatusOr<SecretBytes> UnwrapKey(const SecretBytes& kek, ByteView wrapped, ByteView aad) {
  if (wrapped.size() < kOverhead + kMinKeySize || wrapped.size() > kOverhead + kMaxKeySize) {
    return DataLossError("wrapped key is malformed: " + std::to_string(wrapped.size()) +
                         " bytes, expected " + std::to_string(kOverhead + kMinKeySize) + " to " +
                         std::to_string(kOverhead + kMaxKeySize));
  }
  if (wrapped[0] != kWrappedKeyVersion) {
    return DataLossError("wrapped key has unknown format version " + std::to_string(wrapped[0]));
  }
  SecretBytes key(wrapped.size() - kOverhead);
  Status s = AesGcmOpen(kek, wrapped.subspan(1, kAesGcmNonceSize), aad,
                        wrapped.subspan(1 + kAesGcmNonceSize), key.MutableForCrypto().data());
  if (!s.ok()) {
    return DataLossError(
        "wrapped key failed authentication: wrong wrapping key or context, or "
        "the stored key was modified");
  }
  return key;
}

}  // namespace ekm
