// Store: where ekm keeps workspaces, environments and the wrapped key hierarchy.
// Everything stored is either public metadata or wrapped: a stolen store is useless without
// the CMKs.
//
// Implementations: SQLite (sqlite/, the embedded default) and, later, PostgreSQL. Contract for
// every implementation:
//  - each method is atomic; every multi-row change is one transaction, so a crash never leaves
//    half a key hierarchy;
//  - schema changes are numbered migrations applied at Open;
//  - thread-safe: one Store is shared by every request thread;
//  - bound to the platform root key (store_integrity.h): opened only with the root key it
//    was created with; EK rows, current-EK pointers and workspace default CMKs carry MACs,
//    computed on write and checked on read;
//  - destroying key material (shred, the end of a repack, deleting imported material) leaves
//    no copy in the store's files (docs/store.md "Destroying key material").
// Errors: NotFound / AlreadyExists name the thing; Unavailable when the database is busy or
// unreachable; DataLoss when a stored row is corrupt or fails its MAC ("the store was modified
// outside ekm").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/audit/audit_record.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm {

struct WorkspaceRecord {
  int64_t id = 0;
  std::string name;
  int64_t created_at = 0;  // unix seconds
};

struct EnvironmentRecord {
  int64_t id = 0;
  int64_t workspace_id = 0;
  std::string workspace;  // the workspace's name
  std::string name;
  int64_t created_at = 0;
  uint32_t current_ek_version = 0;  // the EK new DKs are wrapped under
};

// An environment key (EK) version, stored only wrapped by its CMK.
struct EnvironmentKeyRecord {
  int64_t environment_id = 0;
  uint32_t version = 0;
  std::string cmk_provider;  // which provider wrapped it
  std::string cmk_key_id;    // which CMK inside that provider
  Bytes wrapped;             // opaque provider blob
  int64_t created_at = 0;
};

// A data key (DK) version of one scope, stored only wrapped by an EK.
struct DataKeyRecord {
  int64_t environment_id = 0;
  std::string scope;
  uint32_t version = 0;
  uint32_t ek_version = 0;  // the EK that wraps it
  Bytes wrapped;            // crypto/key_wrap.h format
  int64_t created_at = 0;
  uint64_t messages_reserved = 0;  // nonces handed out under this DK version (see nonce leases)
};

// One "Update key" validation of a CMK for an environment, passed or failed (never key bytes).
struct KeyValidationRecord {
  int64_t environment_id = 0;
  std::string cmk_provider;
  std::string cmk_key_id;
  int64_t checked_at = 0;
  bool ok = false;
  std::string error_code;     // StatusCode name when it failed ("permission_denied", …)
  std::string provider_code;  // the provider's own code ("AccessDeniedException", …)
  std::string message;
  std::string hint;
  std::string detail;  // JSON: the individual checks and what the provider reported
};

struct LifecycleEventFilter {
  std::string workspace;                   // required
  std::optional<std::string> environment;  // nullopt: every environment of the workspace
  std::string type;                        // empty: every type
  std::vector<std::string> types;          // non-empty: one of these types too
  int64_t since_ms = 0;                    // at >= since_ms
  int64_t until_ms = INT64_MAX;            // at < until_ms
  int64_t after_id = 0;                    // id > after_id (paging)
  size_t limit = 1000;
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs `body` in one write transaction: every call it makes on this Store, from this thread,
  // joins the transaction (a method's own transaction becomes a savepoint of it), and all of it
  // is committed when `body` returns OK, or none of it. `body` may run more than once (a
  // PostgreSQL serialization failure reruns it from the start), so it does store calls and
  // computations only: no provider (KMS) call, nothing that must happen once.
  virtual Status InTransaction(const std::function<Status()>& body) = 0;

  virtual StatusOr<WorkspaceRecord> CreateWorkspace(std::string_view name, int64_t now) = 0;
  virtual StatusOr<WorkspaceRecord> GetWorkspace(std::string_view name) = 0;
  virtual StatusOr<std::vector<WorkspaceRecord>> ListWorkspaces() = 0;

  // Creates the environment and its first EK (version first_ek.version) in one transaction.
  virtual StatusOr<EnvironmentRecord> CreateEnvironment(std::string_view workspace,
                                                        std::string_view name,
                                                        const EnvironmentKeyRecord& first_ek,
                                                        int64_t now) = 0;
  virtual StatusOr<EnvironmentRecord> GetEnvironment(std::string_view workspace,
                                                     std::string_view name) = 0;
  virtual StatusOr<std::vector<EnvironmentRecord>> ListEnvironments(std::string_view workspace) = 0;

