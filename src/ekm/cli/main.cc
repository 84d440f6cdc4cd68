// ekm: the command-line interface. Local mode (--data-dir / EKM_DATA_DIR) runs the key hierarchy
// in this process on a data directory; server mode (--server / EKM_SERVER) talks to ekmd.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "ekm/base/clock.h"
#include "ekm/cli/backend.h"
#include "ekm/service/ekm_service.h"

namespace ekm::cli {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr const char* kDefaultDataDir = "./ekm-data";

struct GlobalFlags {
  std::string data_dir;
  std::string server;
  std::string root_key_file;
  std::string token;
  bool json = false;
};

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

Source StdinSource() {
  return [](uint8_t* buf, size_t cap) -> StatusOr<size_t> {
    for (;;) {
      ssize_t n = ::read(STDIN_FILENO, buf, cap);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      return FailedPreconditionError(std::string("cannot read standard input: ") +
                                     std::strerror(errno));
    }
  };
}

Sink StdoutSink() {
  return [](ByteView data) -> Status {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(STDOUT_FILENO, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return FailedPreconditionError(std::string("cannot write standard output: ") +
                                       std::strerror(errno));
      }
      off += static_cast<size_t>(n);
    }
    return Status::Ok();
  };
}

StatusOr<std::unique_ptr<Backend>> OpenBackend(const GlobalFlags& g) {
  if (!g.server.empty()) return NewRemoteBackend(g.server, g.token);
  EkmOptions o;
  o.data_dir = g.data_dir.empty() ? kDefaultDataDir : g.data_dir;
  o.root_key_file = g.root_key_file;
  // A CLI process lives for one command: lease nonces in small blocks so that short runs do
  // not use up a data key's message budget.
  o.nonce_lease_size = 16;
  return NewLocalBackend(o);
}

void PrintWorkspaces(const std::vector<WorkspaceInfo>& list, bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& w : list) {
      j.push_back({{"name", w.name}, {"created_at", FormatRfc3339(FromUnixSeconds(w.created_at))}});
    }
    std::cout << nlohmann::json{{"workspaces", j}}.dump(2) << "\n";
    return;
  }
  if (list.empty()) {
    std::cerr << "no workspaces yet: create one with `ekm workspace create NAME`\n";
    return;
  }
  std::printf("%-32s %s\n", "NAME", "CREATED");
  for (const auto& w : list) {
    std::printf("%-32s %s\n", w.name.c_str(), FormatRfc3339(FromUnixSeconds(w.created_at)).c_str());
  }
}

void PrintEnvironments(const std::string& ws, const std::vector<EnvironmentInfo>& list,
                       bool json) {
  if (json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : list) {
      j.push_back({{"workspace", e.workspace},
                   {"name", e.name},
                   {"created_at", FormatRfc3339(FromUnixSeconds(e.created_at))},
                   {"cmk", {{"provider", e.cmk_provider}, {"key_id", e.cmk_key_id}}},
                   {"ek_version", e.ek_version}});
    }
    std::cout << nlohmann::json{{"environments", j}}.dump(2) << "\n";
    return;
  }
  if (list.empty()) {
    std::cerr << "workspace " << ws << " has no environments yet: create one with "
              << "`ekm environment create " << ws << " NAME`\n";
    return;
  }
  std::printf("%-24s %-22s %-10s %s\n", "NAME", "CREATED", "EK", "CMK");
  for (const auto& e : list) {
    std::string ek = "v" + std::to_string(e.ek_version);
    std::string cmk = e.cmk_provider + ":" + e.cmk_key_id;
    std::printf("%-24s %-22s %-10s %s\n", e.name.c_str(),
                FormatRfc3339(FromUnixSeconds(e.created_at)).c_str(), ek.c_str(), cmk.c_str());
  }
}

