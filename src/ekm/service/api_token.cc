#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {

// The caller's role, which token rules and events name; none for the local operator.
std::optional<auth::Role> RoleOf(const CallContext& ctx) {
  if (ctx.caller.local_operator) return std::nullopt;
  return ctx.caller.role;
}

}  // namespace

StatusOr<NewApiToken> EkmServiceImpl::CreateApiToken(const CallContext& ctx,
                                                     const ApiTokenRequest& req) {
  EKM_ASSIGN_OR_RETURN(auth::Role role, auth::ParseRole(req.role));
  if (role == auth::Role::kAdmin) {
    if (!req.workspace.empty() || !req.environments.empty()) {
      return InvalidArgumentError(
          "an admin token is platform-wide: it takes no workspace or "
          "environment",
          "leave out --workspace and --environment for --role admin");
    }
  } else {
    if (req.workspace.empty()) {
      return InvalidArgumentError("a " + req.role + " token needs a workspace",
                                  "pass --workspace W (\"workspace\" in the API)");
    }
    EKM_RETURN_IF_ERROR(ValidateName("workspace", req.workspace));
    for (const std::string& e : req.environments) {
      EKM_RETURN_IF_ERROR(ValidateName("environment", e));
    }
  }
  auto lifetime = req.expires_in.count() == 0 ? kDefaultApiTokenLifetime : req.expires_in;
  if (lifetime.count() < 60 || lifetime > kMaxApiTokenLifetime) {
    return InvalidArgumentError("a token's lifetime must be between 1 minute and 366 days, got " +
                                    std::to_string(lifetime.count()) + " seconds",
                                "pass e.g. --expires-in 30d (default 90d)");
  }
  if (req.description.size() > 200) {
    return InvalidArgumentError("the description is longer than 200 characters");
  }
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  // The workspace and environments it names, checked in the transaction that stores it.
  StatusOr<NewApiToken> created = InternalError("no token was created");
  EKM_RETURN_IF_ERROR(store_->InTransaction([&]() -> Status {
    if (role != auth::Role::kAdmin) {
      EKM_RETURN_IF_ERROR(store_->GetWorkspace(req.workspace).status());
      for (const std::string& e : req.environments) {
        EKM_RETURN_IF_ERROR(store_->GetEnvironment(req.workspace, e).status());
      }
    }
    created = StoreNewToken(ctx, role, req.workspace, req.environments, req.description, now,
                            now + lifetime.count(), std::nullopt, RoleOf(ctx));
    return created.status();
  }));
  return created;
}

StatusOr<std::vector<ApiTokenInfo>> EkmServiceImpl::ListApiTokens(
    const CallContext& /*ctx*/, std::optional<std::string> workspace) {
  std::optional<std::string_view> ws;
  if (workspace) ws = *workspace;
  EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> recs, store_->ListApiTokens(ws));
  std::vector<ApiTokenInfo> out;
  for (auto& r : recs) out.push_back(TokenInfo(r));
  return out;
}

StatusOr<ApiTokenInfo> EkmServiceImpl::GetApiToken(const CallContext& /*ctx*/,
                                                   std::string_view id) {
  EKM_ASSIGN_OR_RETURN(Store::ApiTokenRecord r, StoredToken(id));
  return TokenInfo(r);
}

StatusOr<ApiTokenInfo> EkmServiceImpl::RevokeApiToken(const CallContext& ctx, std::string_view id) {
  EKM_ASSIGN_OR_RETURN(Store::ApiTokenRecord r, StoredToken(id));
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  EKM_RETURN_IF_ERROR(store_->RevokeApiToken(id, now));
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    token_cache_.erase(std::string(id));  // immediate on this node
  }
  PostNotice(kNoticeTokenRevoked, nullptr, id);  // the other nodes within a second
  if (r.revoked_at == 0) {
    r.revoked_at = now;
    RecordTokenEvent(ctx, r.workspace, event::kTokenRevoked, {{"token_id", r.id}, {"role", r.role}},
                     "revoked_by_role", RoleOf(ctx));
  }
  return TokenInfo(r);
}

