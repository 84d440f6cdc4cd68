// API tokens: the bearer credential ekmd checks on every request (docs/api.md "Authentication
// and roles").
//
// Text form: ekm_<16 hex: token id, public>_<43 base64url: 32 random bytes, the secret>.
// The store keeps only SHA-256(secret); the secret lives in SecretBytes, is compared with
// CRYPTO_memcmp, and is never logged, printed (except once, to its creator) or put in an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm::auth {

inline constexpr std::string_view kTokenPrefix = "ekm_";
inline constexpr size_t kTokenIdHexLength = 16;
inline constexpr size_t kTokenSecretBytes = 32;
inline constexpr size_t kTokenSecretTextLength = 43;  // base64url of 32 bytes, no padding
inline constexpr size_t kTokenTextLength =
    kTokenPrefix.size() + kTokenIdHexLength + 1 + kTokenSecretTextLength;

enum class Role { kAdmin, kOwner, kKeyManager, kApp, kAuditor };

// "admin", "owner", "key-manager", "app", "auditor".
std::string_view RoleName(Role role);
// InvalidArgument naming the known roles.
StatusOr<Role> ParseRole(std::string_view text);

// A freshly generated token: its public id and the whole text (which holds the secret).
struct GeneratedToken {
  std::string id;
  SecretBytes text;     // "ekm_<id>_<secret>": shown once to its creator, never stored
  Bytes secret_sha256;  // what the store keeps
};
StatusOr<GeneratedToken> GenerateToken();

// A token as presented by a caller, split; InvalidArgument (never quoting the text) when it is
// not of the form above.
struct PresentedToken {
  std::string id;
  SecretBytes secret;  // the 32 decoded bytes
};
StatusOr<PresentedToken> ParseToken(std::string_view text);
// Only the id, when the text has one in the right place (for audit records of bad tokens).
std::optional<std::string> TokenIdOf(std::string_view text);

Bytes SecretHash(const SecretBytes& secret);
// Constant-time comparison of SHA-256(presented) with the stored hash.
bool SecretMatches(const SecretBytes& presented, ByteView stored_sha256);

// Who is calling: a token (ekmd) or the platform operator on the data directory (local mode).
struct Principal {
  bool local_operator = false;
  std::string token_id;
  Role role = Role::kAuditor;
  std::string workspace;                  // empty for admin tokens
  std::vector<std::string> environments;  // empty: every environment of the workspace
  int64_t expires_at = 0;                 // unix seconds; 0: never

  static Principal LocalOperator();
  // "token:<id>" (the actor lifecycle events record), or "local".
  std::string Actor() const;
  bool IsAdmin() const { return local_operator || role == Role::kAdmin; }
  bool EnvironmentRestricted() const { return !local_operator && !environments.empty(); }
  bool MayUseEnvironment(std::string_view environment) const;
};

}  // namespace ekm::auth
