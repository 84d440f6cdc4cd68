#include "ekm/provider/imported/import_unwrap.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <memory>
#include <string>

#include "ekm/base/encoding.h"
#include "ekm/base/ossl.h"

namespace ekm {

namespace {
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* c) const {
    EVP_PKEY_CTX_free(c);  // NOLINT(grep-lint): the deleter
  }
};
}  // namespace

std::string ImportOpensslCommands(std::string_view dir) {
  std::string d(dir);
  return "openssl rand -out material.bin 32 && openssl pkeyutl -encrypt -pubin -inkey " + d +
         "/wrapping-key.pem -in material.bin -out material.wrapped -pkeyopt "
         "rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256";
}

StatusOr<Bytes> ImportTokenHash(std::string_view import_token, std::string_view fix) {
  while (!import_token.empty() && (import_token.back() == '\n' || import_token.back() == '\r' ||
                                   import_token.back() == ' ')) {
    import_token.remove_suffix(1);
  }
  auto raw = Base64UrlDecode(import_token);
  if (!raw.ok() || raw->size() != kImportTokenSize) {
    if (raw.ok()) OPENSSL_cleanse(raw->data(), raw->size());
    return InvalidArgumentError(
        "the import token is malformed (expected 43 base64url "
        "characters, as written to DIR/import-token)",
        std::string(fix));
  }
  Bytes hash(SHA256_DIGEST_LENGTH);
  SHA256(raw->data(), raw->size(), hash.data());
  OPENSSL_cleanse(raw->data(), raw->size());
  return hash;
}

Status CheckWrappedMaterialSize(ByteView wrapped_material) {
  if (wrapped_material.size() == kWrappedMaterialSize) return Status::Ok();
  return InvalidArgumentError("the wrapped key material is " +
                                  std::to_string(wrapped_material.size()) +
                                  " bytes; an RSA-4096 ciphertext is exactly 512 bytes",
                              "upload the binary output of: " + ImportOpensslCommands("DIR") +
                                  " (material.wrapped, not material.bin, and not base64 text)");
}

StatusOr<std::optional<SecretBytes>> UnwrapImportedMaterial(const SecretBytes& private_key_der,
                                                            ByteView wrapped_material) {
  const uint8_t* p = private_key_der.RevealForCrypto().data();
  OsslPtr<EVP_PKEY> pkey(
      d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(private_key_der.size())));
  if (!pkey) return OsslError("reading the wrapping private key");
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> ctx(
      EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
  if (!ctx) return OsslError("EVP_PKEY_CTX_new_from_pkey");
  EKM_OSSL_CHECK(EVP_PKEY_decrypt_init(ctx.get()), "RSA decrypt init");
  EKM_OSSL_CHECK(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING), "RSA OAEP");
  EKM_OSSL_CHECK(EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()), "RSA OAEP SHA-256");
  EKM_OSSL_CHECK(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()), "RSA MGF1 SHA-256");
  // The output buffer is as large as the key: OpenSSL wants room for any plaintext it decodes.
  SecretBytes plain(static_cast<size_t>(EVP_PKEY_get_size(pkey.get())));
  size_t plain_len = plain.size();
  const bool unwrapped = EVP_PKEY_decrypt(ctx.get(), plain.MutableForCrypto().data(), &plain_len,
                                          wrapped_material.data(), wrapped_material.size()) == 1;
  ERR_clear_error();
  if (!unwrapped || plain_len != kImportedMaterialSize) return std::optional<SecretBytes>();
  return std::optional<SecretBytes>(SecretBytes(plain.RevealForCrypto().data(), plain_len));
}

}  // namespace ekm
