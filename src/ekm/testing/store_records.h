// Records for store tests (the store's own, the conformance suite): an EK and a DK with fixed
// filler bytes, a lifecycle event, and a whole audit chain read back.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ekm/store/store.h"

namespace ekm::testing {

inline EnvironmentKeyRecord Ek(uint32_t version = 1) {
  return EnvironmentKeyRecord{0, version, "platform", "root", Bytes(70, 0xab), 100};
}

inline DataKeyRecord Dk(int64_t env, std::string scope, uint32_t version, uint8_t fill) {
  return DataKeyRecord{env, std::move(scope), version, 1, Bytes(61, fill), 100, 0};
}

inline LifecycleEventRecord Event(std::string ws, std::string type, int64_t at) {
  LifecycleEventRecord r;
  r.at_ms = at;
  r.workspace = std::move(ws);
  r.type = std::move(type);
  r.actor = "cli:test";
  r.detail = "{}";
  return r;
}

inline std::vector<LifecycleEventRecord> WholeChain(Store& store, const std::string& chain) {
  LifecycleEventFilter f;
  f.workspace = chain;
  f.limit = 100000;
  return *store.ListLifecycleEvents(f);
}

}  // namespace ekm::testing
