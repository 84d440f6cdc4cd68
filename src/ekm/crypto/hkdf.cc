#include "ekm/crypto/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>

#include "ekm/base/ossl.h"

namespace ekm {

StatusOr<SecretBytes> HkdfSha256(const SecretBytes& ikm, ByteView salt, ByteView info,
                                 size_t length) {
  if (length == 0 || length > 255 * 32) {
    return InvalidArgumentError("HKDF-SHA256 output length must be 1..8160 bytes");
  }
  static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return OsslError("EVP_KDF_fetch(HKDF)");
  OsslPtr<EVP_KDF_CTX> ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) return OsslError("EVP_KDF_CTX_new");
  char digest[] = "SHA256";
  auto key = ikm.RevealForCrypto();
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(key.data()), key.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<uint8_t*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  EKM_OSSL_CHECK(EVP_KDF_derive(ctx.get(), out.MutableForCrypto().data(), length, params),
                 "HKDF-SHA256 derive");
  return out;
}

}  // namespace ekm
