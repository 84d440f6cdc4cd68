// ekmd: the ekm server. Serves API v1 over HTTP on the embedded default (SQLite + the
// platform-managed root key) in --data-dir.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>

#include "ekm/base/background_loop.h"
#include "ekm/base/file_reader.h"
#include "ekm/base/key_file.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/server/http_server.h"
#include "ekm/server/log_format.h"
#include "ekm/server/process_hardening.h"
#include "ekm/service/ekm_service.h"

namespace {

bool g_json_logs = false;

int Fail(const ekm::Status& s) {
  if (g_json_logs) {
    ekm::LogFields fields = {{"code", std::string(ekm::StatusCodeName(s.code()))}};
    if (!s.hint().empty()) fields.push_back({"hint", s.hint()});
    ekm::LogWithFields(spdlog::level::err, s.message(), fields);
    return 1;
  }
  std::string line = s.message();
  if (!s.hint().empty()) line += ": " + s.hint();
  std::fprintf(stderr, "ekmd: error: %s\n", line.c_str());
  return 1;
}

// Writes the bootstrap admin token to `path`, mode 0600, replacing an older file.
ekm::Status WriteTokenFile(const std::string& path, std::span<const uint8_t> token) {
  ::unlink(path.c_str());
  // The token and its newline in a buffer of their final size (no copy left by growth).
  ekm::SecretBytes line(token.size() + 1);
  auto out = line.MutableForCrypto();
  std::copy(token.begin(), token.end(), out.begin());
  out[token.size()] = '\n';
  return ekm::WriteNewKeyFile(path, "bootstrap admin token file", line.RevealForCrypto());
}

// The data directory's admin token: when none exists, the one in --bootstrap-token-file, or a
// new one written to <data-dir>/bootstrap-admin-token (its path is logged, never the token).
ekm::Status BootstrapAdminToken(ekm::EkmService& service, const std::string& data_dir,
                                const std::string& given_file) {
  std::optional<std::string> given;
  if (!given_file.empty()) {
    auto file = ekm::ReadSecretFile(given_file, "--bootstrap-token-file", 4096);
    if (!file.ok()) return file.status();
    std::string_view text(reinterpret_cast<const char*>(file->RevealForCrypto().data()),
                          file->size());
    text = text.substr(0, text.find('\n'));  // the first line
    while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
    given = std::string(text);  // wiped below
  }
  const ekm::CallContext bootstrap = ekm::CallContext::System("bootstrap");
  auto boot = service.EnsureBootstrapAdminToken(bootstrap, given);
  if (given) OPENSSL_cleanse(given->data(), given->size());
  if (!boot.ok()) return boot.status();
  if (!boot->created) return ekm::Status::Ok();
  if (given) {
    spdlog::info("stored the admin token {} from {}", boot->id, given_file);
    return ekm::Status::Ok();
  }
  // On a shared store the data directory holds nothing else: it may not exist yet.
  if (::mkdir(data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ekm::FailedPreconditionError("cannot create data directory " + data_dir + ": " +
                                        std::strerror(errno));
  }
  const std::string path = data_dir + "/bootstrap-admin-token";
  ekm::Status written = WriteTokenFile(path, boot->token.RevealForCrypto());
  if (!written.ok()) {
    service.RevokeApiToken(bootstrap, boot->id).status().IgnoreError();  // nobody could ever use it
    return written;
  }
  spdlog::warn(
      "no admin token existed: wrote a new one (id {}) to {} (mode 0600); use it to "
      "create owner tokens, then keep it offline",
      boot->id, path);
  return ekm::Status::Ok();
}

// Everything ekmd's command line sets.
struct EkmdFlags {
  ekm::EkmOptions options;
  ekm::HttpServerOptions http;
  int64_t ttl = 300;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string tls_client_auth = "optional";
  CLI::Option* client_auth = nullptr;
  std::string bootstrap_token_file;
  int64_t rotation_check_seconds = 60;
  int64_t audit_checkpoint_seconds = 300;
  int64_t audit_usage_seconds = 60;
  // Whole seconds on the command line; the provider takes milliseconds.
  int aws_call_timeout = 0;
  int aws_call_deadline = 0;
};

// The data directory, the key cache, the key lifecycle and the audit log.
void AddStoreAndKeyFlags(CLI::App& app, EkmdFlags& f) {
  f.options.data_dir = "./ekm-data";
  app.add_option("--data-dir", f.options.data_dir,
                 "Data directory: store and root key, created on first start [env: EKM_DATA_DIR]")
      ->envname("EKM_DATA_DIR")
      ->capture_default_str();
  app.add_option("--root-key-file", f.options.root_key_file,
                 "Platform root key file; required with a PostgreSQL --store, the same file "
                 "on every replica [default: <data-dir>/root.key] [env: EKM_ROOT_KEY_FILE]")
      ->envname("EKM_ROOT_KEY_FILE");
  app.add_option("--node-name", f.options.node_name,
                 "This replica's name: sent as Ekm-Node on every answer, in /v1/key-cache and "
                 "ekm_node_info, and in the leases of background jobs [env: EKM_NODE_NAME] "
                 "[default: the host name]")
      ->envname("EKM_NODE_NAME");
  app.add_option("--store", f.options.store,
                 "Where the store is: postgresql://USER@HOST:PORT/DB (several replicas on one "
                 "database; password in PGPASSFILE, never in the URL) or sqlite:PATH "
                 "[default: <data-dir>/ekm.db] [env: EKM_STORE]")
      ->envname("EKM_STORE");
  app.add_option("--key-cache-ttl", f.ttl,
                 "Seconds an unwrapped key may be used before asking its CMK again; bounds how "
                 "long data stays readable after a key is revoked")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  app.add_option("--key-cache-max-entries", f.options.key_cache_max_entries,
                 "Most unwrapped keys held in memory (each of: environment keys, data keys); "
                 "the least recently used are dropped and wiped first")
      ->check(CLI::Range(size_t{16}, size_t{100000000}))
      ->capture_default_str();
  // The floor keeps the leases one process holds of a DK version (every lease taken stays
  // until the key leaves the cache) at most 2^32 / 4096 = 2^20.
  app.add_option("--nonce-lease-size", f.options.nonce_lease_size,
                 "Messages of a data key version this process reserves in the store at once "
                 "(one store write per lease; what a stopped process leaves of its lease is "
                 "never used, out of the 2^32 messages of a version)")
      ->check(CLI::Range(uint32_t{4096}, uint32_t{1} << 20))
      ->capture_default_str();

  app.add_option_function<int64_t>(
         "--key-replacement-period",
         [&f](const int64_t& seconds) {
           f.options.replacement_period = std::chrono::seconds(seconds);
         },
         "Seconds between two replacements of an environment's customer main key (the "
         "environment setting replacement_period_seconds, an owner's, overrides it; an "
         "emergency replacement bypasses it): at least 3600, or 0 to switch the rule off for "
         "environments without their own setting (tests) [default: 86400]")
      ->check([](const std::string& text) -> std::string {
        // The floor of the environment setting holds here too: 0 is the one deliberate "off".
        int64_t v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "not a whole number of seconds";
        if (v == 0 || (v >= ekm::kMinReplacementPeriod.count() && v <= int64_t{365} * 86400)) {
          return {};
        }
        return "must be 0 (no replacement period) or between " +
               std::to_string(ekm::kMinReplacementPeriod.count()) +
               " (1 h, the floor) and 31536000 seconds, got " + text;
      });
}

// The background work: scheduled rotation, the bootstrap token, the audit log's checkpoints.
void AddBackgroundFlags(CLI::App& app, EkmdFlags& f) {
  app.add_option("--rotation-check-interval", f.rotation_check_seconds,
                 "Seconds between runs of the scheduled EK/DK rotation (the environments' "
                 "ek/dk rotation periods); 0: never (rotation only on demand)")
      ->check(CLI::Range(int64_t{0}, int64_t{86400}))
      ->capture_default_str();

  app.add_option("--bootstrap-token-file", f.bootstrap_token_file,
                 "When the data directory has no admin token: store the one in this file "
                 "(one line ekm_…) [default: write a new one to <data-dir>/bootstrap-admin-token]")
      ->check(CLI::ExistingFile);
  app.add_option("--audit-checkpoint-interval", f.audit_checkpoint_seconds,
                 "Seconds between signed checkpoints of every audit chain that advanced (one "
                 "more at shutdown)")
      ->check(CLI::Range(int64_t{1}, int64_t{86400}))
      ->capture_default_str();
  app.add_option("--audit-usage-interval", f.audit_usage_seconds,
                 "Seconds between appends of the per-minute data-plane usage counts to the "
                 "audit log (one more at shutdown)")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}))
      ->capture_default_str();
}

