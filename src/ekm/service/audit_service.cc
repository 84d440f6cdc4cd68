#include <spdlog/spdlog.h>

#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {

constexpr std::string_view kUsageActor = "system:usage";

}  // namespace

StatusOr<std::vector<LifecycleEventInfo>> EkmServiceImpl::ListEvents(const CallContext& /*ctx*/,
                                                                     const EventQuery& q) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", q.workspace));
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(q.workspace).status());
  EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> recs, QueryRecords(q, "event"));
  std::vector<LifecycleEventInfo> out;
  out.reserve(recs.size());
  for (auto& r : recs) {
    out.push_back({r.id, r.at_ms, std::move(r.workspace), std::move(r.environment),
                   std::move(r.type), std::move(r.actor), std::move(r.detail)});
  }
  return out;
}

StatusOr<std::vector<LifecycleEventInfo>> EkmServiceImpl::KeyHistory(const CallContext& /*ctx*/,
                                                                     std::string_view workspace,
                                                                     std::string_view environment,
                                                                     int64_t after_id,
                                                                     size_t limit) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  if (limit < 1 || limit > 1000) {
    return InvalidArgumentError("limit must be between 1 and 1000, got " + std::to_string(limit),
                                "page with after=<id of the last event seen>");
  }
  LifecycleEventFilter f;
  f.workspace = env.workspace;
  f.environment = env.name;
  f.after_id = after_id;
  f.limit = limit;
  for (std::string_view type :
       {event::kKeyValidated, event::kKeyValidationFailed, event::kKeySet, event::kKeyReplaced,
        event::kKeyEmergencyReplaced, event::kKeyReplacementRefused, event::kKeyMaterialImported,
        event::kKeyMaterialDeleted}) {
    f.types.emplace_back(type);
  }
  EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> recs, store_->ListLifecycleEvents(f));
  std::vector<LifecycleEventInfo> out;
  out.reserve(recs.size());
  for (auto& r : recs) {
    out.push_back({r.id, r.at_ms, std::move(r.workspace), std::move(r.environment),
                   std::move(r.type), std::move(r.actor), std::move(r.detail)});
  }
  return out;
}

StatusOr<std::vector<LifecycleEventRecord>> EkmServiceImpl::QueryAudit(const CallContext& /*ctx*/,
                                                                       const EventQuery& q) {
  EKM_RETURN_IF_ERROR(CheckChain(q.workspace));
  return QueryRecords(q, "record");
}

Status EkmServiceImpl::ExportAudit(const CallContext& /*ctx*/, std::string_view chain,
                                   const std::function<Status(const LifecycleEventRecord&)>& sink) {
  EKM_RETURN_IF_ERROR(CheckChain(chain));
  LifecycleEventFilter f;
  f.workspace = std::string(chain);
  f.limit = 1000;
  for (;;) {
    EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> page, store_->ListLifecycleEvents(f));
    for (const auto& r : page) EKM_RETURN_IF_ERROR(sink(r));
    if (page.size() < f.limit) return Status::Ok();
    f.after_id = page.back().id;
  }
}

StatusOr<AuditCheckpoint> EkmServiceImpl::CreateAuditCheckpoint(const CallContext& /*ctx*/,
                                                                std::string_view chain) {
  EKM_RETURN_IF_ERROR(CheckChain(chain));
  EKM_ASSIGN_OR_RETURN(Store::AuditChainHead head, store_->GetAuditChainHead(chain));
  if (head.seq == 0) {
    return FailedPreconditionError("the audit chain has no records yet",
                                   "a checkpoint anchors existing records; try again later");
  }
  return SignCheckpoint(head);
}

StatusOr<std::vector<AuditCheckpoint>> EkmServiceImpl::ListAuditCheckpoints(
    const CallContext& /*ctx*/, std::string_view chain) {
  EKM_RETURN_IF_ERROR(CheckChain(chain));
  EKM_ASSIGN_OR_RETURN(std::vector<Store::AuditCheckpointRecord> recs,
                       store_->ListAuditCheckpoints(chain));
  std::vector<AuditCheckpoint> out;
  out.reserve(recs.size());
  for (auto& r : recs) {
    out.push_back(AuditCheckpoint{std::move(r.chain), r.seq, std::move(r.head_hash), r.at_ms,
                                  std::move(r.key_id), std::move(r.signature)});
  }
  return out;
}

StatusOr<size_t> EkmServiceImpl::CheckpointAdvancedChains() {
  EKM_ASSIGN_OR_RETURN(std::vector<Store::AuditChainHead> heads, store_->ListAuditChainHeads());
  size_t made = 0;
  for (const auto& h : heads) {
    if (h.seq <= h.checkpointed_seq) continue;
    EKM_RETURN_IF_ERROR(SignCheckpoint(h).status());
    ++made;
  }
  return made;
}