  virtual StatusOr<EnvironmentKeyRecord> GetEnvironmentKey(int64_t environment_id,
                                                           uint32_t version) = 0;
  // Stores EK version `ek.version` (which must be current_ek_version + 1 of the environment)
  // and makes it the current one, in one transaction. FailedPrecondition when another change
  // got there first (the environment's current version is no longer ek.version - 1).
  virtual Status AddEnvironmentKey(const EnvironmentKeyRecord& ek) = 0;

  // Validations of customer keys, newest last.
  virtual Status RecordKeyValidation(const KeyValidationRecord& record) = 0;
  // The newest validation of the environment, or nullopt.
  virtual StatusOr<std::optional<KeyValidationRecord>> GetLatestKeyValidation(
      int64_t environment_id) = 0;

  // The newest DK version of a scope, or nullopt when the scope has none yet.
  virtual StatusOr<std::optional<DataKeyRecord>> GetLatestDataKey(int64_t environment_id,
                                                                  std::string_view scope) = 0;
  virtual StatusOr<DataKeyRecord> GetDataKey(int64_t environment_id, std::string_view scope,
                                             uint32_t version) = 0;
  // Inserts the DK version unless (environment, scope, version) exists already; either way
  // returns the stored row, so concurrent creators agree on one key. A new row must be wrapped
  // under the environment's current EK, checked inside the insert's write transaction:
  // FailedPrecondition, and nothing stored, when record.ek_version is not current (a rotation
  // or CMK change got there first: wrap it under the current EK and insert again) or when the
  // current EK was destroyed (a shred). So no DK is ever created under an EK that a repack is
  // retiring, whose finishing transaction destroys the older EKs.
  virtual StatusOr<DataKeyRecord> InsertDataKey(const DataKeyRecord& record) = 0;

  // Atomically adds `count` to the DK version's messages_reserved and returns the value it had
  // before, unless the sum would exceed `limit`: then ResourceExhausted and nothing changes.
  virtual StatusOr<uint64_t> ReserveMessages(int64_t environment_id, std::string_view scope,
                                             uint32_t version, uint64_t count, uint64_t limit) = 0;

  // Lifecycle events = audit records, append only. Appends to the chain record.workspace in
  // one transaction that reads the chain's head, so concurrent writers (threads, or ekmd
  // replicas on one database) never fork a chain ((chain, seq) is unique). id, chain, seq,
  // prev_hash and hash of `record` are ignored: the store sets them.
  virtual Status RecordLifecycleEvent(const LifecycleEventRecord& record) = 0;
  // Oldest first.
  virtual StatusOr<std::vector<LifecycleEventRecord>> ListLifecycleEvents(
      const LifecycleEventFilter& filter) = 0;

  struct AuditChainHead {
    std::string chain;
    int64_t seq = 0;
    Bytes hash;
    int64_t checkpointed_seq = 0;  // seq of the chain's newest checkpoint; 0: none
  };
  // Every chain with at least one record, with its head and newest checkpoint.
  virtual StatusOr<std::vector<AuditChainHead>> ListAuditChainHeads() = 0;
  // The head of one chain (seq 0 and no hash when empty).
  virtual StatusOr<AuditChainHead> GetAuditChainHead(std::string_view chain) = 0;
  struct AuditCheckpointRecord {
    int64_t id = 0;
    std::string chain;
    int64_t seq = 0;
    Bytes head_hash;
    int64_t at_ms = 0;
    std::string key_id;
    Bytes signature;
  };
  virtual Status PutAuditCheckpoint(const AuditCheckpointRecord& record) = 0;
  virtual StatusOr<std::vector<AuditCheckpointRecord>> ListAuditCheckpoints(
      std::string_view chain) = 0;  // oldest first

