#include "ekm/testing/moto_peer.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

#ifndef EKM_SOURCE_DIR
#error "EKM_SOURCE_DIR must name the source tree (it holds tests/peers/)"
#endif

namespace ekm::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kSetupTimeout = std::chrono::seconds(60);
constexpr auto kBoto3Timeout = std::chrono::seconds(60);

std::string PeersDir() { return std::string(EKM_SOURCE_DIR) + "/tests/peers"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last `max` bytes of a log, for error messages.
std::string Tail(const std::string& path, size_t max = 3000) {
  std::string s = ReadFile(path);
  if (s.size() > max) s = "..." + s.substr(s.size() - max);
  return s;
}

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

// `name` on PATH, else in the pyenv shims (ctest may run with a PATH without them); "" if none.
std::string FindExecutable(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');) dirs.push_back(d.empty() ? "." : d);
  }
  if (const char* home = getenv("HOME")) dirs.push_back(std::string(home) + "/.pyenv/shims");
  dirs.push_back("/root/.pyenv/shims");
  for (const auto& d : dirs) {
    std::string candidate = d + "/" + name;
    if (IsExecutable(candidate)) return candidate;
  }
  return "";
}

// The environment of the parent without AWS_* (never the developer's own AWS settings), plus
// `extra` ("NAME=value").
std::vector<std::string> ChildEnv(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "AWS_", 4) != 0) env.emplace_back(*e);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Starts argv[0] (an absolute path) in a new process group, stdin from /dev/null, stdout and
// stderr appended to the given files.
StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      const std::string& stdout_path, const std::string& stderr_path) {
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0600);
  // Own process group: the destructor kills the whole tree, shims and children included.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return InternalError("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  return pid;
}

// True if pid has exited. Does not reap it: a zombie leader keeps its process group id
// reserved, so the group can still be killed safely by that id.
bool Exited(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return true;  // ECHILD
  return info.si_pid == pid;
}

// Reaps pid (which has exited or been killed) and returns its wait status.
int Reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// SIGTERM to the group, up to 3 s grace, then SIGKILL; reaps the leader.
void KillGroup(pid_t pid) {
  if (pid <= 0) return;
  kill(-pid, SIGTERM);
  auto deadline = Clock::now() + std::chrono::seconds(3);
  while (!Exited(pid) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);  // the leader's stragglers, or the leader if it ignored SIGTERM
  Reap(pid);
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// Runs argv to completion (at most `timeout`); returns its wait status.
StatusOr<int> RunAndWait(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                         const std::string& log, std::chrono::seconds timeout) {
  EKM_ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, env, log, log));
  auto deadline = Clock::now() + timeout;
  while (!Exited(pid)) {
    if (Clock::now() > deadline) {
      KillGroup(pid);
      return DeadlineExceededError(argv[0] + " did not finish within " +
                                   std::to_string(timeout.count()) + " s; its log:\n" + Tail(log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Reap(pid);
}

// A port that was free a moment ago (the kernel picks it). Another process could take it
// before moto binds it, so StartMoto retries on a failed start.
StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return InternalError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string err = std::strerror(errno);
    close(fd);
    return InternalError("cannot find a free port on 127.0.0.1: " + err);
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

size_t AppendToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct HttpResult {
  long status = 0;
  std::string body;
};

// One HTTP request with libcurl (certificate checking on, against ca_file when given).
StatusOr<HttpResult> Http(const std::string& method, const std::string& url,
                          const std::string& body, const std::string& ca_file, long timeout_ms) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return InternalError("curl_easy_init failed");
  HttpResult result;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");  // never an http_proxy from the environment
  if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return UnavailableError(method + " " + url + ": " + curl_easy_strerror(rc));
  }
  return result;
}

// For a pyenv shim (ROOT/shims/python3) with no PYENV_VERSION, the interpreter of pyenv's global
// version (ROOT/version), as the shim would pick it; else `python` itself. Only a shortcut: the
// caller still checks what it finds.
std::string SkipPyenvShim(const std::string& python) {
  fs::path p(python);
  if (p.parent_path().filename() != "shims" || getenv("PYENV_VERSION") != nullptr) return python;
  fs::path root = p.parent_path().parent_path();
  std::string version = ReadFile((root / "version").string());
  version = version.substr(0, version.find_first_of("\r\n"));
  std::string real = (root / "versions" / version / "bin" / p.filename()).string();
  return !version.empty() && version != "system" && IsExecutable(real) ? real : python;
}

// The real interpreter (sys.executable: pyenv shims cost a second or more per start on a busy
// machine) of the first python3 that has moto and boto3.
StatusOr<std::string> FindPython(const std::string& dir) {
  std::vector<std::string> candidates;
  if (const char* p = getenv("EKM_PYTHON3"); p != nullptr && *p != '\0') candidates.push_back(p);
  if (std::string p = FindExecutable("python3"); !p.empty()) candidates.push_back(p);
  if (const char* home = getenv("HOME")) {
    candidates.push_back(std::string(home) + "/.pyenv/shims/python3");
  }
  candidates.push_back("/root/.pyenv/shims/python3");
  const std::string out = dir + "/python-check.out";
  for (std::string python : candidates) {
    python = SkipPyenvShim(python);
    if (!IsExecutable(python)) continue;
    std::error_code ec;
    fs::remove(out, ec);
    auto status =
        RunAndWait({python, "-c",
                    "import importlib.util as u, sys\n"
                    "assert u.find_spec('moto') and u.find_spec('boto3') and u.find_spec('flask')\n"
                    "open(sys.argv[1], 'w').write(sys.executable)\n",
                    out},
                   ChildEnv(), dir + "/python-check.log", std::chrono::seconds(30));
    if (status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
      std::string executable = ReadFile(out);
      return IsExecutable(executable) ? executable : python;
    }
  }
  return FailedPreconditionError(
      "no python3 that has moto (with its server extra) and boto3 (tried EKM_PYTHON3, PATH, "
      "~/.pyenv/shims, /root/.pyenv/shims)",
      "install moto[server] and boto3 for python3, or set EKM_PYTHON3 to an interpreter that "
      "has them");
}

}  // namespace

