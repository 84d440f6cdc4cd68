// The only source of randomness: OpenSSL's DRBG (seeded from the OS CSPRNG).
// rand(), std::random_device and friends are banned elsewhere (scripts/grep_lint.sh).
#pragma once

#include <cstdint>
#include <span>

#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// Fills `out` with cryptographically secure random bytes.
Status RandomBytes(std::span<uint8_t> out);

// A fresh random secret of `size` bytes (keys).
StatusOr<SecretBytes> RandomSecret(size_t size);

// A random uint64 for non-key uses (nonce prefixes, jitter, ids).
StatusOr<uint64_t> RandomUint64();

}  // namespace ekm