  // Per-environment settings by name (service/ekm_service.h EnvironmentSettings names them);
  // a setting that is absent takes the deployment's default.
  virtual StatusOr<std::map<std::string, int64_t>> GetEnvironmentSettings(
      int64_t environment_id) = 0;
  // Sets each named setting to its value, or removes it (back to the default) when the value is
  // nullopt, all in one transaction: a change of several settings is all or nothing.
  using SettingChanges = std::vector<std::pair<std::string, std::optional<int64_t>>>;
  virtual Status SetEnvironmentSettings(int64_t environment_id, const SettingChanges& changes) = 0;
  // One setting (SetEnvironmentSettings of one change).
  Status SetEnvironmentSetting(int64_t environment_id, std::string_view name,
                               std::optional<int64_t> value) {
    return SetEnvironmentSettings(environment_id, {{std::string(name), value}});
  }

  // The health of an environment's CMK as last seen by any node (keys/cmk_health.h): written
  // on each transition and on the first successful unwrap after one, so every node and `ekm`
  // in local mode show the same status. Public metadata only.
  struct EnvironmentKeyStatusRecord {
    int64_t environment_id = 0;
    std::string state;          // "healthy", "degraded", "unavailable"
    int64_t since = 0;          // unix seconds: when it entered `state`
    int64_t last_success = 0;   // unix seconds: last successful unwrap by the CMK; 0: none seen
    std::string error_code;     // StatusCode name of the last failure
    std::string provider_code;  // e.g. "AccessDeniedException", "DisabledException"
    std::string message;
    std::string hint;
    int64_t next_retry = 0;  // unix seconds: the next provider attempt; 0: none scheduled
  };
  // nullopt when nothing was recorded yet (the CMK was never seen to fail).
  virtual StatusOr<std::optional<EnvironmentKeyStatusRecord>> GetEnvironmentKeyStatus(
      int64_t environment_id) = 0;
  // Inserts or replaces the environment's row.
  virtual Status PutEnvironmentKeyStatus(const EnvironmentKeyStatusRecord& record) = 0;

  // One change of an environment's CMK ("set": from the platform default to a customer key;
  // "replacement": from one customer key to another). The replacement period counts from the
  // newest row.
  struct CmkChangeRecord {
    int64_t environment_id = 0;
    int64_t at = 0;  // unix seconds
    std::string from_provider, from_key_id;
    std::string to_provider, to_key_id;
    uint32_t ek_version = 0;  // the EK created under the new CMK
    std::string kind;         // "set" or "replacement"
    bool emergency = false;
    std::string reason;
    std::string actor;
  };
  // AddEnvironmentKey (same guard) and the change row, in one transaction.
  virtual Status AddEnvironmentKeyForCmkChange(const EnvironmentKeyRecord& ek,
                                               const CmkChangeRecord& change) = 0;
  virtual StatusOr<std::optional<CmkChangeRecord>> GetLatestCmkChange(int64_t environment_id) = 0;

