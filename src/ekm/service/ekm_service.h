// EkmService: the one facade over the key hierarchy that both the `ekm` CLI (local mode) and
// `ekmd` (every API route) call. It owns the store, the providers and the key cache.
//
// Flow of an encrypt: workspace/environment -> current DK of the scope (cache, else unwrap the
// EK through the CMK's provider, then the DK under the EK; a scope's first use creates its DK)
// -> nonce from the DK's nonce lease -> envelope. The provider is called only on a cache miss.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/api/call_context.h"
#include "ekm/api/ekm_api.h"
#include "ekm/api/types.h"
#include "ekm/audit/audit_log.h"
#include "ekm/auth/token.h"
#include "ekm/base/bytes.h"
#include "ekm/base/clock.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/envelope/envelope.h"
#include "ekm/provider/key_provider.h"
#include "ekm/store/store.h"

namespace ekm {

// The AWS KMS provider (provider/aws/). Credentials, region and endpoints come from the
// environment as the AWS SDKs read them (AWS_ACCESS_KEY_ID…, AWS_PROFILE, AWS_ROLE_ARN +
// AWS_WEB_IDENTITY_TOKEN_FILE, instance metadata; AWS_ENDPOINT_URL_KMS / _STS).
struct AwsProviderOptions {
  bool enabled = true;
  // The platform's own principal, the IAM role (or user) ARN that calls KMS, which the key
  // policy statement names. Empty: asked of STS GetCallerIdentity when first needed.
  std::string principal_arn;
  // PEM CA bundle to trust for KMS/STS instead of the system store (a private CA in front of a
  // VPC endpoint; tests).
  std::string ca_file;
  std::chrono::milliseconds call_timeout{5000};    // one HTTP exchange with KMS
  std::chrono::milliseconds call_deadline{15000};  // all retries of one call
  // Where AWS_* settings are read from; empty: the process environment. Tests inject theirs.
  std::function<std::optional<std::string>(std::string_view)> env;
};

struct EkmOptions {
  std::string data_dir;       // holds ekm.db and, by default, root.key
  std::string root_key_file;  // the platform provider's root key; default <data_dir>/root.key
  // Where the store is (--store / EKM_STORE): "sqlite:PATH", "postgresql://USER@HOST:PORT/DB"
  // (several ekmd replicas on one database: root_key_file must then be given, the same file
  // for all, and the audit signing key is kept sealed in the store), or empty: the data
  // directory's ekm.db.
  std::string store;
  // This process among several on one store (ekmd --node-name; default the host name): named in
  // every answer (Ekm-Node) and in node-local views; with it, background jobs run under leases
  // in the store, one process at a time each. Empty (`ekm` in local mode): no leases.
  std::string node_name;
  // How long unwrapped EKs and DKs may be used without asking the provider again.
  std::chrono::seconds key_cache_ttl{300};
  // Bound on AES-GCM messages per DK version; past it the scope's DK rotates by itself.
  uint64_t max_messages_per_dk = uint64_t{1} << 32;
  // Nonces reserved from the store at a time (see keys/nonce_sequence.h).
  uint32_t nonce_lease_size = 1u << 20;
  // Calls in flight at once to one key provider that calls out (a KMS); the next fails at once
  // with 503 + Retry-After (keys/key_hierarchy.h). 0: no limit.
  int max_calls_per_provider = 16;
  Clock* clock = &Clock::Real();
  AwsProviderOptions aws;
  // Bound on cached keys (EKs, DKs and their current-version index each); least recently used
  // first out, wiped when evicted.
  size_t key_cache_max_entries = 100000;

  // A customer CMK may be replaced by another once per this period per environment (the
  // environment setting replacement_period_seconds overrides it); an emergency replacement
  // by an owner bypasses it. The deployment's choice (ekmd --key-replacement-period: 0, the
  // rule off, or at least kMinReplacementPeriod); a period running when it is shortened still
  // ends as it would have.
  std::chrono::seconds replacement_period{24 * 3600};
  // DKs re-wrapped per repack transaction.
  size_t repack_batch_size = 1000;
};

inline constexpr std::string_view kScheduleActor = "system:schedule";
// A node trusts a token record it read this long; a revocation made on another node takes
// effect here within it (on the node that revoked, at once).
inline constexpr std::chrono::seconds kApiTokenCacheTtl{5};
inline constexpr std::chrono::seconds kShredConfirmationTtl{120};

// The service implements the API (api/ekm_api.h) and adds what a process hosting it needs: the
// data directory, the stream primitives the HTTP router feeds piecewise, authentication, the
// background tasks and the foreground repack of local mode.
class EkmService : public EkmApi {
 public:
  // Creates the data directory, the root key, the audit signing key and the store if the store
  // does not exist yet; with a store there, creates nothing (Open checks its keys). On a
  // PostgreSQL store, kMustExist refuses to create the root key file (ekmd: a replica is given
  // the root key the store was initialized with, never a new one); the schema of an empty
  // database is created either way (replicas starting at once migrate it once).
  enum class RootKey { kCreateIfMissing, kMustExist };
  static Status Initialize(const EkmOptions& options, RootKey root_key = RootKey::kCreateIfMissing);
  // Opens an initialized data directory; FailedPrecondition with "run `ekm init`" otherwise.
  // Refused, before anything is written, when the root key file or the audit signing key file
  // is missing, is not a regular file owned by the user ekm runs as with mode 0600, or is not
  // the store's own (the store records the root key's fingerprint and the audit key's id).
  static StatusOr<std::unique_ptr<EkmService>> Open(const EkmOptions& options);
  // The data directory's store alone, opened with its root key as Open does: for tools and
  // tests that read or change the store beside a service.
  static StatusOr<StorePtr> OpenStore(const EkmOptions& options);

