// Store integrity (docs/store.md "Integrity"): what ties a store to the platform root key.
//
// 1. The root key's store fingerprint is recorded in the store when it is created and checked
//    at every open: a store never opens with another root key (what is wrapped under its own
//    would look lost, and new keys would be wrapped under the wrong one).
// 2. The rows that decide which key wraps what carry an HMAC-SHA256 under a key derived from
//    the root key: every EK row (its environment, version, CMK provider and key id, wrapped
//    blob), each environment's current-EK pointer and each workspace's default CMK. Whoever
//    can write to the store without holding the root key cannot point an environment at an EK
//    or a CMK of their choosing: the store refuses such a row (DataLoss, "the store was
//    modified outside ekm") before anything is unwrapped or wrapped under it.
// Every Store implementation computes these MACs when it writes such a row and checks them
// whenever it reads one. The canonical encodings are in docs/format.md ("Store row MACs").
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/store/store.h"

namespace ekm {

// Given to a Store when it is opened (PlatformKeyProvider::BindStore derives it).
struct StoreBinding {
  // Public: HKDF-SHA256 of the root key with its own label, never a hash of the key itself.
  Bytes root_key_fingerprint;
  // HKDF-SHA256 of the root key with another label: the key of the row MACs.
  SecretBytes mac_key;
  // Names the root key in errors ("the root key in /var/lib/ekm/root.key").
  std::string root_key_source;
  // Only while a store from before the MACs is upgraded: vouches for each EK row stored then
  // (an error stops the upgrade: e.g. a platform EK wrapped under another root key). May be
  // empty.
  std::function<Status(const EnvironmentKeyRecord&)> check_legacy_ek;
};

// Computes and checks the MACs of the rows named above.
class StoreRowMacs {
 public:
  explicit StoreRowMacs(SecretBytes key) : key_(std::move(key)) {}

  // `env` gives the id, workspace and name the EK belongs to.
  StatusOr<Bytes> EnvironmentKey(const EnvironmentRecord& env,
                                 const EnvironmentKeyRecord& ek) const;
  // Over the environment's id, workspace, name and current_ek_version.
  StatusOr<Bytes> CurrentEnvironmentKey(const EnvironmentRecord& env) const;
  StatusOr<Bytes> WorkspaceDefaultKey(std::string_view workspace,
                                      const Store::WorkspaceDefaultKeyRecord& r) const;

  // OK when `mac` is the row's MAC; otherwise DataLoss naming the row and saying the store was
  // modified outside ekm.
  Status CheckEnvironmentKey(const EnvironmentRecord& env, const EnvironmentKeyRecord& ek,
                             ByteView mac) const;
  Status CheckCurrentEnvironmentKey(const EnvironmentRecord& env, ByteView mac) const;
  Status CheckWorkspaceDefaultKey(std::string_view workspace,
                                  const Store::WorkspaceDefaultKeyRecord& r, ByteView mac) const;

 private:
  SecretBytes key_;
};

// The refusal of a row whose MAC does not match.
Status StoreModifiedError(const std::string& what);

}  // namespace ekm