Status EkmServiceImpl::FlushDataPlaneUsage() {
  std::vector<UsageCounter::Row> rows = usage_->Drain();
  Status first = Status::Ok();
  // One record per workspace, environment and minute, listing its scopes and operations
  // (rows come sorted that way).
  for (size_t i = 0; i < rows.size();) {
    const UsageCounter::Row& head = rows[i];
    nlohmann::json counts = nlohmann::json::array();
    size_t j = i;
    for (; j < rows.size() && rows[j].workspace == head.workspace &&
           rows[j].environment == head.environment && rows[j].minute == head.minute;
         ++j) {
      counts.push_back({{"scope", rows[j].scope},
                        {"operation", rows[j].operation},
                        {"outcome", UsageOutcomeName(rows[j].outcome)},
                        {"count", rows[j].count}});
    }
    nlohmann::json detail = {{"minute", FormatRfc3339(FromUnixSeconds(head.minute * 60))},
                             {"counts", counts}};
    Status s = RecordLifecycleEvent(*store_, *options_.clock, kUsageActor, head.workspace,
                                    head.environment, event::kDataPlaneUsage, detail);
    if (!s.ok() && first.ok()) first = s;
    i = j;
  }
  return first;
}

void EkmServiceImpl::StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                                     std::chrono::milliseconds usage_interval) {
  // One thread for both, so a flush and a checkpoint never run at once.
  auto next_checkpoint = std::chrono::steady_clock::now() + checkpoint_interval;
  auto next_usage = std::chrono::steady_clock::now() + usage_interval;
  audit_tasks_.Start(
      [=, this](bool) mutable {
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_usage) {
          Status s = FlushDataPlaneUsage();
          if (!s.ok()) spdlog::error("audit: flushing data-plane usage: {}", s.ToString());
          next_usage = now + usage_interval;
        }
        if (now >= next_checkpoint) {
          // One process of several on the store checkpoints (the lease outlives the interval,
          // so its holder keeps it from one round to the next).
          if (HoldJobLease("audit-checkpoints", checkpoint_interval * 2)) {
            auto made = CheckpointAdvancedChains();
            if (!made.ok()) spdlog::error("audit: checkpoints: {}", made.status().ToString());
          }
          next_checkpoint = now + checkpoint_interval;
        }
        return std::min(next_checkpoint, next_usage);
      },
      std::min(next_checkpoint, next_usage));
}

void EkmServiceImpl::StopAuditTasks() {
  const bool was_running = audit_tasks_.running();
  audit_tasks_.Stop();
  Status s = FlushDataPlaneUsage();
  if (!s.ok()) spdlog::error("audit: flushing data-plane usage: {}", s.ToString());
  if (was_running) {
    // ekmd stopping: anchor what it appended.
    auto made = CheckpointAdvancedChains();
    if (!made.ok()) spdlog::error("audit: checkpoints: {}", made.status().ToString());
  }
}

StatusOr<std::vector<LifecycleEventRecord>> EkmServiceImpl::QueryRecords(const EventQuery& q,
                                                                         std::string_view noun) {
  if (q.environment) EKM_RETURN_IF_ERROR(ValidateName("environment", *q.environment));
  if (q.limit < 1 || q.limit > 1000) {
    return InvalidArgumentError("limit must be between 1 and 1000, got " + std::to_string(q.limit),
                                "page with after=<id of the last " + std::string(noun) + " seen>");
  }
  if (q.since_ms >= q.until_ms) {
    return InvalidArgumentError("since must be before until",
                                "give a start time earlier than the end time, or leave one out");
  }
  LifecycleEventFilter f;
  f.workspace = q.workspace;
  f.environment = q.environment;
  f.type = q.type;
  f.since_ms = q.since_ms;
  f.until_ms = q.until_ms;
  f.after_id = q.after_id;
  f.limit = q.limit;
  return store_->ListLifecycleEvents(f);
}

Status EkmServiceImpl::CheckChain(std::string_view chain) {
  if (chain.empty()) return Status::Ok();
  EKM_RETURN_IF_ERROR(ValidateName("workspace", chain));
  return store_->GetWorkspace(chain).status();
}

StatusOr<AuditCheckpoint> EkmServiceImpl::SignCheckpoint(const Store::AuditChainHead& head) {
  AuditCheckpoint c{head.chain,
                    head.seq,
                    head.hash,
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        options_.clock->Now().time_since_epoch())
                        .count(),
                    "",
                    {}};
  EKM_RETURN_IF_ERROR(audit_signer_->Sign(c));
  EKM_RETURN_IF_ERROR(store_->PutAuditCheckpoint(Store::AuditCheckpointRecord{
      0, c.chain, c.seq, c.head_hash, c.at_ms, c.key_id, c.signature}));
  return c;
}

}  // namespace ekm