  // A repack: re-wraps every DK of an environment from older EKs to target_ek_version.
  struct RepackJobRecord {
    int64_t id = 0;
    int64_t environment_id = 0;
    uint32_t target_ek_version = 0;
    std::string state;  // "running", "waiting", "finished"
    uint64_t total = 0;
    uint64_t done = 0;
    int64_t started_at_ms = 0;
    int64_t run_started_at_ms = 0;  // this run (after a restart): for the rate
    uint64_t run_started_done = 0;
    int64_t updated_at_ms = 0;
    std::optional<int64_t> finished_at_ms;
    std::string last_error;
    std::optional<int64_t> retry_at_ms;
  };
  virtual StatusOr<std::optional<RepackJobRecord>> GetLatestRepackJob(int64_t environment_id) = 0;
  // Environments that hold an EK older than their current one whose wrapping is not destroyed
  // yet: each needs a repack (started, interrupted or not begun).
  virtual StatusOr<std::vector<EnvironmentRecord>> ListEnvironmentsToRepack() = 0;
  // Begins (or resumes) the environment's repack towards `target`: the unfinished job, its
  // target moved on, or a new one; total = done + DKs still under older EKs (not destroyed).
  // *created says whether a new job was begun. FailedPrecondition, and nothing changes, when
  // `target` is no longer the environment's current EK.
  virtual StatusOr<RepackJobRecord> BeginRepackJob(int64_t environment_id, uint32_t target,
                                                   int64_t now_ms, bool* created) = 0;
  // Up to `limit` DKs under an EK older than `below` whose wrapping still exists, after the DK
  // (after_scope, after_version) in (scope, version) order ("", 0: from the first), into `out`
  // (cleared first). A DK under a destroyed EK (which no one can unwrap; never created since the
  // insert check above) is not listed: EnvironmentKeyInventory counts it. The position is a
  // key of the table, not a count: each batch starts where the last ended, without reading
  // past the rows (and, on PostgreSQL, the old row versions) the batches before it moved.
  virtual Status ListDataKeysToRepack(int64_t environment_id, uint32_t below,
                                      std::string_view after_scope, uint32_t after_version,
                                      size_t limit, std::vector<DataKeyRecord>* out) = 0;
  struct RepackedDataKey {
    const DataKeyRecord* from = nullptr;  // as read (its ek_version guards the update)
    Bytes wrapped;                        // under the target EK
  };
  // One transaction: each DK moves to `target` only if it is still under the EK it was read
  // under, and the job's progress advances by the rows moved (returned). `batch` is in the
  // order ListDataKeysToRepack listed it (a row out of that order may be left unmoved).
  // FailedPrecondition, and nothing changes, when the environment's current EK is no longer
  // `target`.
  virtual StatusOr<uint64_t> CommitRepackBatch(int64_t job_id, int64_t environment_id,
                                               uint32_t target,
                                               const std::vector<RepackedDataKey>& batch,
                                               int64_t now_ms) = 0;
  // One transaction: when `target` is still current and no DK is under an older EK that is not
  // destroyed (counted again inside the transaction: a DK moved or created meanwhile is seen),
  // wipes the older EKs' wrappings (destroyed_at = now) and finishes the job; returns the EK
  // versions destroyed. FailedPrecondition, and nothing changes, otherwise.
  virtual StatusOr<std::vector<uint32_t>> FinishRepackJob(int64_t job_id, int64_t environment_id,
                                                          uint32_t target, int64_t now_ms) = 0;
  // The job cannot go on for now (the old CMK refuses…): why, and when it tries again.
  virtual Status SetRepackJobWaiting(int64_t job_id, std::string_view error, int64_t retry_at_ms,
                                     int64_t now_ms) = 0;
  // Every EK version of the environment with its CMK, state and how many DKs it wraps.
  struct EkInventoryRow {
    uint32_t version = 0;
    std::string cmk_provider, cmk_key_id;
    int64_t created_at = 0;
    std::optional<int64_t> destroyed_at;
    uint64_t data_keys = 0;
  };
  virtual StatusOr<std::vector<EkInventoryRow>> EnvironmentKeyInventory(int64_t environment_id) = 0;
  // Inserts many DK versions in one transaction (bulk loads; existing versions are kept). Each
  // must be under its environment's current EK, as for InsertDataKey: FailedPrecondition and
  // nothing stored otherwise.
  virtual Status InsertDataKeys(const std::vector<DataKeyRecord>& records) = 0;

  // Import parameters: the RSA wrapping key pair and the import token of one environment.
  struct ImportParamsRecord {
    int64_t environment_id = 0;
    Bytes token_sha256;          // SHA-256 of the import token; the token itself is not stored
    std::string public_key_pem;  // SubjectPublicKeyInfo PEM
    Bytes sealed_private_key;    // PKCS#8 DER, sealed under the platform root (docs/format.md)
    int64_t created_at = 0;      // unix seconds
    int64_t expires_at = 0;
    int64_t used_at = 0;   // 0 while the token is unspent
    int64_t attempts = 0;  // unwraps tried with the token (it locks at a limit)
  };

  // Key material uploaded by a customer (the "imported" provider's CMK).
  struct KeyMaterialRecord {
    int64_t environment_id = 0;
    std::string key_id;     // "imported:" + fingerprint
    Bytes sealed_material;  // sealed under the platform root; empty once deleted
    int64_t imported_at = 0;
    int64_t deleted_at = 0;  // 0 while the material exists
  };

  // Import parameters of an environment (`ekm key import-params`): at most one set per
  // environment; a new set replaces the old one, whose token then no longer works.
  virtual Status PutImportParams(const ImportParamsRecord& record) = 0;
  // The environment's current import parameters, or nullopt.
  virtual StatusOr<std::optional<ImportParamsRecord>> GetImportParams(int64_t environment_id) = 0;
  // The environment whose import parameters carry this token hash (to name "another
  // environment" in an error), or nullopt.
  virtual StatusOr<std::optional<int64_t>> FindImportTokenEnvironment(ByteView token_sha256) = 0;
  // Counts one unwrap attempt with the token, atomically and before the attempt, so at most
  // `limit` unwraps are ever tried with one token, across processes; returns the attempts so
  // far (1 for the first). FailedPrecondition when `limit` were taken already, or the token
  // was spent or replaced.
  virtual StatusOr<int64_t> TakeImportAttempt(int64_t environment_id, ByteView token_sha256,
                                              int64_t limit) = 0;
  // Marks the token spent at `now`, atomically, and destroys the sealed wrapping private key
  // (its one use is over): FailedPrecondition when it was spent already or replaced in
  // between, so one token imports once.
  virtual Status SpendImportToken(int64_t environment_id, ByteView token_sha256, int64_t now) = 0;

