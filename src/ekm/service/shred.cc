#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include "ekm/base/encoding.h"
#include "ekm/base/random.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {

// What the store keeps of a shred confirmation token: its SHA-256 (the token is a capability).
Bytes ShredTokenHash(std::string_view token) {
  Bytes hash(SHA256_DIGEST_LENGTH);
  SHA256(reinterpret_cast<const uint8_t*>(token.data()), token.size(), hash.data());
  return hash;
}

}  // namespace

StatusOr<ShredConfirmation> EkmServiceImpl::RequestShred(const CallContext& ctx,
                                                         std::string_view workspace,
                                                         std::string_view environment) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  std::array<uint8_t, 24> raw;
  EKM_RETURN_IF_ERROR(RandomBytes(raw));
  ShredConfirmation c{env.workspace, env.name, "shred_" + Base64UrlEncode(raw),
                      ToUnixSeconds(options_.clock->Now() + kShredConfirmationTtl)};
  // In the store, so that step two may reach any process on it (another replica).
  EKM_RETURN_IF_ERROR(store_->PutShredConfirmation(ShredTokenHash(c.token), env.id, c.expires_at,
                                                   ToUnixSeconds(options_.clock->Now())));
  // The confirmation token itself is a capability: not recorded.
  RecordEvent(ctx, env.workspace, env.name, event::kShredRequested,
              {{"expires_at", FormatRfc3339(FromUnixSeconds(c.expires_at))}});
  return c;
}

StatusOr<ShredResult> EkmServiceImpl::ShredEnvironment(const CallContext& ctx,
                                                       std::string_view workspace,
                                                       std::string_view environment,
                                                       std::string_view token,
                                                       std::string_view confirm_environment) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  if (confirm_environment != environment) {
    return InvalidArgumentError(
        "the confirmation names environment \"" + std::string(confirm_environment) + "\", not \"" +
            std::string(environment) + "\"",
        "type the name of the environment to shred exactly: " + std::string(environment));
  }
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
  EKM_RETURN_IF_ERROR(TakeShredConfirmation(env, token));
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  EKM_ASSIGN_OR_RETURN(Store::EnvironmentShredRecord rec,
                       store_->ShredEnvironment(env.id, now, ctx.actor));
  // This node forgets every key of the environment now; other nodes when they read the notice
  // (within a second), and within one TTL whatever happens.
  keys_.PurgeEnvironment(env);
  PostNotice(kNoticeEnvironmentShredded, &env);
  shred_status_.Put(std::to_string(env.id),
                    std::make_shared<std::optional<Store::EnvironmentShredRecord>>(rec),
                    options_.clock->Monotonic() + std::chrono::hours(24 * 365));
  RecordEvent(
      ctx, env.workspace, env.name, event::kEnvironmentShredded,
      {{"ek_versions_destroyed", rec.ek_versions}, {"dk_versions_destroyed", rec.dk_versions}});
  spdlog::warn("environment {}/{} was crypto-shredded by {}", env.workspace, env.name, rec.actor);
  return ShredResult{env.workspace, env.name,        rec.shredded_at,
                     rec.actor,     rec.ek_versions, rec.dk_versions};
}

Status EkmServiceImpl::TakeShredConfirmation(const EnvironmentRecord& env, std::string_view token) {
  const std::string ask_again = "ask for a new confirmation (POST …/environments/" + env.name +
                                "/shred, or run `ekm environment shred` again)";
  EKM_ASSIGN_OR_RETURN(Store::ShredConfirmationTake c,
                       store_->TakeShredConfirmation(ShredTokenHash(token), env.id));
  if (!c.found) {
    return FailedPreconditionError(
        "the shred confirmation token is not known (never issued, "
        "used already, or expired and deleted)",
        ask_again);
  }
  if (!c.taken) {
    return InvalidArgumentError(
        "the shred confirmation token was issued for another "
        "environment, not for " +
            env.workspace + "/" + env.name,
        ask_again);
  }
  if (c.expires_at <= ToUnixSeconds(options_.clock->Now())) {
    return FailedPreconditionError(
        "the shred confirmation token expired at " + FormatRfc3339(FromUnixSeconds(c.expires_at)),
        ask_again);
  }
  return Status::Ok();
}

Status EkmServiceImpl::RefuseIfShredded(const EnvironmentRecord& env, bool cached,
                                        std::chrono::steady_clock::time_point* valid_until) {
  const std::string key = std::to_string(env.id);
  const auto now = options_.clock->Monotonic();
  std::shared_ptr<std::optional<Store::EnvironmentShredRecord>> status;
  auto expires = now + options_.key_cache_ttl;
  if (cached) status = shred_status_.Get(key, now, &expires);
  if (!status) {
    EKM_ASSIGN_OR_RETURN(std::optional<Store::EnvironmentShredRecord> rec,
                         store_->GetEnvironmentShred(env.id));
    status = std::make_shared<std::optional<Store::EnvironmentShredRecord>>(std::move(rec));
    expires = now + options_.key_cache_ttl;
    shred_status_.Put(key, status, expires);
  }
  if (valid_until != nullptr) *valid_until = std::min(*valid_until, expires);
  if (!status->has_value()) return Status::Ok();
  return ShreddedError(env.workspace, env.name, (*status)->shredded_at);
}

Status EkmServiceImpl::ShreddedError(std::string_view workspace, std::string_view environment,
                                     int64_t at) {
  return FailedPreconditionError(
      "environment " + std::string(workspace) + "/" + std::string(environment) +
          " was crypto-shredded at " + FormatRfc3339(FromUnixSeconds(at)) +
          "; its data can never be read",
      "the name stays taken: create a new environment under another name");
}

}  // namespace ekm
