#include "ekm/server/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ekm {

Status DisableCoreDumps() {
  const rlimit none{0, 0};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) {
    return InternalError(std::string("cannot disable core dumps (setrlimit RLIMIT_CORE): ") +
                         std::strerror(errno));
  }
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return InternalError(std::string("cannot mark the process not dumpable (prctl "
                                     "PR_SET_DUMPABLE): ") +
                         std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace ekm
