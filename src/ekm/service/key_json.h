// JSON forms of the customer-key results, shared by ekmd's routes (which write them) and the
// client (which reads them back), so the CLI prints the same thing in local and server mode.
// None of these types holds key material.
#pragma once

#include <nlohmann/json.hpp>

#include "ekm/base/status.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

nlohmann::json KeyValidationToJson(const KeyValidation& v);
KeyValidation KeyValidationFromJson(const nlohmann::json& j);

nlohmann::json CustomerKeyInfoToJson(const CustomerKeyInfo& info);
CustomerKeyInfo CustomerKeyInfoFromJson(const nlohmann::json& j);

nlohmann::json KeyPolicyAdviceToJson(const KeyPolicyAdvice& a);
KeyPolicyAdvice KeyPolicyAdviceFromJson(const nlohmann::json& j);

// JSON text that never throws: bytes that are not UTF-8 (an admin's pasted key id is recorded as
// typed, whatever it holds) become U+FFFD instead of an exception.
std::string JsonText(const nlohmann::json& j, int indent = -1);
std::string JsonText(const nlohmann::ordered_json& j, int indent = -1);

// "enabled", "disabled", "unknown".
std::string_view CmkRotationName(CmkRotation r);

}  // namespace ekm
