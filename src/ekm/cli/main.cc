// ekm: the command-line interface. Local mode (--data-dir / EKM_DATA_DIR) runs the key hierarchy
// in this process on a data directory; server mode (--server / EKM_SERVER) talks to ekmd.
// The commands are declared by group (commands.h); this file holds the global flags and the
// parse.
#include <CLI/CLI.hpp>
#include <csignal>
#include <functional>
#include <string>

#include "ekm/base/clock.h"
#include "ekm/cli/cli_context.h"
#include "ekm/cli/commands.h"

namespace ekm::cli {
namespace {

void AddGlobalFlags(CLI::App& app, GlobalFlags& g) {
  app.add_option("--data-dir", g.data_dir,
                 "Local data directory (store and root key) [env: EKM_DATA_DIR] [default: " +
                     std::string(kDefaultDataDir) + "]")
      ->envname("EKM_DATA_DIR");
  app.add_option("--server", g.server,
                 "URL of a running ekmd, e.g. http://127.0.0.1:8080 "
                 "[env: EKM_SERVER]")
      ->envname("EKM_SERVER");
  app.add_option("--root-key-file", g.root_key_file,
                 "Platform root key file (local mode); required with a PostgreSQL --store "
                 "[default: <data-dir>/root.key] [env: EKM_ROOT_KEY_FILE]")
      ->envname("EKM_ROOT_KEY_FILE");
  app.add_option("--store", g.store,
                 "Local mode on this store instead of <data-dir>/ekm.db: "
                 "postgresql://USER@HOST:PORT/DB (password in PGPASSFILE) or sqlite:PATH "
                 "[env: EKM_STORE]")
      ->envname("EKM_STORE");
  app.add_option("--token", g.token, "API token for --server [env: EKM_TOKEN]")
      ->envname("EKM_TOKEN");
  app.add_flag("--json", g.json, "Print results as JSON");
  app.add_option("--ca-file", g.tls.ca_file,
                 "Server mode over https://: PEM CA bundle to trust for ekmd's certificate "
                 "instead of the system store [env: EKM_CA_FILE]")
      ->envname("EKM_CA_FILE")
      ->check(CLI::ExistingFile);
  app.add_option("--client-cert", g.tls.client_cert_file,
                 "Server mode: client certificate (PEM) for an ekmd that asks for one "
                 "[env: EKM_CLIENT_CERT]")
      ->envname("EKM_CLIENT_CERT")
      ->check(CLI::ExistingFile);
  app.add_option("--client-key", g.tls.client_key_file,
                 "Server mode: the client certificate's private key (PEM) [env: EKM_CLIENT_KEY]")
      ->envname("EKM_CLIENT_KEY")
      ->check(CLI::ExistingFile);
  app.add_option("--aws-principal-arn", g.aws_principal_arn,
                 "Local mode: the platform's IAM role ARN that calls AWS KMS [env: "
                 "EKM_AWS_PRINCIPAL_ARN] [default: asked of AWS STS]")
      ->envname("EKM_AWS_PRINCIPAL_ARN");
  app.add_option("--aws-ca-file", g.aws_ca_file,
                 "Local mode: PEM CA bundle for AWS KMS and STS [env: EKM_AWS_CA_FILE]")
      ->envname("EKM_AWS_CA_FILE");
}

// --json after the subcommand as well as before it (`ekm events -w acme --json`, as
// `ekm --json events -w acme`): every subcommand takes it too.
void AcceptJsonEverywhere(CLI::App& parent, GlobalFlags& g) {
  for (CLI::App* sub : parent.get_subcommands(std::function<bool(CLI::App*)>())) {
    if (sub->get_option_no_throw("--json") == nullptr) {
      sub->add_flag("--json", g.json, "Print results as JSON");
    }
    AcceptJsonEverywhere(*sub, g);
  }
}

// Every command, in the order of `ekm --help`.
void AddCommands(CLI::App& app, Cli& cli) {
  AddInitCommand(app, cli);
  AddWorkspaceCommands(app, cli);
  AddEnvironmentCommands(app, cli);
  AddEncryptDecryptCommands(app, cli);
  AddKeyCommands(app, cli);
  AddPolicyCommands(app, cli);
  AddCacheCommands(app, cli);
  AddRepackCommands(app, cli);
  AddRewrapCommand(app, cli);
  AddEventsCommand(app, cli);
  AddTokenCommands(app, cli);
  AddDataKeyCommands(app, cli);
  AddAuditCommands(app, cli);
}

int Run(int argc, char** argv) {
  // Option values live in `cli` until the parse and its callbacks are over: it outlives `app`.
  Cli cli(argc, argv, Clock::Real());
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
  AddGlobalFlags(app, cli.g);
  AddCommands(app, cli);
  AcceptJsonEverywhere(app, cli.g);

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
  return cli.rc;
}

}  // namespace
}  // namespace ekm::cli

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an error value, not a silent death
  return ekm::cli::Run(argc, argv);
}
