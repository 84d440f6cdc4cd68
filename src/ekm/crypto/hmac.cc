#include "ekm/crypto/hmac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "ekm/base/ossl.h"

namespace ekm {

namespace {

Status Compute(const SecretBytes& key, ByteView data, std::span<uint8_t, kHmacSha256Size> out) {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) return OsslError("EVP_MAC_fetch(HMAC)");
  OsslPtr<EVP_MAC_CTX> ctx(EVP_MAC_CTX_new(mac));
  if (!ctx) return OsslError("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  auto k = key.RevealForCrypto();
  EKM_OSSL_CHECK(EVP_MAC_init(ctx.get(), k.data(), k.size(), params), "HMAC-SHA256 init");
  EKM_OSSL_CHECK(EVP_MAC_update(ctx.get(), data.data(), data.size()), "HMAC-SHA256 update");
  size_t len = 0;
  EKM_OSSL_CHECK(EVP_MAC_final(ctx.get(), out.data(), &len, out.size()), "HMAC-SHA256 final");
  if (len != kHmacSha256Size) return InternalError("HMAC-SHA256 returned an unexpected length");
  return Status::Ok();
}

}  // namespace

StatusOr<Bytes> HmacSha256(const SecretBytes& key, ByteView data) {
  Bytes out(kHmacSha256Size);
  EKM_RETURN_IF_ERROR(Compute(key, data, std::span<uint8_t, kHmacSha256Size>(out)));
  return out;
}

StatusOr<SecretBytes> HmacSha256Key(const SecretBytes& key, ByteView data) {
  SecretBytes out(kHmacSha256Size);
  EKM_RETURN_IF_ERROR(Compute(
      key, data, std::span<uint8_t, kHmacSha256Size>(out.MutableForCrypto().data(), out.size())));
  return out;
}

}  // namespace ekm
