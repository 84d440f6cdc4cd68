// The platform-managed key provider: the embedded default CMK. A 256-bit root key in a file
// (mode 0600) held by the platform, created on first start or supplied by path.
//
// Wrapped EK format (docs/format.md): 0x01 | root key fingerprint (8) | crypto/key_wrap.h blob,
// whose associated data is "ekm platform wrap v1" | the encryption context (sorted,
// length-prefixed) | the key id. The fingerprint names which root key wrapped an EK, so a wrong
// root key file gets a clear error instead of a bare authentication failure.
#pragma once

#include <memory>
#include <string>

#include "ekm/provider/key_provider.h"
#include "ekm/store/store_integrity.h"

namespace ekm {

inline constexpr std::string_view kPlatformProviderName = "platform";
inline constexpr std::string_view kPlatformRootKeyId = "root";

class PlatformKeyProvider : public KeyProvider {
 public:
  // Creates a new root key file at `path` (32 random bytes as 64 hex characters, mode 0600;
  // the file and its directory fsync'd). AlreadyExists if anything is there: a root key is
  // never overwritten.
  static Status CreateRootKeyFile(const std::string& path);
  // Loads the root key from `path`. The file holds 32 raw bytes or 64 hex characters; it must
  // be a regular file (not a symbolic link) owned by the user ekm runs as and not accessible
  // by group or others (base/key_file.h). NotFound when it does not exist.
  static StatusOr<std::unique_ptr<PlatformKeyProvider>> Open(const std::string& path);

  // What ties a store to this root key (store/store_integrity.h): the store fingerprint and
  // the row MAC key, both HKDF-SHA256 of the root key with their own labels, and the check of
  // platform EK rows stored before the rows were MAC'd. Valid while this provider lives.
  StatusOr<StoreBinding> BindStore() const;

  std::string_view Name() const override { return kPlatformProviderName; }
  bool CallsOut() const override { return false; }
  StatusOr<Bytes> Wrap(std::string_view key_id, const SecretBytes& key,
                       const EncryptionContext& context) override;
  StatusOr<SecretBytes> Unwrap(std::string_view key_id, ByteView wrapped,
                               const EncryptionContext& context) override;
  StatusOr<CmkDescription> Describe(std::string_view key_id) override;

  // Hex of the 8-byte fingerprint of the loaded root key (not secret: a one-way hash).
  const std::string& fingerprint() const { return fingerprint_hex_; }

 private:
  PlatformKeyProvider(SecretBytes root_key, std::string path);
  Status CheckKeyId(std::string_view key_id) const;

  SecretBytes root_key_;
  std::string path_;
  uint8_t fingerprint_[8] = {};
  std::string fingerprint_hex_;
};

}  // namespace ekm
