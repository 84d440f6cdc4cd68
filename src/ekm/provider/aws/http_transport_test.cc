// Tests of the libcurl transport against a small Python http.server started on 127.0.0.1 (plain
// HTTP/1.1 with keep-alive, and HTTPS with a throwaway CA made with the openssl CLI).
#include "ekm/provider/aws/http_transport.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "ekm/testing/python_server.h"
#include "ekm/testing/temp_dir.h"

extern char** environ;

namespace ekm {
namespace {

using PyServer = testing::PythonServer;

constexpr const char* kServer = R"PY(
import json, ssl, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
lock = threading.Lock()
ports = set()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with lock:
            ports.add(self.client_address[1])
            conns = len(ports)
        code = 200
        if self.path.startswith("/slow"):
            time.sleep(3)
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
        if self.path.startswith("/big"):
            out = b"x" * 5000
        else:
            out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                              "headers": {k.lower(): v for k, v in self.headers.items()},
                              "client_port": self.client_address[1], "connections": conns}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Amzn-RequestId", "req-1")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = serve
ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
)PY";

nlohmann::json Json(const HttpResponse& r) { return nlohmann::json::parse(r.body); }

class HttpTransportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = PyServer::Start(kServer).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "python3 http.server did not start"; }
  static PyServer* server_;
};
PyServer* HttpTransportTest::server_ = nullptr;

TEST_F(HttpTransportTest, PostWithHeadersAndBody) {
  auto t = NewCurlHttpTransport();
  HttpRequest req;
  req.url = server_->url() + "/x?a=1";
  req.headers = {{"Content-Type", "application/x-amz-json-1.1"},
                 {"X-Amz-Target", "TrentService.Encrypt"},
                 {"X-Empty", ""}};
  req.body = R"({"KeyId":"k"})";
  auto r = t->Send(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("x-amzn-requestid"), "req-1");  // names lower-cased
  EXPECT_EQ(r->Header("content-type"), "application/json");
  EXPECT_EQ(r->Header("missing"), "");
  auto j = Json(*r);
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/x?a=1");
  EXPECT_EQ(j["body"], req.body);
  EXPECT_EQ(j["headers"]["x-amz-target"], "TrentService.Encrypt");
  EXPECT_EQ(j["headers"]["content-type"], "application/x-amz-json-1.1");
  EXPECT_EQ(j["headers"]["x-empty"], "");
  EXPECT_FALSE(j["headers"].contains("expect"));
}

TEST_F(HttpTransportTest, MethodsAndHttpErrorsAreResponses) {
  auto t = NewCurlHttpTransport();
  for (std::string method : {"GET", "PUT", "DELETE"}) {
    HttpRequest req;
    req.method = method;
    req.url = server_->url() + "/m";
    auto r = t->Send(req);
    ASSERT_TRUE(r.ok()) << method << ": " << r.status().ToString();
    EXPECT_EQ(Json(*r)["method"], method);
    if (method == "PUT") {
      EXPECT_EQ(Json(*r)["headers"]["content-length"], "0");  // IMDSv2 needs it
    }
  }
  HttpRequest req;
  req.method = "GET";
  req.url = server_->url() + "/status/503";
  auto r = t->Send(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  req.url = server_->url() + "/status/400";
  EXPECT_EQ(t->Send(req)->status, 400);
}

TEST_F(HttpTransportTest, ReusesConnections) {
  auto t = NewCurlHttpTransport();
  HttpRequest req;
  req.method = "GET";
  req.url = server_->url() + "/keepalive";
  auto a = t->Send(req);
  auto b = t->Send(req);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Json(*a)["client_port"], Json(*b)["client_port"]);
}

TEST_F(HttpTransportTest, ConcurrentCalls) {
  std::shared_ptr<HttpTransport> t = NewCurlHttpTransport();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 10; ++k) {
        HttpRequest req;
        req.body = std::to_string(i * 100 + k);
        req.url = server_->url() + "/c";
        auto r = t->Send(req);
        if (r.ok() && Json(*r)["body"] == req.body) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 40);
}

