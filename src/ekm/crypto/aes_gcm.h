// AES-256-GCM (NIST SP 800-38D) on OpenSSL 3, with caller-supplied nonces and output buffers so
// the data path allocates nothing. Thread-safe: each thread reuses its own EVP_CIPHER_CTX, which
// stays keyed with the last key it used until AesGcmForgetKeys.
//
// Nonce uniqueness is the caller's duty (see keys/nonce_sequence.h for the data path and
// SealWithRandomNonce for rare key wrapping).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr size_t kAesGcmKeySize = 32;
inline constexpr size_t kAesGcmNonceSize = 12;
inline constexpr size_t kAesGcmTagSize = 16;

// Writes ciphertext || tag (plaintext.size() + 16 bytes) to `out`.
// `out` may not overlap `plaintext` except exactly (in-place).
Status AesGcmSeal(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView plaintext,
                  uint8_t* out);

// Verifies and decrypts ciphertext || tag into `out` (sealed.size() - 16 bytes).
// Authentication failure is DataLoss with a message that does not say which byte was wrong.
// Nothing written to `out` may be used when this fails (it is wiped).
Status AesGcmOpen(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView sealed,
                  uint8_t* out);

// Wipes the key schedule of every thread's reused context, idle threads' included (a thread in
// the middle of an operation wipes its own when the operation ends). The key hierarchy calls it
// wherever it drops keys (revocation, shred, expiry), so no thread keeps a dropped key's AES
// schedule in memory. The next operation of each thread keys its context afresh.
void AesGcmForgetKeys();

// For tests: how many threads' contexts are keyed with `key` now (a context in use counts).
size_t AesGcmContextsHolding(const SecretBytes& key);

}  // namespace ekm
