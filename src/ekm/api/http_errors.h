// The one mapping from Status to HTTP, and the one error body shape:
//   {"error":{"code":"not_found","message":"…","hint":"…"}}
#pragma once

#include <string>

#include "ekm/base/status.h"

namespace ekm {

int HttpStatusFor(StatusCode code);
std::string ErrorJson(const Status& status);

}  // namespace ekm
