// The composition root of a data directory: its files (the store, the platform root key, the
// audit signing key), checked to belong together, and the providers the options configure,
// handed to the service (NewEkmService) as its dependencies.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "ekm/base/key_file.h"
#include "ekm/provider/aws/aws_kms_setup.h"
#include "ekm/provider/imported/imported_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"

namespace ekm {

namespace {

constexpr const char* kDatabaseFile = "ekm.db";
constexpr const char* kRootKeyFile = "root.key";
constexpr const char* kAuditSigningKeyFile = "audit-signing.key";

std::string AuditSigningKeyPath(const EkmOptions& o) {
  return o.data_dir + "/" + kAuditSigningKeyFile;
}

std::string RootKeyPath(const EkmOptions& o) {
  return o.root_key_file.empty() ? o.data_dir + "/" + kRootKeyFile : o.root_key_file;
}
std::string DatabasePath(const EkmOptions& o) { return o.data_dir + "/" + kDatabaseFile; }

bool Exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Status CheckDataDir(const EkmOptions& o) {
  if (o.data_dir.empty()) {
    return InvalidArgumentError("no data directory given",
                                "pass --data-dir DIR or set EKM_DATA_DIR");
  }
  return Status::Ok();
}

// The root key of an initialized data directory. Its file missing is an error, never a reason
// to make a new one: the store's keys are wrapped under the old one (issue 12).
StatusOr<std::unique_ptr<PlatformKeyProvider>> OpenRootKeyOfStore(const EkmOptions& o) {
  EKM_RETURN_IF_ERROR(CheckDataDir(o));
  if (!Exists(DatabasePath(o))) {
    return FailedPreconditionError("data directory " + o.data_dir + " is not initialized",
                                   "run `ekm --data-dir " + o.data_dir + " init` first");
  }
  auto platform = PlatformKeyProvider::Open(RootKeyPath(o));
  if (!platform.ok() && platform.status().code() == StatusCode::kNotFound) {
    return FailedPreconditionError(
        "the root key file " + RootKeyPath(o) + " is missing, but " + DatabasePath(o) +
            " is a store whose keys are wrapped under it",
        "restore the root key file from your backup (or pass --root-key-file PATH); ekm never "
        "creates a new root key for an existing store, which would leave everything wrapped "
        "under the old one unreadable");
  }
  return platform;
}

// The audit signing key of the store's audit log. The store records the key's id at its first
// use; afterwards only that key is accepted, and a missing file is never replaced by a new key
// (checkpoints signed by a new one could not be told from forged ones by auditors holding the
// old public key). Data directories from before the audit log get their key once.
constexpr std::string_view kAuditKeyMeta = "audit_signing_key_id";

StatusOr<std::unique_ptr<AuditSigner>> OpenAuditSigner(const std::string& path, Store& store) {
  EKM_ASSIGN_OR_RETURN(std::optional<std::string> recorded, store.GetStoreMeta(kAuditKeyMeta));
  auto signer = AuditSigner::Load(path);
  if (!signer.ok() && signer.status().code() == StatusCode::kNotFound) {
    bool signed_before = recorded.has_value();
    if (!signed_before) {
      EKM_ASSIGN_OR_RETURN(std::vector<Store::AuditChainHead> heads, store.ListAuditChainHeads());
      for (const auto& h : heads) signed_before = signed_before || h.checkpointed_seq > 0;
    }
    if (signed_before) {
      return FailedPreconditionError(
          "the audit signing key file " + path +
              " is missing, but this store's audit log is "
              "signed with " +
              (recorded ? "key " + *recorded : std::string("it")),
          "restore audit-signing.key from your backup; ekm never creates a new audit signing "
          "key for an existing audit log");
    }
    Status created = AuditSigner::CreateKeyFile(path);
    // Another process (a second ekmd) may have created it in between: load theirs.
    if (!created.ok() && created.code() != StatusCode::kAlreadyExists) return created;
    signer = AuditSigner::Load(path);
  }
  if (!signer.ok()) return signer.status();
  const std::string& id = (*signer)->public_key().key_id();
  EKM_ASSIGN_OR_RETURN(std::string bound, store.PutStoreMetaOnce(kAuditKeyMeta, id));
  if (bound != id) {
    return FailedPreconditionError(
        "the audit signing key in " + path + " (key " + id +
            ") is not the audit signing key of this store (key " + bound + ")",
        "restore the data directory's own audit-signing.key from your backup");
  }
  return signer;
}

}  // namespace

Status EkmService::Initialize(const EkmOptions& options) {
  EKM_RETURN_IF_ERROR(CheckDataDir(options));
  if (::mkdir(options.data_dir.c_str(), 0700) == 0) {
    EKM_RETURN_IF_ERROR(SyncParentDirectory(options.data_dir));
  } else if (errno != EEXIST) {
    return FailedPreconditionError(
        "cannot create data directory " + options.data_dir + ": " + std::strerror(errno),
        "check the path and its permissions");
  }
  // A store that exists is never given new keys: Open checks that the keys are its own.
  if (Exists(DatabasePath(options))) return Status::Ok();
  std::string key_path = RootKeyPath(options);
  if (!Exists(key_path)) {
    EKM_RETURN_IF_ERROR(PlatformKeyProvider::CreateRootKeyFile(key_path));
  }
  if (!Exists(AuditSigningKeyPath(options))) {
    EKM_RETURN_IF_ERROR(AuditSigner::CreateKeyFile(AuditSigningKeyPath(options)));
  }
  // Opening creates the database, applies migrations and records the root key's fingerprint.
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform,
                       PlatformKeyProvider::Open(key_path));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenSqliteStore(DatabasePath(options), std::move(binding)));
  return Status::Ok();
}

StatusOr<StorePtr> EkmService::OpenStore(const EkmOptions& options) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform, OpenRootKeyOfStore(options));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  return OpenSqliteStore(DatabasePath(options), std::move(binding));
}

StatusOr<std::unique_ptr<EkmService>> EkmService::Open(const EkmOptions& options) {
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform, OpenRootKeyOfStore(options));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenSqliteStore(DatabasePath(options), std::move(binding)));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<AuditSigner> audit_signer,
                       OpenAuditSigner(AuditSigningKeyPath(options), *store));
  // Every provider but the platform's own, built from one set of dependencies.
  std::vector<ProviderFactory> factories = {ImportedKeyProviderFactory()};
  if (options.aws.enabled) {
    AwsKmsSetupOptions a;
    a.ca_file = options.aws.ca_file;
    a.principal_arn = options.aws.principal_arn;
    a.call_timeout = options.aws.call_timeout;
    a.call_deadline = options.aws.call_deadline;
    if (options.aws.env) a.env = options.aws.env;
    factories.push_back(AwsKmsProviderFactory(std::move(a)));
  }
  auto providers = std::make_unique<ProviderRegistry>();
  // The store and the platform root key outlive the providers (the service owns all three).
  EKM_RETURN_IF_ERROR(
      CreateProviders(factories, ProviderDependencies{store.get(), platform.get(), options.clock},
                      providers.get()));
  providers->Register(std::move(platform));
  return NewEkmService(options, std::move(store), std::move(providers), std::move(audit_signer));
}

}  // namespace ekm
