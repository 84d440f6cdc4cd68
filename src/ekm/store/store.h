// Store: where ekm keeps workspaces, environments and the wrapped key hierarchy.
// Everything stored is either public metadata or wrapped: a stolen store is useless without
// the CMKs.
//
// Implementations: SQLite (sqlite/, the embedded default) and, later, PostgreSQL. Contract for
// every implementation:
//  - each method is atomic; every multi-row change is one transaction, so a crash never leaves
//    half a key hierarchy;
//  - schema changes are numbered migrations applied at Open;
//  - thread-safe: one Store is shared by every request thread.
// Errors: NotFound / AlreadyExists name the thing; Unavailable when the database is busy or
// unreachable; DataLoss when a stored row is corrupt.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// One lifecycle event (events/lifecycle_event.h): time, actor, environment, what happened.
struct LifecycleEventRecord {
  int64_t id = 0;
  int64_t at_ms = 0;  // unix milliseconds
  std::string workspace;
  std::string environment;  // empty for a workspace-wide event
  std::string type;         // event::k… ("key.replaced", …)
  std::string actor;
  std::string detail;  // JSON object, never key material
};

struct LifecycleEventFilter {
  std::string workspace;                   // required
  std::optional<std::string> environment;  // nullopt: every environment of the workspace
  std::string type;                        // empty: every type
  int64_t since_ms = 0;                    // at >= since_ms
  int64_t until_ms = INT64_MAX;            // at < until_ms
  int64_t after_id = 0;                    // id > after_id (paging)
  size_t limit = 1000;
};

class Store {
 public:
  virtual ~Store() = default;

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
  virtual StatusOr<std::vector<EnvironmentRecord>> ListEnvironments(
      std::string_view workspace) = 0;

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
  // returns the stored row, so concurrent creators agree on one key.
  virtual StatusOr<DataKeyRecord> InsertDataKey(const DataKeyRecord& record) = 0;

  // Atomically adds `count` to the DK version's messages_reserved and returns the value it had
  // before, unless the sum would exceed `limit`: then ResourceExhausted and nothing changes.
  virtual StatusOr<uint64_t> ReserveMessages(int64_t environment_id, std::string_view scope,
                                             uint32_t version, uint64_t count,
                                             uint64_t limit) = 0;

  // Lifecycle events, append only.
  virtual Status RecordLifecycleEvent(const LifecycleEventRecord& record) = 0;
  // Oldest first.
  virtual StatusOr<std::vector<LifecycleEventRecord>> ListLifecycleEvents(
      const LifecycleEventFilter& filter) = 0;

  // Per-environment settings by name (service/ekm_service.h EnvironmentSettings names them);
  // a setting that is absent takes the deployment's default.
  virtual StatusOr<std::map<std::string, int64_t>> GetEnvironmentSettings(
      int64_t environment_id) = 0;
  // Sets `name` to `value`, or removes it (back to the default) when value is nullopt.
  virtual Status SetEnvironmentSetting(int64_t environment_id, std::string_view name,
                                       std::optional<int64_t> value) = 0;

  // ---- issue 4 part A (key cache, CMK status, revocation): add methods below ----

  // ---- end of part A ----

  // ---- issue 4 part B (replacement, repack): add methods below ----

  // ---- end of part B ----

  // ---- issue 4 part C (uploaded key material): add methods below ----

  // ---- end of part C ----

  // ---- issue 4 part D (rotation, shred, workspace default CMK, settings): add methods below ----

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
  // The newest DK version of every scope of the environment (wrapped blobs left empty), by
  // scope.
  virtual StatusOr<std::vector<DataKeyRecord>> ListLatestDataKeys(int64_t environment_id) = 0;

  // ---- end of part D ----
};

using StorePtr = std::unique_ptr<Store>;

}  // namespace ekm
