#include "ekm/api/call_context.h"

#include <utility>

namespace ekm {

CallContext CallContext::Operator(std::string actor) {
  CallContext c;
  c.caller = auth::Principal::LocalOperator();
  c.actor = std::move(actor);
  return c;
}

CallContext CallContext::System(std::string_view job) {
  return Operator("system:" + std::string(job));
}

CallContext CallContext::Request(auth::Principal caller, std::string request_id,
                                 std::string remote_address) {
  CallContext c;
  c.actor = caller.token_id.empty() ? std::string("api") : caller.Actor();
  c.caller = std::move(caller);
  c.request_id = std::move(request_id);
  c.remote_address = std::move(remote_address);
  return c;
}

}  // namespace ekm
