// ekm key set / history / show / policy / rotate / validate: the environment's customer main key
// (CMK) and its keys' rotation (the uploaded key material's commands: key_import_commands.cc).
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ekm/api/key_json.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/print.h"
#include "ekm/cli/repack.h"
#include "ekm/policy/key_policy_statement.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"

namespace ekm::cli {
namespace {

struct KeySetFlags {
  EnvTarget target;
  std::string arn;
  bool platform = false;
  KeyChangeOptions change;  // --emergency --reason
};

struct KeyHistoryFlags {
  EnvTarget target;
  int64_t after = 0;
  size_t limit = 100;
};

struct KeyPolicyFlags {
  EnvTarget target;
  bool example = false;
};

struct KeyRotateFlags {
  std::string workspace, environment;
  std::vector<std::string> scopes;
  bool all = false, due = false;
};

struct KeyValidateFlags {
  EnvTarget target;
  std::string arn;
  bool platform = false;
};

Status SetKey(const Cli& cli, Connection& b, const KeySetFlags& f) {
  const std::string& ws = f.target.workspace;
  const std::string& env = f.target.environment;
  std::string provider(f.platform ? kPlatformProviderName : kAwsKmsProviderName);
  std::string id = f.platform ? std::string(kPlatformRootKeyId) : f.arn;
  EKM_ASSIGN_OR_RETURN(KeyValidation v,
                       b.api().SetCustomerKey(b.ctx(), ws, env, provider, id, f.change));
  if (cli.g.json) {
    std::cout << JsonText(KeyValidationToJson(v), 2) << "\n";
    return AfterKeyChange(b, ws, env);
  }
  PrintChecks(v);
  std::printf("environment %s/%s now uses %s %s\n", ws.c_str(), env.c_str(), provider.c_str(),
              id.c_str());
  std::fflush(stdout);
  return AfterKeyChange(b, ws, env);  // the repack
}

void AddSet(CLI::App& key, Cli& cli) {
  KeySetFlags& f = cli.Keep<KeySetFlags>();
  auto* set = key.add_subcommand(
      "set",
      "Update key: validate a customer main key and make it the environment's CMK. Checks the "
      "ARN, an Encrypt/Decrypt round trip with the environment's encryption context, and the "
      "key's state where the key policy permits DescribeKey; on any failure nothing changes");
  AddEnvTargetOptions(*set, f.target);
  auto* arn_opt = set->add_option(
      "--aws-kms-arn", f.arn,
      "Key ARN or alias ARN of a symmetric AWS KMS key, e.g. "
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
  arn_opt->excludes(set->add_flag("--platform", f.platform, "Go back to the platform-managed key"));
  set->add_flag("--emergency", f.change.emergency,
                "Emergency replacement inside the replacement period (suspected compromise "
                "of the current key); needs --reason and is recorded as such (owners only, "
                "once roles exist)");
  set->add_option("--reason", f.change.reason,
                  "Why the key is replaced in an emergency (recorded with the change)");
  set->callback([c = &cli, f = &f] {
    if (f->arn.empty() && !f->platform) {
      c->rc = Fail(InvalidArgumentError("no key given",
                                        "pass --aws-kms-arn ARN (or --platform); `ekm key policy` "
                                        "prints the key policy statement to add first"));
      return;
    }
    c->WithConnection([c, f](Connection& b) { return SetKey(*c, b, *f); });
  });
}

// ekm key history: validations and CMK changes.
void AddHistory(CLI::App& key, Cli& cli) {
  KeyHistoryFlags& f = cli.Keep<KeyHistoryFlags>();
  auto* history = key.add_subcommand(
      "history",
      "Show the environment's key history, oldest first: every validation (passed, failed, "
      "--dry-run), every change of customer main key (the first, replacements, emergency and "
      "refused ones) and uploaded key material imported or deleted, with who and when");
  AddEnvTargetOptions(*history, f.target);
  history->add_option("--after", f.after, "Only events after this id (paging)");
  history->add_option("--limit", f.limit, "At most this many events (1-1000)")
      ->check(CLI::Range(1, 1000));
  history->callback([c = &cli, f = &f] {
    c->WithConnection([c, f](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventInfo> list,
                           b.api().KeyHistory(b.ctx(), f->target.workspace, f->target.environment,
                                              f->after, f->limit));
      PrintEvents(list, c->g.json, "no key validation or change recorded yet");
      return Status::Ok();
    });
  });
}

void AddShow(CLI::App& key, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* show = key.add_subcommand(
      "show",
      "Show the environment's CMK: provider, ARN, region, state, rotation status, and "
      "the last validation and its result");
  AddEnvTargetOptions(*show, t);
  show->callback([c = &cli, t = &t] {
    c->WithConnection([c, t](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(CustomerKeyInfo info,
                           b.api().ShowCustomerKey(b.ctx(), t->workspace, t->environment));
      if (c->g.json) {
        std::cout << JsonText(CustomerKeyInfoToJson(info), 2) << "\n";
        return Status::Ok();
      }
      PrintKeyInfo(info);
      return Status::Ok();
    });
  });
}

Status ShowKeyPolicy(const Cli& cli, Connection& b, const KeyPolicyFlags& f) {
  EKM_ASSIGN_OR_RETURN(KeyPolicyAdvice a,
                       b.api().KeyPolicy(b.ctx(), f.target.workspace, f.target.environment));
  if (cli.g.json) {
    std::cout << JsonText(KeyPolicyAdviceToJson(a), 2) << "\n";
    return Status::Ok();
  }
  if (f.example) {
    std::fprintf(stderr,
                 "# A whole key policy for a new key. Replace %s with the AWS account id "
                 "that owns the key. Platform principal: %s\n",
                 std::string(kExampleKeyAccountId).c_str(), a.principal_arn.c_str());
    std::cout << a.example_policy << "\n";
    return Status::Ok();
  }
  std::fprintf(stderr,
               "# Paste into the \"Statement\" array of the key policy (add a comma after "
               "the statement before it). Platform principal: %s\n",
               a.principal_arn.c_str());
  std::cout << a.statement << "\n";
  return Status::Ok();
}

void AddPolicy(CLI::App& key, Cli& cli) {
  KeyPolicyFlags& f = cli.Keep<KeyPolicyFlags>();
  auto* policy = key.add_subcommand(
      "policy",
      "Permission to access key: print the key policy statement to paste into the Statement "
      "array of the customer's AWS KMS key policy (pinned to this workspace)");
  AddEnvTargetOptions(*policy, f.target);
  policy->add_flag("--example", f.example, "Print a complete key policy for a new key instead");
  policy->callback([c = &cli, f = &f] {
    c->WithConnection([c, f](Connection& b) { return ShowKeyPolicy(*c, b, *f); });
  });
}

Status Rotate(Cli& cli, Connection& b, const KeyRotateFlags& f) {
  if (f.due) {
    EKM_ASSIGN_OR_RETURN(ScheduledRotationReport rep, b.api().RunScheduledRotations(b.ctx()));
    PrintRotations(rep.rotated, cli.g.json);
    for (const auto& e : rep.failures) std::fprintf(stderr, "ekm: failed: %s\n", e.c_str());
    if (!rep.failures.empty()) cli.rc = kExitFailure;
    return Status::Ok();
  }
  if (f.all || !f.scopes.empty()) {
    EKM_ASSIGN_OR_RETURN(
        std::vector<RotationResult> list,
        b.api().RotateDataKeys(b.ctx(), f.workspace, f.environment, f.scopes, f.all));
    PrintRotations(list, cli.g.json);
    return Status::Ok();
  }
  EKM_ASSIGN_OR_RETURN(RotationResult r,
                       b.api().RotateEnvironmentKey(b.ctx(), f.workspace, f.environment));
  PrintRotations({r}, cli.g.json);
  return Status::Ok();
}

void RunRotate(Cli& cli, const KeyRotateFlags& f) {
  if (f.due != (f.workspace.empty() && f.environment.empty())) {
    cli.rc = Fail(InvalidArgumentError(
        f.due ? "--due rotates what is due everywhere: it takes no --workspace/--environment"
              : "--workspace and --environment are required",
        "ekm key rotate --workspace W --environment E [--scope S | --all-scopes], or ekm key "
        "rotate --due"));
    return;
  }
  if (!f.due && (f.workspace.empty() || f.environment.empty())) {
    cli.rc = Fail(InvalidArgumentError("--workspace and --environment are both required"));
    return;
  }
  cli.WithConnection([&cli, &f](Connection& b) { return Rotate(cli, b, f); });
}

// ekm key rotate: EK or DK rotation on demand, or what the schedule says is due.
void AddRotate(CLI::App& key, Cli& cli) {
  KeyRotateFlags& f = cli.Keep<KeyRotateFlags>();
  auto* rotate = key.add_subcommand(
      "rotate",
      "Rotate the environment key (EK): a new EK version under the environment's current CMK. "
      "With --scope (repeatable) or --all-scopes, rotate data keys (DK) instead. New "
      "encryptions use the newest version; every older version still decrypts. --due runs what "
      "the environments' rotation periods say is due now (ekmd also runs it by itself every "
      "--rotation-check-interval; against a server it needs the admin token). The "
      "CMK's own rotation in the KMS needs no command: `ekm key show` shows its status");
  rotate->add_option("--workspace,-w", f.workspace, "Workspace name");
  rotate->add_option("--environment,-e", f.environment, "Environment name");
  rotate->add_option("--scope,-s", f.scopes, "Rotate this scope's data key (repeatable)");
  rotate->add_flag("--all-scopes", f.all, "Rotate the data key of every scope");
  rotate->add_flag("--due", f.due,
                   "Run the rotation schedule: every EK/DK older than its environment's "
                   "ek/dk rotation period");
  rotate->callback([c = &cli, f = &f] { RunRotate(*c, *f); });
}

Status Validate(const Cli& cli, Connection& b, const KeyValidateFlags& f) {
  EKM_ASSIGN_OR_RETURN(
      KeyValidation v,
      b.api().ValidateCustomerKey(b.ctx(), f.target.workspace, f.target.environment,
                                  f.platform ? kPlatformProviderName : kAwsKmsProviderName,
                                  f.platform ? std::string(kPlatformRootKeyId) : f.arn));
  if (cli.g.json) {
    std::cout << JsonText(KeyValidationToJson(v), 2) << "\n";
  } else {
    PrintChecks(v);
  }
  if (!v.ok) return FailedPreconditionError(v.message, v.hint);
  if (!cli.g.json) std::printf("the key passed every check; nothing was changed\n");
  return Status::Ok();
}

// ekm key validate: "Update key"'s checks for a key, nothing changed.
void AddValidate(CLI::App& key, Cli& cli) {
  KeyValidateFlags& f = cli.Keep<KeyValidateFlags>();
  auto* validate = key.add_subcommand(
      "validate",
      "Check a key before switching to it: the checks of `ekm key set` (ARN, Encrypt/Decrypt "
      "round trip with the environment's encryption context, DescribeKey, rotation), without "
      "changing anything. Exit status 0 when every check passed");
  AddEnvTargetOptions(*validate, f.target);
  auto* arn_opt = validate->add_option("--aws-kms-arn", f.arn,
                                       "Key ARN or alias ARN of the AWS KMS key to check");
  arn_opt->excludes(validate->add_flag("--platform", f.platform, "Check the platform key"));
  validate->callback([c = &cli, f = &f] {
    if (f->arn.empty() && !f->platform) {
      c->rc = Fail(InvalidArgumentError("no key given", "pass --aws-kms-arn ARN (or --platform)"));
      return;
    }
    c->WithConnection([c, f](Connection& b) { return Validate(*c, b, *f); });
  });
}

}  // namespace

// ekm key ...: the environment's customer main key (CMK).
void AddKeyCommands(CLI::App& app, Cli& cli) {
  auto* key = app.add_subcommand("key", "Manage an environment's customer main key (CMK)");
  key->require_subcommand(1);
  AddSet(*key, cli);
  AddHistory(*key, cli);
  AddShow(*key, cli);
  AddPolicy(*key, cli);
  AddKeyImportParamsCommand(*key, cli);
  AddKeyImportCommand(*key, cli);
  AddKeyDeleteMaterialCommand(*key, cli);
  AddRotate(*key, cli);
  AddValidate(*key, cli);
}

}  // namespace ekm::cli
