// OpenSSL 3 behind RAII, and one place that turns an OpenSSL failure into a Status.
#pragma once

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <memory>
#include <string_view>

#include "ekm/base/status.h"

namespace ekm {

template <typename T>
struct OsslDeleter;
template <>
struct OsslDeleter<EVP_CIPHER_CTX> {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
template <>
struct OsslDeleter<EVP_CIPHER> {
  void operator()(EVP_CIPHER* p) const { EVP_CIPHER_free(p); }
};
template <>
struct OsslDeleter<EVP_KDF> {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
template <>
struct OsslDeleter<EVP_KDF_CTX> {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
template <>
struct OsslDeleter<EVP_MD_CTX> {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
template <>
struct OsslDeleter<EVP_PKEY> {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
template <>
struct OsslDeleter<EVP_MAC> {
  void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
};
template <>
struct OsslDeleter<EVP_MAC_CTX> {
  void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};

template <typename T>
using OsslPtr = std::unique_ptr<T, OsslDeleter<T>>;

// Drains OpenSSL's thread-local error queue into an Internal status naming `what`.
Status OsslError(std::string_view what);

// Checks the `== 1` convention of EVP_* calls.
#define EKM_OSSL_CHECK(call, what)                  \
  do {                                              \
    if ((call) != 1) return ::ekm::OsslError(what); \
  } while (0)

}  // namespace ekm
