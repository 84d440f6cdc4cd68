// ekm workspace create / list / set-default-key / show.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/print.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"

namespace ekm::cli {
namespace {

struct DefaultKeyFlags {
  std::string workspace, arn;
  bool reset = false;
  std::string provider = std::string(kAwsKmsProviderName), key_id;
};

void AddCreate(CLI::App& ws, Cli& cli) {
  std::string& name = cli.Keep<std::string>();
  auto* create = ws.add_subcommand("create", "Create a workspace");
  create->add_option("NAME", name, "Workspace name: 1-64 of a-z 0-9 - _ .")->required();
  create->callback([c = &cli, name = &name] {
    c->WithConnection([name](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(WorkspaceInfo w, b.api().CreateWorkspace(b.ctx(), *name));
      std::printf("created workspace %s\n", w.name.c_str());
      return Status::Ok();
    });
  });
}

void AddList(CLI::App& ws, Cli& cli) {
  auto* list = ws.add_subcommand("list", "List workspaces");
  list->callback([c = &cli] {
    c->WithConnection([c](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceInfo> list, b.api().ListWorkspaces(b.ctx()));
      PrintWorkspaces(list, c->g.json);
      return Status::Ok();
    });
  });
}

void RunSetDefaultKey(Cli& cli, DefaultKeyFlags& f) {
  if (f.arn.empty()) f.arn = f.key_id;
  if (f.arn.empty() && !f.reset) {
    cli.rc = Fail(InvalidArgumentError("no key given", "pass --aws-kms-arn ARN, or --reset"));
    return;
  }
  cli.WithConnection([&cli, &f](Connection& b) -> Status {
    EKM_ASSIGN_OR_RETURN(
        WorkspaceDefaultKey k,
        f.reset ? b.api().ResetWorkspaceDefaultKey(b.ctx(), f.workspace)
                : b.api().SetWorkspaceDefaultKey(b.ctx(), f.workspace, f.provider, f.arn));
    if (cli.g.json) {
      std::cout << JsonText(WorkspaceDefaultKeyToJson(k), 2) << "\n";
      return Status::Ok();
    }
    std::printf(
        "workspace %s: new environments now start on %s %s (existing environments "
        "are unchanged)\n",
        k.workspace.c_str(), k.provider.c_str(), k.key_id.c_str());
    return Status::Ok();
  });
}

void AddSetDefaultKey(CLI::App& ws, Cli& cli) {
  DefaultKeyFlags& f = cli.Keep<DefaultKeyFlags>();
  auto* cmd = ws.add_subcommand(
      "set-default-key",
      "Set the workspace default CMK: the key new environments' environment keys are wrapped "
      "under (existing environments keep theirs). Validated first with an Encrypt/Decrypt round "
      "trip under the workspace's encryption context. --reset goes back to the platform key");
  cmd->add_option("--workspace,-w", f.workspace, "Workspace name")->required();
  auto* arn_opt =
      cmd->add_option("--aws-kms-arn", f.arn, "Key ARN or alias ARN of a symmetric AWS KMS key");
  auto* reset_flag = cmd->add_flag("--reset", f.reset, "Go back to the platform-managed key");
  arn_opt->excludes(reset_flag);
  cmd->add_option("--provider", f.provider, "Provider of --key-id")
      ->check(CLI::IsMember(std::vector<std::string>{std::string(kAwsKmsProviderName),
                                                     std::string(kPlatformProviderName)}))
      ->capture_default_str();
  cmd->add_option("--key-id", f.key_id,
                  "The key in that provider (for aws-kms, the same as --aws-kms-arn)");
  cmd->callback([c = &cli, f = &f] { RunSetDefaultKey(*c, *f); });
}

Status ShowDefaultKey(const Cli& cli, Connection& b, const std::string& workspace) {
  EKM_ASSIGN_OR_RETURN(WorkspaceDefaultKey k, b.api().GetWorkspaceDefaultKey(b.ctx(), workspace));
  if (cli.g.json) {
    std::cout << JsonText(WorkspaceDefaultKeyToJson(k), 2) << "\n";
    return Status::Ok();
  }
  std::printf("workspace:    %s\n", k.workspace.c_str());
  std::printf("default key:  %s %s%s\n", k.provider.c_str(), k.key_id.c_str(),
              k.set ? "" : " (the platform-managed key)");
  if (k.set) {
    std::printf("set:          %s by %s\n", FormatRfc3339(FromUnixSeconds(k.set_at)).c_str(),
                k.actor.c_str());
  }
  std::printf("applies to:   environments created from now on\n");
  return Status::Ok();
}

void AddShow(CLI::App& ws, Cli& cli) {
  std::string& workspace = cli.Keep<std::string>();
  auto* show = ws.add_subcommand("show", "Show a workspace's default CMK");
  show->add_option("--workspace,-w", workspace, "Workspace name")->required();
  show->callback([c = &cli, w = &workspace] {
    c->WithConnection([c, w](Connection& b) { return ShowDefaultKey(*c, b, *w); });
  });
}

}  // namespace

void AddWorkspaceCommands(CLI::App& app, Cli& cli) {
  auto* ws = app.add_subcommand("workspace", "Manage workspaces (one per customer)");
  ws->require_subcommand(1);
  AddCreate(*ws, cli);
  AddList(*ws, cli);
  AddSetDefaultKey(*ws, cli);
  AddShow(*ws, cli);
}

}  // namespace ekm::cli
