// Cluster notices (store.h): a change that every process on the store must act on at once.
// This process posts one after each such change it makes, and reads the others' every second
// (ekmd; StartFollowingCluster), so a shred, a CMK change or a token revocation made through
// one ekmd replica (or `ekm` in local mode) reaches every other within about a second, not at
// their key cache TTL.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/random.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {
// A notice committed late (PostgreSQL assigns seq at insert, commits later) has a seq a little
// below the newest one read: each read goes back this far, and skips what it applied already.
constexpr int64_t kNoticeOverlap = 256;
constexpr size_t kNoticesPerRead = 1000;
}  // namespace

void EkmServiceImpl::PostNotice(std::string_view kind, const EnvironmentRecord* env,
                                std::string_view token_id) {
  Store::ClusterNotice n;
  n.at = ToUnixSeconds(options_.clock->Now());
  n.kind = std::string(kind);
  if (env != nullptr) {
    n.workspace = env->workspace;
    n.environment = env->name;
  }
  n.token_id = std::string(token_id);
  // Best effort: without it the other processes see the change at their key cache TTL (the
  // bound that holds for every path anyway).
  Status s = store_->PostClusterNotice(n);
  if (!s.ok()) spdlog::warn("could not post a cluster notice ({}): {}", kind, s.ToString());
}

StatusOr<size_t> EkmServiceImpl::ApplyClusterNotices() {
  std::lock_guard<std::mutex> lock(notices_mu_);
  if (!notices_started_) {
    // Only what is posted from now on: the caches start empty.
    EKM_ASSIGN_OR_RETURN(notices_seen_up_to_, store_->LatestClusterNoticeSeq());
    notices_started_ = true;
    return size_t{0};
  }
  EKM_ASSIGN_OR_RETURN(
      std::vector<Store::ClusterNotice> notices,
      store_->ListClusterNotices(std::max<int64_t>(0, notices_seen_up_to_ - kNoticeOverlap),
                                 kNoticesPerRead));
  size_t applied = 0;
  for (const Store::ClusterNotice& n : notices) {
    if (!notices_applied_.insert(n.seq).second) continue;
    notices_seen_up_to_ = std::max(notices_seen_up_to_, n.seq);
    ++applied;
    if (n.kind == kNoticeTokenRevoked) {
      std::lock_guard<std::mutex> token_lock(token_mu_);
      token_cache_.erase(n.token_id);
      continue;
    }
    auto env = store_->GetEnvironment(n.workspace, n.environment);
    if (!env.ok()) continue;
    if (n.kind == kNoticeEnvironmentShredded) {
      keys_.PurgeEnvironment(*env);
      shred_status_.Erase(std::to_string(env->id));
    } else if (n.kind == kNoticeDataKeysRotated) {
      keys_.ForgetCurrentDataKeys(env->id);
    } else {
      keys_.ForgetEnvironment(env->workspace, env->name);
      keys_.ForgetEnvironmentSettings(env->id);
    }
  }
  // The applied set only needs the overlap window.
  while (notices_applied_.size() > 4 * kNoticeOverlap) {
    notices_applied_.erase(notices_applied_.begin());
  }
  return applied;
}

std::string EkmServiceImpl::LeaseHolder(const std::string& node_name) {
  if (node_name.empty()) return {};
  auto suffix = RandomUint64();
  return node_name + "/" +
         (suffix.ok() ? HexEncode(ByteView(reinterpret_cast<const uint8_t*>(&*suffix), 4))
                      : std::to_string(::getpid()));
}

bool EkmServiceImpl::HoldJobLease(std::string_view job, std::chrono::milliseconds duration) {
  if (lease_holder_.empty()) return true;
  const int64_t now = ToUnixMillis(options_.clock->Now());
  auto held = store_->TakeLease(job, lease_holder_, now, now + duration.count());
  if (!held.ok()) {
    spdlog::warn("cannot take the lease {}: {}", job, held.status().ToString());
    return false;
  }
  return *held;
}

void EkmServiceImpl::StartFollowingCluster(std::chrono::milliseconds interval) {
  ApplyClusterNotices().status().IgnoreError();  // from now on
  cluster_follower_.StartEvery(interval, [this] {
    auto applied = ApplyClusterNotices();
    if (!applied.ok()) spdlog::warn("reading cluster notices: {}", applied.status().ToString());
  });
}

}  // namespace ekm