// How ekmd calls AWS KMS (the AWS provider's settings).
void AddAwsFlags(CLI::App& app, EkmdFlags& f) {
  app.add_option("--aws-principal-arn", f.options.aws.principal_arn,
                 "The platform's IAM role (or user) ARN that calls AWS KMS, named in the key "
                 "policy statement [env: EKM_AWS_PRINCIPAL_ARN] [default: asked of AWS STS "
                 "GetCallerIdentity]")
      ->envname("EKM_AWS_PRINCIPAL_ARN");
  app.add_option("--aws-ca-file", f.options.aws.ca_file,
                 "PEM CA bundle to trust for AWS KMS and STS instead of the system store "
                 "[env: EKM_AWS_CA_FILE]")
      ->envname("EKM_AWS_CA_FILE")
      ->check(CLI::ExistingFile);
  f.aws_call_timeout = static_cast<int>(f.options.aws.call_timeout.count() / 1000);
  f.aws_call_deadline = static_cast<int>(f.options.aws.call_deadline.count() / 1000);
  app.add_option("--aws-call-timeout", f.aws_call_timeout,
                 "Seconds one HTTP exchange with AWS KMS may take (connect, send, answer)")
      ->check(CLI::Range(1, 120))
      ->capture_default_str();
  app.add_option("--aws-call-deadline", f.aws_call_deadline,
                 "Seconds all attempts of one AWS KMS call may take together, retries of "
                 "throttling, 5xx and network errors included; past it the request gets 503 + "
                 "Retry-After")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
}

