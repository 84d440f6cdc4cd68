// Fuzz target: API tokens (ekm/auth/token.h), the bearer text every request to ekmd presents.
// Contract checks: an accepted token re-encodes to exactly the same text (one canonical text per
// secret) and TokenIdOf agrees with its id; every rejection is kInvalidArgument with a
// printable message that never quotes a token-length text's secret part.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ekm/auth/token.h"
#include "ekm/base/encoding.h"

namespace {

bool PrintableAscii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

bool LooksLikeSecret(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ekm::auth::ParseRole(text);
  const std::optional<std::string> id = ekm::auth::TokenIdOf(text);
  auto parsed = ekm::auth::ParseToken(text);
  if (parsed.ok()) {
    if (!id || *id != parsed->id) __builtin_trap();
    if (parsed->secret.size() != ekm::auth::kTokenSecretBytes) __builtin_trap();
    const std::string again = std::string(ekm::auth::kTokenPrefix) + parsed->id + "_" +
                              ekm::Base64UrlEncode(parsed->secret.RevealForCrypto());
    if (again != text) __builtin_trap();
    const ekm::Bytes hash = ekm::auth::SecretHash(parsed->secret);
    if (!ekm::auth::SecretMatches(parsed->secret, hash)) __builtin_trap();
  } else {
    const ekm::Status s = parsed.status();
    if (s.code() != ekm::StatusCode::kInvalidArgument) __builtin_trap();
    if (s.message().empty() || !PrintableAscii(s.message()) || !PrintableAscii(s.hint())) {
      __builtin_trap();
    }
    // A token-length text's secret part (the last 43 characters) is never quoted when it could
    // be a secret (all base64url; the fuzzer otherwise just copies the message's own words).
    if (size == ekm::auth::kTokenTextLength) {
      const std::string_view secret = text.substr(size - ekm::auth::kTokenSecretTextLength);
      if (LooksLikeSecret(secret) && (s.message().find(secret) != std::string::npos ||
                                      s.hint().find(secret) != std::string::npos)) {
        __builtin_trap();
      }
    }
  }
  return 0;
}