  // Imported key material, sealed under the platform root key. Upsert by (environment, key id):
  // a re-import of deleted material brings the row back.
  virtual Status PutKeyMaterial(const KeyMaterialRecord& record) = 0;
  virtual StatusOr<std::optional<KeyMaterialRecord>> GetKeyMaterial(int64_t environment_id,
                                                                    std::string_view key_id) = 0;
  // Every material row with this key id, in any environment (Describe has no environment).
  virtual StatusOr<std::vector<KeyMaterialRecord>> FindKeyMaterial(std::string_view key_id) = 0;
  // Destroys the sealed material (the row stays, empty, with deleted_at = now).
  // NotFound when there is no live material with this key id in the environment.
  virtual Status DeleteKeyMaterial(int64_t environment_id, std::string_view key_id,
                                   int64_t now) = 0;
  // Removes the row entirely (undoing an import that "Update key" refused).
  virtual Status RemoveKeyMaterialRow(int64_t environment_id, std::string_view key_id) = 0;

  // Crypto-shredding: the record that an environment was destroyed on purpose.
  struct EnvironmentShredRecord {
    int64_t environment_id = 0;
    int64_t shredded_at = 0;  // unix seconds
    std::string actor;
    uint32_t ek_versions = 0;  // EK versions wiped
    uint32_t dk_versions = 0;  // DK versions wiped
  };
  // In one transaction: empties the wrapped blob of every EK and DK version of the environment
  // (the rows stay, EKs marked destroyed_at) and records the shred. FailedPrecondition when it
  // was shredded already; NotFound when there is no such environment.
  virtual StatusOr<EnvironmentShredRecord> ShredEnvironment(int64_t environment_id, int64_t now,
                                                            std::string_view actor) = 0;
  // nullopt unless the environment was crypto-shredded.
  virtual StatusOr<std::optional<EnvironmentShredRecord>> GetEnvironmentShred(
      int64_t environment_id) = 0;

  // The confirmation a shred's first step issues and its second step takes. Kept by the token's
  // SHA-256, never the token (a capability to destroy), so that the second step may reach any
  // process on the store (another ekmd replica, another `ekm` run). Putting one deletes the
  // expired ones.
  virtual Status PutShredConfirmation(ByteView token_hash, int64_t environment_id,
                                      int64_t expires_at, int64_t now) = 0;
  struct ShredConfirmationTake {
    bool found = false;  // a confirmation with this hash exists (or existed until now)
    bool taken = false;  // it was for the environment asked about, and is deleted: single use
    int64_t environment_id = 0;
    int64_t expires_at = 0;
  };
  // In one transaction: the confirmation `token_hash` names, deleted when it is for
  // `environment_id` (one use, whichever process asks first); kept when it is for another.
  virtual StatusOr<ShredConfirmationTake> TakeShredConfirmation(ByteView token_hash,
                                                                int64_t environment_id) = 0;

  // What one process changed that every other process on the store (ekmd replicas, ekm runs)
  // must act on at once instead of at its key cache TTL: a shred, a key change, a token
  // revocation, a DK rotation. Each process reads the new ones every second
  // (service/cluster_notices.cc).
  struct ClusterNotice {
    int64_t seq = 0;  // set by the store, increasing
    int64_t at = 0;   // unix seconds
    std::string kind;
    std::string workspace, environment;  // of an environment's notice
    std::string token_id;                // of a token's notice
  };
  // Appends a notice (its seq is the store's) and deletes those older than a day.
  virtual Status PostClusterNotice(const ClusterNotice& notice) = 0;
  // Notices with seq > after_seq, oldest first, at most `limit`.
  virtual StatusOr<std::vector<ClusterNotice>> ListClusterNotices(int64_t after_seq,
                                                                  size_t limit) = 0;
  // The newest notice's seq (0: none).
  virtual StatusOr<int64_t> LatestClusterNoticeSeq() = 0;

