// JSON text that never throws: bytes that are not UTF-8 (an admin's pasted key id is recorded as
// typed, whatever it holds) become U+FFFD instead of an exception.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace ekm {

std::string JsonText(const nlohmann::json& j, int indent = -1);
std::string JsonText(const nlohmann::ordered_json& j, int indent = -1);

// The one text of a time on the wire: RFC 3339 UTC of unix seconds `s`. "Never" (0) is written
// as each field documents it: JsonTimeOrNull as null, JsonTimeOrEmpty as "".
std::string JsonTime(int64_t s);
nlohmann::json JsonTimeOrNull(int64_t s);
std::string JsonTimeOrEmpty(int64_t s);

// The unix seconds of the RFC 3339 string `name` of `j` (base/clock.h ParseRfc3339); 0 when it
// is absent, null or not a time: the API writes "never" as null (or "").
int64_t JsonTimeSeconds(const nlohmann::json& j, const char* name);

}  // namespace ekm
