#include "ekm/auth/authorization.h"

#include <string>

namespace ekm::auth {

namespace {

constexpr Role kAllRoles[] = {Role::kAdmin, Role::kOwner, Role::kKeyManager, Role::kApp,
                              Role::kAuditor};

Status Denied(std::string message, std::string hint = {}) {
  return PermissionDeniedError(std::move(message), std::move(hint));
}

}  // namespace

std::string AllowedRolesText(const RouteRule& rule) {
  std::string out;
  int n = 0, total = 0;
  for (Role r : kAllRoles) total += rule.Allows(r) ? 1 : 0;
  for (Role r : kAllRoles) {
    if (!rule.Allows(r)) continue;
    ++n;
    if (n > 1) out += n == total ? " or " : ", ";
    out += RoleName(r);
  }
  return out.empty() ? "no role" : out;
}

Status Authorize(const Principal& p, const RouteRule& rule, std::string_view route_name,
                 std::string_view workspace, std::string_view environment) {
  if (rule.scope == RouteScope::kOpen || p.local_operator) return Status::Ok();
  if (!rule.Allows(p.role)) {
    return Denied("route " + std::string(route_name) + " needs the role " + AllowedRolesText(rule) +
                      "; this token has the role " + std::string(RoleName(p.role)),
                  "ask an owner of the workspace (or the platform admin) for a token with the "
                  "role needed: ekm token create --role ROLE");
  }
  if (p.role == Role::kAdmin) return Status::Ok();  // platform-wide
  if (rule.scope == RouteScope::kWorkspace || rule.scope == RouteScope::kWorkspaceChange ||
      rule.scope == RouteScope::kEnvironment) {
    // Same message whatever the workspace asked for: no existence leak.
    if (workspace != p.workspace) {
      return Denied("this token may act only on its own workspace \"" + p.workspace + "\"",
                    "use a token of the workspace you name");
    }
  }
  if (p.EnvironmentRestricted()) {
    if (rule.scope == RouteScope::kWorkspaceChange) {
      return Denied("route " + std::string(route_name) +
                        " changes the whole workspace; this token is restricted "
                        "to some environments",
                    "use a token of the workspace without --environment");
    }
    if (rule.scope == RouteScope::kEnvironment && !p.MayUseEnvironment(environment)) {
      return Denied(
          "this token may act only on its own environments of workspace \"" + p.workspace + "\"",
          "use a token created with --environment for this environment");
    }
  }
  return Status::Ok();
}

Status AuthorizeOwnerOnly(const Principal& p, std::string_view what) {
  if (p.local_operator || p.role == Role::kOwner) return Status::Ok();
  return Denied(std::string(what) + " needs the role owner; this token has the role " +
                    std::string(RoleName(p.role)),
                "ask an owner of the workspace to do it");
}

Status AuthorizeTokenAdministration(const Principal& p, TokenAction action,
                                    std::string_view workspace, std::string_view role) {
  if (p.local_operator) return Status::Ok();
  const std::string ws(workspace);
  if (p.role == Role::kAdmin) {
    auto parsed = ParseRole(role);  // an unknown role is the service's 400
    if (action == TokenAction::kCreate && parsed.ok() && *parsed != Role::kAdmin &&
        *parsed != Role::kOwner) {
      return Denied("the admin cannot create " + std::string(role) +
                        " tokens: a workspace's tokens are created by its owner, so that no "
                        "admin token can read data",
                    "create the workspace's owner token if it has none (ekm token create -w " +
                        (ws.empty() ? std::string("W") : ws) +
                        " -r owner), then this one with it: EKM_TOKEN=<owner token> ekm token "
                        "create -w " +
                        (ws.empty() ? std::string("W") : ws) + " -r " + std::string(role));
    }
    if (action == TokenAction::kRevoke && parsed.ok() && *parsed == Role::kOwner) {
      return Denied(
          "the admin cannot revoke owner tokens: revoking every owner and creating a "
          "new one would hand the admin the workspace's data",
          "ask an owner of workspace \"" + ws +
              "\" (an owner revokes any owner token "
              "of its workspace, its own too); once no owner token is valid, the admin may "
              "create one, recorded in the workspace's audit log");
    }
    return Status::Ok();
  }
  if (p.role != Role::kOwner) {
    return Denied("managing tokens needs the role owner (or admin); this token has the role " +
                      std::string(RoleName(p.role)),
                  "ask an owner of the workspace");
  }
  if (p.EnvironmentRestricted()) {
    return Denied(
        "managing tokens is a workspace-wide change; this token is restricted to "
        "some environments",
        "use an owner token without --environment");
  }
  if (action == TokenAction::kCreate && role == RoleName(Role::kAdmin)) {
    return Denied("an owner cannot create admin tokens", "ask the platform admin");
  }
  if (workspace != p.workspace) {
    return Denied("this token may act only on its own workspace \"" + p.workspace + "\"",
                  "use a token of the workspace you name");
  }
  return Status::Ok();
}

bool MaySeeWorkspace(const Principal& p, std::string_view workspace) {
  return p.IsAdmin() || workspace == p.workspace;
}

bool MaySeeEnvironment(const Principal& p, std::string_view environment) {
  return p.MayUseEnvironment(environment);
}

Status AuthorizeRecordQuery(const Principal& p, const std::optional<std::string>& environment,
                            std::string_view rows) {
  if (!p.EnvironmentRestricted() || (environment && p.MayUseEnvironment(*environment))) {
    return Status::Ok();
  }
  return PermissionDeniedError(
      "this token may read only the " + std::string(rows) + " of its own environments",
      "add ?environment=E for one of the token's environments");
}

Status AuthorizeAuditExport(const Principal& p) {
  if (!p.EnvironmentRestricted()) return Status::Ok();
  return PermissionDeniedError(
      "this token is restricted to some environments; the export is the whole workspace's chain",
      "use a token of the workspace without --environment");
}

}  // namespace ekm::auth
