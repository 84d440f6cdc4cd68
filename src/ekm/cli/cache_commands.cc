// ekm cache stats: the key cache counters.
#include <iostream>

#include "ekm/api/key_status_json.h"
#include "ekm/base/json_text.h"
#include "ekm/cli/commands.h"
#include "ekm/cli/print.h"

namespace ekm::cli {

void AddCacheCommands(CLI::App& app, Cli& cli) {
  auto* cache = app.add_subcommand("cache", "Inspect the key cache");
  cache->require_subcommand(1);
  auto* stats = cache->add_subcommand(
      "stats",
      "Show the key cache: cached keys, hits and misses, provider calls by outcome (ok, "
      "refused, unavailable, error) and the TTL. In server mode these are ekmd's counters; in "
      "local mode each command starts with an empty cache, so they describe this command only");
  stats->callback([c = &cli] {
    c->WithConnection([c](Connection& b) -> Status {
      EKM_ASSIGN_OR_RETURN(KeyCacheStats s, b.api().KeyCacheStatistics(b.ctx()));
      if (c->g.json) {
        std::cout << JsonText(KeyCacheStatsToJson(s), 2) << "\n";
      } else {
        PrintKeyCacheStats(s);
      }
      return Status::Ok();
    });
  });
}

}  // namespace ekm::cli
