// MotoPeer: a real AWS KMS/STS/IAM peer for tests -- moto_server on 127.0.0.1, prepared by
// tests/peers/moto_setup.py (IAM users, roles, KMS keys, then IAM checks switched on), and
// optionally tests/peers/kms_fault_proxy.py in front of it for the errors moto cannot produce
// (DisabledException, KMSInvalidStateException, throttling, 5xx, timeouts, resets).
// tests/peers/README.md says what moto enforces and what it does not.
//
// Test-only (library ekm_testing). Each MotoPeer owns its own ports, temp dir and processes, so
// tests may run in parallel. The processes run in their own process group, which the destructor
// kills. After Start() every accessor is const and every method is safe to call from several
// threads at once.
#pragma once

#include <sys/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "ekm/base/status.h"

namespace ekm::testing {

struct MotoPeerOptions {
  // Serve moto over HTTPS with a throwaway CA (ca_file()) and a server certificate for
  // IP:127.0.0.1, made with the openssl CLI.
  bool tls = false;
  // Also start kms_fault_proxy.py (plain HTTP on 127.0.0.1) in front of moto.
  bool fault_proxy = false;
};

class MotoPeer {
 public:
  // Picks free ports, starts moto_server (the `moto_server` command, else `python3 -m
  // moto.server`), waits until it answers (at most ~20 s), runs moto_setup.py and starts the
  // proxy when asked. On failure the error names what failed and carries the tail of its log;
  // the temp dir with all logs is then kept and named in the message.
  // Environment: EKM_PYTHON3 overrides the python interpreter (it must import moto and boto3);
  // EKM_KEEP_PEER_DIR=1 keeps the temp dir after a successful run too.
  static StatusOr<std::unique_ptr<MotoPeer>> Start(MotoPeerOptions options = {});

  ~MotoPeer();  // kills moto and the proxy (SIGTERM, then SIGKILL) and removes the temp dir
  MotoPeer(const MotoPeer&) = delete;
  MotoPeer& operator=(const MotoPeer&) = delete;

  const std::string& endpoint() const { return endpoint_; }              // http(s)://127.0.0.1:PORT
  const std::string& proxy_endpoint() const { return proxy_endpoint_; }  // "" if not started
  const std::string& ca_file() const { return ca_file_; }                // "" without tls
  // moto_setup.py's output: endpoint, region, account, users{name:{arn, access_key_id,
  // secret_access_key}}, roles{name:{arn}}, keys{main|rotating|disabled:{key_id, arn, alias,
  // alias_arn}}. Users: ekm-platform, ekm-no-decrypt, ekm-describe, ekm-admin, ekm-web-identity.
  const nlohmann::json& setup() const { return setup_; }
  const std::string& setup_file() const { return setup_file_; }  // the same, as a JSON file
  const std::string& dir() const { return dir_; }                // the temp dir: logs, certificates

  // Arms a fault in the proxy: the next `count` requests (-1: all) whose target (X-Amz-Target,
  // e.g. "TrentService.Decrypt", or "sts.AssumeRole" for query-protocol calls; "*" for any)
  // matches get `kind` instead of moto's answer. Kinds: DisabledException,
  // KMSInvalidStateException, ThrottlingException, LimitExceededException,
  // KMSInternalException (500), AccessDeniedException, NotFoundException,
  // UnrecognizedClientException, ServiceUnavailable (503, HTML), timeout (waits delay_ms, then
  // answers), reset (closes the connection); any other name becomes a 400 JSON error of that
  // __type. FailedPrecondition if the proxy was not started.
  Status ArmFault(const std::string& target, const std::string& kind, int count = -1,
                  int delay_ms = 0);
  // Disarms every fault and zeroes the proxy's counters.
  Status ClearFaults();
  // {"requests": {target: n}, "faulted": {target: n}, "forwarded": {target: n}} since the
  // proxy started or the last ClearFaults().
  StatusOr<nlohmann::json> FaultStats();

  // Runs python_code with the image's python3 (boto3 available), at most 60 s, with AWS_*
  // pointing at moto as the ekm-admin user (AWS_ENDPOINT_URL, AWS_DEFAULT_REGION,
  // AWS_CA_BUNDLE with tls). A prelude defines: `setup` (the dict above), `endpoint`,
  // `proxy_endpoint`, `ca_file` (or None) and
  //   client(service, user="ekm-admin", via_proxy=False, secret=None, **client_kwargs)
  // that returns a boto3 client signed as that user (secret overrides the secret key) with
  // retries off. Error (with the output's tail) if it exits non-zero; `output`, when given,
  // receives stdout and stderr.
  Status RunBoto3(const std::string& python_code, std::string* output = nullptr);

 private:
  MotoPeer() = default;
  Status StartMoto(bool tls);
  Status RunSetup();
  Status StartProxy();
  Status MakeCertificates();
  StatusOr<std::string> ProxyRequest(const std::string& method, const std::string& path,
                                     const std::string& body);

  std::string dir_;
  std::string python_;
  std::string endpoint_, proxy_endpoint_, ca_file_, setup_file_;
  nlohmann::json setup_;
  pid_t moto_pid_ = -1;
  pid_t proxy_pid_ = -1;
  bool keep_dir_ = false;
};

}  // namespace ekm::testing
