#include "ekm/server/http_server.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ekm/api/http_errors.h"
#include "ekm/base/bulkhead.h"
#include "ekm/base/non_blocking_scope.h"
#include "ekm/metrics/metrics.h"
#include "ekm/server/blocking_pool.h"
#include "ekm/server/log_format.h"
#include "ekm/server/rate_limiter.h"
#include "ekm/server/request_framing.h"
#include "ekm/server/routes.h"

namespace ekm {

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Headers = std::vector<std::pair<std::string, std::string>>;

namespace {

constexpr size_t kStreamChunk = 256 * 1024;
// A connection keeps its response buffer (WriteJson) up to this capacity between requests.
constexpr size_t kKeptResponseCapacity = 64 * 1024;
constexpr uint64_t kMaxDrainBytes = uint64_t{256} << 20;
// How long a refused request's body (or a refused connection's request) is read and dropped so
// the client reads the answer instead of a reset connection.
constexpr std::chrono::seconds kDrainTime{5};
// The request header by which a client says it reads a failed stream's Ekm-Error trailer
// (docs/api.md "Streaming protocol"); without it a failed stream is cut.
constexpr const char* kAcceptTrailerHeader = "Ekm-Accept-Trailer";

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. TLS 1.3's own suites all qualify.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct Connection {
  explicit Connection(tcp::socket s) : executor(s.get_executor()), plain(std::move(s)) {}
  net::any_io_executor executor;
  beast::tcp_stream plain;  // moved into `tls` when TLS is on
  std::unique_ptr<TlsStream> tls;
  std::atomic<bool> busy{false};
  std::string remote;  // the peer's address, read once (not a getpeername per request)
  std::string wire;    // the response being written (WriteJson): one buffer, reused
  bool remote_read = false;
  bool counted = false;  // counts against its address's connection limit
  bool refused = false;  // over that limit: answered 429 and closed
  bool abort = false;    // closed without a graceful shutdown (a failed stream)
  tcp::socket& socket() { return tls ? beast::get_lowest_layer(*tls).socket() : plain.socket(); }
};

// What one request did, for the access log and the metrics.
struct Exchange {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::string request_id;
  std::string method;
  size_t route_index = 0;  // into RouteTable(); RouteTable().size(): no route matched
  int status = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string remote;
  std::string token_id;
  std::string* wire = nullptr;  // the connection's response buffer, reused (WriteJson)
};

bool IsLoopback(const net::ip::address& a) {
  return a.is_loopback() || (a.is_v6() && a.to_v6().is_v4_mapped() &&
                             net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback());
}

// X-Request-Id as given when well-formed: 1 to 64 of [A-Za-z0-9._-].
bool WellFormedRequestId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// A random per-process prefix (drawn once) and a counter: unique across restarts and replicas
// without a DRBG call (and its getpid) per request. Request ids correlate logs; they are not
// secrets.
std::string NewRequestId() {
  static const uint64_t prefix = [] {
    uint64_t p = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&p), sizeof p) != 1) {
      p = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
    return p;
  }();
  static std::atomic<uint64_t> counter{0};
  const uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(24, '0');
  for (int i = 0; i < 16; ++i) out[static_cast<size_t>(i)] = kHex[(prefix >> (60 - 4 * i)) & 15];
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(16 + i)] = kHex[(n >> (28 - 4 * i)) & 15];
  return out;
}

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Status ReadableFile(const std::string& flag, const std::string& path) {
  std::ifstream f(path);
  if (!f) {
    return InvalidArgumentError("cannot read " + flag + " " + path + ": " + std::strerror(errno),
                                "give a readable PEM file");
  }
  return Status::Ok();
}

// Never prompts for a passphrase: an encrypted key is refused with a clear message instead.
int NoPassword(char*, int, int, void*) { return 0; }

// Label value of a request's method: the known verbs, else "other" (a client must not be
// able to grow the series).
std::string_view MethodLabel(std::string_view m) {
  for (std::string_view v : {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}) {
    if (m == v) return v;
  }
  return "other";
}

// The statuses ekmd answers, each with a slot for its counter (no lookup on the hot path).
constexpr std::array<int, 20> kStatuses = {200, 201, 204, 400, 401, 403, 404, 405, 408, 409,
                                           410, 412, 413, 415, 422, 429, 500, 502, 503, 504};
int StatusSlot(int status) {
  for (size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) return static_cast<int>(i);
  }
  return -1;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view View(beast::string_view v) { return std::string_view(v.data(), v.size()); }

