#include "ekm/store/store_integrity.h"

#include <openssl/crypto.h>

#include "ekm/base/endian.h"
#include "ekm/crypto/hmac.h"

namespace ekm {

namespace {

// label | 00, then each field: integers big-endian of fixed width, strings and blobs with
// their 4-byte big-endian length first (docs/format.md "Store row MACs").
class Encoder {
 public:
  explicit Encoder(std::string_view label) {
    Append(out_, AsBytes(label));
    out_.push_back(0);
  }
  Encoder& U64(uint64_t v) {
    uint8_t b[8];
    StoreBigEndian64(b, v);
    out_.insert(out_.end(), b, b + 8);
    return *this;
  }
  Encoder& U32(uint32_t v) {
    uint8_t b[4];
    StoreBigEndian32(b, v);
    out_.insert(out_.end(), b, b + 4);
    return *this;
  }
  Encoder& Field(ByteView v) {
    U32(static_cast<uint32_t>(v.size()));
    Append(out_, v);
    return *this;
  }
  Encoder& Field(std::string_view v) { return Field(AsBytes(v)); }
  const Bytes& bytes() const { return out_; }

 private:
  Bytes out_;
};

Status Check(const StatusOr<Bytes>& expected, ByteView mac, const std::string& what) {
  if (!expected.ok()) return expected.status();
  if (mac.size() != expected->size() ||
      CRYPTO_memcmp(mac.data(), expected->data(), mac.size()) != 0) {
    return StoreModifiedError(what);
  }
  return Status::Ok();
}

std::string Where(const EnvironmentRecord& env) { return env.workspace + "/" + env.name; }

}  // namespace

Status StoreModifiedError(const std::string& what) {
  return DataLossError(
      what + " does not match its integrity check: the store was modified outside ekm",
      "nothing is wrapped or unwrapped under it: restore the store from a backup taken before "
      "the change, and find out who could write to it (docs/store.md, \"Integrity\")");
}

StatusOr<Bytes> StoreRowMacs::EnvironmentKey(const EnvironmentRecord& env,
                                             const EnvironmentKeyRecord& ek) const {
  Encoder e("ekm store environment key v1");
  e.U64(static_cast<uint64_t>(env.id)).Field(env.workspace).Field(env.name).U32(ek.version);
  e.Field(ek.cmk_provider).Field(ek.cmk_key_id).Field(ByteView(ek.wrapped));
  return HmacSha256(key_, e.bytes());
}

StatusOr<Bytes> StoreRowMacs::CurrentEnvironmentKey(const EnvironmentRecord& env) const {
  Encoder e("ekm store current environment key v1");
  e.U64(static_cast<uint64_t>(env.id)).Field(env.workspace).Field(env.name);
  e.U32(env.current_ek_version);
  return HmacSha256(key_, e.bytes());
}

StatusOr<Bytes> StoreRowMacs::WorkspaceDefaultKey(std::string_view workspace,
                                                  const Store::WorkspaceDefaultKeyRecord& r) const {
  Encoder e("ekm store workspace default key v1");
  e.U64(static_cast<uint64_t>(r.workspace_id)).Field(workspace);
  e.Field(r.cmk_provider).Field(r.cmk_key_id);
  return HmacSha256(key_, e.bytes());
}

Status StoreRowMacs::CheckEnvironmentKey(const EnvironmentRecord& env,
                                         const EnvironmentKeyRecord& ek, ByteView mac) const {
  return Check(EnvironmentKey(env, ek), mac,
               "environment key v" + std::to_string(ek.version) + " of " + Where(env));
}

Status StoreRowMacs::CheckCurrentEnvironmentKey(const EnvironmentRecord& env, ByteView mac) const {
  return Check(CurrentEnvironmentKey(env), mac,
               "the current environment key (v" + std::to_string(env.current_ek_version) + ") of " +
                   Where(env));
}

Status StoreRowMacs::CheckWorkspaceDefaultKey(std::string_view workspace,
                                              const Store::WorkspaceDefaultKeyRecord& r,
                                              ByteView mac) const {
  return Check(WorkspaceDefaultKey(workspace, r), mac,
               "the default customer main key of workspace " + std::string(workspace));
}

}  // namespace ekm
