// ekm environment create / list / status / scopes / shred / set / show.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ekm/api/key_status_json.h"
#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"
#include "ekm/cli/print.h"

namespace ekm::cli {
namespace {

struct EnvNameFlags {
  std::string workspace, name;
};

struct ShredFlags {
  std::string workspace, environment, confirm;
  bool yes = false;
};

struct SettingsFlags {
  EnvTarget target;
  std::string ttl, grace, ek, dk, replacement;
  std::vector<std::string> reset;
};

void AddCreate(CLI::App& env, Cli& cli) {
  EnvNameFlags& f = cli.Keep<EnvNameFlags>();
  auto* create = env.add_subcommand(
      "create", "Create an environment (its environment key is wrapped by the platform CMK)");
  create->add_option("WORKSPACE", f.workspace, "Workspace name")->required();
  create->add_option("NAME", f.name, "Environment name: 1-64 of a-z 0-9 - _ .")->required();
  create->callback([c = &cli, f = &f] {
    c->WithConnection([f](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentInfo e,
                           b.api().CreateEnvironment(b.ctx(), f->workspace, f->name));
      std::printf("created environment %s/%s (CMK %s:%s, environment key v%u)\n",
                  e.workspace.c_str(), e.name.c_str(), e.cmk_provider.c_str(), e.cmk_key_id.c_str(),
                  e.ek_version);
      return Status::Ok();
    });
  });
}

void AddList(CLI::App& env, Cli& cli) {
  std::string& workspace = cli.Keep<std::string>();
  auto* list = env.add_subcommand("list", "List the environments of a workspace");
  list->add_option("WORKSPACE", workspace, "Workspace name")->required();
  list->callback([c = &cli, w = &workspace] {
    c->WithConnection([c, w](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentInfo> list,
                           b.api().ListEnvironments(b.ctx(), *w));
      PrintEnvironments(*w, list, c->g.json);
      return Status::Ok();
    });
  });
}

// ekm environment status: the CMK's health as every node last saw it.
void AddStatus(CLI::App& env, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* status = env.add_subcommand(
      "status",
      "Show whether the environment's customer main key answers: healthy; degraded (its KMS "
      "cannot be reached: cached keys serve within the TTL, retried with backoff); or "
      "unavailable (the KMS refused: access removed, key disabled, pending deletion or "
      "deleted; every operation fails until the customer restores it). Also since when, the "
      "last successful use of the key, the last error and what to do, and the key cache TTL "
      "and grace period in force");
  AddEnvTargetOptions(*status, t);
  status->callback([c = &cli, t = &t] {
    c->WithConnection([c, t](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentKeyStatus s,
                           b.api().KeyStatus(b.ctx(), t->workspace, t->environment));
      if (c->g.json) {
        std::cout << JsonText(EnvironmentKeyStatusToJson(s), 2) << "\n";
      } else {
        PrintKeyStatus(s);
      }
      return Status::Ok();
    });
  });
}

Status ShowScopes(const Cli& cli, Connection& b, const EnvTarget& t) {
  EKM_ASSIGN_OR_RETURN(ScopeList list, b.api().ListScopes(b.ctx(), t.workspace, t.environment));
  if (!cli.g.json) {
    PrintScopes(list);
    return Status::Ok();
  }
  nlohmann::json scopes = nlohmann::json::array();
  for (const ScopeInfo& s : list.scopes) scopes.push_back(ScopeInfoToJson(s));
  std::cout << JsonText(nlohmann::json{{"workspace", list.workspace},
                                       {"environment", list.environment},
                                       {"max_messages_per_dk", list.max_messages_per_dk},
                                       {"scopes", scopes}},
                        2)
            << "\n";
  return Status::Ok();
}

// ekm environment scopes: each scope's current DK version and messages reserved.
void AddScopes(CLI::App& env, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* scopes = env.add_subcommand(
      "scopes",
      "List the environment's scopes: each one's current data key version, the environment key "
      "that wraps it, since when, and the messages reserved under it (an upper bound on those "
      "sealed) against the budget after which the data key rotates by itself");
  AddEnvTargetOptions(*scopes, t);
  scopes->callback([c = &cli, t = &t] {
    c->WithConnection([c, t](Connection& b) { return ShowScopes(*c, b, *t); });
  });
}