// Whether a header's comma-separated list names `token` (case-insensitive).
bool ListHas(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (EqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(EkmService* service, HttpServerOptions options)
      : service_(service),
        router_(service, options.clock),
        options_(std::move(options)),
        ioc_threads_(options_.threads > 0
                         ? options_.threads
                         : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))),
        ioc_(ioc_threads_),
        acceptor_(ioc_),
        limiter_(options_.rate_limit,
                 options_.rate_limit_burst > 0 ? options_.rate_limit_burst : options_.rate_limit),
        auth_failures_(options_.auth_failure_limit, options_.auth_failure_limit * 60),
        running_(options_.max_blocking_per_environment),
        queued_(options_.max_queued_per_environment),
        probes_(1),
        blocking_(options_.blocking_threads) {
    router_.set_metrics_unauthenticated(options_.metrics_unauthenticated);
    InitMetrics();
  }

  Status Start() {
    std::string host = options_.listen;
    std::string port_text;
    auto colon = host.rfind(':');
    if (colon == std::string::npos) {
      return InvalidArgumentError("--listen \"" + options_.listen + "\" has no port",
                                  "use HOST:PORT, e.g. 127.0.0.1:8080");
    }
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host == "localhost") host = "127.0.0.1";
    beast::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) {
      return InvalidArgumentError("--listen address \"" + host + "\" is not an IP address",
                                  "use an IP such as 127.0.0.1 or 0.0.0.0");
    }
    char* end = nullptr;
    long port = std::strtol(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end != '\0' || port < 0 || port > 65535) {
      return InvalidArgumentError("--listen port \"" + port_text + "\" is not a port number");
    }
    if (options_.tls()) {
      Status tls = InitTls();
      if (!tls.ok()) return tls;
    } else if (!IsLoopback(address) && !options_.allow_insecure_listen) {
      return FailedPreconditionError(
          "refusing to serve plain HTTP on non-loopback address " + host,
          "serve TLS with --tls-cert and --tls-key, listen on 127.0.0.1 behind a "
          "TLS-terminating proxy, or pass --allow-insecure-listen");
    }
    tcp::endpoint ep(address, static_cast<unsigned short>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      std::string hint = ec == net::error::address_in_use
                             ? "is another ekmd running? choose another port with --listen"
                             : "check the address and your permissions";
      return UnavailableError("cannot listen on " + options_.listen + ": " + ec.message(), hint);
    }
    port_ = acceptor_.local_endpoint().port();
    net::co_spawn(ioc_, Accept(), net::detached);
    for (int i = 0; i < ioc_threads_; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return Status::Ok();
  }

  int port() const { return port_; }

  void Stop(std::chrono::milliseconds grace) {
    if (stopped_.exchange(true)) return;
    stopping_ = true;
    net::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    auto deadline = std::chrono::steady_clock::now() + grace;
    for (;;) {
      CloseIdle();
      std::unique_lock<std::mutex> lock(mu_);
      if (connections_.empty()) break;
      if (std::chrono::steady_clock::now() >= deadline) break;
      cv_.wait_for(lock, std::chrono::milliseconds(50));
    }
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    blocking_.Stop();  // waits for blocking work still running (it uses the service)
    probes_.Stop();
  }

 private:
  void InitMetrics() {
    auto& r = metrics::Default();
    auto& requests =
        r.AddCounter("ekm_http_requests_total", "HTTP requests by route name, method and status",
                     {"route", "method", "status"});
    requests_ = &requests;
    auto& latency = r.AddHistogram("ekm_http_request_duration_seconds",
                                   "Time from the request's header to the response's end, by "
                                   "route name",
                                   {"route"}, metrics::LatencyBuckets());
    rate_limited_ = &r.AddCounter("ekm_rate_limited_requests_total",
                                  "Requests refused with 429 by the per-token rate limit, by "
                                  "route name",
                                  {"route"});
    handshake_failures_ =
        &r.AddCounter("ekm_tls_handshake_failures_total", "TLS handshakes that failed or timed out")
             .With({});
    auto& refused = r.AddCounter("ekm_http_refused_total",
                                 "Connections and requests refused by a concurrency limit "
                                 "(429; 503 for the blocking pool's per-environment bulkhead), "
                                 "by limit",
                                 {"limit"});
    refused_per_address_ = &refused.With({"connections_per_address"});
    refused_per_token_ = &refused.With({"requests_per_token"});
    bulkhead_refused_ = &refused.With({"blocking_per_environment"});
    r.AddGauge("ekm_build_info", "ekmd's version (the value is always 1)", {"version"})
        .With({options_.version})
        .Set(1);
    // Which replica these metrics are of (rate limits, caches and counters are per replica).
    r.AddGauge("ekm_node_info", "This ekmd's node name (--node-name; the value is always 1)",
               {"node"})
        .With({options_.node_name})
        .Set(1);
    // Shown from the start (0), not only after the first repack.
    metrics::RepackRunningJobs();
    metrics::RepackDataKeysDone();
    metrics::RepackDataKeysTotal();
    auto routes = RouteTable();
    route_slots_ = std::vector<RouteSlots>(routes.size() + 1);
    for (size_t i = 0; i <= routes.size(); ++i) {
      std::string name = i < routes.size() ? std::string(routes[i].name) : "unmatched";
      route_slots_[i].name = name;
      route_slots_[i].latency = &latency.With({name});
      for (auto& c : route_slots_[i].by_status) c = nullptr;
    }
  }

  Status InitTls() {
    if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
      return InvalidArgumentError("TLS needs both --tls-cert and --tls-key",
                                  "give the certificate (chain) and its private key, PEM");
    }
    EKM_RETURN_IF_ERROR(ReadableFile("--tls-cert", options_.tls_cert_file));
    EKM_RETURN_IF_ERROR(ReadableFile("--tls-key", options_.tls_key_file));
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    SSL_CTX* c = ctx->native_handle();
    ERR_clear_error();
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) {
      return InternalError("cannot set the TLS 1.2 cipher list: " + OpenSslErrors());
    }
    SSL_CTX_set_default_passwd_cb(c, &NoPassword);
    if (SSL_CTX_use_certificate_chain_file(c, options_.tls_cert_file.c_str()) != 1) {
      return InvalidArgumentError("--tls-cert " + options_.tls_cert_file +
                                      " is not a PEM certificate (chain): " + OpenSslErrors(),
                                  "give the server certificate first, then its intermediates");
    }
    if (SSL_CTX_use_PrivateKey_file(c, options_.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      unsigned long e = ERR_peek_last_error();
      if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        return InvalidArgumentError("--tls-key " + options_.tls_key_file +
                                        " does not match the certificate in --tls-cert " +
                                        options_.tls_cert_file,
                                    "give the private key of that certificate");
      }
      return InvalidArgumentError("--tls-key " + options_.tls_key_file +
                                      " is not an unencrypted PEM private key: " + OpenSslErrors(),
                                  "give the key without a passphrase (e.g. `openssl pkey -in "
                                  "KEY -out plain.key`), readable only by ekmd");
    }
    if (SSL_CTX_check_private_key(c) != 1) {
      ERR_clear_error();
      return InvalidArgumentError("--tls-key " + options_.tls_key_file +
                                      " does not match the certificate in --tls-cert " +
                                      options_.tls_cert_file,
                                  "give the private key of that certificate");
    }
    const std::string& mode = options_.tls_client_auth;
    if (mode != "none" && mode != "optional" && mode != "require") {
      return InvalidArgumentError("--tls-client-auth \"" + mode + "\" is not known",
                                  "use none, optional or require");
    }
    if (mode != "none" && options_.tls_client_ca_file.empty()) {
      return InvalidArgumentError("--tls-client-auth " + mode + " needs --tls-client-ca",
                                  "give the CA (PEM) that signs the client certificates");
    }
    if (!options_.tls_client_ca_file.empty()) {
      EKM_RETURN_IF_ERROR(ReadableFile("--tls-client-ca", options_.tls_client_ca_file));
      if (SSL_CTX_load_verify_locations(c, options_.tls_client_ca_file.c_str(), nullptr) != 1) {
        return InvalidArgumentError("--tls-client-ca " + options_.tls_client_ca_file +
                                    " holds no PEM CA certificate: " + OpenSslErrors());
      }
      if (STACK_OF(X509_NAME)* names =
              SSL_load_client_CA_file(options_.tls_client_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(c, names);
      }
      int verify = SSL_VERIFY_NONE;
      if (mode == "optional") verify = SSL_VERIFY_PEER;
      if (mode == "require") verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      // Without --tls-client-auth the CA alone asks for nothing: "optional" is the default.
      if (mode == "none") verify = SSL_VERIFY_PEER;
      SSL_CTX_set_verify(c, verify, nullptr);
    }
    tls_ = std::move(ctx);
    return Status::Ok();
  }

  void CloseIdle() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : connections_) {
      if (c->busy) continue;
      net::post(c->executor, [c] {
        beast::error_code ec;
        c->socket().shutdown(tcp::socket::shutdown_both, ec);
        c->socket().close(ec);
      });
    }
  }

  awaitable<void> Accept() {
    for (;;) {
      beast::error_code ec;
      // A strand per connection keeps its stream's handlers (the read, its timer) apart when
      // several threads run the loop; one I/O thread needs none, and skips its cost per handler.
      net::any_io_executor executor = ioc_threads_ == 1
                                          ? net::any_io_executor(ioc_.get_executor())
                                          : net::any_io_executor(net::make_strand(ioc_));
      tcp::socket socket =
          co_await acceptor_.async_accept(executor, net::redirect_error(use_awaitable, ec));
      if (ec) {
        if (stopping_ || ec == net::error::operation_aborted) co_return;
        continue;  // e.g. too many open files: keep serving the others
      }
      beast::error_code nd;
      socket.set_option(tcp::no_delay(true), nd);
      auto conn = std::make_shared<Connection>(std::move(socket));
      bool limited = options_.max_connections_per_address > 0;
      beast::error_code pe;
      auto peer = conn->plain.socket().remote_endpoint(pe);
      if (!pe) {
        conn->remote = peer.address().to_string();
        conn->remote_read = true;
        limited = limited && (options_.limit_loopback || !IsLoopback(peer.address()));
      } else {
        limited = false;  // already gone: its first read fails
      }
      if (tls_) conn->tls = std::make_unique<TlsStream>(std::move(conn->plain), *tls_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (limited) {
          int& open = per_address_[conn->remote];
          if (open >= options_.max_connections_per_address) {
            conn->refused = true;
          } else {
            ++open;
            conn->counted = true;
          }
        }
        connections_.insert(conn);
      }
      net::co_spawn(conn->executor, Serve(conn), [this, conn](std::exception_ptr) {
        std::lock_guard<std::mutex> lock(mu_);
        connections_.erase(conn);
        if (conn->counted) {
          auto it = per_address_.find(conn->remote);
          if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
        }
        cv_.notify_all();
      });
    }
  }

  awaitable<void> Serve(std::shared_ptr<Connection> conn) {
    if (!conn->tls) {
      if (conn->refused) {
        co_await RefuseConnection(conn->plain, *conn);
      } else {
        co_await ServeRequests(conn->plain, *conn);
      }
      beast::error_code ec;
      if (conn->abort) {
        conn->plain.socket().close(ec);
      } else {
        conn->plain.socket().shutdown(tcp::socket::shutdown_send, ec);
      }
      co_return;
    }
    TlsStream& stream = *conn->tls;
    beast::error_code ec;
    beast::get_lowest_layer(stream).expires_after(options_.handshake_timeout);
    co_await stream.async_handshake(ssl::stream_base::server,
                                    net::redirect_error(use_awaitable, ec));
    if (ec) {
      handshake_failures_->Inc();
      beast::error_code pe;
      auto peer = conn->socket().remote_endpoint(pe);
      spdlog::debug("TLS handshake with {} failed: {}",
                    pe ? std::string("?") : peer.address().to_string(), ec.message());
      conn->socket().close(pe);
      co_return;
    }
    if (conn->refused) {
      co_await RefuseConnection(stream, *conn);
    } else {
      co_await ServeRequests(stream, *conn);
    }
    if (!stopping_ && !conn->abort) {
      // close_notify, bounded: a client that never answers it does not hold the connection.
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(net::redirect_error(use_awaitable, ec));
    }
    conn->socket().close(ec);
  }

  // A connection over its address's limit: 429 at once, before reading a request, then closed.
  template <typename Stream>
  awaitable<void> RefuseConnection(Stream& stream, Connection& conn) {
    refused_per_address_->Inc();
    Exchange x;
    x.wire = &conn.wire;
    x.route_index = RouteTable().size();
    x.request_id = NewRequestId();
    x.method = "other";
    x.remote = conn.remote;
    Status limited = ResourceExhaustedError(
        "too many connections from " + conn.remote + ": the limit is " +
            std::to_string(options_.max_connections_per_address) +
            " open connections per "
            "client address",
        "reuse keep-alive connections instead of opening new ones, close idle ones, and retry "
        "after 1 s (Retry-After)");
    Headers retry;
    retry.emplace_back("Retry-After", "1");
    beast::get_lowest_layer(stream).expires_after(kDrainTime);
    co_await WriteJson(stream, x, 11, false, 429, ErrorJson(limited), retry);
    Finish(x);
    // Drop what the client sends meanwhile (its request), so that it reads the answer rather
    // than a reset; bounded in time and size.
    beast::error_code ec;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    std::vector<char> buf(16 * 1024);
    for (int i = 0; i < 16 && !ec; ++i) {
      co_await stream.async_read_some(net::buffer(buf), net::redirect_error(use_awaitable, ec));
    }
  }

  template <typename Stream>
  awaitable<void> ServeRequests(Stream& stream, Connection& conn) {
    beast::flat_buffer buffer;
    // Beast reads at most the buffer's free capacity (512 bytes at first): room for a typical
    // request in one recv instead of four.
    buffer.reserve(16 * 1024);
    for (;;) {
      conn.busy = false;
      if (stopping_) break;
      RequestParser parser;  // request_framing.h: its limits and CheckFraming
      ConfigureRequestParser(parser);
      beast::get_lowest_layer(stream).expires_after(options_.read_timeout);
      beast::error_code ec;
      co_await http::async_read_header(stream, buffer, parser,
                                       net::redirect_error(use_awaitable, ec));
      Exchange x;
      x.wire = &conn.wire;
      x.route_index = RouteTable().size();
      if (ec) {
        if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
            ec != net::error::operation_aborted && ec != net::error::connection_reset &&
            ec != net::error::eof && ec != net::error::bad_descriptor &&
            ec != ssl::error::stream_truncated) {
          // A malformed request line or header: answer 400 before closing.
          x.request_id = NewRequestId();
          x.method = "other";
          Remote(conn, &x);
          co_await WriteJson(
              stream, x, 11, false, 400,
              ErrorJson(InvalidArgumentError("malformed HTTP request: " + ec.message())));
          Finish(x);
        }
        break;
      }
      conn.busy = true;
      if (Status framing = CheckFraming(parser); !framing.ok()) {
        // Answered, and the connection closed unread: what follows the header is not a request.
        x.request_id = NewRequestId();
        x.method = std::string(parser.get().method_string());
        Remote(conn, &x);
        co_await WriteJson(stream, x, parser.get().version(), false, 400, ErrorJson(framing));
        Finish(x);
        break;
      }
      bool keep = false;
      bool failed = false;
      try {
        keep = co_await Handle(stream, buffer, parser, conn, x);
      } catch (const std::exception& e) {
        spdlog::error("request {} failed with an exception: {}", x.request_id, e.what());
        failed = true;
      }
      if (failed) {
        keep = false;
        conn.abort = x.status != 0;  // a response under way: cut it, never end it cleanly
        if (x.status == 0) {
          // Nothing was sent yet: an answer rather than a connection closed without one.
          co_await WriteJson(stream, x, parser.get().version(), false, 500,
                             ErrorJson(InternalError("ekmd failed on this request",
                                                     "report it with the X-Request-Id")));
        }
      }
      Finish(x);
      if (!keep) break;
    }
  }

  void Remote(Connection& conn, Exchange* x) {
    if (!conn.remote_read) {
      beast::error_code ec;
      auto peer = conn.socket().remote_endpoint(ec);
      if (!ec) conn.remote = peer.address().to_string();
      conn.remote_read = true;
    }
    x->remote = conn.remote;
  }

  // Metrics and the access-log line of a finished request.
  void Finish(const Exchange& x) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - x.start).count();
    RouteSlots& slots = route_slots_[x.route_index];
    slots.latency->Observe(seconds);
    const std::string_view method = x.route_index < RouteTable().size()
                                        ? RouteTable()[x.route_index].method
                                        : MethodLabel(x.method);
    int slot = StatusSlot(x.status);
    metrics::Counter* c =
        slot >= 0 ? slots.by_status[slot].load(std::memory_order_acquire) : nullptr;
    if (c == nullptr) {
      c = &requests_->With({slots.name, method, std::to_string(x.status)});
      if (slot >= 0) slots.by_status[slot].store(c, std::memory_order_release);
    }
    c->Inc();
    if (!spdlog::default_logger_raw()->should_log(spdlog::level::info)) return;
    LogFields fields = {
        {"request_id", x.request_id},
        {"method", std::string(MethodLabel(x.method))},
        {"route", slots.name},
        {"status", std::to_string(x.status), true},
        {"duration_ms", metrics::FormatValue(std::round(seconds * 1e6) / 1e3), true},
        {"bytes_in", std::to_string(x.bytes_in), true},
        {"bytes_out", std::to_string(x.bytes_out), true},
        {"remote", x.remote},
    };
    if (!x.token_id.empty()) fields.push_back({"token_id", x.token_id});
    LogWithFields(spdlog::level::info, "request", fields);
  }

  // Reads the rest of a body into `out`, at most `limit` bytes.
  template <typename Stream>
  awaitable<Status> ReadBody(Stream& stream, beast::flat_buffer& buffer,
                             http::request_parser<http::buffer_body>& parser, size_t limit,
                             std::string* out, Exchange& x) {
    // Straight into `out`: sized by Content-Length when there is one (a typical body in one
    // read, no copy), else grown 16 KiB at a time; never more than 256 KiB ahead of what
    // arrived, so a declared length alone cannot make us hold memory. One byte past the limit
    // is read to detect it.
    const auto length = parser.content_length();  // boost::optional
    // The whole body within --body-timeout of its header, each read within --read-timeout.
    const auto deadline = std::chrono::steady_clock::now() + options_.body_timeout;
    while (!parser.is_done()) {
      const size_t at = out->size();
      size_t want = length && *length > at ? static_cast<size_t>(*length) - at : 16 * 1024;
      want = std::min<size_t>(want, 256 * 1024);
      want = std::min(want, limit + 1 - std::min(at, limit));
      out->resize(at + want);
      parser.get().body().data = out->data() + at;
      parser.get().body().size = want;
      beast::get_lowest_layer(stream).expires_at(
          std::min(deadline, std::chrono::steady_clock::now() + options_.read_timeout));
      beast::error_code ec;
      co_await http::async_read_some(stream, buffer, parser,
                                     net::redirect_error(use_awaitable, ec));
      const size_t n = want - parser.get().body().size;
      out->resize(at + n);
      if (ec == http::error::need_buffer) ec = {};
      // The parser refuses a chunk declared larger than what is left of the limit (a 2^64-1
      // byte chunk) as soon as it reads the chunk's size, not after waiting for its bytes.
      if (ec == http::error::body_limit || out->size() > limit) {
        co_return ResourceExhaustedError(
            "request body is larger than the limit of " + std::to_string(limit) + " bytes",
            "send large data as a stream (Content-Type: application/octet-stream), or raise "
            "--max-body-size");
      }
      if (ec) co_return ReadError(ec);
      x.bytes_in += n;
    }
    co_return Status::Ok();
  }

  static Status ReadError(const beast::error_code& ec) {
    if (ec == beast::error::timeout) {
      return DeadlineExceededError("timed out reading the request body");
    }
    return InvalidArgumentError("cannot read the request body: " + ec.message());
  }

  // Discards what is left of a request body (bounded), so the client reads our response
  // instead of failing on a reset connection.
  template <typename Stream>
  awaitable<void> Drain(Stream& stream, beast::flat_buffer& buffer,
                        http::request_parser<http::buffer_body>& parser, Exchange& x) {
    std::vector<char> buf(64 * 1024);
    uint64_t total = 0;
    // Bounded in time too: a client trickling its body does not hold the connection.
    beast::get_lowest_layer(stream).expires_after(kDrainTime);
    while (!parser.is_done() && total < kMaxDrainBytes) {
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      beast::error_code ec;
      co_await http::async_read_some(stream, buffer, parser,
                                     net::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return;
      total += buf.size() - parser.get().body().size;
    }
    x.bytes_in += total;
  }

  template <typename Stream>
  awaitable<bool> WriteJson(Stream& stream, Exchange& x, unsigned version, bool keep_alive,
                            int status, std::string body, const Headers& headers = {},
                            const std::string& content_type = "") {
    // The whole response in one buffer, written with one call: over TLS that is one record and
    // no coalescing copy, and Beast's serializer is not needed for a complete string body.
    std::string local;
    std::string& wire = x.wire != nullptr ? *x.wire : local;
    wire.clear();
    const beast::string_view r = http::obsolete_reason(static_cast<http::status>(status));
    const std::string_view reason(r.data(), r.size());
    const std::string_view type = content_type.empty() ? std::string_view("application/json")
                                                       : std::string_view(content_type);
    wire.reserve(176 + reason.size() + type.size() + x.request_id.size() + body.size() +
                 options_.node_name.size());
    wire.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    wire.append(std::to_string(status)).append(" ").append(reason);
    wire.append("\r\nContent-Type: ").append(type);
    wire.append("\r\nCache-Control: no-store\r\nX-Request-Id: ").append(x.request_id);
    if (!options_.node_name.empty()) wire.append("\r\nEkm-Node: ").append(options_.node_name);
    for (const auto& [k, v] : headers) wire.append("\r\n").append(k).append(": ").append(v);
    wire.append("\r\nContent-Length: ").append(std::to_string(body.size()));
    if (version == 10 && keep_alive) wire.append("\r\nConnection: keep-alive");
    if (version != 10 && !keep_alive) wire.append("\r\nConnection: close");
    wire.append("\r\n\r\n").append(body);
    x.status = status;
    x.bytes_out += body.size();
    beast::error_code ec;
    co_await net::async_write(stream, net::buffer(wire), net::redirect_error(use_awaitable, ec));
    // The buffer lives as long as the connection: what it held (a plaintext, a new token, a
    // generated data key) is wiped now, not when the next response overwrites it, and a large
    // answer's capacity (a batch, an export) is given back rather than kept per idle connection.
    OPENSSL_cleanse(wire.data(), wire.size());
    wire.clear();
    if (wire.capacity() > kKeptResponseCapacity) std::string().swap(wire);
    co_return !ec && keep_alive;
  }

  template <typename Stream>
  awaitable<bool> Handle(Stream& stream, beast::flat_buffer& buffer,
                         http::request_parser<http::buffer_body>& parser, Connection& conn,
                         Exchange& x) {
    auto& req = parser.get();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive() && !stopping_;
    // Until the route is known, a body is only ever drained (bounded); a JSON route lowers the
    // limit to --max-body-size, a stream lifts it.
    parser.body_limit(kMaxDrainBytes);
    RouteRequest route;
    route.method = std::string(req.method_string());
    route.target = std::string(req.target());
    route.content_type = std::string(req[http::field::content_type]);
    route.authorization = std::string(req[http::field::authorization]);
    const std::string given_id(req["X-Request-Id"]);
    route.request_id = WellFormedRequestId(given_id) ? std::string(given_id) : NewRequestId();
    Remote(conn, &x);
    route.remote_address = x.remote;
    x.request_id = route.request_id;
    x.method = route.method;
    x.token_id = TokenIdFromAuthorization(route.authorization);
    const std::string failure_key = "addr:" + x.remote;
    if (int64_t wait = auth_failures_.Peek(failure_key); wait > 0) {
      // Too many failed authentications from this address: refuse before checking the token.
      Status limited =
          ResourceExhaustedError("too many failed authentications from this address",
                                 "check the token you send (ekm token show); retry after " +
                                     std::to_string(wait) + " s (Retry-After)");
      bool body_pending = !parser.is_done();
      Headers retry;
      retry.emplace_back("Retry-After", std::to_string(wait));
      bool keep = co_await WriteJson(stream, x, version, keep_alive && !body_pending, 429,
                                     ErrorJson(limited), retry);
      if (body_pending) co_await Drain(stream, buffer, parser, x);
      co_return keep;
    }
    // The token is usually cached; checking one that is not reads the store, on the pool.
    RouteMatch match;
    bool match_deferred = false;
    {
      NonBlockingScope scope;
      match = router_.Match(route);
      match_deferred = scope.deferred();
    }
    if (match_deferred)
      match = co_await blocking_.Run([this, &route] { return router_.Match(route); });
    if (match.found) x.route_index = RouteIndex(match.id);
    if (match.status.code() == StatusCode::kUnauthenticated) auth_failures_.Acquire(failure_key);
    if (!match.status.ok()) {
      Headers headers;
      if (!match.allow.empty()) headers.emplace_back("Allow", match.allow);
      if (match.status.code() == StatusCode::kUnauthenticated) {
        headers.emplace_back("WWW-Authenticate", "Bearer");  // RFC 6750
      }
      // The token could not be checked (the store is down): retryable, and says when.
      if (match.status.retry_after_seconds() > 0) {
        headers.emplace_back("Retry-After", std::to_string(match.status.retry_after_seconds()));
      }
      bool body_pending = !parser.is_done();
      bool keep =
          co_await WriteJson(stream, x, version, keep_alive && !body_pending,
                             HttpStatusFor(match.status.code()) == 500 ? 500
                             : match.method_not_allowed                ? 405
                             : match.unsupported_media_type            ? 415
                                                            : HttpStatusFor(match.status.code()),
                             ErrorJson(match.status), headers);
      if (body_pending) co_await Drain(stream, buffer, parser, x);
      co_return keep;
    }
    x.route_index = RouteIndex(match.id);

    // Requests in progress per token: a token cannot hold any number of connections busy
    // (e.g. each trickling a body), whatever its rate.
    TokenSlot slot;
    if (!match.principal.token_id.empty() && options_.max_requests_per_token > 0) {
      slot = AcquireTokenSlot(match.principal.token_id);
      if (!slot.held()) {
        refused_per_token_->Inc();
        Status limited = ResourceExhaustedError(
            "too many requests in progress for this token: the limit is " +
                std::to_string(options_.max_requests_per_token) + " at once",
            "wait for your requests in progress to finish (retry after 1 s, Retry-After), or "
            "spread the work over several tokens");
        bool body_pending = !parser.is_done();
        Headers retry;
        retry.emplace_back("Retry-After", "1");
        bool keep = co_await WriteJson(stream, x, version, keep_alive && !body_pending, 429,
                                       ErrorJson(limited), retry);
        if (body_pending) co_await Drain(stream, buffer, parser, x);
        co_return keep;
      }
    }

    // Probes and scrapes are never limited: a busy node must still answer its orchestrator.
    if (match.id != RouteId::kHealth && match.id != RouteId::kReady &&
        match.id != RouteId::kMetrics && limiter_.enabled()) {
      // Keyed by the verified token (an id alone proves nothing), else by address.
      const std::string key =
          match.principal.token_id.empty() ? failure_key : "token:" + match.principal.token_id;
      if (int64_t wait = limiter_.Acquire(key); wait > 0) {
        rate_limited_->With({route_slots_[x.route_index].name}).Inc();
        Status limited = ResourceExhaustedError(
            "too many requests for this token: the limit is " +
                metrics::FormatValue(options_.rate_limit) + " per second",
            "retry after " + std::to_string(wait) + " s (Retry-After), or spread the requests");
        bool body_pending = !parser.is_done();
        Headers retry;
        retry.emplace_back("Retry-After", std::to_string(wait));
        bool keep = co_await WriteJson(stream, x, version, keep_alive && !body_pending, 429,
                                       ErrorJson(limited), retry);
        if (body_pending) co_await Drain(stream, buffer, parser, x);
        co_return keep;
      }
    }
    if (match.id == RouteId::kReady && stopping_) {
      // (A named string: GCC 12 rejects a string literal as an argument inside co_await.)
      std::string body = R"({"status":"unavailable","reason":"shutting down"})";
      co_return co_await WriteJson(stream, x, version, false, 503, std::move(body));
    }
    if (match.streaming) {
      parser.body_limit(boost::none);  // a stream of any size
      co_return co_await HandleStream(stream, buffer, parser, match, keep_alive, conn, x);
    }
    parser.body_limit(options_.max_body_size);

    if (auto len = parser.content_length(); len && *len > options_.max_body_size) {
      Status too_big = ResourceExhaustedError(
          "request body of " + std::to_string(*len) + " bytes is larger than the limit of " +
              std::to_string(options_.max_body_size) + " bytes",
          "send large data as a stream (Content-Type: application/octet-stream), or raise "
          "--max-body-size");
      co_await WriteJson(stream, x, version, false, 413, ErrorJson(too_big));
      co_return false;
    }
    std::string body;
    Status read = co_await ReadBody(stream, buffer, parser, options_.max_body_size, &body, x);
    if (!read.ok()) {
      int code = read.code() == StatusCode::kResourceExhausted  ? 413
                 : read.code() == StatusCode::kDeadlineExceeded ? 408
                                                                : 400;
      co_await WriteJson(stream, x, version, false, code, ErrorJson(read));
      co_return false;
    }
    RouteResponse res;
    bool done = false;
    if (ThreadsFor(match.id) == RouteThreads::kIoFirst) {
      NonBlockingScope scope;
      res = router_.Handle(match, body);
      done = !scope.deferred();  // else nothing it did stays: it runs again, where it may wait
    }
    if (!done) {
      // Off this I/O thread, which serves other connections meanwhile.
      Bulkhead::Ticket ticket;
      Status admitted = co_await Admit(match, &ticket);
      if (!admitted.ok()) {
        res = RouteResponse{HttpStatusFor(admitted.code()), ErrorJson(admitted),
                            admitted.retry_after_seconds()};
      } else {
        res = co_await PoolFor(match).Run([this, &match, &body] {
          if (options_.blocking_call_hook) options_.blocking_call_hook(RouteInfoFor(match.id).name);
          return router_.Handle(match, body);
        });
      }
    }
    Headers headers;
    if (res.retry_after > 0) headers.emplace_back("Retry-After", std::to_string(res.retry_after));
    co_return co_await WriteJson(stream, x, version, keep_alive, res.status, std::move(res.body),
                                 headers, res.content_type);
  }

  template <typename Stream>
  awaitable<bool> HandleStream(Stream& stream, beast::flat_buffer& buffer,
                               http::request_parser<http::buffer_body>& parser,
                               const RouteMatch& match, bool keep_alive, Connection& conn,
                               Exchange& x) {
    const unsigned version = parser.get().version();
    // ekm's own client reads a failure after output began from the Ekm-Error trailer; any
    // other client gets a cut connection instead, which every HTTP client reports as an error
    // (a clean end of body with a trailer it never reads would look like success).
    const bool error_trailer = ListHas(View(parser.get()[kAcceptTrailerHeader]), "Ekm-Error");
    // The whole stream within --max-stream-duration of its header.
    const auto deadline = options_.max_stream_duration.count() > 0
                              ? x.start + options_.max_stream_duration
                              : std::chrono::steady_clock::time_point::max();
    StatusOr<std::unique_ptr<StreamTransform>> transform = InternalError("no stream");
    bool opened = false;
    {
      NonBlockingScope scope;
      transform = router_.OpenStream(match);
      opened = !scope.deferred();
      if (!opened) transform = InternalError("no stream");  // dropped here, counted nowhere
    }
    if (!opened) {
      Bulkhead::Ticket ticket;
      Status admitted = co_await Admit(match, &ticket);
      if (admitted.ok()) {
        transform = co_await blocking_.Run([this, &match] { return router_.OpenStream(match); });
      } else {
        transform = admitted;
      }
    }
    if (!transform.ok()) {
      Headers headers;
      if (transform.status().retry_after_seconds() > 0) {
        headers.emplace_back("Retry-After",
                             std::to_string(transform.status().retry_after_seconds()));
      }
      co_await WriteJson(stream, x, version, false, HttpStatusFor(transform.status().code()),
                         ErrorJson(transform.status()), headers);
      co_await Drain(stream, buffer, parser, x);
      co_return false;
    }
    StreamTransform& t = **transform;
    http::response<http::empty_body> res{http::status::ok, version};
    res.set(http::field::content_type,
            match.text_output ? "text/plain; charset=utf-8" : "application/octet-stream");
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::trailer, "Ekm-Result, Ekm-Error");
    res.set("X-Request-Id", x.request_id);
    if (!options_.node_name.empty()) res.set("Ekm-Node", options_.node_name);
    res.chunked(true);
    res.keep_alive(keep_alive);
    http::response_serializer<http::empty_body> sr{res};
    bool head_sent = false;
    std::vector<char> buf(kStreamChunk);
    Bytes out;
    out.reserve(kStreamChunk + 4096);
    Status s;
    beast::error_code ec;

    auto send = [&](ByteView data) -> awaitable<bool> {
      if (!head_sent) {
        co_await http::async_write_header(stream, sr, net::redirect_error(use_awaitable, ec));
        if (ec) co_return false;
        head_sent = true;
        x.status = 200;
      }
      if (data.empty()) co_return true;
      x.bytes_out += data.size();
      co_await net::async_write(stream, http::make_chunk(net::buffer(data.data(), data.size())),
                                net::redirect_error(use_awaitable, ec));
      co_return !ec;
    };
    // A write that failed leaves a response cut short: never let it end cleanly.
    auto cut = [&] {
      conn.abort = true;
      return false;
    };

    while (!parser.is_done()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) {
        s = DeadlineExceededError("the stream did not end within " +
                                      std::to_string(options_.max_stream_duration.count()) +
                                      " s (ekmd --max-stream-duration)",
                                  "split the data into smaller streams");
        break;
      }
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      beast::get_lowest_layer(stream).expires_at(std::min(deadline, now + options_.read_timeout));
      co_await http::async_read_some(stream, buffer, parser,
                                     net::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        s = ReadError(ec);
        break;
      }
      size_t n = buf.size() - parser.get().body().size;
      if (n == 0) continue;
      x.bytes_in += n;
      out.clear();
      s = co_await StreamStep(
          match, [&t, &out, chunk = ByteView(reinterpret_cast<const uint8_t*>(buf.data()), n)](
                     bool again) { return t.Update(again ? ByteView() : chunk, &out); });
      if (!s.ok()) break;
      if (!out.empty() && !co_await send(out)) co_return cut();
    }
    if (s.ok()) {
      out.clear();
      s = co_await StreamStep(match, [&t, &out](bool) { return t.Finish(&out); });
      if (s.ok() && !out.empty() && !co_await send(out)) co_return cut();
    }
    if (!s.ok()) {
      if (!head_sent) {
        co_await WriteJson(stream, x, version, false, HttpStatusFor(s.code()), ErrorJson(s));
        co_await Drain(stream, buffer, parser, x);
        co_return false;
      }
      LogWithFields(spdlog::level::warn, "stream failed after output began",
                    {{"request_id", x.request_id},
                     {"error", s.ToString()},
                     {"ended_by", error_trailer ? "Ekm-Error trailer" : "cut connection"}});
      if (!error_trailer) co_return cut();
      // The head promised keep-alive: keep it when the request body was read to its end, so
      // the client's next request on this connection is not sent into a closing socket.
      http::fields trailer;
      trailer.set("Ekm-Error", ErrorJson(s));
      co_await net::async_write(stream, http::make_chunk_last(trailer),
                                net::redirect_error(use_awaitable, ec));
      if (ec) co_return false;
      if (parser.is_done()) co_return keep_alive;
      // The client may still be sending: read (bounded) what it sends so that it reads the
      // trailer rather than a reset connection.
      co_await Drain(stream, buffer, parser, x);
      co_return false;
    }
    if (!co_await send({})) co_return cut();
    http::fields trailer;
    trailer.set("Ekm-Result", "ok");
    co_await net::async_write(stream, http::make_chunk_last(trailer),
                              net::redirect_error(use_awaitable, ec));
    co_return !ec && keep_alive;
  }

  // The pool a route's work runs on when it has to wait.
  BlockingPool& PoolFor(const RouteMatch& match) {
    return ThreadsFor(match.id) == RouteThreads::kProbe ? probes_ : blocking_;
  }

  // A place for the request's environment on the blocking pool (the bulkhead: at most
  // --max-blocking-per-environment at once), waited for without holding a thread. Past
  // --max-queued-per-environment waiting, refused at once: 503 with Retry-After. Probes are
  // not limited.
  awaitable<Status> Admit(const RouteMatch& match, Bulkhead::Ticket* ticket) {
    if (ThreadsFor(match.id) == RouteThreads::kProbe) co_return Status::Ok();
    const std::string key = match.workspace + "/" + match.environment;
    *ticket = running_.TryEnter(key);
    if (ticket->held()) co_return Status::Ok();
    Bulkhead::Ticket waiting = queued_.TryEnter(key);
    if (!waiting.held()) {
      bulkhead_refused_->Inc();
      const std::string who = match.environment.empty()
                                  ? (match.workspace.empty() ? std::string("the platform")
                                                             : "workspace " + match.workspace)
                                  : "environment " + key;
      co_return UnavailableError(
          who + " has " + std::to_string(running_.limit()) + " requests waiting for its key " +
              "provider or the store and " + std::to_string(queued_.limit()) +
              " more queued (ekmd --max-blocking-per-environment, --max-queued-per-environment)",
          "retry after 1 s (Retry-After); if it lasts, check the environment's customer main key "
          "(GET …/status): its KMS may be slow")
          .WithRetryAfter(1);
    }
    // Polled with a growing pause (the slow path only: a tenant whose work waits).
    net::steady_timer timer(co_await net::this_coro::executor);
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      timer.expires_after(pause);
      co_await timer.async_wait(use_awaitable);
      *ticket = running_.TryEnter(key);
      if (ticket->held()) co_return Status::Ok();
      pause = std::min(pause * 2, std::chrono::milliseconds(16));
    }
  }

  // One step of a stream (Update or Finish) on this I/O thread; when its key check or lookup
  // would wait, the same step again on the blocking pool (`step(true)`: the coder kept its
  // input, base/non_blocking_scope.h).
  template <typename Step>
  awaitable<Status> StreamStep(const RouteMatch& match, Step step) {
    {
      NonBlockingScope scope;
      Status s = step(false);
      if (!scope.deferred()) co_return s;
    }
    Bulkhead::Ticket ticket;
    Status admitted = co_await Admit(match, &ticket);
    if (!admitted.ok()) co_return admitted;
    co_return co_await blocking_.Run([&step] { return step(true); });
  }

  // Requests in progress per token id. Shared with the slots: a request's coroutine frame may
  // be destroyed with the io_context (a stop whose grace ran out), after this Impl's members.
  struct TokenRequests {
    std::mutex mu;
    std::unordered_map<std::string, int> in_progress;
  };

  // One request in progress of a token, released when the request ends.
  class TokenSlot {
   public:
    TokenSlot() = default;
    TokenSlot(std::shared_ptr<TokenRequests> counts, std::string token_id)
        : counts_(std::move(counts)), token_id_(std::move(token_id)) {}
    TokenSlot(TokenSlot&& o) noexcept = default;
    TokenSlot& operator=(TokenSlot&& o) noexcept {
      Release();
      counts_ = std::move(o.counts_);
      token_id_ = std::move(o.token_id_);
      return *this;
    }
    ~TokenSlot() { Release(); }
    bool held() const { return counts_ != nullptr; }

   private:
    void Release() {
      if (counts_ == nullptr) return;
      std::lock_guard<std::mutex> lock(counts_->mu);
      auto it = counts_->in_progress.find(token_id_);
      if (it != counts_->in_progress.end() && --it->second <= 0) counts_->in_progress.erase(it);
      counts_.reset();
    }
    std::shared_ptr<TokenRequests> counts_;
    std::string token_id_;
  };

  TokenSlot AcquireTokenSlot(const std::string& token_id) {
    std::lock_guard<std::mutex> lock(token_requests_->mu);
    int& n = token_requests_->in_progress[token_id];
    if (n >= options_.max_requests_per_token) return TokenSlot();
    ++n;
    return TokenSlot(token_requests_, token_id);
  }

  static size_t RouteIndex(RouteId id) {
    auto routes = RouteTable();
    for (size_t i = 0; i < routes.size(); ++i) {
      if (routes[i].id == id) return i;
    }
    return routes.size();
  }

  struct RouteSlots {
    std::string name;
    metrics::Histogram* latency = nullptr;
    std::array<std::atomic<metrics::Counter*>, kStatuses.size()> by_status;
  };

  EkmService* service_;
  Router router_;
  HttpServerOptions options_;
  const int ioc_threads_;  // I/O threads running ioc_ (--threads, default one per core)
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::unique_ptr<ssl::context> tls_;
  RateLimiter limiter_;
  RateLimiter auth_failures_;  // per remote address, charged by each 401
  metrics::Family<metrics::Counter>* requests_ = nullptr;
  metrics::Family<metrics::Counter>* rate_limited_ = nullptr;
  metrics::Counter* handshake_failures_ = nullptr;
  metrics::Counter* refused_per_address_ = nullptr;
  metrics::Counter* refused_per_token_ = nullptr;
  std::vector<RouteSlots> route_slots_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::shared_ptr<Connection>> connections_;
  std::unordered_map<std::string, int> per_address_;  // open connections (under mu_)
  std::shared_ptr<TokenRequests> token_requests_ = std::make_shared<TokenRequests>();
  metrics::Counter* bulkhead_refused_ = nullptr;
  Bulkhead running_;       // requests on the blocking pool, per environment
  Bulkhead queued_;        // requests waiting for a place in running_, per environment
  BlockingPool probes_;    // /readyz: never queued behind tenants' work
  BlockingPool blocking_;  // last: destroyed (joined) first, before what its work uses
};

void ExportServiceMetrics(EkmService* service) {
  auto& r = metrics::Default();
  static const CallContext* const kScrape = new CallContext(CallContext::System("metrics"));
  r.AddCallbackCounter("ekm_key_cache_hits_total", "Key cache hits (environment and data keys)",
                       [service] { return double(service->KeyCacheStatistics(*kScrape)->hits); });
  r.AddCallbackCounter("ekm_key_cache_misses_total", "Key cache misses (environment and data keys)",
                       [service] { return double(service->KeyCacheStatistics(*kScrape)->misses); });
  r.AddCallbackGauge("ekm_key_cache_entries", "Unwrapped keys held in memory now",
                     [service] { return double(service->KeyCacheStatistics(*kScrape)->entries); });
  r.AddCallbackGauge("ekm_key_cache_max_entries", "The key cache's size limit", [service] {
    return double(service->KeyCacheStatistics(*kScrape)->max_entries);
  });
}

HttpServer::HttpServer(EkmService* service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}
HttpServer::~HttpServer() { impl_->Stop(std::chrono::milliseconds(0)); }
Status HttpServer::Start() { return impl_->Start(); }
int HttpServer::port() const { return impl_->port(); }
void HttpServer::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }

}  // namespace ekm
