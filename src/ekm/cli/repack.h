// The repack seen from `ekm`: its progress and inventory printed, and run in the foreground in
// local mode (ekmd runs it in the background).
#pragma once

#include <string>

#include "ekm/api/types.h"
#include "ekm/base/status.h"
#include "ekm/cli/connection.h"

namespace ekm::cli {

// "[##########..........]  50.0%  50000/100000 data keys  52000/s  ETA 1 s" (the bar only
// with `bar`).
std::string RepackProgressLine(const RepackStatus& s, bool bar);

void PrintRepackStatus(const RepackStatus& s, bool tty);

// Local mode: runs the repack to completion, progress on stderr (a bar on a terminal). Server
// mode: wakes ekmd's repack.
Status RunRepackInForeground(Connection& b, const std::string& ws, const std::string& env);

// After `ekm key set` changed the CMK: local mode repacks now; server mode says where to look.
Status AfterKeyChange(Connection& b, const std::string& ws, const std::string& env);

}  // namespace ekm::cli
