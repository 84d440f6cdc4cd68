#include "ekm/cli/cli_context.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>

#include "ekm/service/ekm_service.h"

namespace ekm::cli {
namespace {

StatusOr<std::unique_ptr<Connection>> Connect(const GlobalFlags& g) {
  if (!g.server.empty()) {
    // Every API route but /healthz needs a token: say so before sending anything.
    if (g.token.empty()) {
      return UnauthenticatedError("server mode needs an API token",
                                  "pass --token or EKM_TOKEN (`ekm token create` mints one; the "
                                  "first admin token is in <data-dir>/bootstrap-admin-token)");
    }
    return Connection::Remote(g.server, g.token, g.tls);
  }
  EkmOptions o;
  o.data_dir = g.data_dir.empty() ? kDefaultDataDir : g.data_dir;
  o.root_key_file = g.root_key_file;
  o.store = g.store;
  o.aws.principal_arn = g.aws_principal_arn;
  o.aws.ca_file = g.aws_ca_file;
  // A CLI process lives for one command: lease nonces in small blocks so that short runs do
  // not use up a data key's message budget.
  o.nonce_lease_size = 16;
  return Connection::Local(o, LocalOperator());
}

}  // namespace

int Fail(const Status& s) {
  std::string line = s.message();
  if (!s.hint().empty()) line += ": " + s.hint();
  // One line on stderr, whatever the message holds.
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::fprintf(stderr, "ekm: error: %s\n", line.c_str());
  return kExitFailure;
}

CallContext LocalOperator() {
  const struct passwd* pw = ::getpwuid(::getuid());
  return CallContext::Operator(std::string("cli:") +
                               (pw && pw->pw_name ? pw->pw_name : std::to_string(::getuid())));
}

bool Cli::GivenOnCommandLine(std::string_view flag) const {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") break;
    if (a == flag ||
        (a.size() > flag.size() && a.substr(0, flag.size()) == flag && a[flag.size()] == '=')) {
      return true;
    }
  }
  return false;
}

void Cli::WithConnection(const std::function<Status(Connection&)>& fn) {
  // Flags on the command line conflict; an environment variable yields to the other mode's
  // flag, and EKM_SERVER wins over EKM_DATA_DIR (so a shell that exports both, as
  // scripts/quickstart.sh does, talks to the server).
  const bool data_dir_flag = GivenOnCommandLine("--data-dir") || GivenOnCommandLine("--store");
  const bool server_flag = GivenOnCommandLine("--server");
  if (data_dir_flag && server_flag) {
    rc = Fail(
        InvalidArgumentError(std::string(GivenOnCommandLine("--store") ? "--store" : "--data-dir") +
                                 " and --server both given",
                             "use one: local mode or server mode"));
    return;
  }
  GlobalFlags chosen = g;
  if (data_dir_flag) chosen.server.clear();
  auto backend = Connect(chosen);
  if (!backend.ok()) {
    rc = Fail(backend.status());
    return;
  }
  Status s = fn(**backend);
  if (!s.ok()) rc = Fail(s);
}

}  // namespace ekm::cli
