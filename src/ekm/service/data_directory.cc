// The composition root of a data directory: its files (the store, the platform root key, the
// audit signing key), checked to belong together, and the providers the options configure,
// handed to the service (NewEkmService) as its dependencies.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "ekm/base/encoding.h"
#include "ekm/base/key_file.h"
#include "ekm/provider/aws/aws_kms_setup.h"
#include "ekm/provider/imported/imported_key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/postgres/postgres_store.h"
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

// Where the store is: EkmOptions::store, or the data directory's SQLite file.
struct StoreLocation {
  bool postgres = false;
  std::string sqlite_path;  // !postgres
  std::string url;          // postgres
};

StatusOr<StoreLocation> LocateStore(const EkmOptions& o) {
  std::string_view s = o.store;
  if (s.empty()) return StoreLocation{false, o.data_dir + "/" + kDatabaseFile, ""};
  if (s.rfind("sqlite:", 0) == 0 && s.size() > 7) {
    return StoreLocation{false, std::string(s.substr(7)), ""};
  }
  if (s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0) {
    if (o.root_key_file.empty()) {
      return InvalidArgumentError(
          "a PostgreSQL store needs --root-key-file",
          "pass --root-key-file PATH: every ekmd replica and every `ekm` on this store must be "
          "given the same root key file (`ekm --store URL --root-key-file PATH init` creates "
          "it)");
    }
    return StoreLocation{true, "", std::string(s)};
  }
  return InvalidArgumentError("--store \"" + std::string(s) + "\" is not a store URL",
                              "write sqlite:PATH or postgresql://USER@HOST:PORT/DATABASE (the "
                              "password in a PGPASSFILE, never in the URL)");
}

StatusOr<StorePtr> OpenStoreAt(const StoreLocation& at, StoreBinding binding, bool create) {
  if (!at.postgres) return OpenSqliteStore(at.sqlite_path, std::move(binding));
  PostgresStoreOptions p;
  p.url = at.url;
  p.create_if_empty = create;
  return OpenPostgresStore(p, std::move(binding));
}

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