StatusOr<std::unique_ptr<MotoPeer>> MotoPeer::Start(MotoPeerOptions options) {
  std::unique_ptr<MotoPeer> peer(new MotoPeer());
  std::string tmpl = (fs::temp_directory_path() / "ekm-moto-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return InternalError(std::string("cannot create a temp dir: ") + std::strerror(errno));
  }
  peer->dir_ = tmpl;
  const char* keep = getenv("EKM_KEEP_PEER_DIR");
  peer->keep_dir_ = keep != nullptr && std::string(keep) == "1";

  auto fail = [&](const Status& s) {
    peer->keep_dir_ = true;  // the logs are what the developer needs now
    return s.WithContext("starting the moto peer (logs in " + peer->dir_ + ")");
  };
  auto python = FindPython(peer->dir_);
  if (!python.ok()) return fail(python.status());
  peer->python_ = *python;
  if (options.tls) {
    if (Status s = peer->MakeCertificates(); !s.ok()) return fail(s);
  }
  if (Status s = peer->StartMoto(options.tls); !s.ok()) return fail(s);
  if (Status s = peer->RunSetup(); !s.ok()) return fail(s);
  if (options.fault_proxy) {
    if (Status s = peer->StartProxy(); !s.ok()) return fail(s);
  }
  return peer;
}

