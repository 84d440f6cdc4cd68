// What the `ekm` commands share: the global flags, the exit code, the clock, the command line,
// and the storage of every command's option values (CLI11 writes into them while parsing and the
// callbacks read them afterwards, so they live as long as the Cli, not as locals of the Add*
// functions that declare them).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/cli/connection.h"
#include "ekm/client/ekm_client.h"

namespace ekm::cli {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr const char* kDefaultDataDir = "./ekm-data";

struct GlobalFlags {
  std::string data_dir;
  std::string store;  // --store: local mode on this store
  std::string server;
  std::string root_key_file;
  std::string token;
  bool json = false;
  std::string aws_principal_arn;
  std::string aws_ca_file;
  ClientTlsOptions tls;  // --ca-file, --client-cert, --client-key
};

// Says `s` on stderr as one line ("ekm: error: …: hint"); returns the exit code of a failure.
int Fail(const Status& s);

// The local user on the data directory: lifecycle events name them "cli:<user>" (ekmd names
// API callers by their tokens).
CallContext LocalOperator();

struct Cli {
  Cli(int argc, char** argv, const Clock& clock) : argc(argc), argv(argv), clock(clock) {}
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // A T that lives as long as this Cli: a command's option values.
  template <class T>
  T& Keep() {
    auto p = std::make_shared<T>();
    T& kept_value = *p;
    kept.push_back(std::move(p));
    return kept_value;
  }

  // Opens the connection the flags choose (local or server mode) and runs `fn` on it; a failure
  // to connect or of `fn` is said on stderr and sets rc.
  void WithConnection(const std::function<Status(Connection&)>& fn);

  // Whether `flag` (e.g. "--server") is on the command line, as "--flag V" or "--flag=V".
  bool GivenOnCommandLine(std::string_view flag) const;

  int argc;
  char** argv;
  // The one clock of this process: relative times (--since 24h) and token states.
  const Clock& clock;
  GlobalFlags g;
  int rc = 0;                               // the exit code
  std::vector<std::shared_ptr<void>> kept;  // what Keep made
};

}  // namespace ekm::cli
