#include "ekm/auth/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "ekm/base/encoding.h"
#include "ekm/base/random.h"

namespace ekm::auth {

namespace {

constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int Base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

Status Malformed() {
  return InvalidArgumentError("the bearer token is malformed",
                              "an ekm token looks like ekm_<16 hex>_<43 base64url characters>");
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kOwner:
      return "owner";
    case Role::kKeyManager:
      return "key-manager";
    case Role::kApp:
      return "app";
    case Role::kAuditor:
      return "auditor";
  }
  return "unknown";
}

StatusOr<Role> ParseRole(std::string_view text) {
  for (Role r : {Role::kAdmin, Role::kOwner, Role::kKeyManager, Role::kApp, Role::kAuditor}) {
    if (text == RoleName(r)) return r;
  }
  return InvalidArgumentError("role \"" + std::string(text) + "\" is not known",
                              "use admin, owner, key-manager, app or auditor");
}

Bytes SecretHash(const SecretBytes& secret) {
  Bytes out(32);
  unsigned int n = 0;
  auto s = secret.RevealForCrypto();
  if (EVP_Digest(s.data(), s.size(), out.data(), &n, EVP_sha256(), nullptr) != 1 || n != 32) {
    return {};  // never matches (SecretMatches checks the size)
  }
  return out;
}

bool SecretMatches(const SecretBytes& presented, ByteView stored_sha256) {
  Bytes h = SecretHash(presented);
  return h.size() == 32 && stored_sha256.size() == 32 &&
         CRYPTO_memcmp(h.data(), stored_sha256.data(), 32) == 0;
}

StatusOr<GeneratedToken> GenerateToken() {
  std::array<uint8_t, kTokenIdHexLength / 2> id_bytes{};
  EKM_RETURN_IF_ERROR(RandomBytes(id_bytes));
  EKM_ASSIGN_OR_RETURN(SecretBytes secret, RandomSecret(kTokenSecretBytes));
  GeneratedToken t;
  t.id = HexEncode(ByteView(id_bytes.data(), id_bytes.size()));
  t.secret_sha256 = SecretHash(secret);
  // The text is built in place in SecretBytes, so no std::string copy of the secret remains.
  t.text = SecretBytes(kTokenTextLength);
  auto out = t.text.MutableForCrypto();
  size_t pos = 0;
  for (char c : kTokenPrefix) out[pos++] = static_cast<uint8_t>(c);
  for (char c : t.id) out[pos++] = static_cast<uint8_t>(c);
  out[pos++] = '_';
  auto in = secret.RevealForCrypto();
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : in) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[pos++] = static_cast<uint8_t>(kBase64Url[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out[pos++] = static_cast<uint8_t>(kBase64Url[(acc << (6 - bits)) & 0x3f]);
  acc = 0;
  if (pos != kTokenTextLength) return InternalError("token text has the wrong length");
  return t;
}

std::optional<std::string> TokenIdOf(std::string_view text) {
  if (!text.starts_with(kTokenPrefix)) return std::nullopt;
  std::string_view rest = text.substr(kTokenPrefix.size());
  if (rest.size() < kTokenIdHexLength + 1 || rest[kTokenIdHexLength] != '_') return std::nullopt;
  std::string_view id = rest.substr(0, kTokenIdHexLength);
  if (!std::all_of(id.begin(), id.end(), IsLowerHex)) return std::nullopt;
  return std::string(id);
}

StatusOr<PresentedToken> ParseToken(std::string_view text) {
  if (text.size() != kTokenTextLength) return Malformed();
  std::optional<std::string> id = TokenIdOf(text);
  if (!id) return Malformed();
  std::string_view secret_text = text.substr(kTokenPrefix.size() + kTokenIdHexLength + 1);
  PresentedToken t;
  t.id = std::move(*id);
  t.secret = SecretBytes(kTokenSecretBytes);
  auto out = t.secret.MutableForCrypto();
  size_t pos = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : secret_text) {
    int v = Base64UrlValue(c);
    if (v < 0) return Malformed();
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (pos >= out.size()) return Malformed();
      out[pos++] = static_cast<uint8_t>((acc >> bits) & 0xff);
    }
  }
  // 43 characters carry 258 bits: the last 2 must be zero (one canonical text per secret).
  if (pos != kTokenSecretBytes || (acc & ((1u << bits) - 1)) != 0) return Malformed();
  return t;
}

Principal Principal::LocalOperator() {
  Principal p;
  p.local_operator = true;
  p.role = Role::kAdmin;
  return p;
}

std::string Principal::Actor() const {
  return local_operator ? std::string("local") : "token:" + token_id;
}

bool Principal::MayUseEnvironment(std::string_view environment) const {
  if (!EnvironmentRestricted()) return true;
  return std::find(environments.begin(), environments.end(), environment) != environments.end();
}

}  // namespace ekm::auth
