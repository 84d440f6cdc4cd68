// What a CLI command runs against: the API (api/ekm_api.h), either the service in this process
// on the data directory (local mode, behind the same authorization as ekmd) or a running ekmd
// over HTTP (server mode), and who calls. Every command is written once, against `api`.
#pragma once

#include <memory>
#include <string>

#include "ekm/api/call_context.h"
#include "ekm/api/ekm_api.h"
#include "ekm/base/status.h"
#include "ekm/client/ekm_client.h"
#include "ekm/service/ekm_service.h"

namespace ekm::cli {

class Connection {
 public:
  // Local mode: opens the data directory; `caller` is the operator ("cli:alice").
  static StatusOr<std::unique_ptr<Connection>> Local(const EkmOptions& options, CallContext caller);
  // Server mode: ekmd at `server_url`, as the token's bearer.
  static StatusOr<std::unique_ptr<Connection>> Remote(const std::string& server_url,
                                                      const std::string& token,
                                                      const ClientTlsOptions& tls = {});

  EkmApi& api() { return *api_; }
  const CallContext& ctx() const { return ctx_; }
  // Local mode only (nullptr in server mode, where ekmd runs repacks by itself): the service,
  // for what has no route (a foreground repack).
  EkmService* local_service() { return local_; }

 private:
  Connection() = default;
  std::unique_ptr<EkmService> service_;     // local mode
  std::unique_ptr<EkmService> authorized_;  // service_ behind the same authorization as ekmd's
  std::unique_ptr<EkmClient> client_;       // server mode
  EkmApi* api_ = nullptr;
  EkmService* local_ = nullptr;
  CallContext ctx_;
};

}  // namespace ekm::cli