// The name typed for a shred, asked twice on a terminal; f.confirm otherwise.
StatusOr<std::string> ConfirmShred(const ShredFlags& f, bool interactive) {
  if (!interactive) return f.confirm;
  std::fprintf(stderr,
               "This destroys every key of environment %s/%s. Its data can never be read "
               "again, by anyone. This cannot be undone.\n",
               f.workspace.c_str(), f.environment.c_str());
  std::string name = AskLine("Type the environment's name to continue: ");
  if (name != f.environment) {
    return FailedPreconditionError("the name typed does not match; nothing was destroyed");
  }
  if (AskLine("Type \"shred\" to destroy it now: ") != "shred") {
    return FailedPreconditionError("not confirmed; nothing was destroyed");
  }
  return name;
}

Status Shred(const Cli& cli, Connection& b, const ShredFlags& f, bool interactive) {
  EKM_ASSIGN_OR_RETURN(ShredConfirmation c,
                       b.api().RequestShred(b.ctx(), f.workspace, f.environment));
  EKM_ASSIGN_OR_RETURN(std::string name, ConfirmShred(f, interactive));
  EKM_ASSIGN_OR_RETURN(
      ShredResult r, b.api().ShredEnvironment(b.ctx(), f.workspace, f.environment, c.token, name));
  if (cli.g.json) {
    std::cout << JsonText(ShredResultToJson(r), 2) << "\n";
    return Status::Ok();
  }
  std::printf(
      "crypto-shredded environment %s/%s at %s: %u environment key and %u data key "
      "versions destroyed; its data can never be read\n",
      r.workspace.c_str(), r.environment.c_str(),
      FormatRfc3339(FromUnixSeconds(r.shredded_at)).c_str(), r.ek_versions_destroyed,
      r.dk_versions_destroyed);
  return Status::Ok();
}

void RunShred(Cli& cli, const ShredFlags& f) {
  const bool interactive = ::isatty(STDIN_FILENO) && f.confirm.empty() && !f.yes;
  if (!interactive && (f.confirm.empty() || !f.yes)) {
    cli.rc = Fail(InvalidArgumentError(
        "crypto-shredding needs two confirmations",
        "pass --confirm " + f.environment + " --yes-destroy-all-data (or run it on a terminal)"));
    return;
  }
  cli.WithConnection(
      [&cli, &f, interactive](Connection& b) { return Shred(cli, b, f, interactive); });
}

// ekm environment shred: crypto-shredding, confirmed twice.
void AddShred(CLI::App& env, Cli& cli) {
  ShredFlags& f = cli.Keep<ShredFlags>();
  auto* shred = env.add_subcommand(
      "shred",
      "Crypto-shred an environment: destroy every wrapped environment key and data key, so its "
      "data can never be read again, by anyone. Cannot be undone. Asks twice on a terminal "
      "(the environment's name, then \"shred\"); otherwise needs --confirm NAME and "
      "--yes-destroy-all-data");
  shred->add_option("--workspace,-w", f.workspace, "Workspace name")->required();
  shred->add_option("--environment,-e", f.environment, "Environment to destroy")->required();
  shred->add_option("--confirm", f.confirm, "The environment's name again (non-interactive)");
  shred->add_flag("--yes-destroy-all-data", f.yes,
                  "Confirm that every ciphertext of the environment becomes unreadable");
  shred->callback([c = &cli, f = &f] { RunShred(*c, *f); });
}