TEST_F(HttpTransportTest, Timeout) {
  auto t = NewCurlHttpTransport();
  HttpRequest req;
  req.url = server_->url() + "/slow";
  req.timeout = std::chrono::milliseconds(300);
  auto r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.status().message(), "request to 127.0.0.1 timed out after 300 ms");
}

TEST_F(HttpTransportTest, ResponseSizeCap) {
  HttpTransportOptions o;
  o.max_response_bytes = 1000;
  auto t = NewCurlHttpTransport(o);
  HttpRequest req;
  req.method = "GET";
  req.url = server_->url() + "/big";
  auto r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(), "response from 127.0.0.1 is larger than 1000 bytes");
}

TEST_F(HttpTransportTest, IgnoresProxyVariablesForLoopback) {
  // A proxy that does not exist: if curl used it, the request would fail.
  setenv("http_proxy", "http://127.0.0.1:9", 1);
  setenv("HTTP_PROXY", "http://127.0.0.1:9", 1);
  auto t = NewCurlHttpTransport();
  HttpRequest req;
  req.method = "GET";
  req.url = server_->url() + "/p";
  auto r = t->Send(req);
  unsetenv("http_proxy");
  unsetenv("HTTP_PROXY");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST(HttpTransportErrorsTest, RefusedAndInvalid) {
  auto t = NewCurlHttpTransport();
  HttpRequest req;
  req.url = "http://127.0.0.1:9/";  // discard port: nothing listens
  auto r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(r.status().message().starts_with("cannot connect to 127.0.0.1: "))
      << r.status().message();

  // Plain HTTP off loopback is refused before anything is sent.
  req.url = "http://kms.eu-west-1.amazonaws.com/";
  r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "plain http:// to kms.eu-west-1.amazonaws.com is refused");

  req.url = "ftp://127.0.0.1/";
  r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "unsupported URL scheme \"ftp\"");

  req.url = "not a url";
  EXPECT_EQ(t->Send(req).status().code(), StatusCode::kInvalidArgument);

  req.url = "http://127.0.0.1:9/";
  req.headers = {{"X-Evil", "a\r\nHost: other"}};
  r = t->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "HTTP header X-Evil has a line break in its value");
}

int Shell(const std::string& cmd) { return std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()); }

TEST(HttpTransportTlsTest, VerifiesCertificates) {
  testing::TempDir dir;
  const std::string d = dir.path();
  // A throwaway CA and a server certificate for IP:127.0.0.1 (as in /work/shared/peers/NOTES.md).
  ASSERT_EQ(
      Shell("cd " + d +
            " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
            "-subj '/CN=ekm test CA' -addext basicConstraints=critical,CA:TRUE "
            "-addext keyUsage=critical,keyCertSign,cRLSign"),
      0);
  ASSERT_EQ(Shell("cd " + d +
                  " && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                  "-subj /CN=127.0.0.1 && printf "
                  "'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext "
                  "&& openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                  "-out server.crt -days 2 -extfile ext"),
            0);
  auto server = PyServer::Start(kServer, {d + "/server.crt", d + "/server.key"});
  ASSERT_NE(server, nullptr);
  HttpRequest req;
  req.method = "GET";
  req.url = server->url("https") + "/tls";

  // The system store does not know the test CA.
  auto r = NewCurlHttpTransport()->Send(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(
      r.status().message().starts_with("TLS certificate verification failed for 127.0.0.1: "))
      << r.status().message();
  EXPECT_NE(r.status().hint().find("CA file"), std::string::npos);

  HttpTransportOptions o;
  o.ca_file = d + "/ca.crt";
  auto t = NewCurlHttpTransport(o);
  r = t->Send(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Json(*r)["path"], "/tls");

  // A certificate that does not name the host ("localhost" is not in the SAN).
  req.url = "https://localhost:" + std::to_string(server->port()) + "/tls";
  r = t->Send(req);
  if (!r.ok()) {  // localhost may resolve to ::1 first, where nothing listens: skip then
    if (r.status().message().find("TLS certificate verification failed for localhost") == 0) {
      SUCCEED();
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
    }
  } else {
    ADD_FAILURE() << "a certificate for 127.0.0.1 was accepted for localhost";
  }
}

}  // namespace
}  // namespace ekm
