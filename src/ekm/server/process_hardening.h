// What ekmd does to its own process before it loads a key: no core dump (and no ptrace or
// /proc/<pid>/mem access by other processes of the same user), so a crash or a debugger never
// writes the root key, unwrapped keys or plaintext to disk. docs/operations.md.
#pragma once

#include "ekm/base/status.h"

namespace ekm {

// Sets RLIMIT_CORE to 0 (soft and hard: the process cannot raise it again) and marks the
// process not dumpable (prctl PR_SET_DUMPABLE 0).
Status DisableCoreDumps();

}  // namespace ekm
