#include "ekm/server/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "ekm/server/http_errors.h"
#include "ekm/server/routes.h"

namespace ekm {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;

namespace {

constexpr size_t kStreamChunk = 256 * 1024;
constexpr uint64_t kMaxDrainBytes = uint64_t{256} << 20;

struct Connection {
  explicit Connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
  std::atomic<bool> busy{false};
};

bool IsLoopback(const net::ip::address& a) {
  return a.is_loopback() || (a.is_v6() && a.to_v6().is_v4_mapped() &&
                             net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback());
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(EkmService* service, HttpServerOptions options)
      : router_(service),
        options_(std::move(options)),
        ioc_(options_.threads > 0 ? options_.threads
                                  : std::max(1u, std::thread::hardware_concurrency())),
        acceptor_(ioc_) {}

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
    if (!IsLoopback(address) && !options_.allow_insecure_listen) {
      return FailedPreconditionError(
          "refusing to serve plain HTTP on non-loopback address " + host,
          "listen on 127.0.0.1 behind a TLS-terminating proxy, or pass --allow-insecure-listen");
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
    int n = options_.threads > 0 ? options_.threads
                                 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 0; i < n; ++i) {
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
  }

 private:
  void CloseIdle() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& c : connections_) {
      if (c->busy) continue;
      net::post(c->stream.get_executor(), [c] {
        beast::error_code ec;
        c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        c->stream.socket().close(ec);
      });
    }
  }

