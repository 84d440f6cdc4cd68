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

// One context per thread and direction, reused: EVP_CIPHER_CTX_new + free per message would
// cost two allocations. It also remembers which key it holds (SecretBytes::serial()): for the
// same key again only the nonce is set, which skips the AES key schedule and the GHASH table,
// most of the fixed cost of a small message. A failed call forgets the key.
struct ThreadContext {
  OsslPtr<EVP_CIPHER_CTX> ctx{EVP_CIPHER_CTX_new()};
  bool ready = false;
  uint64_t key_serial = 0;

  // The context keyed with `key` and set to `nonce`, or nullptr.
  EVP_CIPHER_CTX* Start(bool encrypt, const SecretBytes& key, ByteView nonce) {
    if (!ready) {
      if (!ctx) return nullptr;
      const int ok = encrypt ? EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr)
                             : EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr);
      if (ok != 1) return nullptr;
      ready = true;
    }
    const bool same_key = key.serial() != 0 && key.serial() == key_serial;
    const uint8_t* k = same_key ? nullptr : key.RevealForCrypto().data();
    key_serial = 0;  // until this call succeeds
    const int ok = encrypt ? EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, k, nonce.data())
                           : EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, k, nonce.data());
    if (ok != 1) return nullptr;
    key_serial = key.serial();
    return ctx.get();
  }
  void Forget() { key_serial = 0; }
};

// Any failure after Start leaves the context in an unknown state: key it afresh next time.
struct ForgetUnlessOk {
  ThreadContext& tc;
  bool ok = false;
  ~ForgetUnlessOk() {
    if (!ok) tc.Forget();
  }
};

ThreadContext& EncryptContext() {
  thread_local ThreadContext c;
  return c;
}
ThreadContext& DecryptContext() {
  thread_local ThreadContext c;
  return c;
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
  ThreadContext& tc = EncryptContext();
  EVP_CIPHER_CTX* ctx = tc.Start(true, key, nonce);
  if (ctx == nullptr) return OsslError("AES-GCM encrypt init");
  ForgetUnlessOk guard{tc};
  int len = 0;
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
  guard.ok = true;
  return Status::Ok();
}

Status AesGcmOpen(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView sealed,
                  uint8_t* out) {
  if (sealed.size() < kAesGcmTagSize) {
    return DataLossError("ciphertext is shorter than its 16-byte authentication tag");
  }
  const size_t ct_len = sealed.size() - kAesGcmTagSize;
  EKM_RETURN_IF_ERROR(CheckSizes(key, nonce, aad, ct_len));
  ThreadContext& tc = DecryptContext();
  EVP_CIPHER_CTX* ctx = tc.Start(false, key, nonce);
  if (ctx == nullptr) return OsslError("AES-GCM decrypt init");
  ForgetUnlessOk guard{tc};
  int len = 0;
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
  guard.ok = true;
  return Status::Ok();
}

}  // namespace ekm
