// RepackStatus as JSON: the API's GET …/repack body, read back by EkmClient.
#pragma once

#include <nlohmann/json.hpp>

#include "ekm/api/types.h"

namespace ekm {

nlohmann::json RepackStatusToJson(const RepackStatus& s);
RepackStatus RepackStatusFromJson(const nlohmann::json& j);

// "in 5 h 3 min", "in 42 s": a duration as people read it.
std::string HumanDuration(int64_t seconds);

}  // namespace ekm
