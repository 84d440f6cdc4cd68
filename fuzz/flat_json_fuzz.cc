// Fuzz target, differential: the data plane's flat JSON fast path (ekm/api/flat_json.h)
// against nlohmann::json. Whatever the fast path accepts, nlohmann::json must read as the same
// object: the same keys, each a string with the same value, no others. (What it rejects goes to
// nlohmann::json in the server, so a rejection is always safe.)
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "ekm/api/flat_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ekm::FlatFields fields;
  size_t count = 0;
  if (!ekm::ParseFlatStringObject(body, &fields, &count)) return 0;
  if (count > ekm::kMaxFlatFields) __builtin_trap();
  const nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || doc.size() != count) __builtin_trap();
  for (size_t i = 0; i < count; ++i) {
    const auto it = doc.find(std::string(fields[i].key));
    if (it == doc.end() || !it->is_string()) __builtin_trap();
    if (it->get_ref<const std::string&>() != fields[i].value) __builtin_trap();
    const std::string_view* v = ekm::FlatValue(fields, count, fields[i].key);
    if (v == nullptr || *v != fields[i].value) __builtin_trap();
  }
  return 0;
}
