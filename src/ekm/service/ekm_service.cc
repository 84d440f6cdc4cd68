#include "ekm/service/ekm_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ekm/envelope/envelope.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"

namespace ekm {

namespace {

constexpr const char* kDatabaseFile = "ekm.db";
constexpr const char* kRootKeyFile = "root.key";

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

class EkmServiceImpl : public EkmService {
 public:
  EkmServiceImpl(EkmOptions options, StorePtr store, std::unique_ptr<ProviderRegistry> providers)
      : options_(std::move(options)),
        store_(std::move(store)),
        providers_(std::move(providers)),
        keys_(store_.get(), providers_.get(), options_.clock,
              KeyHierarchyOptions{options_.key_cache_ttl, options_.max_messages_per_dk,
                                  options_.nonce_lease_size}) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", name));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord rec,
                         store_->CreateWorkspace(name, ToUnixSeconds(options_.clock->Now())));
    return WorkspaceInfo{rec.name, rec.created_at};
  }

  StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() override {
    EKM_ASSIGN_OR_RETURN(std::vector<WorkspaceRecord> recs, store_->ListWorkspaces());
    std::vector<WorkspaceInfo> out;
    out.reserve(recs.size());
    for (auto& r : recs) out.push_back(WorkspaceInfo{std::move(r.name), r.created_at});
    return out;
  }

  StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view workspace,
                                              std::string_view name) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", name));
    // Fail on a missing workspace before calling the provider.
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
    // New environments start on the platform-managed CMK; `ekm key set` replaces it.
    CmkRef cmk{std::string(kPlatformProviderName), std::string(kPlatformRootKeyId)};
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek, keys_.NewEnvironmentKey(workspace, name, cmk, 1));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord rec,
                         store_->CreateEnvironment(workspace, name, ek,
                                                   ToUnixSeconds(options_.clock->Now())));
    return Info(rec, ek);
  }

  StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_ASSIGN_OR_RETURN(std::vector<EnvironmentRecord> recs, store_->ListEnvironments(workspace));
    std::vector<EnvironmentInfo> out;
    out.reserve(recs.size());
    for (const auto& r : recs) {
      EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                           store_->GetEnvironmentKey(r.id, r.current_ek_version));
      out.push_back(Info(r, ek));
    }
    return out;
  }

  Status Encrypt(std::string_view workspace, std::string_view environment, std::string_view scope,
                 ByteView plaintext, Bytes* out) override {
    EKM_RETURN_IF_ERROR(ValidateScope(scope));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk, keys_.CurrentDataKey(env, scope));
    std::array<uint8_t, 12> nonce;
    Status s = keys_.NextNonce(*dk, nonce);
    if (s.code() == StatusCode::kResourceExhausted) {
      // The DK version reached its message bound: rotate the scope's DK and carry on.
      EKM_ASSIGN_OR_RETURN(dk, keys_.RotateDataKey(env, scope, dk->version));
      s = keys_.NextNonce(*dk, nonce);
    }
    EKM_RETURN_IF_ERROR(s);
    EnvelopeContext ctx{env.workspace, env.name, std::string(scope), dk->version};
    return SealSingle(ctx, *dk->key, nonce, plaintext, out);
  }

  Status Decrypt(std::string_view workspace, std::string_view environment, ByteView envelope,
                 Bytes* out) override {
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> decoder,
                         NewDecryptStream(workspace, environment));
    Bytes plain;
    Status s = decoder->Update(envelope, &plain);
    if (s.ok()) s = decoder->Finish(&plain);
    if (!s.ok()) return s;
    Append(*out, plain);
    return Status::Ok();
  }

  StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(std::string_view workspace,
                                                              std::string_view environment,
                                                              std::string_view scope,
                                                              bool text) override {
    EKM_RETURN_IF_ERROR(ValidateScope(scope));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk, keys_.CurrentDataKey(env, scope));
    // A stream counts as one message against the DK version's bound (its key is derived with a
    // random salt; see docs/format.md).
    std::array<uint8_t, 12> unused;
    Status s = keys_.NextNonce(*dk, unused);
    if (s.code() == StatusCode::kResourceExhausted) {
      EKM_ASSIGN_OR_RETURN(dk, keys_.RotateDataKey(env, scope, dk->version));
      s = keys_.NextNonce(*dk, unused);
    }
    EKM_RETURN_IF_ERROR(s);
    EnvelopeContext ctx{env.workspace, env.name, std::string(scope), dk->version};
    return EnvelopeEncoder::Create(ctx, dk->key, text);
  }

  StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      std::string_view workspace, std::string_view environment) override {
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    auto lookup = [this, env](const EnvelopeHeader& h)
        -> StatusOr<std::shared_ptr<const SecretBytes>> {
      const EnvelopeContext& c = h.context;
      if (c.workspace != env.workspace || c.environment != env.name) {
        return InvalidArgumentError(
            "this ciphertext belongs to workspace \"" + c.workspace + "\", environment \"" +
                c.environment + "\", not to workspace \"" + env.workspace +
                "\", environment \"" + env.name + "\"",
            "decrypt it with --workspace " + c.workspace + " --environment " + c.environment);
      }
      EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk,
                           keys_.DataKeyVersion(env, c.scope, c.dk_version));
      return dk->key;
    };
    return EnvelopeDecoder::Create(std::move(lookup));
  }

 private:
  StatusOr<EnvironmentRecord> Environment(std::string_view workspace,
                                          std::string_view environment) {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    auto env = keys_.GetEnvironment(workspace, environment);
    if (env.ok() || env.status().code() != StatusCode::kNotFound) return env;
    // Say which part is missing: the workspace or the environment inside it.
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
    return env;
  }

  static EnvironmentInfo Info(const EnvironmentRecord& r, const EnvironmentKeyRecord& ek) {
    return EnvironmentInfo{r.workspace, r.name,          r.created_at,
                           ek.cmk_provider, ek.cmk_key_id, r.current_ek_version};
  }

  EkmOptions options_;
  StorePtr store_;
  std::unique_ptr<ProviderRegistry> providers_;
  KeyHierarchy keys_;
};

}  // namespace

Status EkmService::Initialize(const EkmOptions& options) {
  EKM_RETURN_IF_ERROR(CheckDataDir(options));
  if (::mkdir(options.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return FailedPreconditionError("cannot create data directory " + options.data_dir + ": " +
                                       std::strerror(errno),
                                   "check the path and its permissions");
  }
  std::string key_path = RootKeyPath(options);
  if (!Exists(key_path)) {
    EKM_RETURN_IF_ERROR(PlatformKeyProvider::CreateRootKeyFile(key_path));
  }
  // Opening creates the database and applies migrations.
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenSqliteStore(DatabasePath(options)));
  return Status::Ok();
}

StatusOr<std::unique_ptr<EkmService>> EkmService::Open(const EkmOptions& options) {
  EKM_RETURN_IF_ERROR(CheckDataDir(options));
  if (!Exists(DatabasePath(options))) {
    return FailedPreconditionError("data directory " + options.data_dir + " is not initialized",
                                   "run `ekm --data-dir " + options.data_dir + " init` first");
  }
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<PlatformKeyProvider> platform,
                       PlatformKeyProvider::Open(RootKeyPath(options)));
  EKM_ASSIGN_OR_RETURN(StorePtr store, OpenSqliteStore(DatabasePath(options)));
  auto providers = std::make_unique<ProviderRegistry>();
  providers->Register(std::move(platform));
  return std::unique_ptr<EkmService>(
      new EkmServiceImpl(options, std::move(store), std::move(providers)));
}

}  // namespace ekm
