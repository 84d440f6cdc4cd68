#include "ekm/base/endian.h"
#include "ekm/provider/key_provider.h"

namespace ekm {

Bytes EncodeEncryptionContext(const EncryptionContext& context) {
  Bytes out;
  uint8_t len[4];
  for (const auto& [k, v] : context) {
    StoreBigEndian32(len, static_cast<uint32_t>(k.size()));
    out.insert(out.end(), len, len + 4);
    Append(out, AsBytes(k));
    StoreBigEndian32(len, static_cast<uint32_t>(v.size()));
    out.insert(out.end(), len, len + 4);
    Append(out, AsBytes(v));
  }
  return out;
}

std::string_view CmkKeyStateName(CmkKeyState state) {
  switch (state) {
    case CmkKeyState::kEnabled:
      return "enabled";
    case CmkKeyState::kDisabled:
      return "disabled";
    case CmkKeyState::kPendingDeletion:
      return "pending_deletion";
    case CmkKeyState::kDestroyed:
      return "destroyed";
    case CmkKeyState::kUnknown:
      break;
  }
  return "unknown";
}

void ProviderRegistry::Register(KeyProviderPtr provider) {
  std::string name(provider->Name());
  providers_[name] = std::move(provider);
}

StatusOr<KeyProvider*> ProviderRegistry::Get(std::string_view name) const {
  auto it = providers_.find(name);
  if (it != providers_.end()) return it->second.get();
  std::string configured;
  for (const auto& [n, p] : providers_) {
    if (!configured.empty()) configured += ", ";
    configured += n;
  }
  return NotFoundError("key provider \"" + std::string(name) + "\" is not configured",
                       "configured providers: " + (configured.empty() ? "none" : configured));
}

}  // namespace ekm
