// ekm repack status / run: the repack after a CMK change.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ekm/api/repack_json.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/repack.h"

namespace ekm::cli {
namespace {

struct RepackStatusFlags {
  EnvTarget target;
  bool watch = false;
};

Status ShowStatus(const Cli& cli, Connection& b, const RepackStatusFlags& f) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  for (;;) {
    EKM_ASSIGN_OR_RETURN(RepackStatus st, b.api().GetRepackStatus(b.ctx(), f.target.workspace,
                                                                  f.target.environment));
    const bool over = st.state == "none" || st.state == "finished";
    if (cli.g.json) {
      std::cout << (f.watch ? RepackStatusToJson(st).dump() : JsonText(RepackStatusToJson(st), 2))
                << std::endl;
    } else if (!f.watch || over) {
      if (f.watch && tty) std::printf("\n");
      PrintRepackStatus(st, tty);
    } else {
      std::printf(tty ? "\r%s" : "%s\n", RepackProgressLine(st, tty).c_str());
      std::fflush(stdout);
    }
    if (!f.watch || over) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 500 : 2000));
  }
}

void AddStatus(CLI::App& repack, Cli& cli) {
  RepackStatusFlags& f = cli.Keep<RepackStatusFlags>();
  auto* status = repack.add_subcommand(
      "status",
      "Show the repack's progress (done/total, rate, ETA, state, last error) and the key "
      "inventory: how many data keys sit under each environment key version and CMK");
  AddEnvTargetOptions(*status, f.target);
  status->add_flag("--watch", f.watch,
                   "Follow the progress until the repack finishes (a progress bar on a "
                   "terminal, a line every few seconds otherwise)");
  status->callback([c = &cli, f = &f] {
    c->WithConnection([c, f](Connection& b) { return ShowStatus(*c, b, *f); });
  });
}

Status Run(const Cli& cli, Connection& b, const EnvTarget& t) {
  EKM_RETURN_IF_ERROR(RunRepackInForeground(b, t.workspace, t.environment));
  if (cli.g.json) {
    EKM_ASSIGN_OR_RETURN(RepackStatus st,
                         b.api().GetRepackStatus(b.ctx(), t.workspace, t.environment));
    std::cout << JsonText(RepackStatusToJson(st), 2) << "\n";
  }
  return Status::Ok();
}

void AddRun(CLI::App& repack, Cli& cli) {
  EnvTarget& t = cli.Keep<EnvTarget>();
  auto* run = repack.add_subcommand(
      "run",
      "Run the environment's repack now. Local mode runs (or resumes, after an interruption) it "
      "in the foreground until it completes; against ekmd, which repacks in the background, it "
      "wakes the repack (one waiting to retry after an error is tried at once)");
  AddEnvTargetOptions(*run, t);
  run->callback(
      [c = &cli, t = &t] { c->WithConnection([c, t](Connection& b) { return Run(*c, b, *t); }); });
}

}  // namespace

void AddRepackCommands(CLI::App& app, Cli& cli) {
  auto* repack = app.add_subcommand(
      "repack",
      "The repack after a CMK change: every data key of the environment is re-wrapped under "
      "the new environment key (data is never re-encrypted); then the old CMK is no longer "
      "needed");
  repack->require_subcommand(1);
  AddStatus(*repack, cli);
  AddRun(*repack, cli);
}

}  // namespace ekm::cli
