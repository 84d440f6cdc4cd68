// Fuzz target: wrapped keys read back from the store (an attacker with write access to the
// database controls them). Targets UnwrapKey and PlatformKeyProvider::Unwrap framing.
#include <cstddef>
#include <cstdint>

#include "ekm/crypto/key_wrap.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ekm::SecretBytes kek(32);
  (void)ekm::UnwrapKey(kek, ekm::ByteView(data, size), ekm::ByteView(data, size > 8 ? 8 : size));
  return 0;
}
