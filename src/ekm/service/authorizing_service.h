// Every authorization decision of the API in one place, in front of the service, for every front
// end (ekmd's router, the CLI in local mode, a console or another door tomorrow): the route rule
// of each operation (the rule column of api/operations.h: role, workspace, environment
// restriction), the owner-only changes (an emergency replacement, the replacement period), the
// environment restriction of event and audit queries and of the audit export, token
// administration (whose tokens a caller may create, list, read and revoke), and what a caller
// sees of a list. Operations without a route (a foreground repack, the bootstrap token) are the
// local operator's. A refusal is recorded as token.permission_denied
// and returned as PermissionDenied (403); the checks never read the store but for a token looked
// up by id, which answers an unknown id as it answers another workspace's token.
#pragma once

#include <memory>

#include "ekm/service/ekm_service.h"

namespace ekm {

// `inner` must outlive the result.
std::unique_ptr<EkmService> NewAuthorizingService(EkmService* inner);

}  // namespace ekm
