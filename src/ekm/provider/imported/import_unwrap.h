// The store-free half of importing key material: reading the import token the admin pastes and
// unwrapping the RSA-OAEP upload. Both take untrusted input; they are separate from
// key_material_import (which checks the token against the store) so a fuzzer reaches them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr size_t kImportedMaterialSize = 32;  // an AES-256 key
inline constexpr size_t kImportTokenSize = 32;
inline constexpr size_t kImportWrappingKeyBits = 4096;
inline constexpr size_t kWrappedMaterialSize = kImportWrappingKeyBits / 8;

// The two openssl commands that wrap material for upload, for help texts and error hints.
std::string ImportOpensslCommands(std::string_view dir);

// The SHA-256 of the import token (base64url of 32 bytes, maybe with a trailing newline as
// saved to a file): what the store keeps. InvalidArgument, with `fix` as the hint, if malformed.
StatusOr<Bytes> ImportTokenHash(std::string_view import_token, std::string_view fix);

// The upload's size is public and checked before an attempt is counted: exactly one RSA-4096
// ciphertext.
Status CheckWrappedMaterialSize(ByteView wrapped_material);

// Unwraps `wrapped_material` (RSAES-OAEP, SHA-256, MGF1-SHA-256) with the wrapping private key
// (DER). nullopt for every way the unwrap can fail, bad padding or a plaintext that is not
// 32 bytes alike: telling them apart would be a padding oracle. An error only when the key
// itself cannot be used.
StatusOr<std::optional<SecretBytes>> UnwrapImportedMaterial(const SecretBytes& private_key_der,
                                                            ByteView wrapped_material);

}  // namespace ekm
