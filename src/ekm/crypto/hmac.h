// HMAC-SHA256 (RFC 2104) via OpenSSL's EVP_MAC.
#pragma once

#include <span>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr size_t kHmacSha256Size = 32;

// A MAC (an integrity check, not a secret).
StatusOr<Bytes> HmacSha256(const SecretBytes& key, ByteView data);
// A MAC that is itself a key (SigV4's derived signing keys), kept in the secret type.
StatusOr<SecretBytes> HmacSha256Key(const SecretBytes& key, ByteView data);

}  // namespace ekm
