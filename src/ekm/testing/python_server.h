// A small server written in Python for tests, where there is no real peer to run instead
// (instance metadata, container credentials) or a plain HTTP/HTTPS peer is enough (the
// transport). The script prints its port on its first line; the destructor stops it.
#pragma once

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

extern char** environ;

namespace ekm::testing {

// A child process running `python3 -c SCRIPT ARGS...` that prints its port on the first line.
class PythonServer {
 public:
  static std::unique_ptr<PythonServer> Start(const std::string& script,
                                             const std::vector<std::string>& args = {}) {
    int fds[2];
    if (pipe(fds) != 0) return nullptr;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<std::string> argv_s = {"python3", "-c", script};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, "python3", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      return nullptr;
    }
    auto s = std::unique_ptr<PythonServer>(new PythonServer(pid));
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && poll(&p, 1, 15000) > 0) {
      char buf[64];
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    close(fds[0]);
    s->port_ = std::atoi(line.c_str());
    if (s->port_ <= 0) return nullptr;
    return s;
  }
  ~PythonServer() {
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
  }
  int port() const { return port_; }
  std::string url(const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port_);
  }

 private:
  explicit PythonServer(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  int port_ = 0;
};
}  // namespace ekm::testing