int Run(int argc, char** argv) {
  CLI::App app{
      "ekm: Enterprise Key Management for multi-tenant platforms (bring your own key).\n"
      "Runs against a local data directory (--data-dir, default " +
      std::string(kDefaultDataDir) + ") or a running ekmd (--server URL).",
      "ekm"};
  app.set_version_flag("--version", "ekm 0.1.0");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    std::string msg = e.what();
    std::string name = a->get_name();
    for (const CLI::App* p = a->get_parent(); p != nullptr; p = p->get_parent()) {
      name = p->get_name() + " " + name;
    }
    return "ekm: error: " + msg + " (see `" + name + " --help`)\n";
  });

  GlobalFlags g;
  app.add_option("--data-dir", g.data_dir,
                 "Local data directory (store and root key) [env: EKM_DATA_DIR] [default: " +
                     std::string(kDefaultDataDir) + "]")
      ->envname("EKM_DATA_DIR");
  app.add_option("--server", g.server, "URL of a running ekmd, e.g. http://127.0.0.1:8080 "
                                       "[env: EKM_SERVER]")
      ->envname("EKM_SERVER");
  app.add_option("--root-key-file", g.root_key_file,
                 "Platform root key file (local mode) [default: <data-dir>/root.key]");
  app.add_option("--token", g.token, "API token for --server [env: EKM_TOKEN]")
      ->envname("EKM_TOKEN");
  app.add_flag("--json", g.json, "Print lists as JSON");

  int rc = 0;
  auto with_backend = [&](auto fn) {
    if (!g.server.empty() && app.get_option("--data-dir")->count() > 0) {
      rc = Fail(InvalidArgumentError("--data-dir and --server both given",
                                     "use one: local mode or server mode"));
      return;
    }
    auto backend = OpenBackend(g);
    if (!backend.ok()) {
      rc = Fail(backend.status());
      return;
    }
    Status s = fn(**backend);
    if (!s.ok()) rc = Fail(s);
  };

  // ekm init
  auto* init = app.add_subcommand(
      "init", "Create the data directory: the platform root key (mode 0600) and the store");
  init->callback([&] {
    if (!g.server.empty()) {
      rc = Fail(InvalidArgumentError("init works on a local data directory, not on --server",
                                     "ekmd initializes its own data directory on first start"));
      return;
    }
    EkmOptions o;
    o.data_dir = g.data_dir.empty() ? kDefaultDataDir : g.data_dir;
    o.root_key_file = g.root_key_file;
    Status s = EkmService::Initialize(o);
    if (!s.ok()) {
      rc = Fail(s);
      return;
    }
    std::string key = o.root_key_file.empty() ? o.data_dir + "/root.key" : o.root_key_file;
    std::printf("initialized ekm data directory %s\n  store:    %s/ekm.db\n  root key: %s "
                "(back it up: without it nothing stored can be decrypted)\n",
                o.data_dir.c_str(), o.data_dir.c_str(), key.c_str());
  });

  // ekm workspace ...
  auto* ws = app.add_subcommand("workspace", "Manage workspaces (one per customer)");
  ws->require_subcommand(1);
  std::string ws_name;
  auto* ws_create = ws->add_subcommand("create", "Create a workspace");
  ws_create->add_option("NAME", ws_name, "Workspace name: 1-64 of a-z 0-9 - _ .")->required();
  ws_create->callback([&] {
    with_backend([&](Backend& b) -> Status {
      EKM_ASSIGN_OR_RETURN(WorkspaceInfo w, b.CreateWorkspace(ws_name));
      std::printf("created workspace %s\n", w.name.c_str());
      return Status::Ok();
    });
  });
  auto* ws_list = ws->add_subcommand("list", "List workspaces");
  ws_list->callback([&] {
    with_backend([&](Backend& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceInfo> list, b.ListWorkspaces());
      PrintWorkspaces(list, g.json);
      return Status::Ok();
    });
  });

  // ekm environment ...
  auto* env = app.add_subcommand("environment", "Manage environments inside a workspace");
  env->alias("env");
  env->require_subcommand(1);
  std::string env_ws, env_name;
  auto* env_create = env->add_subcommand(
      "create", "Create an environment (its environment key is wrapped by the platform CMK)");
  env_create->add_option("WORKSPACE", env_ws, "Workspace name")->required();
  env_create->add_option("NAME", env_name, "Environment name: 1-64 of a-z 0-9 - _ .")->required();
  env_create->callback([&] {
    with_backend([&](Backend& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentInfo e, b.CreateEnvironment(env_ws, env_name));
      std::printf("created environment %s/%s (CMK %s:%s, environment key v%u)\n",
                  e.workspace.c_str(), e.name.c_str(), e.cmk_provider.c_str(),
                  e.cmk_key_id.c_str(), e.ek_version);
      return Status::Ok();
    });
  });
  auto* env_list = env->add_subcommand("list", "List the environments of a workspace");
  env_list->add_option("WORKSPACE", env_ws, "Workspace name")->required();
  env_list->callback([&] {
    with_backend([&](Backend& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentInfo> list, b.ListEnvironments(env_ws));
      PrintEnvironments(env_ws, list, g.json);
      return Status::Ok();
    });
  });

  // ekm encrypt / decrypt
  std::string d_ws, d_env, d_scope = std::string(kDefaultScope);
  bool text = false;
  auto* enc = app.add_subcommand(
      "encrypt", "Encrypt standard input to standard output (any size, streamed)");
  enc->add_option("--workspace,-w", d_ws, "Workspace name")->required();
  enc->add_option("--environment,-e", d_env, "Environment name")->required();
  enc->add_option("--scope,-s", d_scope,
                  "Scope: names the data key (a table, a connection…) [default: default]");
  enc->add_flag("--text,-t", text, "Write the text form (ekm1:<base64url>) instead of binary");
  enc->callback([&] {
    if (!text && ::isatty(STDOUT_FILENO)) {
      rc = Fail(FailedPreconditionError(
          "refusing to write binary ciphertext to a terminal",
          "redirect standard output to a file or pipe, or use --text"));
      return;
    }
    with_backend([&](Backend& b) -> Status {
      return b.EncryptStream(d_ws, d_env, d_scope, text, StdinSource(), StdoutSink());
    });
  });
  auto* dec = app.add_subcommand(
      "decrypt",
      "Decrypt standard input (binary or text form) to standard output. On failure the output "
      "is incomplete: discard it");
  dec->add_option("--workspace,-w", d_ws, "Workspace the ciphertext belongs to")->required();
  dec->add_option("--environment,-e", d_env, "Environment the ciphertext belongs to")->required();
  dec->callback([&] {
    with_backend([&](Backend& b) -> Status {
      return b.DecryptStream(d_ws, d_env, StdinSource(), StdoutSink());
    });
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return rc;
}

}  // namespace
}  // namespace ekm::cli

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an error value, not a silent death
  return ekm::cli::Run(argc, argv);
}