// The root key of an initialized store. Its file missing is an error, never a reason to make
// a new one: the store's keys are wrapped under the old one (issue 12).
StatusOr<std::unique_ptr<PlatformKeyProvider>> OpenRootKeyOfStore(const EkmOptions& o,
                                                                  const StoreLocation& at) {
  if (!at.postgres) {
    EKM_RETURN_IF_ERROR(CheckDataDir(o));
    if (!Exists(at.sqlite_path)) {
      if (!o.store.empty()) {
        return FailedPreconditionError("the store " + at.sqlite_path + " does not exist",
                                       "run `ekm --store " + o.store + " init` first");
      }
      return FailedPreconditionError("data directory " + o.data_dir + " is not initialized",
                                     "run `ekm --data-dir " + o.data_dir + " init` first");
    }
  }
  const std::string store_name = at.postgres ? at.url : at.sqlite_path;
  auto platform = PlatformKeyProvider::Open(RootKeyPath(o));
  if (!platform.ok() && platform.status().code() == StatusCode::kNotFound) {
    return FailedPreconditionError(
        "the root key file " + RootKeyPath(o) + " is missing, but " + store_name +
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

// The audit signing key of a store that several processes on several machines share
// (PostgreSQL): sealed under the root key in the store itself, so every replica signs with the
// one key whose id the store records. The first process to need it creates it; a race between
// two is settled by PutStoreMetaOnce (the loser uses the winner's).
constexpr std::string_view kSealedAuditKeyMeta = "audit_signing_key_sealed";

EncryptionContext AuditKeySealContext() { return {{"ekm:purpose", "audit signing key"}}; }

StatusOr<std::unique_ptr<AuditSigner>> OpenSealedAuditSigner(Store& store, KeyProvider& platform) {
  EKM_ASSIGN_OR_RETURN(std::optional<std::string> sealed_hex,
                       store.GetStoreMeta(kSealedAuditKeyMeta));
  if (!sealed_hex) {
    EKM_ASSIGN_OR_RETURN(std::optional<std::string> recorded, store.GetStoreMeta(kAuditKeyMeta));
    if (recorded) {
      return StoreModifiedError("the store records audit signing key " + *recorded +
                                " but does not hold it; it");
    }
    EKM_ASSIGN_OR_RETURN(SecretBytes pem, AuditSigner::NewPrivateKeyPem());
    EKM_ASSIGN_OR_RETURN(Bytes sealed, SealSecret(platform, pem, AuditKeySealContext()));
    EKM_ASSIGN_OR_RETURN(std::string stored,
                         store.PutStoreMetaOnce(kSealedAuditKeyMeta, HexEncode(sealed)));
    sealed_hex = stored;
  }
  auto sealed = HexDecode(*sealed_hex);
  if (!sealed.ok()) return StoreModifiedError("the sealed audit signing key is not hex; it");
  EKM_ASSIGN_OR_RETURN(SecretBytes pem, UnsealSecret(platform, *sealed, AuditKeySealContext()));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<AuditSigner> signer,
                       AuditSigner::FromPem(pem, "the audit signing key sealed in the store"));
  const std::string& id = signer->public_key().key_id();
  EKM_ASSIGN_OR_RETURN(std::string bound, store.PutStoreMetaOnce(kAuditKeyMeta, id));
  if (bound != id) {
    return StoreModifiedError("the audit signing key sealed in the store (key " + id +
                              ") is not the one its audit log records (key " + bound + "); it");
  }
  return signer;
}

}  // namespace

Status EkmService::Initialize(const EkmOptions& options, RootKey root_key) {
  EKM_ASSIGN_OR_RETURN(StoreLocation at, LocateStore(options));
  if (!at.postgres) {
    EKM_RETURN_IF_ERROR(CheckDataDir(options));
    if (::mkdir(options.data_dir.c_str(), 0700) == 0) {
      EKM_RETURN_IF_ERROR(SyncParentDirectory(options.data_dir));
    } else if (errno != EEXIST) {
      return FailedPreconditionError(
          "cannot create data directory " + options.data_dir + ": " + std::strerror(errno),
          "check the path and its permissions");
    }
    // A store that exists is never given new keys: Open checks that the keys are its own.
    if (Exists(at.sqlite_path)) return Status::Ok();
  }
  std::string key_path = RootKeyPath(options);
  if (!Exists(key_path)) {
    if (at.postgres && root_key == RootKey::kMustExist) {
      return FailedPreconditionError(
          "the root key file " + key_path + " does not exist",
          "initialize the store once with `ekm --store URL --root-key-file " + key_path +
              " init`, then give every ekmd replica that same file");
    }
    if (at.postgres) {
      // Only for a database without a store yet: one that has one keeps its root key.
      PostgresStoreOptions probe;
      probe.url = at.url;
      StoreBinding none;
      auto existing = OpenPostgresStore(probe, std::move(none));
      if (existing.ok() || existing.status().code() != StatusCode::kFailedPrecondition ||
          existing.status().message().find("is not initialized") == std::string::npos) {
        if (!existing.ok() && existing.status().code() == StatusCode::kUnavailable) {
          return existing.status();
        }
        return FailedPreconditionError(
            "the root key file " + key_path + " is missing, but " + at.url +
                " holds a store whose keys are wrapped under it",
            "pass the root key file this store was initialized with (--root-key-file); ekm "
            "never creates a new root key for an existing store");
      }
    }
    EKM_RETURN_IF_ERROR(PlatformKeyProvider::CreateRootKeyFile(key_path));
  }
  if (!at.postgres && !Exists(AuditSigningKeyPath(options))) {
    EKM_RETURN_IF_ERROR(AuditSigner::CreateKeyFile(AuditSigningKeyPath(options)));
  }
  // Opening creates the schema, applies migrations and records the root key's fingerprint.
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform,
                       PlatformKeyProvider::Open(key_path));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenStoreAt(at, std::move(binding), /*create=*/true));
  if (at.postgres) EKM_RETURN_IF_ERROR(OpenSealedAuditSigner(*store, *platform).status());
  return Status::Ok();
}

StatusOr<StorePtr> EkmService::OpenStore(const EkmOptions& options) {
  EKM_ASSIGN_OR_RETURN(StoreLocation at, LocateStore(options));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform,
                       OpenRootKeyOfStore(options, at));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  return OpenStoreAt(at, std::move(binding), /*create=*/false);
}

StatusOr<std::unique_ptr<EkmService>> EkmService::Open(const EkmOptions& options) {
  EKM_ASSIGN_OR_RETURN(StoreLocation at, LocateStore(options));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform,
                       OpenRootKeyOfStore(options, at));
  EKM_ASSIGN_OR_RETURN(StoreBinding binding, platform->BindStore());
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenStoreAt(at, std::move(binding), /*create=*/false));
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<AuditSigner> audit_signer,
                       at.postgres ? OpenSealedAuditSigner(*store, *platform)
                                   : OpenAuditSigner(AuditSigningKeyPath(options), *store));
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
