#include "ekm/crypto/aes_gcm.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>

#include "ekm/base/ossl.h"

namespace ekm {

namespace {

// Fetched once: EVP_CIPHER_fetch per call would cost a lock and a lookup.
const EVP_CIPHER* Aes256Gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

// One context per thread, reused: EVP_CIPHER_CTX_new + free per message would cost two
// allocations. Re-initialising with a new key and nonce resets it completely.
EVP_CIPHER_CTX* ThreadContext(bool encrypt) {
  thread_local OsslPtr<EVP_CIPHER_CTX> enc(EVP_CIPHER_CTX_new());
  thread_local OsslPtr<EVP_CIPHER_CTX> dec(EVP_CIPHER_CTX_new());
  thread_local bool enc_ready = false, dec_ready = false;
  if (encrypt) {
    if (!enc_ready && enc &&
        EVP_EncryptInit_ex(enc.get(), Aes256Gcm(), nullptr, nullptr, nullptr) == 1) {
      enc_ready = true;
    }
    return enc_ready ? enc.get() : nullptr;
  }
  if (!dec_ready && dec &&
      EVP_DecryptInit_ex(dec.get(), Aes256Gcm(), nullptr, nullptr, nullptr) == 1) {
    dec_ready = true;
  }
  return dec_ready ? dec.get() : nullptr;
}

Status CheckSizes(const SecretBytes& key, ByteView nonce, ByteView aad, size_t data) {
  if (key.size() != kAesGcmKeySize) {
    return InvalidArgumentError("AES-256-GCM needs a 32-byte key, got " +
                                std::to_string(key.size()));
  }
  if (nonce.size() != kAesGcmNonceSize) {
    return InvalidArgumentError("AES-256-GCM needs a 12-byte nonce, got " +
                                std::to_string(nonce.size()));
  }
  if (aad.size() > INT_MAX || data > static_cast<size_t>(INT_MAX)) {
    return InvalidArgumentError("message too large for one AES-GCM operation");
  }
  return Status::Ok();
}

}  // namespace

Status AesGcmSeal(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView plaintext,
                  uint8_t* out) {
  EKM_RETURN_IF_ERROR(CheckSizes(key, nonce, aad, plaintext.size()));
  EVP_CIPHER_CTX* ctx = ThreadContext(true);
  if (ctx == nullptr) return OsslError("AES-256-GCM context set-up");
  int len = 0;
  EKM_OSSL_CHECK(EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.RevealForCrypto().data(),
                                    nonce.data()),
                 "AES-GCM encrypt init");
  if (!aad.empty()) {
    EKM_OSSL_CHECK(EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())),
                   "AES-GCM aad");
  }
  int written = 0;
  if (!plaintext.empty()) {
    EKM_OSSL_CHECK(EVP_EncryptUpdate(ctx, out, &len, plaintext.data(),
                                     static_cast<int>(plaintext.size())),
                   "AES-GCM encrypt");
    written = len;
  }
  EKM_OSSL_CHECK(EVP_EncryptFinal_ex(ctx, out + written, &len), "AES-GCM encrypt final");
  written += len;
  EKM_OSSL_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAesGcmTagSize),
                                     out + written),
                 "AES-GCM get tag");
  return Status::Ok();
}

Status AesGcmOpen(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView sealed,
                  uint8_t* out) {
  if (sealed.size() < kAesGcmTagSize) {
    return DataLossError("ciphertext is shorter than its 16-byte authentication tag");
  }
  const size_t ct_len = sealed.size() - kAesGcmTagSize;
  EKM_RETURN_IF_ERROR(CheckSizes(key, nonce, aad, ct_len));
  EVP_CIPHER_CTX* ctx = ThreadContext(false);
  if (ctx == nullptr) return OsslError("AES-256-GCM context set-up");
  int len = 0;
  EKM_OSSL_CHECK(EVP_DecryptInit_ex(ctx, nullptr, nullptr, key.RevealForCrypto().data(),
                                    nonce.data()),
                 "AES-GCM decrypt init");
  if (!aad.empty()) {
    EKM_OSSL_CHECK(EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())),
                   "AES-GCM aad");
  }
  int written = 0;
  if (ct_len > 0) {
    EKM_OSSL_CHECK(EVP_DecryptUpdate(ctx, out, &len, sealed.data(), static_cast<int>(ct_len)),
                   "AES-GCM decrypt");
    written = len;
  }
  // The tag is set before the final call, and nothing above branched on the plaintext.
  EKM_OSSL_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAesGcmTagSize),
                                     const_cast<uint8_t*>(sealed.data() + ct_len)),
                 "AES-GCM set tag");
  if (EVP_DecryptFinal_ex(ctx, out + written, &len) != 1) {
    if (ct_len > 0) OPENSSL_cleanse(out, ct_len);
    return DataLossError(
        "ciphertext failed authentication: it was modified, truncated, or belongs to another "
        "workspace, environment or scope");
  }
  return Status::Ok();
}

}  // namespace ekm
