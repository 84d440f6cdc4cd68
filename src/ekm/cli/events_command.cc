// ekm events: the lifecycle events.
#include <string>
#include <utility>
#include <vector>

#include "ekm/api/lifecycle_json.h"
#include "ekm/base/clock.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/print.h"

namespace ekm::cli {
namespace {

struct EventsFlags : EventFilterFlags {
  std::string workspace;
};

void RunEvents(Cli& cli, const EventsFlags& f) {
  auto query = EventQueryFrom(f, f.workspace, ToUnixSeconds(cli.clock.Now()) * 1000);
  if (!query.ok()) {
    cli.rc = Fail(query.status());
    return;
  }
  const EventQuery& q = *query;
  cli.WithConnection([&cli, &q](Connection& b) -> Status {
    EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventInfo> list, b.api().ListEvents(b.ctx(), q));
    PrintEvents(list, cli.g.json, "no events match");
    return Status::Ok();
  });
}

}  // namespace

StatusOr<EventQuery> EventQueryFrom(const EventFilterFlags& f, std::string workspace,
                                    int64_t now_ms) {
  EventQuery q;
  q.workspace = std::move(workspace);
  if (!f.environment.empty()) q.environment = f.environment;
  q.type = f.type;
  q.after_id = f.after;
  q.limit = f.limit;
  for (auto [text, field] : {std::pair{&f.since, &q.since_ms}, {&f.until, &q.until_ms}}) {
    if (text->empty()) continue;
    EKM_ASSIGN_OR_RETURN(*field, ParseTimeMs(*text, now_ms));
  }
  return q;
}

void AddEventsCommand(CLI::App& app, Cli& cli) {
  EventsFlags& f = cli.Keep<EventsFlags>();
  auto* events = app.add_subcommand(
      "events",
      "List lifecycle events (key validations and changes, rotations, shreds, settings…), "
      "oldest first, with time, actor and environment. --json prints one JSON object a line");
  events->add_option("--workspace,-w", f.workspace, "Workspace name")->required();
  events->add_option("--environment,-e", f.environment, "Only this environment");
  events->add_option("--type,-t", f.type, "Only this event type, e.g. ek.rotated");
  events->add_option("--since", f.since,
                     "From this time: RFC 3339 (2026-11-25T10:00:00Z), unix seconds, or a "
                     "duration ago (24h)");
  events->add_option("--until", f.until, "Before this time (same forms as --since)");
  events->add_option("--after", f.after, "Only events with a larger id (paging)");
  events->add_option("--limit,-n", f.limit, "At most this many events (1-1000)")
      ->capture_default_str();
  events->callback([c = &cli, f = &f] { RunEvents(*c, *f); });
}

}  // namespace ekm::cli
