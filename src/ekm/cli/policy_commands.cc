// ekm policy check FILE: the policy doctor.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/io.h"

namespace ekm::cli {
namespace {

struct PolicyCheckFlags {
  std::string file, workspace;
};

Status CheckPolicy(Cli& cli, Connection& b, const std::string& workspace, const std::string& text) {
  EKM_ASSIGN_OR_RETURN(std::string report, b.api().CheckKeyPolicy(b.ctx(), workspace, text));
  nlohmann::json j = nlohmann::json::parse(report, nullptr, false);
  if (cli.g.json || !j.is_object()) {
    std::cout << (j.is_discarded() ? report : JsonText(j, 2)) << "\n";
  } else {
    std::cout << j.value("text", "") << (j.value("text", "").ends_with("\n") ? "" : "\n");
  }
  if (j.is_object() && !j.value("granted", false)) cli.rc = kExitFailure;
  return Status::Ok();
}

}  // namespace

void AddPolicyCommands(CLI::App& app, Cli& cli) {
  PolicyCheckFlags& f = cli.Keep<PolicyCheckFlags>();
  auto* policy = app.add_subcommand("policy", "Check AWS KMS key policies");
  policy->require_subcommand(1);
  auto* check = policy->add_subcommand(
      "check",
      "Policy doctor: read a whole key policy as pasted (FILE, or - for standard input), point "
      "at JSON mistakes by line and column, tell whether it grants the platform kms:Encrypt and "
      "kms:Decrypt for the workspace, and print the corrected policy. Exit code 1 unless both "
      "are granted");
  check->add_option("FILE", f.file, "Key policy file, or - for standard input")->required();
  check
      ->add_option("--workspace,-w", f.workspace,
                   "Workspace the key is for (the statement's encryption-context "
                   "condition names it)")
      ->required();
  check->callback([c = &cli, f = &f] {
    auto text = ReadWholeFile(f->file, "key policy file");
    if (!text.ok()) {
      c->rc = Fail(text.status());
      return;
    }
    c->WithConnection([&](Connection& b) { return CheckPolicy(*c, b, f->workspace, *text); });
  });
}

}  // namespace ekm::cli
