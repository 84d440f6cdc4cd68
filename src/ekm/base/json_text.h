// JSON text that never throws: bytes that are not UTF-8 (an admin's pasted key id is recorded as
// typed, whatever it holds) become U+FFFD instead of an exception.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ekm {

std::string JsonText(const nlohmann::json& j, int indent = -1);
std::string JsonText(const nlohmann::ordered_json& j, int indent = -1);

}  // namespace ekm
