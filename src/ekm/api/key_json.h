// JSON forms of the customer-key results, shared by ekmd's routes (which write them) and the
// client (which reads them back), so the CLI prints the same thing in local and server mode.
// None of these types holds key material.
#pragma once

#include <nlohmann/json.hpp>

#include "ekm/api/types.h"
#include "ekm/base/json_text.h"  // JsonText, for every user of these forms
#include "ekm/base/status.h"

namespace ekm {

nlohmann::json KeyValidationToJson(const KeyValidation& v);
KeyValidation KeyValidationFromJson(const nlohmann::json& j);

nlohmann::json CustomerKeyInfoToJson(const CustomerKeyInfo& info);
CustomerKeyInfo CustomerKeyInfoFromJson(const nlohmann::json& j);

nlohmann::json KeyPolicyAdviceToJson(const KeyPolicyAdvice& a);
KeyPolicyAdvice KeyPolicyAdviceFromJson(const nlohmann::json& j);

// "enabled", "disabled", "unknown".
std::string_view CmkRotationName(CmkRotation r);

}  // namespace ekm