StatusOr<auth::Principal> EkmServiceImpl::Authenticate(std::string_view text,
                                                       std::string_view route,
                                                       std::string_view remote) {
  std::optional<std::string> id = auth::TokenIdOf(text);
  // Recorded as the anonymous caller ("api") of the request it refused.
  const CallContext ctx = CallContext::Request({}, "", std::string(remote));
  std::string workspace;  // where the failure is recorded: the token's, else the platform's
  auto fail = [&](std::string_view reason, std::string message) -> Status {
    nlohmann::json d = {{"reason", reason}, {"route", route}, {"remote_address", remote}};
    if (id) d["token_id"] = *id;
    RecordEvent(ctx, workspace, "", event::kTokenAuthFailed, d);
    return UnauthenticatedError(std::move(message),
                                "pass --token or EKM_TOKEN (Authorization: Bearer …)");
  };
  if (text.empty()) return fail("missing", "this route needs an API token");
  auto presented = auth::ParseToken(text);
  if (!presented.ok()) return fail("malformed", "the bearer token is malformed");
  auto rec = CachedToken(presented->id);
  if (!rec.ok()) return rec.status();  // the store is unavailable: not the caller's fault
  // One message for an unknown token and a wrong secret: a guess learns nothing.
  if (!rec->has_value()) return fail("unknown", "the bearer token is not valid");
  const Store::ApiTokenRecord& r = **rec;
  workspace = r.workspace;
  if (!auth::SecretMatches(presented->secret, r.secret_sha256)) {
    return fail("wrong_secret", "the bearer token is not valid");
  }
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  if (r.revoked_at != 0) return fail("revoked", "the bearer token was revoked");
  if (r.expires_at != 0 && now >= r.expires_at) {
    return fail("expired",
                "the bearer token expired at " + FormatRfc3339(FromUnixSeconds(r.expires_at)));
  }
  auto role = auth::ParseRole(r.role);
  if (!role.ok()) return DataLossError("token " + r.id + " has an unknown role");
  auth::Principal p;
  p.token_id = r.id;
  p.role = *role;
  p.workspace = r.workspace;
  p.environments = r.environments;
  p.expires_at = r.expires_at;
  return p;
}

void EkmServiceImpl::RecordPermissionDenied(const auth::Principal& p, std::string_view route,
                                            std::string_view workspace,
                                            std::string_view environment, std::string_view remote,
                                            const Status& why) {
  nlohmann::json d = {{"route", route},
                      {"role", auth::RoleName(p.role)},
                      {"remote_address", remote},
                      {"message", why.message()}};
  if (!p.token_id.empty()) d["token_id"] = p.token_id;
  if (!workspace.empty()) d["workspace"] = workspace;
  if (!environment.empty()) d["environment"] = environment;
  RecordEvent(CallContext::Request(p, "", std::string(remote)), p.workspace, "",
              event::kTokenPermissionDenied, d);
}

StatusOr<BootstrapAdminToken> EkmServiceImpl::EnsureBootstrapAdminToken(
    const CallContext& ctx, std::optional<std::string_view> given) {
  const int64_t now = ToUnixSeconds(options_.clock->Now());
  // The check and the new token in one transaction: replicas starting at once on an empty
  // store make one admin token between them, not one each.
  BootstrapAdminToken b;
  EKM_RETURN_IF_ERROR(store_->InTransaction([&]() -> Status {
    b = BootstrapAdminToken{};
    EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> admins, store_->ListApiTokens(""));
    for (const auto& a : admins) {
      if (a.role == "admin" && a.revoked_at == 0 && (a.expires_at == 0 || a.expires_at > now)) {
        return Status::Ok();
      }
    }
    std::optional<auth::PresentedToken> presented;  // parsed again if the body runs again
    if (given) {
      auto p = auth::ParseToken(*given);
      if (!p.ok()) {
        return InvalidArgumentError("the bootstrap token file does not hold an ekm token",
                                    "write one line ekm_<16 hex>_<43 base64url> to it, e.g. "
                                    "from another `ekm init`, or leave the flag out");
      }
      presented = std::move(*p);
    }
    EKM_ASSIGN_OR_RETURN(
        NewApiToken t, StoreNewToken(ctx, auth::Role::kAdmin, "", {}, "bootstrap admin token", now,
                                     0, std::move(presented)));
    b.created = true;
    b.id = t.info.id;
    if (!given) b.token = std::move(t.token);
    return Status::Ok();
  }));
  return b;
}

ApiTokenInfo EkmServiceImpl::TokenInfo(const Store::ApiTokenRecord& r) {
  return ApiTokenInfo{r.id,         r.role,       r.workspace,  r.environments, r.description,
                      r.created_at, r.created_by, r.expires_at, r.revoked_at};
}

