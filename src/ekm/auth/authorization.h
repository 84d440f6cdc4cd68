// Authorization: which roles may call an API route, on which workspace and environments. Each
// route's rule is a column of the operation table (api/operations.h), the one table of
// docs/api.md "Authentication and roles"; the checks of those rules, and of the decisions a
// rule cannot express (owner-only changes, lists, tokens), are here.
// Checks here never read the store: a scoped token asking about another workspace gets the
// same answer whether that workspace exists or not.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

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

// The roles a rule allows, one bit per Role: RoleBit(Role::kOwner) | RoleBit(Role::kAdmin).
constexpr unsigned RoleBit(Role r) { return 1u << static_cast<unsigned>(r); }

// No default: a route's rule is always written out in its row.
struct RouteRule {
  RouteScope scope;
  unsigned roles;  // RoleBit per allowed Role
  bool Allows(Role r) const { return (roles & RoleBit(r)) != 0; }
};

// "owner or key-manager": the roles a rule allows, for 403 messages.
std::string AllowedRolesText(const RouteRule& rule);

// OK, or PermissionDenied naming the role needed. The local operator may do everything.
// `workspace`/`environment`: the route's placeholders (empty when it has none); `route_name`
// (the operation's stable name) for the message.
Status Authorize(const Principal& p, const RouteRule& rule, std::string_view route_name,
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
