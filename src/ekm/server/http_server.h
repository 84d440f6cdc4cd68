// ekmd's HTTP/1.1 server: Boost.Beast on Boost.Asio with C++20 coroutines, one strand per
// connection on a small pool of I/O threads (no thread per connection), keep-alive, streaming
// request and response bodies for encrypt/decrypt of any size. See docs/api.md.
// Start/Stop are called from one controlling thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free port
  const Clock* clock = &Clock::Real();    // the service's (relative query times, token expiry)
  int threads = 0;                        // 0: one per core
  size_t max_body_size = 1 << 20;         // JSON request bodies
  std::chrono::seconds read_timeout{30};  // per read of a request header or body chunk
  bool allow_insecure_listen = false;     // plain HTTP on a non-loopback address
  // Sent as Ekm-Node on every answer, so a client behind a load balancer sees which replica
  // answered (empty: no header).
  std::string node_name;

  // TLS (1.2 with ECDHE and AEAD ciphers only, and 1.3) when both are set: PEM files, the
  // certificate file may hold the chain.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Client certificates signed by these CAs (PEM): "optional" asks for one, "require"
  // refuses a client without one. "none": not asked.
  std::string tls_client_ca_file;
  std::string tls_client_auth = "none";
  std::chrono::seconds handshake_timeout{10};
  // Requests per second per token (by its public id; by remote address without one), with
  // bursts up to rate_limit_burst; 0 turns the limit off.
  double rate_limit = 0;
  double rate_limit_burst = 0;
  // Failed authentications (401) per second per remote address, in bursts of 60 times that:
  // past it, the address gets 429 without its token being checked, so a flood of bad tokens
  // can neither guess nor fill the audit log with token.auth_failed records. 0: off.
  double auth_failure_limit = 0;
  bool metrics_unauthenticated = false;  // GET /metrics without a token
  std::string version = "0.1.0";         // ekm_build_info

  // A JSON request body must arrive whole within this time of its header (read_timeout still
  // bounds each read), so a client trickling one byte at a time cannot hold a connection.
  std::chrono::seconds body_timeout{60};
  // A streamed encrypt or decrypt must end within this time of its header. 0: no limit.
  std::chrono::seconds max_stream_duration{3600};
  // Open connections per client address; the next one is answered 429 and closed at once.
  // Loopback clients (a TLS-terminating proxy on the same host, whose connections all come
  // from 127.0.0.1) are exempt unless limit_loopback. 0: no limit.
  int max_connections_per_address = 256;
  bool limit_loopback = false;
  // Requests in progress at once per API token (streams included); the next one is answered
  // 429. 0: no limit.
  int max_requests_per_token = 256;
  // Threads for the work I/O threads never wait on (api/operations.h ThreadsFor): key cache
  // misses (the store, a KMS), the admin plane, import-params' RSA key generation.
  int blocking_threads = 32;
  // The bulkhead: requests of one environment on the blocking pool at once, and waiting for a
  // place (without a thread); past both, 503 with Retry-After. 0: no limit.
  int max_blocking_per_environment = 8;
  int max_queued_per_environment = 64;
  // Tests only: called on a blocking thread before a route's handler runs there.
  std::function<void(std::string_view route_name)> blocking_call_hook;

  bool tls() const { return !tls_cert_file.empty() || !tls_key_file.empty(); }
};

class HttpServer {
 public:
  HttpServer(EkmService* service, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on background threads.
  Status Start();
  // The bound port (after Start).
  int port() const;
  // Stops accepting, lets in-flight requests finish within `grace`, closes idle connections,
  // and joins the threads.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Puts `service`'s key cache counters on metrics::Default() (read at each scrape). `service`
// must outlive every later scrape: ekmd calls it once for its one service.
void ExportServiceMetrics(EkmService* service);

}  // namespace ekm