StatusOr<Store::ApiTokenRecord> EkmServiceImpl::StoredToken(std::string_view id) {
  if (!auth::TokenIdOf(std::string(auth::kTokenPrefix) + std::string(id) + "_")) {
    // Appended, not `"\"" + std::string(id)`: GCC 12 at -O3 reports a false -Wrestrict.
    return InvalidArgumentError(std::string("\"").append(id).append("\" is not a token id"),
                                "a token id is 16 hex digits (ekm token list shows them)");
  }
  EKM_ASSIGN_OR_RETURN(std::optional<Store::ApiTokenRecord> r, store_->GetApiToken(id));
  if (!r) return NotFoundError("token " + std::string(id) + " not found");
  return std::move(*r);
}

StatusOr<NewApiToken> EkmServiceImpl::StoreNewToken(const CallContext& ctx, auth::Role role,
                                                    const std::string& workspace,
                                                    const std::vector<std::string>& environments,
                                                    const std::string& description, int64_t now,
                                                    int64_t expires_at,
                                                    std::optional<auth::PresentedToken> presented,
                                                    std::optional<auth::Role> requested_by) {
  Store::ApiTokenRecord r;
  NewApiToken out;
  if (presented) {
    r.id = presented->id;
    r.secret_sha256 = auth::SecretHash(presented->secret);
  } else {
    EKM_ASSIGN_OR_RETURN(auth::GeneratedToken g, auth::GenerateToken());
    r.id = g.id;
    r.secret_sha256 = std::move(g.secret_sha256);
    out.token = std::move(g.text);
  }
  r.role = std::string(auth::RoleName(role));
  r.workspace = workspace;
  r.environments = environments;
  r.description = description;
  r.created_at = now;
  r.created_by = ctx.actor;
  r.expires_at = expires_at;
  nlohmann::json d = {{"token_id", r.id}, {"role", r.role}, {"expires_at", r.expires_at}};
  if (!environments.empty()) d["environments"] = environments;
  if (requested_by == auth::Role::kAdmin && role == auth::Role::kOwner) {
    // The admin creates a workspace's owner only while none is valid: the first owner, or a
    // recovery after every owner token expired or was revoked (which the customer must see).
    EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> before,
                         store_->ListApiTokens(workspace));
    const bool had_owners = std::any_of(before.begin(), before.end(), [](const auto& t) {
      return t.role == auth::RoleName(auth::Role::kOwner);
    });
    Status s = store_->CreateOwnerTokenUnlessOneIsValid(r, now);
    if (s.code() == StatusCode::kFailedPrecondition) {
      return PermissionDeniedError(
          "workspace \"" + workspace +
              "\" has a valid owner token: its owners create "
              "further owner tokens; the admin creates one only for a workspace that has none",
          "ask an owner of " + workspace + " (EKM_TOKEN=<owner token> ekm token create -w " +
              workspace +
              " -r owner); once every owner token has expired or been revoked, "
              "the admin can create one again, recorded in the workspace's audit log");
    }
    EKM_RETURN_IF_ERROR(s);
    d["recovery"] = had_owners;
  } else {
    EKM_RETURN_IF_ERROR(store_->CreateApiToken(r));
  }
  RecordTokenEvent(ctx, workspace, event::kTokenCreated, std::move(d), "created_by_role",
                   requested_by);
  out.info = TokenInfo(r);
  return out;
}

void EkmServiceImpl::RecordTokenEvent(const CallContext& ctx, const std::string& workspace,
                                      std::string_view type, nlohmann::json d,
                                      std::string_view role_field,
                                      std::optional<auth::Role> requested_by) {
  d[std::string(role_field)] = requested_by ? auth::RoleName(*requested_by) : "operator";
  RecordEvent(ctx, workspace, "", type, d);
  if (requested_by == auth::Role::kAdmin && !workspace.empty()) {
    d["workspace"] = workspace;
    RecordEvent(ctx, "", "", type, d);
  }
}

StatusOr<std::optional<Store::ApiTokenRecord>> EkmServiceImpl::CachedToken(const std::string& id) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    auto it = token_cache_.find(id);
    if (it != token_cache_.end() && now - it->second.read_at < kApiTokenCacheTtl) {
      return std::optional<Store::ApiTokenRecord>(it->second.record);
    }
  }
  EKM_ASSIGN_OR_RETURN(std::optional<Store::ApiTokenRecord> r, store_->GetApiToken(id));
  if (r) {  // unknown ids are not cached: a token created on another node works at once
    std::lock_guard<std::mutex> lock(token_mu_);
    if (token_cache_.size() >= kMaxCachedTokens) token_cache_.clear();
    token_cache_[id] = CachedTokenRecord{*r, now};
  }
  return r;
}

}  // namespace ekm
