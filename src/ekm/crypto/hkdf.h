// HKDF-SHA256 (RFC 5869) via OpenSSL's EVP_KDF.
#pragma once

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

StatusOr<SecretBytes> HkdfSha256(const SecretBytes& ikm, ByteView salt, ByteView info,
                                 size_t length);

}  // namespace ekm
