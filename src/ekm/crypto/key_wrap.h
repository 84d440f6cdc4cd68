// Wrapping one key under another (a DK under an EK; an EK under the platform root key):
// AES-256-GCM with a fresh random nonce, the caller's associated data bound.
//
// Wrapped key format, version 1 (61 bytes for a 32-byte key), specified in docs/format.md:
//   0x01 | nonce (12) | ciphertext (key length) | tag (16)
#pragma once

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr uint8_t kWrappedKeyVersion = 1;
inline constexpr size_t kMaxWrappedKeySize = 1 + 12 + 64 + 16;

StatusOr<Bytes> WrapKey(const SecretBytes& kek, const SecretBytes& key, ByteView aad);
// Fails with DataLoss when the blob is malformed or does not authenticate under `kek` + `aad`.
StatusOr<SecretBytes> UnwrapKey(const SecretBytes& kek, ByteView wrapped, ByteView aad);

}  // namespace ekm