// The HTTP server: address, limits of a request, threads, logs.
void AddHttpFlags(CLI::App& app, EkmdFlags& f) {
  // A token's steady pace and its bursts: well above what a CLI user or a typical app
  // instance sends, low enough that one runaway client cannot take a node's few thousand
  // requests per second from the other tenants.
  f.http.rate_limit = 200;
  f.http.rate_limit_burst = 400;
  app.add_option("--listen", f.http.listen,
                 "Address to serve on, HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--max-body-size", f.http.max_body_size,
                 "Largest JSON request body in bytes (streams are unlimited)")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30))
      ->capture_default_str();
  app.add_option_function<int64_t>(
         "--read-timeout",
         [&f](const int64_t& seconds) { f.http.read_timeout = std::chrono::seconds(seconds); },
         "Seconds a request's header or next body chunk may take to arrive before the "
         "connection is dropped [default: 30]")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}));
  app.add_option("--threads", f.http.threads, "I/O threads [default: one per core]")
      ->check(CLI::Range(0, 256));
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
}

// TLS.
void AddTlsFlags(CLI::App& app, EkmdFlags& f) {
  app.add_flag("--allow-insecure-listen", f.http.allow_insecure_listen,
               "Allow plain HTTP on a non-loopback address (put TLS in front of it)");

  app.add_option("--tls-cert", f.http.tls_cert_file,
                 "Serve HTTPS with this certificate (PEM; the chain may follow it). TLS 1.2 "
                 "(ECDHE with AES-GCM or ChaCha20-Poly1305) and 1.3 only");
  app.add_option("--tls-key", f.http.tls_key_file,
                 "The certificate's private key (PEM, unencrypted; keep it 0600)");
  app.add_option("--tls-client-ca", f.http.tls_client_ca_file,
                 "Ask clients for a certificate signed by these CAs (PEM): mutual TLS");
  f.client_auth =
      app.add_option("--tls-client-auth", f.tls_client_auth,
                     "With --tls-client-ca: optional (ask, accept none) or require (refuse a "
                     "client without a valid certificate)")
          ->check(CLI::IsMember({"optional", "require"}))
          ->capture_default_str();
}