  // Leases of background jobs (a repack, the rotation schedule, audit checkpoints), so that one
  // process at a time runs each: `holder` takes (or renews) the lease `name` until `until_ms`
  // when it is free, expired at `now_ms`, or its own already; returns whether it holds it now.
  // Times are the processes' wall clocks (unix ms): keep them in sync (NTP).
  virtual StatusOr<bool> TakeLease(std::string_view name, std::string_view holder, int64_t now_ms,
                                   int64_t until_ms) = 0;
  // Gives the lease up, when `holder` holds it (another process may take it at once).
  virtual Status ReleaseLease(std::string_view name, std::string_view holder) = 0;

  // The workspace default CMK: the CMK the first EK of each NEW environment is wrapped under.
  struct WorkspaceDefaultKeyRecord {
    int64_t workspace_id = 0;
    std::string cmk_provider;
    std::string cmk_key_id;
    int64_t set_at = 0;
    std::string actor;
  };
  virtual Status SetWorkspaceDefaultKey(const WorkspaceDefaultKeyRecord& record) = 0;
  virtual StatusOr<std::optional<WorkspaceDefaultKeyRecord>> GetWorkspaceDefaultKey(
      int64_t workspace_id) = 0;
  // Back to the platform default; OK when none was set.
  virtual Status DeleteWorkspaceDefaultKey(int64_t workspace_id) = 0;

  // Scheduled rotation: every environment (not shredded) that has an EK or DK rotation period
  // set, with its current EK's creation time.
  struct RotationScheduleRecord {
    EnvironmentRecord environment;
    std::optional<int64_t> ek_rotation_period_seconds;
    std::optional<int64_t> dk_rotation_period_seconds;
    int64_t current_ek_created_at = 0;
  };
  virtual StatusOr<std::vector<RotationScheduleRecord>> ListRotationSchedules() = 0;
  // The newest DK version of every scope of the environment (wrapped blobs left empty: its EK
  // version, creation time and messages reserved), by scope, in one query.
  virtual StatusOr<std::vector<DataKeyRecord>> ListLatestDataKeys(int64_t environment_id) = 0;

  // An API token (auth/token.h): only the SHA-256 of its secret is stored.
  struct ApiTokenRecord {
    std::string id;  // 16 hex, public
    Bytes secret_sha256;
    std::string role;                       // auth::RoleName
    std::string workspace;                  // empty for admin tokens
    std::vector<std::string> environments;  // empty: every environment of the workspace
    std::string description;
    int64_t created_at = 0;  // unix seconds
    std::string created_by;  // actor
    int64_t expires_at = 0;  // 0: never
    int64_t revoked_at = 0;  // 0: not revoked
  };
  // AlreadyExists when the id is taken.
  virtual Status CreateApiToken(const ApiTokenRecord& record) = 0;
  // CreateApiToken of an owner token, unless record.workspace has a valid owner token (not
  // revoked, not expired at `now`): then FailedPrecondition and nothing is stored. One
  // statement, so concurrent callers (threads, ekmd nodes) never both create one.
  virtual Status CreateOwnerTokenUnlessOneIsValid(const ApiTokenRecord& record, int64_t now) = 0;
  virtual StatusOr<std::optional<ApiTokenRecord>> GetApiToken(std::string_view id) = 0;
  // Every token (workspace nullopt) or the tokens of one workspace ("" : the admin tokens),
  // oldest first.
  virtual StatusOr<std::vector<ApiTokenRecord>> ListApiTokens(
      std::optional<std::string_view> workspace) = 0;
  // Sets revoked_at = now unless revoked already (then OK, unchanged); NotFound when unknown.
  virtual Status RevokeApiToken(std::string_view id, int64_t now) = 0;

  // What binds the store to things kept outside it, by name (the audit signing key's id;
  // the root key's fingerprint is checked by the store itself, store_integrity.h).
  virtual StatusOr<std::optional<std::string>> GetStoreMeta(std::string_view name) = 0;
  // Stores `value` under `name` unless a value is there already; returns the value stored
  // (ours, or the one found).
  virtual StatusOr<std::string> PutStoreMetaOnce(std::string_view name, std::string_view value) = 0;
};

using StorePtr = std::unique_ptr<Store>;

}  // namespace ekm
