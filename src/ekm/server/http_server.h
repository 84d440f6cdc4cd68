// ekmd's HTTP/1.1 server: Boost.Beast on Boost.Asio with C++20 coroutines, one strand per
// connection on a small pool of I/O threads (no thread per connection), keep-alive, streaming
// request and response bodies for encrypt/decrypt of any size. See docs/api.md.
// Start/Stop are called from one controlling thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "ekm/base/status.h"
#include "ekm/service/ekm_service.h"

namespace ekm {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free port
  int threads = 0;                         // 0: one per core
  size_t max_body_size = 1 << 20;          // JSON request bodies
  std::chrono::seconds read_timeout{30};   // per read of a request header or body chunk
  bool allow_insecure_listen = false;      // plain HTTP on a non-loopback address
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

}  // namespace ekm