// The limits that keep one client or tenant from slowing the others.
void AddLimitFlags(CLI::App& app, EkmdFlags& f) {
  f.http.auth_failure_limit = 5;
  app.add_option("--auth-failure-limit", f.http.auth_failure_limit,
                 "Failed authentications per second per client address, in bursts of 60 times "
                 "that; past it the address gets 429 before its token is checked; 0: no limit")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--rate-limit", f.http.rate_limit,
                 "Requests per second per API token (per client address without a token); "
                 "0: no limit. /healthz, /readyz and /metrics are never limited")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--rate-limit-burst", f.http.rate_limit_burst,
                 "Requests a token may send at once above the rate (the bucket size)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_flag("--metrics-unauthenticated", f.http.metrics_unauthenticated,
               "Serve GET /metrics without a token (it shows no tenant names); otherwise "
               "admin only");
  app.add_option("--log-format", f.log_format,
                 "text, or json: one JSON object per line (ts, level, msg, fields)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option_function<int64_t>(
         "--body-timeout",
         [&f](const int64_t& seconds) { f.http.body_timeout = std::chrono::seconds(seconds); },
         "Seconds a JSON request body may take to arrive in full, from the end of its header "
         "(--read-timeout still bounds each read) [default: 60]")
      ->check(CLI::Range(int64_t{1}, int64_t{3600}));
  app.add_option_function<int64_t>(
         "--max-stream-duration",
         [&f](const int64_t& seconds) {
           f.http.max_stream_duration = std::chrono::seconds(seconds);
         },
         "Seconds a streamed encrypt or decrypt may run in all; 0: no limit [default: 3600]")
      ->check(CLI::Range(int64_t{0}, int64_t{7} * 86400));
  app.add_option("--max-connections-per-address", f.http.max_connections_per_address,
                 "Open connections per client address; the next one is answered 429 and "
                 "closed. Loopback clients are exempt unless --limit-loopback-connections; "
                 "0: no limit")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_flag("--limit-loopback-connections", f.http.limit_loopback,
               "Apply --max-connections-per-address to loopback clients too (by default a "
               "proxy on the same host, whose connections all come from 127.0.0.1, is exempt)");
  app.add_option("--max-requests-per-token", f.http.max_requests_per_token,
                 "Requests in progress at once per API token (streams included); the next one "
                 "is answered 429; 0: no limit")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--blocking-threads", f.http.blocking_threads,
                 "Threads for the work kept off the I/O threads: key cache misses (the store, "
                 "a KMS), the admin plane, import-params' RSA key generation")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max-blocking-per-environment", f.http.max_blocking_per_environment,
                 "Requests of one environment on the blocking threads at once (a tenant whose "
                 "KMS is slow holds no more); 0: no limit")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--max-calls-per-provider", f.options.max_calls_per_provider,
                 "Calls in flight at once to one key provider's KMS (a slow KMS holds no more "
                 "threads); the next is answered 503 with Retry-After; 0: no limit")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--max-queued-per-environment", f.http.max_queued_per_environment,
                 "Requests of one environment waiting for a blocking thread; the next one is "
                 "answered 503 with Retry-After; 0: no limit")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
}

// What the flags say together, checked after parsing; the logger. 2 (usage) or 0.
int ApplyFlags(EkmdFlags& f) {
  f.options.key_cache_ttl = std::chrono::seconds(f.ttl);
  if (f.aws_call_deadline < f.aws_call_timeout) {
    std::fprintf(stderr,
                 "ekmd: error: --aws-call-deadline (%d s) is shorter than "
                 "--aws-call-timeout (%d s): make the deadline at least one attempt long\n",
                 f.aws_call_deadline, f.aws_call_timeout);
    return 2;
  }
  f.options.aws.call_timeout = std::chrono::seconds(f.aws_call_timeout);
  f.options.aws.call_deadline = std::chrono::seconds(f.aws_call_deadline);

  if (f.log_format == "json") {
    auto logger = spdlog::stderr_logger_mt("ekmd");
    logger->set_formatter(ekm::NewJsonLogFormatter());
    spdlog::set_default_logger(logger);
    ekm::SetJsonLogs(true);
    g_json_logs = true;
  } else {
    spdlog::set_default_logger(spdlog::stderr_color_mt("ekmd"));
  }
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  if (f.options.replacement_period.count() == 0) {
    spdlog::warn(
        "--key-replacement-period 0: a customer main key may be replaced any number "
        "of times in environments without their own replacement period setting");
  }
  if (f.client_auth->count() > 0 || !f.http.tls_client_ca_file.empty()) {
    if (f.http.tls_client_ca_file.empty()) {
      return Fail(ekm::InvalidArgumentError("--tls-client-auth needs --tls-client-ca",
                                            "give the CA (PEM) that signs client certificates"));
    }
    if (!f.http.tls()) {
      return Fail(ekm::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key",
                                            "client certificates are part of TLS"));
    }
    f.http.tls_client_auth = f.tls_client_auth;
  }

  return 0;
}

