#include "ekm/cli/connection.h"

#include <utility>

#include "ekm/service/authorizing_service.h"

namespace ekm::cli {

StatusOr<std::unique_ptr<Connection>> Connection::Local(const EkmOptions& options,
                                                        CallContext caller) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmService> service, EkmService::Open(options));
  std::unique_ptr<Connection> c(new Connection());
  c->service_ = std::move(service);
  c->authorized_ = NewAuthorizingService(c->service_.get());
  c->api_ = c->authorized_.get();
  c->local_ = c->authorized_.get();
  c->ctx_ = std::move(caller);
  return c;
}

StatusOr<std::unique_ptr<Connection>> Connection::Remote(const std::string& server_url,
                                                         const std::string& token,
                                                         const ClientTlsOptions& tls) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EkmClient> client,
                       EkmClient::Create(server_url, token, tls));
  std::unique_ptr<Connection> c(new Connection());
  c->client_ = std::move(client);
  c->api_ = c->client_.get();
  // The caller is the token, which ekmd reads; the context only fills the parameter.
  c->ctx_.actor = "api";
  return c;
}

}  // namespace ekm::cli