// The settings --key-cache-ttl … and --reset name into `set` and `reset`.
Status ParseSettings(const SettingsFlags& f, EnvironmentSettings& set,
                     std::vector<std::string>& reset) {
  struct Arg {
    const char* flag;
    std::string_view name;
    const std::string& text;
    std::optional<int64_t>* field;
  };
  const Arg args[] = {
      {"key-cache-ttl", kSettingKeyCacheTtl, f.ttl, &set.key_cache_ttl_seconds},
      {"grace-period", kSettingGracePeriod, f.grace, &set.grace_period_seconds},
      {"ek-rotation-period", kSettingEkRotationPeriod, f.ek, &set.ek_rotation_period_seconds},
      {"dk-rotation-period", kSettingDkRotationPeriod, f.dk, &set.dk_rotation_period_seconds},
      {"replacement-period", kSettingReplacementPeriod, f.replacement,
       &set.replacement_period_seconds},
  };
  for (const Arg& a : args) {
    if (a.text.empty()) continue;
    auto d = ParseDurationSeconds(a.text);
    if (!d.ok()) return d.status().WithContext(std::string("--") + a.flag);
    *a.field = *d;
  }
  for (const std::string& r : f.reset) {
    const Arg* found = nullptr;
    for (const Arg& a : args) {
      if (r == a.flag || r == a.name) found = &a;
    }
    if (found == nullptr) {
      return InvalidArgumentError("--reset " + r + ": no such setting",
                                  "key-cache-ttl, grace-period, ek-rotation-period, "
                                  "dk-rotation-period, replacement-period");
    }
    reset.push_back(std::string(found->name));
  }
  return Status::Ok();
}

void RunSet(Cli& cli, const SettingsFlags& f) {
  EnvironmentSettings set;
  std::vector<std::string> reset;
  Status parsed = ParseSettings(f, set, reset);
  if (!parsed.ok()) {
    cli.rc = Fail(parsed);
    return;
  }
  cli.WithConnection([&](Connection& b) -> Status {
    const EnvTarget& t = f.target;
    EKM_ASSIGN_OR_RETURN(
        EnvironmentSettings s,
        b.api().UpdateEnvironmentSettings(b.ctx(), t.workspace, t.environment, set, reset));
    PrintSettings(t.workspace, t.environment, s, cli.g.json);
    return Status::Ok();
  });
}

// ekm environment set: per-environment settings.
void AddSet(CLI::App& env, Cli& cli) {
  SettingsFlags& f = cli.Keep<SettingsFlags>();
  auto* set = env.add_subcommand(
      "set",
      "Change an environment's settings. Durations: 300s, 5m, 24h, 90d. --reset NAME "
      "(repeatable) goes back to the deployment default; NAME is key-cache-ttl, grace-period, "
      "ek-rotation-period, dk-rotation-period or replacement-period");
  AddEnvTargetOptions(*set, f.target);
  set->add_option("--key-cache-ttl", f.ttl,
                  "How long unwrapped keys are used before asking the CMK again (bounds how "
                  "long data stays readable after a revocation)");
  set->add_option("--grace-period", f.grace,
                  "How long cached keys keep serving during a KMS outage (0: off)");
  set->add_option("--ek-rotation-period", f.ek,
                  "Rotate the environment key on this schedule (at least 1h)");
  set->add_option("--dk-rotation-period", f.dk,
                  "Rotate each scope's data key on this schedule (at least 1h)");
  set->add_option("--replacement-period", f.replacement,
                  "One CMK replacement per this period (default 24h)");
  set->add_option("--reset", f.reset, "Back to the default: the setting's name (repeatable)");
  set->callback([c = &cli, f = &f] { RunSet(*c, *f); });
}

// ekm environment show: the settings in force.
void AddShow(CLI::App& env, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* show = env.add_subcommand(
      "show", "Show an environment's settings (the deployment defaults marked with *)");
  AddEnvTargetOptions(*show, t);
  show->callback([c = &cli, t = &t] {
    c->WithConnection([c, t](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(EnvironmentSettings s,
                           b.api().GetEnvironmentSettings(b.ctx(), t->workspace, t->environment));
      PrintSettings(t->workspace, t->environment, s, c->g.json);
      return Status::Ok();
    });
  });
}

}  // namespace

void AddEnvTargetOptions(CLI::App& cmd, EnvTarget& target) {
  cmd.add_option("--workspace,-w", target.workspace, "Workspace name")->required();
  cmd.add_option("--environment,-e", target.environment, "Environment name")->required();
}

void AddEnvironmentCommands(CLI::App& app, Cli& cli) {
  auto* env = app.add_subcommand("environment", "Manage environments inside a workspace");
  env->alias("env");
  env->require_subcommand(1);
  AddCreate(*env, cli);
  AddList(*env, cli);
  AddStatus(*env, cli);
  AddScopes(*env, cli);
  AddShred(*env, cli);
  AddSet(*env, cli);
  AddShow(*env, cli);
}

}  // namespace ekm::cli
