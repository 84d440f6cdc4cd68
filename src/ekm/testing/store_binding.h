// A store binding for tests that open a Store of their own (no data directory, no root key
// file): a fixed fingerprint and MAC key, the same for every open of the test's store.
#pragma once

#include "ekm/store/store_integrity.h"

namespace ekm::testing {

inline StoreBinding TestStoreBinding() {
  StoreBinding b;
  b.root_key_fingerprint = Bytes(16, 0x5a);
  b.mac_key = SecretBytes(Bytes(32, 0x42));
  b.root_key_source = "the test root key";
  return b;
}

}  // namespace ekm::testing
