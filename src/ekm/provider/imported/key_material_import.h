// Importing key material (the seeds' "uploading a key material file"), as AWS KMS does it:
// ekm issues per environment an RSA-4096 wrapping public key and an import token with an
// expiry; the admin wraps 32 random bytes with RSAES-OAEP-SHA256 (MGF1-SHA256) and uploads
// them with the token; ekm checks the token and unwraps.
//
// The wrapping private key is kept sealed under the platform root key; the token is kept only
// as its SHA-256 and is bound to its environment and wrapping key. A token imports once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/provider/imported/import_unwrap.h"
#include "ekm/provider/key_provider.h"
#include "ekm/store/store.h"

namespace ekm {

inline constexpr std::string_view kImportWrappingAlgorithm = "RSAES_OAEP_SHA_256";
inline constexpr int64_t kDefaultImportTokenLifetimeSeconds = 24 * 3600;
inline constexpr int64_t kMinImportTokenLifetimeSeconds = 60;
inline constexpr int64_t kMaxImportTokenLifetimeSeconds = 7 * 24 * 3600;
// Unwraps tried with one import token before it locks (counted in the store, so across
// processes): the admin may fix a wrong openssl command a few times, nobody may probe.
inline constexpr int64_t kMaxImportAttempts = 5;

// What the admin needs to wrap and upload material. The token is a secret of the admin's.
struct ImportParameters {
  std::string wrapping_key_pem;  // "-----BEGIN PUBLIC KEY-----…"
  std::string import_token;      // base64url of 32 random bytes
  int64_t expires_at = 0;        // unix seconds
};

// A new RSA-4096 key pair and token for `env`, replacing any earlier ones (stored).
StatusOr<ImportParameters> CreateImportParameters(Store& store, KeyProvider& platform,
                                                  const EnvironmentRecord& env, int64_t now,
                                                  int64_t lifetime_seconds);

// Checks `import_token` for `env` (unknown, another environment's, used, expired, locked),
// unwraps `wrapped_material` with the environment's wrapping key and checks it is 32 bytes;
// then spends the token. A wrong wrapping does not spend the token, so the admin can fix the
// command, but each unwrap counts: after kMaxImportAttempts the token is locked. Every failed
// unwrap gets the same error, whatever the cause (no padding oracle).
StatusOr<SecretBytes> OpenImportedMaterial(Store& store, KeyProvider& platform,
                                           const EnvironmentRecord& env, ByteView wrapped_material,
                                           std::string_view import_token, int64_t now);

}  // namespace ekm