  awaitable<void> Accept() {
    for (;;) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor_.async_accept(net::make_strand(ioc_),
                                                           net::redirect_error(use_awaitable, ec));
      if (ec) {
        if (stopping_ || ec == net::error::operation_aborted) co_return;
        continue;  // e.g. too many open files: keep serving the others
      }
      beast::error_code nd;
      socket.set_option(tcp::no_delay(true), nd);
      auto conn = std::make_shared<Connection>(std::move(socket));
      {
        std::lock_guard<std::mutex> lock(mu_);
        connections_.insert(conn);
      }
      auto exec = conn->stream.get_executor();
      net::co_spawn(exec, Serve(conn), [this, conn](std::exception_ptr) {
        std::lock_guard<std::mutex> lock(mu_);
        connections_.erase(conn);
        cv_.notify_all();
      });
    }
  }

  awaitable<void> Serve(std::shared_ptr<Connection> conn) {
    beast::tcp_stream& stream = conn->stream;
    beast::flat_buffer buffer;
    for (;;) {
      conn->busy = false;
      if (stopping_) break;
      http::request_parser<http::buffer_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      stream.expires_after(options_.read_timeout);
      beast::error_code ec;
      co_await http::async_read_header(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
            ec != net::error::operation_aborted && ec != net::error::connection_reset &&
            ec != net::error::eof && ec != net::error::bad_descriptor) {
          // A malformed request line or header: answer 400 before closing.
          co_await WriteJson(stream, 11, false, 400,
                             ErrorJson(InvalidArgumentError("malformed HTTP request: " +
                                                            ec.message())));
        }
        break;
      }
      conn->busy = true;
      bool keep = false;
      try {
        keep = co_await Handle(stream, buffer, parser);
      } catch (const std::exception& e) {
        spdlog::error("request failed with an exception: {}", e.what());
        keep = false;
      }
      if (!keep) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // Reads the rest of a body into `out`, at most `limit` bytes.
  awaitable<Status> ReadBody(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                             http::request_parser<http::buffer_body>& parser, size_t limit,
                             std::string* out) {
    std::vector<char> buf(16 * 1024);
    while (!parser.is_done()) {
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      stream.expires_after(options_.read_timeout);
      beast::error_code ec;
      co_await http::async_read_some(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ReadError(ec);
      size_t n = buf.size() - parser.get().body().size;
      if (out->size() + n > limit) {
        co_return ResourceExhaustedError(
            "request body is larger than the limit of " + std::to_string(limit) + " bytes",
            "send large data as a stream (Content-Type: application/octet-stream), or raise "
            "--max-body-size");
      }
      out->append(buf.data(), n);
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
  awaitable<void> Drain(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                        http::request_parser<http::buffer_body>& parser) {
    std::vector<char> buf(64 * 1024);
    uint64_t total = 0;
    while (!parser.is_done() && total < kMaxDrainBytes) {
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      stream.expires_after(std::chrono::seconds(5));
      beast::error_code ec;
      co_await http::async_read_some(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return;
      total += buf.size() - parser.get().body().size;
    }
  }

  awaitable<bool> WriteJson(beast::tcp_stream& stream, unsigned version, bool keep_alive,
                            int status, std::string body,
                            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    beast::error_code ec;
    co_await http::async_write(stream, res, net::redirect_error(use_awaitable, ec));
    co_return !ec && keep_alive;
  }

  awaitable<bool> Handle(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                         http::request_parser<http::buffer_body>& parser) {
    auto& req = parser.get();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive() && !stopping_;
    RouteRequest route;
    route.method = std::string(req.method_string());
    route.target = std::string(req.target());
    route.content_type = std::string(req[http::field::content_type]);
    route.authorization = std::string(req[http::field::authorization]);
    beast::error_code peer_ec;
    auto peer = stream.socket().remote_endpoint(peer_ec);
    if (!peer_ec) route.remote_address = peer.address().to_string();
    RouteMatch match = router_.Match(route);
    if (!match.status.ok()) {
      std::vector<std::pair<std::string, std::string>> headers;
      if (!match.allow.empty()) headers.emplace_back("Allow", match.allow);
      bool body_pending = !parser.is_done();
      bool keep = co_await WriteJson(stream, version, keep_alive && !body_pending,
                                     HttpStatusFor(match.status.code()) == 500 ? 500
                                     : match.method_not_allowed         ? 405
                                     : match.unsupported_media_type     ? 415
                                                                        : HttpStatusFor(match.status.code()),
                                     ErrorJson(match.status), headers);
      if (body_pending) co_await Drain(stream, buffer, parser);
      co_return keep;
    }
    if (match.streaming) co_return co_await HandleStream(stream, buffer, parser, match, keep_alive);

    if (auto len = parser.content_length(); len && *len > options_.max_body_size) {
      Status too_big = ResourceExhaustedError(
          "request body of " + std::to_string(*len) + " bytes is larger than the limit of " +
              std::to_string(options_.max_body_size) + " bytes",
          "send large data as a stream (Content-Type: application/octet-stream), or raise "
          "--max-body-size");
      co_await WriteJson(stream, version, false, 413, ErrorJson(too_big));
      co_return false;
    }
    std::string body;
    Status read = co_await ReadBody(stream, buffer, parser, options_.max_body_size, &body);
    if (!read.ok()) {
      int code = read.code() == StatusCode::kResourceExhausted ? 413
                 : read.code() == StatusCode::kDeadlineExceeded ? 408
                                                                : 400;
      co_await WriteJson(stream, version, false, code, ErrorJson(read));
      co_return false;
    }
    RouteResponse res = router_.Handle(match, body);
    std::vector<std::pair<std::string, std::string>> headers;
    if (res.retry_after > 0) headers.emplace_back("Retry-After", std::to_string(res.retry_after));
    if (!res.content_type.empty()) headers.emplace_back("Content-Type", res.content_type);
    co_return co_await WriteJson(stream, version, keep_alive, res.status, std::move(res.body),
                                 headers);
  }

  awaitable<bool> HandleStream(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                               http::request_parser<http::buffer_body>& parser,
                               const RouteMatch& match, bool keep_alive) {
    const unsigned version = parser.get().version();
    auto transform = router_.OpenStream(match);
    if (!transform.ok()) {
      std::vector<std::pair<std::string, std::string>> headers;
      if (transform.status().retry_after_seconds() > 0) {
        headers.emplace_back("Retry-After", std::to_string(transform.status().retry_after_seconds()));
      }
      co_await WriteJson(stream, version, false, HttpStatusFor(transform.status().code()),
                         ErrorJson(transform.status()), headers);
      co_await Drain(stream, buffer, parser);
      co_return false;
    }
    StreamTransform& t = **transform;
    http::response<http::empty_body> res{http::status::ok, version};
    res.set(http::field::content_type, match.text_output ? "text/plain; charset=utf-8"
                                                         : "application/octet-stream");
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::trailer, "Ekm-Result, Ekm-Error");
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
      }
      if (data.empty()) co_return true;
      co_await net::async_write(stream, http::make_chunk(net::buffer(data.data(), data.size())),
                                net::redirect_error(use_awaitable, ec));
      co_return !ec;
    };

    while (!parser.is_done()) {
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      stream.expires_after(options_.read_timeout);
      co_await http::async_read_some(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        s = ReadError(ec);
        break;
      }
      size_t n = buf.size() - parser.get().body().size;
      if (n == 0) continue;
      out.clear();
      s = t.Update(ByteView(reinterpret_cast<const uint8_t*>(buf.data()), n), &out);
      if (!s.ok()) break;
      if (!out.empty() && !co_await send(out)) co_return false;
    }
    if (s.ok()) {
      out.clear();
      s = t.Finish(&out);
      if (s.ok() && !out.empty() && !co_await send(out)) co_return false;
    }
    if (!s.ok()) {
      if (!head_sent) {
        co_await WriteJson(stream, version, false, HttpStatusFor(s.code()), ErrorJson(s));
        co_await Drain(stream, buffer, parser);
        co_return false;
      }
      // The head promised keep-alive: keep it when the request body was read to its end, so
      // the client's next request on this connection is not sent into a closing socket.
      http::fields trailer;
      trailer.set("Ekm-Error", ErrorJson(s));
      co_await net::async_write(stream, http::make_chunk_last(trailer),
                                net::redirect_error(use_awaitable, ec));
      co_return !ec && keep_alive && parser.is_done();
    }
    if (!co_await send({})) co_return false;
    http::fields trailer;
    trailer.set("Ekm-Result", "ok");
    co_await net::async_write(stream, http::make_chunk_last(trailer),
                              net::redirect_error(use_awaitable, ec));
    co_return !ec && keep_alive;
  }

  Router router_;
  HttpServerOptions options_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::shared_ptr<Connection>> connections_;
};

HttpServer::HttpServer(EkmService* service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}
HttpServer::~HttpServer() { impl_->Stop(std::chrono::milliseconds(0)); }
Status HttpServer::Start() { return impl_->Start(); }
int HttpServer::port() const { return impl_->port(); }
void HttpServer::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }

}  // namespace ekm
