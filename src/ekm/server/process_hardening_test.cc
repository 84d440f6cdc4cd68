#include "ekm/server/process_hardening.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ekm {
namespace {

// In a child process, so this test binary keeps its own limits.
TEST(ProcessHardeningTest, NoCoreDumpAndNotDumpable) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Start from a process that would dump: a core limit above 0 and dumpable.
    rlimit some{1 << 20, RLIM_INFINITY};
    getrlimit(RLIMIT_CORE, &some);
    some.rlim_cur = some.rlim_max;
    setrlimit(RLIMIT_CORE, &some);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (!DisableCoreDumps().ok()) _exit(10);
    rlimit now{};
    if (getrlimit(RLIMIT_CORE, &now) != 0 || now.rlim_cur != 0 || now.rlim_max != 0) _exit(11);
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) _exit(12);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: failed, 11: core limit not 0, 12: still dumpable";
}

}  // namespace
}  // namespace ekm