MotoPeer::~MotoPeer() {
  KillGroup(proxy_pid_);
  KillGroup(moto_pid_);
  if (!dir_.empty() && !keep_dir_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

Status MotoPeer::MakeCertificates() {
  std::string openssl = FindExecutable("openssl");
  if (openssl.empty()) {
    return FailedPreconditionError("the openssl command is not on PATH", "apt-get install openssl");
  }
  const std::string d = dir_ + "/";
  {
    std::ofstream ext(d + "server.ext");
    ext << "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
           "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n";
  }
  // EC P-256: much faster to generate than RSA and served by Werkzeug like any other key.
  const std::vector<std::vector<std::string>> steps = {
      {openssl,
       "req",
       "-x509",
       "-newkey",
       "ec",
       "-pkeyopt",
       "ec_paramgen_curve:prime256v1",
       "-nodes",
       "-keyout",
       d + "ca.key",
       "-out",
       d + "ca.crt",
       "-days",
       "2",
       "-subj",
       "/CN=ekm test CA",
       "-addext",
       "basicConstraints=critical,CA:TRUE",
       "-addext",
       "keyUsage=critical,keyCertSign,cRLSign"},
      {openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", d + "server.key", "-out", d + "server.csr", "-subj", "/CN=127.0.0.1"},
      {openssl, "x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.crt", "-CAkey",
       d + "ca.key", "-CAcreateserial", "-out", d + "server.crt", "-days", "2", "-extfile",
       d + "server.ext"},
  };
  const std::string log = d + "openssl.log";
  for (const auto& argv : steps) {
    EKM_ASSIGN_OR_RETURN(int status, RunAndWait(argv, ChildEnv(), log, std::chrono::seconds(30)));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return InternalError("openssl " + argv[1] + " failed (" + DescribeExit(status) +
                           "); its log:\n" + Tail(log));
    }
  }
  ca_file_ = d + "ca.crt";
  return Status::Ok();
}

Status MotoPeer::StartMoto(bool tls) {
  const std::string log = dir_ + "/moto.log";
  // moto_server beside the interpreter (no shim), else the one on PATH, else python -m.
  std::vector<std::string> command;
  std::string beside = fs::path(python_).parent_path().string() + "/moto_server";
  if (IsExecutable(beside)) {
    command = {beside};
  } else if (std::string moto = FindExecutable("moto_server"); !moto.empty()) {
    command = {moto};
  } else {
    command = {python_, "-m", "moto.server"};
  }
  Status last;
  // A port picked by FreePort can be taken by someone else before moto binds it: retry.
  for (int attempt = 0; attempt < 3; ++attempt) {
    EKM_ASSIGN_OR_RETURN(int port, FreePort());
    std::vector<std::string> argv = command;
    argv.insert(argv.end(), {"-H", "127.0.0.1", "-p", std::to_string(port)});
    if (tls) argv.insert(argv.end(), {"-c", dir_ + "/server.crt", "-k", dir_ + "/server.key"});
    std::string line = "=== starting:";
    for (const auto& a : argv) line += " " + a;
    std::ofstream(log, std::ios::app) << line << '\n';
    EKM_ASSIGN_OR_RETURN(moto_pid_, Spawn(argv, ChildEnv(), log, log));
    endpoint_ = std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port);

    auto deadline = Clock::now() + kStartTimeout;
    bool exited = false;
    while (Clock::now() < deadline) {
      if (Exited(moto_pid_)) {
        exited = true;
        break;
      }
      auto r = Http("GET", endpoint_ + "/moto-api/", "", ca_file_, 1000);
      if (r.ok() && r->status == 200) return Status::Ok();
      if (!r.ok()) last = r.status();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!exited) {
      KillGroup(moto_pid_);
      moto_pid_ = -1;
      return DeadlineExceededError(
          "moto_server did not answer on " + endpoint_ + " within 20 s (last: " + last.message() +
              "); its log:\n" + Tail(log),
          "check that moto[server] works: moto_server -H 127.0.0.1 -p 5000");
    }
    kill(-moto_pid_, SIGKILL);  // the group may outlive its leader
    int status = Reap(moto_pid_);
    moto_pid_ = -1;
    last = UnavailableError("moto_server exited (" + DescribeExit(status) + ") before answering");
  }
  return UnavailableError(last.message() + " three times; its log:\n" + Tail(log),
                          "check that moto[server] works: moto_server -H 127.0.0.1 -p 5000");
}

Status MotoPeer::RunSetup() {
  const std::string log = dir_ + "/setup.log";
  setup_file_ = dir_ + "/setup.json";
  std::vector<std::string> argv = {
      python_, PeersDir() + "/moto_setup.py", "--endpoint", endpoint_, "--out", setup_file_};
  if (!ca_file_.empty()) argv.insert(argv.end(), {"--ca-file", ca_file_});
  EKM_ASSIGN_OR_RETURN(int status, RunAndWait(argv, ChildEnv(), log, kSetupTimeout));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return InternalError("moto_setup.py failed (" + DescribeExit(status) + "); its log:\n" +
                         Tail(log) + "\nmoto's log:\n" + Tail(dir_ + "/moto.log", 1500));
  }
  setup_ = nlohmann::json::parse(ReadFile(setup_file_), nullptr, /*allow_exceptions=*/false);
  if (setup_.is_discarded() || !setup_.contains("users") || !setup_.contains("keys")) {
    return InternalError("moto_setup.py wrote no valid JSON to " + setup_file_);
  }
  return Status::Ok();
}

