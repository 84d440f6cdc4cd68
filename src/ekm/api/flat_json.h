// A reader for the data plane's request bodies ({"plaintext": "…", "scope": "…"} and
// {"ciphertext": "…"}): flat JSON objects of plain strings, read without building a document.
// It accepts a strict subset of JSON — string values only, no escapes, printable ASCII only,
// no repeated key, at most kMaxFlatFields fields — and returns false for anything else, which
// the caller then gives to the full parser (nlohmann::json), which also words every error.
// Whatever it accepts, nlohmann::json reads the same way (flat_json_test checks it).
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace ekm {

struct FlatField {
  std::string_view key, value;  // views into the body
};
inline constexpr size_t kMaxFlatFields = 4;
using FlatFields = std::array<FlatField, kMaxFlatFields>;

bool ParseFlatStringObject(std::string_view body, FlatFields* fields, size_t* count);

// The value of `name` among the first `count` fields, or nullptr.
const std::string_view* FlatValue(const FlatFields& fields, size_t count, std::string_view name);

}  // namespace ekm