// ekmd's own work beside the requests; `rotation` runs the schedule (stopped by the caller).
void StartBackgroundWork(const EkmdFlags& f, ekm::EkmService& service,
                         ekm::BackgroundLoop& rotation) {
  // Expired keys are wiped from memory even when nobody asks for them again.
  service.StartPurgingExpiredKeys(std::chrono::seconds(std::min<int64_t>(f.ttl, 30)));

  // A shred, a key change or a token revocation made by another process on the store (another
  // replica, `ekm` in local mode) acted on within a second.
  service.StartFollowingCluster(std::chrono::seconds(1));

  // Resumes every interrupted repack and runs new ones after a CMK change.
  service.StartRepackRunner();

  // The audit log: usage counts appended and chain heads checkpointed in the background.
  service.StartAuditTasks(std::chrono::seconds(f.audit_checkpoint_seconds),
                          std::chrono::seconds(f.audit_usage_seconds));

  // Scheduled rotation: every --rotation-check-interval, rotates what is due; stopped (woken
  // at once) on SIGTERM/SIGINT.
  if (f.rotation_check_seconds > 0) {
    rotation.StartEvery(std::chrono::seconds(f.rotation_check_seconds), [&service] {
      auto report = service.RunScheduledRotations(
          ekm::CallContext::Operator(std::string(ekm::kScheduleActor)));
      if (!report.ok()) {
        spdlog::warn("scheduled rotation: {}", report.status().ToString());
      } else if (!report->rotated.empty()) {
        spdlog::info("scheduled rotation: {} key version(s) rotated", report->rotated.size());
      }
    });
  }
}

// Opens the data directory and serves until SIGTERM or SIGINT.
int Serve(EkmdFlags& f) {
  // Signals are taken by this thread only, through sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ekm::Status init = ekm::EkmService::Initialize(f.options, ekm::EkmService::RootKey::kMustExist);
  if (!init.ok()) return Fail(init);
  f.http.clock = f.options.clock;  // one clock for the service and the router
  if (f.options.node_name.empty()) {
    char host[256] = {};
    f.options.node_name = ::gethostname(host, sizeof(host) - 1) == 0 && host[0] ? host : "ekmd";
  }
  f.http.node_name = f.options.node_name;
  auto service = ekm::EkmService::Open(f.options);
  if (!service.ok()) return Fail(service.status());
  ekm::Status boot = BootstrapAdminToken(**service, f.options.data_dir, f.bootstrap_token_file);
  if (!boot.ok()) return Fail(boot);

  ekm::ExportServiceMetrics(service->get());
  ekm::HttpServer server(service->get(), f.http);
  ekm::Status started = server.Start();
  if (!started.ok()) return Fail(started);
  std::string host = f.http.listen.substr(0, f.http.listen.rfind(':'));
  spdlog::info("ekmd listening on {}://{}:{} (data directory {}, key cache TTL {}s)",
               f.http.tls() ? "https" : "http", host, server.port(), f.options.data_dir, f.ttl);

  ekm::BackgroundLoop rotation;
  StartBackgroundWork(f, **service, rotation);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down gracefully", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server.Stop(std::chrono::seconds(10));

  (*service)->StopRepackRunner();  // between two batches; the job resumes at the next start

  rotation.Stop();

  // After the last request: its usage is appended and every advanced chain checkpointed.
  (*service)->StopAuditTasks();

  spdlog::info("ekmd stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything reads a key: a crash must not write keys to disk.
  if (ekm::Status hardened = ekm::DisableCoreDumps(); !hardened.ok()) return Fail(hardened);
  CLI::App app{
      "ekmd: the ekm server (Enterprise Key Management, bring your own key).\n"
      "Serves the REST API v1 (docs/api.md) on the data directory's store and keys.",
      "ekmd"};
  app.set_version_flag("--version", "ekmd 0.1.0");
  app.set_config("--config", "",
                 "Read options from a TOML/INI file (keys are the long option "
                 "names, e.g. listen = \"127.0.0.1:8080\")");
  EkmdFlags flags;
  AddStoreAndKeyFlags(app, flags);
  AddBackgroundFlags(app, flags);
  AddHttpFlags(app, flags);
  AddAwsFlags(app, flags);
  AddTlsFlags(app, flags);
  AddLimitFlags(app, flags);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("ekmd: error: ") + e.what() + " (see `ekmd --help`)\n";
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (int rc = ApplyFlags(flags); rc != 0) return rc;
  return Serve(flags);
}
