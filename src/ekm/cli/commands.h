// The `ekm` commands, one group a file: each Add* function declares its commands on `app` (or on
// its group's subcommand), their option values kept by `cli` (Cli::Keep), their callbacks
// running against cli.WithConnection. Run (main.cc) adds them in this order, the order of
// `ekm --help`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "ekm/api/types.h"
#include "ekm/base/status.h"
#include "ekm/cli/cli_context.h"

namespace ekm::cli {

void AddInitCommand(CLI::App& app, Cli& cli);             // init_command.cc
void AddWorkspaceCommands(CLI::App& app, Cli& cli);       // workspace_commands.cc
void AddEnvironmentCommands(CLI::App& app, Cli& cli);     // environment_commands.cc
void AddEncryptDecryptCommands(CLI::App& app, Cli& cli);  // data_commands.cc
void AddKeyCommands(CLI::App& app, Cli& cli);             // key_commands.cc
void AddPolicyCommands(CLI::App& app, Cli& cli);          // policy_commands.cc
void AddCacheCommands(CLI::App& app, Cli& cli);           // cache_commands.cc
void AddRepackCommands(CLI::App& app, Cli& cli);          // repack_commands.cc
void AddRewrapCommand(CLI::App& app, Cli& cli);           // data_commands.cc
void AddEventsCommand(CLI::App& app, Cli& cli);           // events_command.cc
void AddTokenCommands(CLI::App& app, Cli& cli);           // token_commands.cc
void AddDataKeyCommands(CLI::App& app, Cli& cli);         // data_commands.cc
void AddAuditCommands(CLI::App& app, Cli& cli);           // audit_commands.cc

// `ekm key import-params`, `import` and `delete-material` (key_import_commands.cc), added by
// AddKeyCommands to `key` among its other subcommands.
void AddKeyImportParamsCommand(CLI::App& key, Cli& cli);
void AddKeyImportCommand(CLI::App& key, Cli& cli);
void AddKeyDeleteMaterialCommand(CLI::App& key, Cli& cli);

// The environment a command acts on: --workspace,-w and --environment,-e, both required
// (environment_commands.cc).
struct EnvTarget {
  std::string workspace;
  std::string environment;
};
void AddEnvTargetOptions(CLI::App& cmd, EnvTarget& target);

// The filter flags `ekm events` and `ekm audit list` share.
struct EventFilterFlags {
  std::string environment, type, since, until;
  size_t limit = 100;
  int64_t after = 0;
};
// Their query of `workspace` ("" for the platform chain): --since and --until as RFC 3339, unix
// seconds or a duration ago from `now_ms` (events_command.cc).
StatusOr<EventQuery> EventQueryFrom(const EventFilterFlags& f, std::string workspace,
                                    int64_t now_ms);

}  // namespace ekm::cli
