// HMAC-SHA256 (RFC 2104) via OpenSSL's EVP_MAC.
#pragma once

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr size_t kHmacSha256Size = 32;

StatusOr<Bytes> HmacSha256(const SecretBytes& key, ByteView data);

}  // namespace ekm