  // The stream forms of EkmApi, on these (the router feeds them as the request body arrives).
  Status EncryptStream(const CallContext& ctx, std::string_view workspace,
                       std::string_view environment, std::string_view scope, bool text,
                       const StreamSource& source, const StreamSink& sink) override;
  Status DecryptStream(const CallContext& ctx, std::string_view workspace,
                       std::string_view environment, const StreamSource& source,
                       const StreamSink& sink) override;
  // From ctx.caller, and AuditSigningPublicKey().
  StatusOr<std::optional<ApiTokenInfo>> WhoAmI(const CallContext& ctx) override;
  StatusOr<AuditPublicKeyInfo> GetAuditPublicKey(const CallContext& ctx) override;

  // Data plane, streams of any size in bounded memory.
  virtual StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(const CallContext& ctx,
                                                                      std::string_view workspace,
                                                                      std::string_view environment,
                                                                      std::string_view scope,
                                                                      bool text) = 0;
  virtual StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      const CallContext& ctx, std::string_view workspace, std::string_view environment) = 0;

  // Drops (and wipes) every cached key past its TTL and grace; returns how many. ekmd calls it
  // periodically.
  virtual size_t PurgeExpiredKeys() = 0;
  // Purges expired keys every `interval` on a background thread, until the service is gone.
  virtual void StartPurgingExpiredKeys(std::chrono::milliseconds interval) = 0;

  // Runs (or resumes) the environment's repack in this thread until it finishes; `progress`
  // is called after every batch. For local mode; ekmd runs repacks in the background.
  virtual StatusOr<RepackStatus> RunRepack(
      const CallContext& ctx, std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) = 0;
  // ekmd: one background thread that resumes unfinished repacks and runs new ones promptly.
  virtual void StartRepackRunner() = 0;
  virtual void StopRepackRunner() = 0;

  // The caller of a request, from its bearer token text (may be empty: no token). Unauthenticated
  // when missing, malformed, unknown, wrong secret (one message for these two), revoked or
  // expired; each failure is recorded as token.auth_failed with the reason, `route`,
  // `remote_address` and the token id when parseable (never the secret). Reads the store at
  // most once per kApiTokenCacheTtl per token.
  virtual StatusOr<auth::Principal> Authenticate(std::string_view token_text,
                                                 std::string_view route,
                                                 std::string_view remote_address) = 0;
  // Records token.permission_denied for a refused request, in the caller's workspace.
  virtual void RecordPermissionDenied(const auth::Principal& principal, std::string_view route,
                                      std::string_view workspace, std::string_view environment,
                                      std::string_view remote_address, const Status& why) = 0;
  // Makes sure an admin token exists: when one does, nothing changes; otherwise stores `given`
  // (a token text, e.g. from --bootstrap-token-file) or a new one, without expiry.
  virtual StatusOr<BootstrapAdminToken> EnsureBootstrapAdminToken(
      const CallContext& ctx, std::optional<std::string_view> given) = 0;

  // The audit signing key's public half (SubjectPublicKeyInfo PEM) and key id.
  virtual const AuditPublicKey& AuditSigningPublicKey() = 0;
  // A checkpoint for every chain that advanced since its newest one; returns how many.
  virtual StatusOr<size_t> CheckpointAdvancedChains() = 0;
  // Appends the data-plane usage counted so far as data_plane.usage records.
  virtual Status FlushDataPlaneUsage() = 0;
  // ekmd: a thread that flushes usage every `usage_interval` and checkpoints advanced chains
  // every `checkpoint_interval`; StopAuditTasks (and the destructor) flushes and checkpoints
  // once more. Without it (local mode) the destructor flushes the usage.
  virtual void StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                               std::chrono::milliseconds usage_interval) = 0;
  virtual void StopAuditTasks() = 0;

  // Acts on the cluster notices (store.h) other processes posted since the last call: forgets
  // the keys of a shredded environment, the records of a changed one, a revoked token. The
  // first call only notes where the store is. Returns how many were applied.
  virtual StatusOr<size_t> ApplyClusterNotices() = 0;
  // ekmd: ApplyClusterNotices every `interval` on a background thread, until the service goes.
  virtual void StartFollowingCluster(std::chrono::milliseconds interval) = 0;
};

// The service on the dependencies it is given: what EkmService::Open (the composition root of
// a data directory, data_directory.cc) builds, and what a test builds from fakes.
std::unique_ptr<EkmService> NewEkmService(EkmOptions options, StorePtr store,
                                          std::unique_ptr<ProviderRegistry> providers,
                                          std::unique_ptr<AuditSigner> audit_signer);

}  // namespace ekm
