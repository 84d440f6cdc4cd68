// The record of the audit log: one lifecycle or admin event, chained per workspace. Its own
// header, below the store: the store keeps and appends these records (chaining them in its
// append transaction with audit_log.h), and an auditor's offline tools need them without a store.
#pragma once

#include <cstdint>
#include <string>

#include "ekm/base/bytes.h"

namespace ekm {

// One lifecycle event (events/lifecycle_event.h): time, actor, environment, what happened.
// Stored as a record of the audit log (audit/audit_log.h): chained per workspace.
struct LifecycleEventRecord {
  int64_t id = 0;
  int64_t at_ms = 0;  // unix milliseconds
  std::string workspace;
  std::string environment;  // empty for a workspace-wide event
  std::string type;         // event::k… ("key.replaced", …)
  std::string actor;
  std::string detail;  // JSON object, never key material
  // The audit chain: the workspace ("" = the platform chain), 1, 2, … per chain, the previous
  // record's hash (32 zero bytes for seq 1) and this record's (audit/audit_log.h).
  std::string chain{};
  int64_t seq = 0;
  Bytes prev_hash{};
  Bytes hash{};
};

}  // namespace ekm