Status MotoPeer::StartProxy() {
  const std::string log = dir_ + "/proxy.log";
  const std::string port_file = dir_ + "/proxy.port";
  std::vector<std::string> argv = {python_,      "-u",      PeersDir() + "/kms_fault_proxy.py",
                                   "--upstream", endpoint_, "--port",
                                   "0",          "--setup", setup_file_};
  if (!ca_file_.empty()) argv.insert(argv.end(), {"--ca-file", ca_file_});
  EKM_ASSIGN_OR_RETURN(proxy_pid_, Spawn(argv, ChildEnv(), port_file, log));
  auto deadline = Clock::now() + kStartTimeout;
  while (Clock::now() < deadline) {
    if (Exited(proxy_pid_)) {
      kill(-proxy_pid_, SIGKILL);
      int status = Reap(proxy_pid_);
      proxy_pid_ = -1;
      return InternalError("kms_fault_proxy.py exited (" + DescribeExit(status) +
                           ") before listening; its log:\n" + Tail(log));
    }
    std::string text = ReadFile(port_file);
    if (text.find('\n') != std::string::npos) {
      int port = std::atoi(text.c_str());
      if (port <= 0) return InternalError("kms_fault_proxy.py printed no port: " + text);
      proxy_endpoint_ = "http://127.0.0.1:" + std::to_string(port);
      auto r = Http("GET", proxy_endpoint_ + "/__fault__/stats", "", "", 2000);
      if (r.ok() && r->status == 200) return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return DeadlineExceededError("kms_fault_proxy.py did not listen within 20 s; its log:\n" +
                               Tail(log));
}

StatusOr<std::string> MotoPeer::ProxyRequest(const std::string& method, const std::string& path,
                                             const std::string& body) {
  if (proxy_endpoint_.empty()) {
    return FailedPreconditionError("the fault proxy was not started",
                                   "start the peer with MotoPeerOptions{.fault_proxy = true}");
  }
  EKM_ASSIGN_OR_RETURN(HttpResult r, Http(method, proxy_endpoint_ + path, body, "", 10000));
  if (r.status != 200) {
    return InternalError("fault proxy " + method + " " + path + " answered HTTP " +
                         std::to_string(r.status) + ": " + r.body);
  }
  return r.body;
}

Status MotoPeer::ArmFault(const std::string& target, const std::string& kind, int count,
                          int delay_ms) {
  nlohmann::json spec = {
      {"target", target}, {"kind", kind}, {"count", count}, {"delay_ms", delay_ms}};
  return ProxyRequest("POST", "/__fault__", spec.dump()).status();
}

Status MotoPeer::ClearFaults() { return ProxyRequest("POST", "/__fault__/clear", "{}").status(); }

StatusOr<nlohmann::json> MotoPeer::FaultStats() {
  EKM_ASSIGN_OR_RETURN(std::string body, ProxyRequest("GET", "/__fault__/stats", ""));
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InternalError("fault proxy stats are not JSON: " + body);
  return j;
}

Status MotoPeer::RunBoto3(const std::string& python_code, std::string* output) {
  static std::atomic<int> counter{0};
  const std::string name = dir_ + "/boto3-" + std::to_string(++counter);
  static constexpr const char* kPrelude = R"PY(import json, os
import boto3
from botocore.config import Config
setup = json.load(open(os.environ["EKM_MOTO_SETUP"]))
endpoint = os.environ["EKM_MOTO_ENDPOINT"]
proxy_endpoint = os.environ.get("EKM_PROXY_ENDPOINT") or None
ca_file = os.environ.get("EKM_CA_FILE") or None
def client(service, user="ekm-admin", via_proxy=False, secret=None, **kwargs):
    u = setup["users"][user]
    kwargs.setdefault("config", Config(retries={"total_max_attempts": 1}))
    return boto3.client(service, endpoint_url=proxy_endpoint if via_proxy else endpoint,
                        region_name=setup["region"], aws_access_key_id=u["access_key_id"],
                        aws_secret_access_key=u["secret_access_key"] if secret is None else secret,
                        verify=ca_file, **kwargs)
# ---- test code ----
)PY";
  {
    std::ofstream script(name + ".py");
    script << kPrelude << python_code << '\n';
  }
  const auto& admin = setup_["users"]["ekm-admin"];
  std::vector<std::string> env = ChildEnv({
      "AWS_ACCESS_KEY_ID=" + admin["access_key_id"].get<std::string>(),
      "AWS_SECRET_ACCESS_KEY=" + admin["secret_access_key"].get<std::string>(),
      "AWS_DEFAULT_REGION=" + setup_.value("region", std::string("us-east-1")),
      "AWS_ENDPOINT_URL=" + endpoint_,
      "AWS_CONFIG_FILE=/dev/null",
      "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
      "EKM_MOTO_SETUP=" + setup_file_,
      "EKM_MOTO_ENDPOINT=" + endpoint_,
      "EKM_PROXY_ENDPOINT=" + proxy_endpoint_,
      "EKM_CA_FILE=" + ca_file_,
  });
  if (!ca_file_.empty()) env.push_back("AWS_CA_BUNDLE=" + ca_file_);
  const std::string log = name + ".log";
  EKM_ASSIGN_OR_RETURN(int status, RunAndWait({python_, name + ".py"}, env, log, kBoto3Timeout));
  std::string out = ReadFile(log);
  if (output != nullptr) *output = out;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return InternalError("boto3 script " + name + ".py failed (" + DescribeExit(status) +
                         "); its output:\n" + Tail(log));
  }
  return Status::Ok();
}

}  // namespace ekm::testing
