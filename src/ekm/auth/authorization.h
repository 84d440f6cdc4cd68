// Authorization: which roles may call each API route, on which workspace and environments.
// The one rule table of docs/api.md "Authentication and roles", written as an exhaustive
// switch over RouteId, so a new route without a rule does not compile (-Werror=switch).
// Checks here never read the store: a scoped token asking about another workspace gets the
// same answer whether that workspace exists or not.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "ekm/api/operations.h"
#include "ekm/auth/token.h"
#include "ekm/base/status.h"

namespace ekm::auth {

// What a route acts on, which decides the workspace and environment checks.
enum class RouteScope {
  kOpen,             // no token needed (/healthz)
  kAnyToken,         // any valid token (who am I)
  kPlatform,         // no workspace in the path (admin routes, lists filtered by the handler)
  kWorkspace,        // /v1/workspaces/{workspace}/…: a read or a check
  kWorkspaceChange,  // a workspace-wide change: refused to environment-restricted tokens
  kEnvironment,      // …/environments/{environment}/…
};

struct RouteRule {
  RouteScope scope = RouteScope::kOpen;
  unsigned roles = 0;  // bit per Role
  bool Allows(Role r) const { return (roles >> static_cast<unsigned>(r)) & 1u; }
};

RouteRule RuleFor(RouteId id);

// "owner or key-manager": the roles a rule allows, for 403 messages.
std::string AllowedRolesText(const RouteRule& rule);

// OK, or PermissionDenied naming the role needed. The local operator may do everything.
// `workspace`/`environment`: the route's placeholders (empty when it has none); `route_name`
// (RouteInfo::name) for the message.
Status Authorize(const Principal& p, RouteId id, std::string_view route_name,
                 std::string_view workspace, std::string_view environment);

// An emergency replacement ("emergency": true on key set/import) and a shred: owner only.
Status AuthorizeOwnerOnly(const Principal& p, std::string_view what);

// What a token sees of a list (GET /v1/workspaces, GET …/environments): the admin every
// workspace, any other token its own; an environment-restricted token its own environments.
bool MaySeeWorkspace(const Principal& p, std::string_view workspace);
bool MaySeeEnvironment(const Principal& p, std::string_view environment);

// GET …/events and GET …/audit (the same rows): an environment-restricted token reads only
// with ?environment= one of its own. `rows` names them in the message ("events").
Status AuthorizeRecordQuery(const Principal& p, const std::optional<std::string>& environment,
                            std::string_view rows);
// The audit export is a workspace's whole chain, other environments included: refused to an
// environment-restricted token.
Status AuthorizeAuditExport(const Principal& p);

// Token management (POST /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/{id}). A workspace's
// tokens are its owner's to manage: an owner creates (any role but admin), lists and revokes
// the tokens of its own workspace. The admin must never obtain a token that reads data: it
// creates admin tokens and a workspace's owner token only (the service allows that one only
// while the workspace has no valid owner token), lists every token, and revokes any but owner
// tokens (revoking every owner and creating a new one would hand it the data). An
// environment-restricted token manages none; the local operator all.
enum class TokenAction { kCreate, kList, kRevoke };
// `workspace`: the token's ("" for admin tokens); `role`: the new token's (kCreate) or the one
// revoked (kRevoke).
Status AuthorizeTokenAdministration(const Principal& p, TokenAction action,
                                    std::string_view workspace, std::string_view role = {});

}  // namespace ekm::auth
