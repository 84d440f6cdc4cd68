#include "ekm/service/ekm_service.h"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "ekm/audit/usage_counter.h"
#include "ekm/base/encoding.h"
#include "ekm/base/random.h"
#include "ekm/envelope/envelope.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/policy/key_policy_statement.h"
#include "ekm/policy/policy_doctor.h"
#include "ekm/provider/aws/aws_kms_key_provider.h"
#include "ekm/provider/imported/imported_key_provider.h"
#include "ekm/provider/imported/key_material_import.h"
#include "ekm/provider/key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/repack/repacker.h"
#include "ekm/service/key_json.h"
#include "ekm/service/repack_json.h"

namespace ekm {

namespace {

constexpr std::string_view kUsageActor = "system:usage";

// Rewrap decrypts and encrypts through the public paths; it is counted once, as a rewrap
// (generate-data-key the same).
thread_local bool t_usage_counted_by_caller = false;
struct CountedHere {
  CountedHere() { t_usage_counted_by_caller = true; }
  ~CountedHere() { t_usage_counted_by_caller = false; }
  CountedHere(const CountedHere&) = delete;
  CountedHere& operator=(const CountedHere&) = delete;
};

// One stream's use of the data plane, counted once, when it ends: ok when it finished, else by
// its first error; a stream dropped before its end (a client gone) as failed. A decrypt
// stream's scope is known once its header named one; before that there is nothing to count
// under (nor for a header that never came).
class StreamUsage {
 public:
  StreamUsage(std::shared_ptr<UsageCounter> usage, Clock* clock, std::string workspace,
              std::string environment, std::string_view operation, std::string scope = {})
      : usage_(std::move(usage)),
        clock_(clock),
        workspace_(std::move(workspace)),
        environment_(std::move(environment)),
        operation_(operation),
        scope_(std::move(scope)) {}
  StreamUsage(const StreamUsage&) = delete;
  StreamUsage& operator=(const StreamUsage&) = delete;
  ~StreamUsage() { Count(UsageOutcome::kFailed); }

  void NameScope(std::string_view scope) {
    if (scope_.empty()) scope_ = std::string(scope);
  }
  // Counts the stream's end (or its first error) and passes the status on.
  Status End(Status s) {
    Count(UsageOutcomeOf(s));
    return s;
  }

 private:
  void Count(UsageOutcome outcome) {
    if (counted_ || scope_.empty()) return;
    counted_ = true;
    usage_->Count(workspace_, environment_, scope_, operation_, outcome,
                  ToUnixSeconds(clock_->NowCoarse()) / 60);
  }

  std::shared_ptr<UsageCounter> usage_;
  Clock* clock_;
  std::string workspace_, environment_;
  std::string_view operation_;  // a usage_op constant
  std::string scope_;
  bool counted_ = false;
};

// The base of a wrapping stream coder: `Coder` itself, and for an encoder also the override of
// SealInParallel, which forwards to `Self::ForwardSealInParallel` (a decoder has no such
// member, so one template cannot declare it with `override` for both).
template <typename Coder, typename Self>
class StreamCoderBase : public Coder {};
template <typename Self>
class StreamCoderBase<EnvelopeEncoder, Self> : public EnvelopeEncoder {
 public:
  void SealInParallel(EnvelopeEncoder::ParallelSealing parallel) override {
    static_cast<Self*>(this)->ForwardSealInParallel(std::move(parallel));
  }
};

// A stream coder that counts the stream's usage when it ends, or at its first error.
template <typename Coder>
class CountedCoder final : public StreamCoderBase<Coder, CountedCoder<Coder>> {
 public:
  CountedCoder(std::unique_ptr<Coder> inner, std::shared_ptr<StreamUsage> usage)
      : inner_(std::move(inner)), usage_(std::move(usage)) {}
  Status Update(ByteView chunk, Bytes* out) override {
    Status s = inner_->Update(chunk, out);
    return s.ok() ? s : usage_->End(std::move(s));
  }
  Status Finish(Bytes* out) override { return usage_->End(inner_->Finish(out)); }
  void ForwardSealInParallel(EnvelopeEncoder::ParallelSealing parallel) {
    inner_->SealInParallel(std::move(parallel));
  }

 private:
  std::unique_ptr<Coder> inner_;  // a decoder's key lookup names the scope to usage_
  std::shared_ptr<StreamUsage> usage_;
};

// A stream coder that asks `check` before every piece of input of at most one default segment,
// and so at least once per segment: a stream uses its data key for as long as it runs, and must
// stop when the key may no longer be used, as every single message does.
template <typename Coder>
class KeyCheckedCoder final : public StreamCoderBase<Coder, KeyCheckedCoder<Coder>> {
 public:
  static constexpr size_t kCheckEvery = kDefaultSegmentSize;

  KeyCheckedCoder(std::unique_ptr<Coder> inner, std::function<Status()> check)
      : inner_(std::move(inner)), check_(std::move(check)) {}

  Status Update(ByteView chunk, Bytes* out) override {
    while (!chunk.empty()) {
      // Sealing on a pool (the CLI's bounded 1 MiB chunks) takes a chunk at once: the check is
      // about time (a revocation within the TTL), and a chunk seals in well under a millisecond.
      const size_t n = pooled_ ? chunk.size() : std::min(chunk.size(), kCheckEvery);
      EKM_RETURN_IF_ERROR(check_());
      EKM_RETURN_IF_ERROR(inner_->Update(chunk.first(n), out));
      chunk = chunk.subspan(n);
    }
    return Status::Ok();
  }
  Status Finish(Bytes* out) override {
    EKM_RETURN_IF_ERROR(check_());
    return inner_->Finish(out);
  }
  void ForwardSealInParallel(EnvelopeEncoder::ParallelSealing parallel) {
    pooled_ = parallel.pool != nullptr;
    inner_->SealInParallel(std::move(parallel));
  }

 private:
  std::unique_ptr<Coder> inner_;
  std::function<Status()> check_;
  bool pooled_ = false;
};

class EkmServiceImpl : public EkmService {
 public:
  EkmServiceImpl(EkmOptions options, StorePtr store, std::unique_ptr<ProviderRegistry> providers,
                 std::unique_ptr<AuditSigner> audit_signer)
      : audit_signer_(std::move(audit_signer)),
        options_(std::move(options)),
        store_(std::move(store)),
        providers_(std::move(providers)),
        keys_(store_.get(), providers_.get(), options_.clock, HierarchyOptions(options_)) {}

  StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", name));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord rec,
                         store_->CreateWorkspace(name, ToUnixSeconds(options_.clock->Now())));
    // In the new workspace's own chain (its first record) and in the platform chain.
    RecordEvent(rec.name, "", event::kWorkspaceCreated, nlohmann::json::object());
    RecordEvent("", "", event::kWorkspaceCreated, {{"workspace", rec.name}});
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
    EKM_RETURN_IF_ERROR(PrepareNewEnvironment(workspace, name, &cmk));
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek, NewFirstEnvironmentKey(workspace, name, cmk));
    EKM_ASSIGN_OR_RETURN(
        EnvironmentRecord rec,
        store_->CreateEnvironment(workspace, name, ek, ToUnixSeconds(options_.clock->Now())));
    RecordEvent(rec.workspace, rec.name, event::kEnvironmentCreated,
                {{"cmk", {{"provider", ek.cmk_provider}, {"key_id", ek.cmk_key_id}}},
                 {"ek_version", ek.version}});
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

  StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace, std::string_view environment,
                                         std::string_view provider_name, std::string_view key_id,
                                         const KeyChangeOptions& options) override {
    KeyUpdate u(workspace, environment, provider_name, key_id, options, /*validate=*/false);
    Status s = UpdateKey(u);
    if (!s.ok()) return s;
    return std::move(u.v);
  }

  StatusOr<KeyValidation> ValidateCustomerKey(std::string_view workspace,
                                              std::string_view environment,
                                              std::string_view provider_name,
                                              std::string_view key_id) override {
    const KeyChangeOptions none;
    KeyUpdate u(workspace, environment, provider_name, key_id, none, /*validate=*/true);
    Status s = UpdateKey(u);
    // A failed check is the answer, not an error of the request (which has no checks yet).
    if (!s.ok() && u.v.checks.empty()) return s;
    return std::move(u.v);
  }

 private:
  // One "Update key" run (SetCustomerKey; with `validate_only` the same checks and nothing
  // changed, ValidateCustomerKey): what its checks read and leave for the next.
  struct KeyUpdate {
    KeyUpdate(std::string_view w, std::string_view e, std::string_view p, std::string_view k,
              const KeyChangeOptions& o, bool validate)
        : workspace(w),
          environment(e),
          provider_name(p),
          key_id(k),
          options(o),
          validate_only(validate) {}
    std::string_view workspace, environment, provider_name, key_id;
    const KeyChangeOptions& options;
    bool validate_only;
    KeyProvider* provider = nullptr;
    EnvironmentRecord env;
    EnvironmentKeyRecord current;            // the environment's EK now, and so its CMK
    bool unchanged = false;                  // the key asked for is that CMK already
    std::optional<EnvironmentKeyRecord> ek;  // the next EK, wrapped under the new key
    std::string failed_as;                   // a check's name for its failure, if not its own
    KeyValidation v;
  };
  // A check of "Update key": each adds its outcome to `v.checks`; the first failure ends the
  // run and is the answer.
  struct KeyCheck {
    std::string_view name;
    Status (EkmServiceImpl::*run)(KeyUpdate&);
  };

  Status UpdateKey(KeyUpdate& u) {
    EKM_RETURN_IF_ERROR(CheckKeyChangeOptions(u.options));
    EKM_RETURN_IF_ERROR(ValidateName("workspace", u.workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", u.environment));
    // From the store: a cached record may be older than another node's change.
    EKM_ASSIGN_OR_RETURN(u.env, StoredEnvironment(u.workspace, u.environment));
    EKM_ASSIGN_OR_RETURN(u.provider, providers_->Get(u.provider_name));
    EKM_ASSIGN_OR_RETURN(u.current, store_->GetEnvironmentKey(u.env.id, u.env.current_ek_version));
    u.unchanged = u.current.cmk_provider == u.provider_name && u.current.cmk_key_id == u.key_id;
    u.v.provider = std::string(u.provider_name);
    u.v.key_id = std::string(u.key_id);
    u.v.checked_at = ToUnixSeconds(options_.clock->Now());
    // In order (docs/api.md "PUT …/key").
    static constexpr KeyCheck kChecks[] = {
        {"key id", &EkmServiceImpl::CheckKeyId},
        {"replacement period", &EkmServiceImpl::CheckPeriod},
        {"encrypt", &EkmServiceImpl::CheckRoundTrip},
        {"describe", &EkmServiceImpl::CheckDescription},
        {"store", &EkmServiceImpl::StoreKey},
    };
    for (const KeyCheck& check : kChecks) {
      Status s = (this->*check.run)(u);
      if (s.ok()) continue;
      // Every exit records what happened, then answers.
      const std::string_view name = u.failed_as.empty() ? check.name : u.failed_as;
      u.v.ok = false;
      u.v.checks.push_back({std::string(name), "failed", s.message()});
      Status mapped = CustomerKeyError(u.workspace, u.environment, name, s);
      u.v.error_code = std::string(StatusCodeName(mapped.code()));
      u.v.provider_code = s.provider_code();
      u.v.message = mapped.message();
      u.v.hint = mapped.hint();
      RecordValidation(u.workspace, u.environment, u.v, u.validate_only);
      return mapped;
    }
    u.v.ok = true;
    if (u.unchanged || !u.validate_only) keys_.OnCmkVerified(u.env);
    RecordValidation(u.workspace, u.environment, u.v, u.validate_only);
    return Status::Ok();
  }

  // The provider's own check of the key id's shape, before any call.
  Status CheckKeyId(KeyUpdate& u) {
    EKM_RETURN_IF_ERROR(u.provider->ValidateKeyId(u.key_id));
    u.v.checks.push_back({"key id", "passed", std::string(u.key_id)});
    return Status::Ok();
  }

  // A replacement inside the replacement period is refused before any provider call (a
  // warning when only validating).
  Status CheckPeriod(KeyUpdate& u) {
    if (u.unchanged) return Status::Ok();
    Status period = CheckReplacementPeriod(u.env, u.current, u.provider_name, u.key_id, u.options);
    if (!period.ok() && u.validate_only) {
      u.v.checks.push_back({"replacement period", "warning", period.message()});
      return Status::Ok();
    }
    return period;
  }

  // A fresh EK wrapped under the key with the next EK version's context, unwrapped again and
  // compared: the failure names the step (encrypt or decrypt) that failed.
  Status CheckRoundTrip(KeyUpdate& u) {
    CmkRef cmk{std::string(u.provider_name), std::string(u.key_id)};
    std::string step;
    auto ek = keys_.NewVerifiedEnvironmentKey(u.env.workspace, u.env.name, cmk,
                                              u.env.current_ek_version + 1, &step);
    if (!ek.ok()) {
      const bool wrap = step == KeyHierarchy::kWrapStep;
      if (!wrap) {
        u.v.checks.push_back({"encrypt", "passed", "with the encryption context"});
        u.failed_as = "decrypt";
      }
      return ek.status();
    }
    u.ek = std::move(ek).value();
    u.v.checks.push_back({"encrypt", "passed",
                          "with encryption context ekm:workspace=" + u.env.workspace +
                              ", ekm:environment=" + u.env.name});
    u.v.checks.push_back({"decrypt", "passed", "the round trip returned the same key"});
    return Status::Ok();
  }

  // What the provider says of the key (its own rules: key type, usage, state) and of its
  // automatic rotation.
  Status CheckDescription(KeyUpdate& u) {
    EKM_ASSIGN_OR_RETURN(CmkDescription d, u.provider->Describe(u.key_id));
    if (d.describe_permitted) {
      EKM_RETURN_IF_ERROR(d.usable);
      u.v.checks.push_back({"describe", "passed",
                            "state " + d.provider_state +
                                (d.key_spec.empty() ? "" : ", spec " + d.key_spec) +
                                (d.key_usage.empty() ? "" : ", usage " + d.key_usage)});
    } else {
      u.v.checks.push_back({"describe", "skipped", Join(d.notes, "; ")});
    }
    switch (d.rotation) {
      case CmkRotation::kEnabled:
        u.v.checks.push_back({"rotation", "passed", "automatic rotation is enabled"});
        break;
      case CmkRotation::kDisabled:
        if (d.rotation_advice.empty()) {
          u.v.checks.push_back({"rotation", "passed", "not applicable"});
        } else {
          u.v.checks.push_back(
              {"rotation", "warning", "automatic rotation is off: " + d.rotation_advice});
        }
        break;
      case CmkRotation::kUnknown:
        u.v.checks.push_back({"rotation", "skipped", "the rotation status is not readable"});
        break;
    }
    return Status::Ok();
  }

  // The new EK becomes current (with its change row and event), unless only validating or the
  // key is the CMK already.
  Status StoreKey(KeyUpdate& u) {
    if (u.validate_only) {
      u.v.checks.push_back({"store", "skipped", "validate only: nothing was changed"});
      return Status::Ok();
    }
    if (u.unchanged) {
      u.v.checks.push_back({"store", "skipped", "this key is already the environment's CMK"});
      return Status::Ok();
    }
    EnvironmentKeyRecord rec = std::move(*u.ek);
    rec.environment_id = u.env.id;
    EKM_RETURN_IF_ERROR(StoreCmkChange(u.env, u.current, rec, u.options));
    keys_.ForgetEnvironment(u.env.workspace, u.env.name);
    u.v.checks.push_back({"store", "passed",
                          "environment key v" + std::to_string(rec.version) +
                              " is wrapped under this key and is now current" +
                              RepackStartedNote(u.env)});
    return Status::Ok();
  }

 public:
  StatusOr<CustomerKeyInfo> ShowCustomerKey(std::string_view workspace,
                                            std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                         store_->GetEnvironmentKey(env.id, env.current_ek_version));
    CustomerKeyInfo info;
    info.workspace = env.workspace;
    info.environment = env.name;
    info.provider = ek.cmk_provider;
    info.key_id = ek.cmk_key_id;
    info.ek_version = env.current_ek_version;
    auto provider = providers_->Get(ek.cmk_provider);
    auto described = provider.ok() ? (*provider)->Describe(ek.cmk_key_id)
                                   : StatusOr<CmkDescription>(provider.status());
    if (described.ok()) {
      info.description = std::move(described).value();
    } else {
      info.description_error = described.status().ToString();
    }
    EKM_ASSIGN_OR_RETURN(std::optional<KeyValidationRecord> last,
                         store_->GetLatestKeyValidation(env.id));
    if (last) info.last_validation = FromRecord(*last);
    return info;
  }

  StatusOr<KeyPolicyAdvice> KeyPolicy(std::string_view workspace,
                                      std::string_view environment) override;
  StatusOr<std::string> CheckKeyPolicy(std::string_view workspace,
                                       std::string_view policy_text) override;

  Status Encrypt(std::string_view workspace, std::string_view environment, std::string_view scope,
                 ByteView plaintext, Bytes* out) override {
    // This thread's memo of the lookups below, while nothing they read changed
    // (keys/data_path_memo.h): no shared lock or reference count per message.
    const uint64_t generation = keys_.memos().current_generation();
    {
      const auto now = options_.clock->Monotonic();
      DataPathMemos::Block* block = nullptr;
      auto lock = keys_.memos().Lock(&block);
      DataPathMemos::Entry* e =
          block->Find(generation, now.time_since_epoch().count(), workspace, environment, scope, 0);
      std::array<uint8_t, 12> nonce;
      if (e != nullptr && e->dk->ValidAt(now) &&
          (e->nonces.Next(nonce) ||
           (keys_.NextNonces(*e->dk, &e->nonces).ok() && e->nonces.Next(nonce)))) {
        keys_.CountMemoHit();
        EnvelopeContext ctx{e->env.workspace, e->env.name, std::string(scope), e->dk->version};
        Status sealed = SealSingle(ctx, *e->dk->key, nonce, plaintext, out);
        CountUsage(e->env, scope, usage_op::kEncrypt, sealed);
        return sealed;
      }
      // Otherwise (no memo, a change, an expired TTL, a used-up DK) the full path decides.
    }
    EKM_RETURN_IF_ERROR(ValidateScope(scope));
    auto valid_until = std::chrono::steady_clock::time_point::max();
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment, &valid_until));
    std::shared_ptr<DataKeyHandle> dk;
    // Counted with its outcome from here on: a refusal of the CMK is an encrypt refused.
    Status sealed = [&]() -> Status {
      EKM_ASSIGN_OR_RETURN(dk, keys_.CurrentDataKey(env, scope));
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
    }();
    CountUsage(env, scope, usage_op::kEncrypt, sealed);
    EKM_RETURN_IF_ERROR(sealed);
    Remember(generation, valid_until, workspace, environment, scope, 0, env, std::move(dk));
    return Status::Ok();
  }

  // Keeps what the full data path looked up as this thread's memo (see Encrypt).
  void Remember(uint64_t generation, std::chrono::steady_clock::time_point valid_until,
                std::string_view workspace, std::string_view environment, std::string_view scope,
                uint32_t version, const EnvironmentRecord& env, std::shared_ptr<DataKeyHandle> dk) {
    DataPathMemos::Block* block = nullptr;
    auto lock = keys_.memos().Lock(&block);
    DataPathMemos::Entry& e = block->Slot();
    e.generation = generation;
    e.valid_until_ns = valid_until.time_since_epoch().count();
    e.workspace = std::string(workspace);
    e.environment = std::string(environment);
    e.scope = std::string(scope);
    e.version = version;
    e.env = env;
    e.dk = std::move(dk);
  }

  Status Decrypt(std::string_view workspace, std::string_view environment, ByteView envelope,
                 Bytes* out) override {
    // A whole single-form envelope (what Encrypt and the JSON API produce) opens straight into
    // `out`: no decoder, no intermediate copies. Anything else, including every malformed
    // input, takes the decoder, whose errors are the documented ones.
    Bytes binary;
    ByteView whole = envelope;
    if (!envelope.empty() && envelope[0] == kEnvelopeTextPrefix[0]) {
      auto decoded = EnvelopeFromText(AsChars(envelope));
      if (decoded.ok()) {
        binary = std::move(decoded).value();
        whole = binary;
      }
    }
    if (whole.size() > 4 && whole[0] == kEnvelopeMagic[0] &&
        whole[4] == static_cast<uint8_t>(EnvelopeType::kSingle) &&
        whole.size() <= kMaxSinglePlaintextSize) {
      auto parsed = ParseHeader(whole);
      if (parsed.ok()) {
        const EnvelopeContext& c = parsed->header.context;
        const bool count = !t_usage_counted_by_caller;
        // This thread's memo first, as in Encrypt; a header naming another environment always
        // takes the full path (and its error).
        const uint64_t generation = keys_.memos().current_generation();
        if (c.workspace == workspace && c.environment == environment) {
          const auto now = options_.clock->Monotonic();
          DataPathMemos::Block* block = nullptr;
          auto lock = keys_.memos().Lock(&block);
          DataPathMemos::Entry* e = block->Find(generation, now.time_since_epoch().count(),
                                                workspace, environment, c.scope, c.dk_version);
          if (e != nullptr && e->dk->ValidAt(now)) {
            keys_.CountMemoHit();
            Status opened = OpenSingle(*parsed, whole, *e->dk->key, out);
            if (count) CountUsage(e->env, c.scope, usage_op::kDecrypt, opened);
            return opened;
          }
        }
        auto valid_until = std::chrono::steady_clock::time_point::max();
        EKM_ASSIGN_OR_RETURN(EnvironmentRecord env,
                             Environment(workspace, environment, &valid_until));
        // Counted with its outcome from here on (the header named the scope): a decrypt refused
        // while the CMK is revoked, or one that does not authenticate, is no decrypt done.
        auto dk = DataKeyFor(env, c);
        Status opened = dk.ok() ? OpenSingle(*parsed, whole, *(*dk)->key, out) : dk.status();
        if (count) CountUsage(env, c.scope, usage_op::kDecrypt, opened);
        EKM_RETURN_IF_ERROR(opened);
        if (c.dk_version != 0) {
          Remember(generation, valid_until, workspace, environment, c.scope, c.dk_version, env,
                   std::move(*dk));
        }
        return Status::Ok();
      }
    }
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> decoder,
                         NewDecryptStream(workspace, environment));
    Bytes plain;
    Status s = decoder->Update(envelope, &plain);
    if (s.ok()) s = decoder->Finish(&plain);
    if (!s.ok()) return s;
    Append(*out, plain);
    return Status::Ok();
  }

  // The DK an envelope names, once its header is known to belong to `env`.
  StatusOr<std::shared_ptr<DataKeyHandle>> DataKeyFor(const EnvironmentRecord& env,
                                                      const EnvelopeContext& c) {
    if (c.workspace != env.workspace || c.environment != env.name) {
      return InvalidArgumentError(
          "this ciphertext belongs to workspace \"" + c.workspace + "\", environment \"" +
              c.environment + "\", not to workspace \"" + env.workspace + "\", environment \"" +
              env.name + "\"",
          "decrypt it with --workspace " + c.workspace + " --environment " + c.environment);
    }
    return keys_.DataKeyVersion(env, c.scope, c.dk_version);
  }

  StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(std::string_view workspace,
                                                              std::string_view environment,
                                                              std::string_view scope,
                                                              bool text) override {
    EKM_RETURN_IF_ERROR(ValidateScope(scope));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    const bool count = !t_usage_counted_by_caller;
    auto encoder = [&]() -> StatusOr<std::unique_ptr<EnvelopeEncoder>> {
      EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk, keys_.CurrentDataKey(env, scope));
      // A stream counts as one message against the DK version's bound (its key is derived with
      // a random salt; see docs/format.md).
      std::array<uint8_t, 12> unused;
      Status s = keys_.NextNonce(*dk, unused);
      if (s.code() == StatusCode::kResourceExhausted) {
        EKM_ASSIGN_OR_RETURN(dk, keys_.RotateDataKey(env, scope, dk->version));
        s = keys_.NextNonce(*dk, unused);
      }
      EKM_RETURN_IF_ERROR(s);
      EnvelopeContext ctx{env.workspace, env.name, std::string(scope), dk->version};
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> inner,
                           EnvelopeEncoder::Create(ctx, dk->key, text));
      auto key = std::make_shared<StreamKey>();
      key->workspace = std::string(workspace);
      key->environment = std::string(environment);
      key->scope = std::string(scope);
      key->version = dk->version;
      return std::unique_ptr<EnvelopeEncoder>(new KeyCheckedCoder<EnvelopeEncoder>(
          std::move(inner), [this, key] { return CheckStreamKey(*key); }));
    }();
    if (!count) return encoder;
    // Counted when the stream ends (or now, refused: no key); a key check that stops the
    // stream is counted as its outcome.
    auto usage = std::make_shared<StreamUsage>(usage_, options_.clock, env.workspace, env.name,
                                               usage_op::kEncrypt, std::string(scope));
    if (!encoder.ok()) return usage->End(encoder.status());
    return std::unique_ptr<EnvelopeEncoder>(
        new CountedCoder<EnvelopeEncoder>(std::move(encoder).value(), std::move(usage)));
  }

  StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      std::string_view workspace, std::string_view environment) override {
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    // One envelope, one decrypt: counted when the stream ends, under the scope its header names.
    std::shared_ptr<StreamUsage> usage;
    if (!t_usage_counted_by_caller) {
      usage = std::make_shared<StreamUsage>(usage_, options_.clock, env.workspace, env.name,
                                            usage_op::kDecrypt);
    }
    auto key = std::make_shared<StreamKey>();
    key->workspace = std::string(workspace);
    key->environment = std::string(environment);
    auto lookup = [this, env, usage,
                   key](const EnvelopeHeader& h) -> StatusOr<std::shared_ptr<const SecretBytes>> {
      if (usage) usage->NameScope(h.context.scope);
      EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk, DataKeyFor(env, h.context));
      key->scope = h.context.scope;
      key->version = h.context.dk_version;  // checked from here on
      return dk->key;
    };
    std::unique_ptr<EnvelopeDecoder> decoder(new KeyCheckedCoder<EnvelopeDecoder>(
        EnvelopeDecoder::Create(std::move(lookup)), [this, key] { return CheckStreamKey(*key); }));
    if (!usage) return decoder;
    return std::unique_ptr<EnvelopeDecoder>(
        new CountedCoder<EnvelopeDecoder>(std::move(decoder), std::move(usage)));
  }

  // The data key a stream in progress uses, as last found usable.
  struct StreamKey {
    std::string workspace, environment, scope;
    uint32_t version = 0;  // 0: not known yet (a decrypt before its header)
    std::shared_ptr<DataKeyHandle> dk;
    uint64_t generation = 0;  // of the key caches when `dk` was found
    std::chrono::steady_clock::time_point valid_until{};
  };

  // Whether a stream may go on using its data key: the cheap check of every request's memo
  // (nothing cached changed, the DK's EK entry is within its TTL), else the full lookup every
  // single message takes: the environment (not shredded) and the DK through the hierarchy,
  // which asks the CMK again once the TTL has passed and fails with the CMK's error when it
  // refuses (revoked, deleted material).
  Status CheckStreamKey(StreamKey& k) {
    if (k.version == 0) return Status::Ok();
    const auto now = options_.clock->Monotonic();
    const uint64_t generation = keys_.memos().current_generation();
    if (k.dk != nullptr && generation == k.generation && now < k.valid_until &&
        k.dk->ValidAt(now)) {
      return Status::Ok();
    }
    auto valid_until = std::chrono::steady_clock::time_point::max();
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env,
                         Environment(k.workspace, k.environment, &valid_until));
    EKM_ASSIGN_OR_RETURN(k.dk, keys_.DataKeyVersion(env, k.scope, k.version));
    k.generation = generation;
    k.valid_until = valid_until;
    return Status::Ok();
  }

  StatusOr<EnvironmentSettings> GetEnvironmentSettings(std::string_view workspace,
                                                       std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(auto stored, store_->GetEnvironmentSettings(env.id));
    return SettingsFromMap(stored);
  }

  StatusOr<EnvironmentSettings> UpdateEnvironmentSettings(
      std::string_view workspace, std::string_view environment, const EnvironmentSettings& set,
      const std::vector<std::string>& reset) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    // Check everything before changing anything.
    struct Field {
      std::string_view name;
      const std::optional<int64_t>& value;
      int64_t min, max;
    };
    const Field fields[] = {
        {kSettingKeyCacheTtl, set.key_cache_ttl_seconds, 1, 86400},
        {kSettingGracePeriod, set.grace_period_seconds, 0, 7 * 86400},
        {kSettingEkRotationPeriod, set.ek_rotation_period_seconds, 3600, 10LL * 365 * 86400},
        {kSettingDkRotationPeriod, set.dk_rotation_period_seconds, 3600, 10LL * 365 * 86400},
        {kSettingReplacementPeriod, set.replacement_period_seconds, kMinReplacementPeriod.count(),
         365LL * 86400},
    };
    if (set.replacement_period_seconds &&
        *set.replacement_period_seconds < kMinReplacementPeriod.count()) {
      const std::string floor = std::to_string(kMinReplacementPeriod.count() / 3600) + " h";
      return InvalidArgumentError(
          "replacement_period_seconds must be at least " +
              std::to_string(kMinReplacementPeriod.count()) + " seconds (" + floor + "), got " +
              std::to_string(*set.replacement_period_seconds) +
              ": a shorter period would let the customer main key be replaced again and again",
          "pick " + floor +
              " or more (the default is 24 h); to replace a compromised key "
              "inside the period, an owner makes an emergency replacement (`ekm key set … "
              "--emergency --reason TEXT`)");
    }
    for (const Field& f : fields) {
      if (f.value && (*f.value < f.min || *f.value > f.max)) {
        return InvalidArgumentError(std::string(f.name) + " must be between " +
                                        std::to_string(f.min) + " and " + std::to_string(f.max) +
                                        " seconds, got " + std::to_string(*f.value),
                                    "pick a value in that range");
      }
    }
    for (const std::string& name : reset) {
      bool known = false;
      for (const Field& f : fields) known = known || f.name == name;
      if (!known) {
        return InvalidArgumentError("no environment setting is called \"" + name + "\"",
                                    "settings: key_cache_ttl_seconds, grace_period_seconds, "
                                    "ek_rotation_period_seconds, dk_rotation_period_seconds, "
                                    "replacement_period_seconds");
      }
    }
    nlohmann::json changed = nlohmann::json::object();
    const bool period_changes =
        set.replacement_period_seconds ||
        std::find(reset.begin(), reset.end(), kSettingReplacementPeriod) != reset.end();
    // The period running since the last CMK change keeps its end: a shorter period applies
    // only after it (a longer one at once).
    if (period_changes) EKM_RETURN_IF_ERROR(KeepRunningReplacementPeriod(env));
    for (const Field& f : fields) {
      if (!f.value) continue;
      EKM_RETURN_IF_ERROR(store_->SetEnvironmentSetting(env.id, f.name, *f.value));
      changed[std::string(f.name)] = *f.value;
    }
    for (const std::string& name : reset) {
      EKM_RETURN_IF_ERROR(store_->SetEnvironmentSetting(env.id, name, std::nullopt));
      changed[name] = nullptr;
    }
    if (period_changes) {
      EKM_ASSIGN_OR_RETURN(int64_t next, NextReplacementAllowedAt(env));
      if (next > ToUnixSeconds(options_.clock->Now())) {
        changed["next_replacement_allowed_at"] = FormatRfc3339(FromUnixSeconds(next));
      }
    }
    RecordEvent(env.workspace, env.name, event::kEnvironmentSettingsChanged, changed);
    OnEnvironmentSettingsChanged(env);
    return GetEnvironmentSettings(workspace, environment);
  }

  StatusOr<EnvironmentKeyStatus> KeyStatus(std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                         store_->GetEnvironmentKey(env.id, env.current_ek_version));
    EnvironmentKeyStatus st;
    st.workspace = env.workspace;
    st.environment = env.name;
    st.cmk_provider = ek.cmk_provider;
    st.cmk_key_id = ek.cmk_key_id;
    // The stored row is what every node last saw; this process's own view may be newer.
    EKM_ASSIGN_OR_RETURN(auto row, store_->GetEnvironmentKeyStatus(env.id));
    if (row) {
      st.state = row->state;
      st.since = row->since;
      st.last_success = row->last_success;
      st.error_code = row->error_code;
      st.provider_code = row->provider_code;
      st.message = row->message;
      st.hint = row->hint;
      st.next_retry = row->state == "healthy" ? 0 : row->next_retry;
      // Healthy again since `since`: the stored error is what happened before.
      if (row->state == "healthy" && !row->error_code.empty()) {
        st.error_resolved_at = row->since;
      }
    }
    st.retryable = st.state == "degraded";
    EKM_ASSIGN_OR_RETURN(KeyHierarchy::EnvironmentCachePolicy policy, keys_.CachePolicy(env.id));
    st.key_cache_ttl_seconds = policy.ttl.count();
    st.grace_period_seconds = policy.grace.count();
    return st;
  }

  Status CheckStore() override {
    // One indexed lookup of a name that cannot exist: "not found" is the store answering.
    auto probe = store_->GetWorkspace("-readyz-probe-");
    if (probe.ok() || probe.status().code() == StatusCode::kNotFound) return Status::Ok();
    return probe.status();
  }

  KeyCacheStats KeyCacheStatistics() override {
    KeyHierarchy::Counters c = keys_.counters();
    KeyCacheStats s;
    s.entries = c.entries;
    s.ek_entries = c.ek_entries;
    s.dk_entries = c.dk_entries;
    s.max_entries = keys_.max_cached_keys();
    s.hits = c.hits;
    s.misses = c.misses;
    s.provider_ok = c.provider_ok;
    s.provider_refused = c.provider_refused;
    s.provider_unavailable = c.provider_unavailable;
    s.provider_error = c.provider_error;
    s.ttl_seconds = keys_.default_ttl().count();
    return s;
  }

  size_t PurgeExpiredKeys() override { return keys_.PurgeExpired(); }
  void StartPurgingExpiredKeys(std::chrono::milliseconds interval) override {
    keys_.StartPurging(interval);
  }

  ~EkmServiceImpl() override {
    StopRepackRunner();
    StopAuditTasks();
  }

  StatusOr<KeyValidation> SetCustomerKey(std::string_view workspace, std::string_view environment,
                                         std::string_view provider_name,
                                         std::string_view key_id) override {
    return SetCustomerKey(workspace, environment, provider_name, key_id, KeyChangeOptions{});
  }

  StatusOr<RepackStatus> GetRepackStatus(std::string_view workspace,
                                         std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(std::vector<Store::EkInventoryRow> inv,
                         store_->EnvironmentKeyInventory(env.id));
    EKM_ASSIGN_OR_RETURN(std::optional<Store::RepackJobRecord> job,
                         store_->GetLatestRepackJob(env.id));
    RepackStatus st;
    st.workspace = env.workspace;
    st.environment = env.name;
    bool needed = false;
    uint64_t under_old = 0;
    for (const auto& r : inv) {
      EkInventoryEntry e;
      e.ek_version = r.version;
      e.cmk_provider = r.cmk_provider;
      e.cmk_key_id = r.cmk_key_id;
      e.state = r.version == env.current_ek_version ? "current"
                : r.destroyed_at                    ? "destroyed"
                                                    : "old";
      e.data_keys = r.data_keys;
      e.created_at = r.created_at;
      e.destroyed_at = r.destroyed_at;
      if (e.state == "old") {
        needed = true;
        under_old += r.data_keys;
      }
      st.inventory.push_back(std::move(e));
    }
    st.target_ek_version = env.current_ek_version;
    if (job && !(job->state == "finished" && needed)) {
      FillFromJob(*job, &st);
      return st;
    }
    // Not begun yet (ekmd's runner or `ekm repack run` begins it), or never needed.
    st.state = needed ? "pending" : "none";
    st.total = under_old;
    return st;
  }

  StatusOr<RepackStatus> RunRepack(
      std::string_view workspace, std::string_view environment,
      const std::function<void(const RepackStatus&)>& progress) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    Repacker::ProgressFn on_batch;
    if (progress) {
      on_batch = [&](const Store::RepackJobRecord& job) {
        RepackStatus st;
        st.workspace = env.workspace;
        st.environment = env.name;
        FillFromJob(job, &st);
        progress(st);
      };
    }
    EKM_RETURN_IF_ERROR(repacker().Run(env.workspace, env.name, nullptr, on_batch).status());
    keys_.ForgetEnvironment(env.workspace, env.name);
    return GetRepackStatus(workspace, environment);
  }

  void StartRepackRunner() override {
    std::lock_guard<std::mutex> lock(repack_mu_);
    if (!repack_runner_) {
      repack_runner_ =
          std::make_unique<RepackRunner>(&repacker(), store_.get(), RepackRunner::Options{});
    }
    repack_runner_->Start();
  }

  void StopRepackRunner() override {
    std::lock_guard<std::mutex> lock(repack_mu_);
    if (repack_runner_) repack_runner_->Stop();
  }

  StatusOr<KeyImportParameters> CreateKeyImportParameters(
      std::string_view workspace, std::string_view environment,
      std::chrono::seconds expires_in) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(KeyProvider * platform, providers_->Get(kPlatformProviderName));
    EKM_ASSIGN_OR_RETURN(
        ImportParameters p,
        CreateImportParameters(*store_, *platform, env, ToUnixSeconds(options_.clock->Now()),
                               expires_in.count()));
    RecordEvent(env.workspace, env.name, event::kImportParamsCreated,
                {{"expires_at", FormatRfc3339(FromUnixSeconds(p.expires_at))},
                 {"algorithm", std::string(kImportWrappingAlgorithm)}});
    return KeyImportParameters{env.workspace,
                               env.name,
                               std::move(p.wrapping_key_pem),
                               std::move(p.import_token),
                               p.expires_at,
                               std::string(kImportWrappingAlgorithm),
                               kImportedMaterialSize};
  }

  StatusOr<KeyValidation> ImportKeyMaterial(std::string_view workspace,
                                            std::string_view environment, ByteView wrapped_material,
                                            std::string_view import_token,
                                            const KeyChangeOptions& change) override {
    // A replacement by import follows the rules of `ekm key set` (once per period, emergency).
    EKM_RETURN_IF_ERROR(CheckKeyChangeOptions(change));
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(KeyProvider * platform, providers_->Get(kPlatformProviderName));
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    EKM_ASSIGN_OR_RETURN(
        SecretBytes material,
        OpenImportedMaterial(*store_, *platform, env, wrapped_material, import_token, now));
    EKM_ASSIGN_OR_RETURN(std::string key_id, ImportedKeyId(material));
    EKM_ASSIGN_OR_RETURN(std::optional<Store::KeyMaterialRecord> previous,
                         store_->GetKeyMaterial(env.id, key_id));
    Store::KeyMaterialRecord rec{env.id, key_id, {}, now, 0};
    EKM_ASSIGN_OR_RETURN(
        rec.sealed_material,
        SealSecret(*platform, material, KeyMaterialSealContext(env.workspace, env.name, key_id)));
    EKM_RETURN_IF_ERROR(store_->PutKeyMaterial(rec));
    auto v = SetCustomerKey(env.workspace, env.name, kImportedProviderName, key_id, change);
    if (!v.ok()) {
      // Leave the store as it was: no new unreferenced material.
      Status undo = previous ? store_->PutKeyMaterial(*previous)
                             : store_->RemoveKeyMaterialRow(env.id, key_id);
      if (!undo.ok())
        spdlog::warn("could not undo a refused key material import: {}", undo.ToString());
      return v.status();
    }
    const bool restored = previous && previous->deleted_at != 0;
    // Access comes back now, not when a cached refusal expires.
    keys_.ForgetEnvironment(env.workspace, env.name);
    RecordEvent(
        env.workspace, env.name, event::kKeyMaterialImported,
        {{"key_id", key_id}, {"algorithm", kImportWrappingAlgorithm}, {"restored", restored}});
    return v;
  }

  StatusOr<KeyMaterialDeletion> DeleteKeyMaterial(std::string_view workspace,
                                                  std::string_view environment,
                                                  std::string_view key_id) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord current,
                         store_->GetEnvironmentKey(env.id, env.current_ek_version));
    const bool current_is_imported = current.cmk_provider == kImportedProviderName;
    std::string id(key_id);
    if (id.empty()) {
      if (!current_is_imported) {
        return FailedPreconditionError(
            "the CMK of " + env.workspace + "/" + env.name + " is " + current.cmk_provider + " " +
                current.cmk_key_id + ", not imported key material",
            "to delete earlier imported material, name it with --key-id imported:…");
      }
      id = current.cmk_key_id;
    } else {
      EKM_ASSIGN_OR_RETURN(KeyProvider * imported, providers_->Get(kImportedProviderName));
      EKM_RETURN_IF_ERROR(imported->ValidateKeyId(id));
    }
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    EKM_RETURN_IF_ERROR(store_->DeleteKeyMaterial(env.id, id, now));
    KeyMaterialDeletion d{env.workspace, env.name, id, now,
                          current_is_imported && current.cmk_key_id == id};
    RecordEvent(env.workspace, env.name, event::kKeyMaterialDeleted,
                {{"key_id", id}, {"in_use", d.in_use}});
    return d;
  }

  StatusOr<RotationResult> RotateEnvironmentKey(std::string_view workspace,
                                                std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    return RotateEk(env);
  }

  StatusOr<std::vector<RotationResult>> RotateDataKeys(std::string_view workspace,
                                                       std::string_view environment,
                                                       const std::vector<std::string>& scopes,
                                                       bool all_scopes) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    if (all_scopes == !scopes.empty()) {
      return InvalidArgumentError("name the scopes to rotate, or ask for all of them",
                                  "pass --scope S (repeatable) or --all-scopes, not both");
    }
    for (const std::string& scope : scopes) EKM_RETURN_IF_ERROR(ValidateScope(scope));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    std::vector<std::string> todo = scopes;
    if (all_scopes) {
      EKM_ASSIGN_OR_RETURN(std::vector<DataKeyRecord> latest, store_->ListLatestDataKeys(env.id));
      for (const auto& dk : latest) todo.push_back(dk.scope);
    }
    std::vector<RotationResult> out;
    for (const std::string& scope : todo) {
      EKM_ASSIGN_OR_RETURN(RotationResult r, RotateDk(env, scope));
      out.push_back(std::move(r));
    }
    return out;
  }

  StatusOr<ScheduledRotationReport> RunScheduledRotations() override {
    std::optional<ScopedActor> actor;
    if (CurrentActor() == "system") actor.emplace(std::string(kScheduleActor));
    EKM_ASSIGN_OR_RETURN(std::vector<Store::RotationScheduleRecord> schedules,
                         store_->ListRotationSchedules());
    ScheduledRotationReport report;
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    for (const auto& sched : schedules) {
      EnvironmentRecord env = sched.environment;
      const std::string name = env.workspace + "/" + env.name;
      if (sched.ek_rotation_period_seconds &&
          now - sched.current_ek_created_at >= *sched.ek_rotation_period_seconds) {
        auto r = RotateEk(env);
        if (!r.ok()) {
          report.failures.push_back(name + ": " + r.status().ToString());
          continue;
        }
        report.rotated.push_back(*r);
        env.current_ek_version = r->to_version;  // new DKs below go under the new EK
      }
      if (!sched.dk_rotation_period_seconds) continue;
      auto latest = store_->ListLatestDataKeys(env.id);
      if (!latest.ok()) {
        report.failures.push_back(name + ": " + latest.status().ToString());
        continue;
      }
      for (const DataKeyRecord& dk : *latest) {
        if (now - dk.created_at < *sched.dk_rotation_period_seconds) continue;
        auto r = RotateDk(env, dk.scope);
        if (!r.ok()) {
          report.failures.push_back(name + " scope " + dk.scope + ": " + r.status().ToString());
          continue;
        }
        report.rotated.push_back(*r);
      }
    }
    for (const auto& f : report.failures) spdlog::warn("scheduled rotation failed: {}", f);
    return report;
  }

  StatusOr<RewrapResult> Rewrap(std::string_view workspace, std::string_view environment,
                                ByteView envelope, Bytes* out) override {
    // Counted once, as a rewrap with its outcome (once the ciphertext's header named the scope),
    // not as its inner decrypt and encrypt.
    std::optional<EnvironmentRecord> env;
    std::string scope;
    StatusOr<RewrapResult> result = [&] {
      CountedHere counted_here;
      return RewrapUncounted(workspace, environment, envelope, out, &env, &scope);
    }();
    if (env) CountUsage(*env, scope, usage_op::kRewrap, result.status());
    return result;
  }

  // Rewrap; `counted_env` and `counted_scope` receive what the use is counted under once known.
  StatusOr<RewrapResult> RewrapUncounted(std::string_view workspace, std::string_view environment,
                                         ByteView envelope, Bytes* out,
                                         std::optional<EnvironmentRecord>* counted_env,
                                         std::string* counted_scope) {
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    // Keep the input's form: text ("ekm1:…") or binary.
    std::string_view as_text(reinterpret_cast<const char*>(envelope.data()), envelope.size());
    size_t first = as_text.find_first_not_of(" \t\r\n");
    const bool text =
        first != std::string_view::npos && as_text.substr(first).starts_with(kEnvelopeTextPrefix);
    Bytes binary;
    if (text) {
      EKM_ASSIGN_OR_RETURN(binary, EnvelopeFromText(as_text));
      envelope = binary;
    }
    EKM_ASSIGN_OR_RETURN(ParsedHeader parsed, ParseHeader(envelope));
    const EnvelopeContext& from = parsed.header.context;
    if (from.workspace != env.workspace || from.environment != env.name) {
      return InvalidArgumentError(
          "this ciphertext belongs to workspace \"" + from.workspace + "\", environment \"" +
              from.environment + "\", not to workspace \"" + env.workspace + "\", environment \"" +
              env.name + "\"",
          "rewrap it with --workspace " + from.workspace + " --environment " + from.environment);
    }
    *counted_env = env;
    *counted_scope = from.scope;
    // The plaintext passes through here one piece at a time and is wiped after each use.
    EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> decoder,
                         NewDecryptStream(workspace, environment));
    Bytes rewrapped;
    Bytes plain;
    auto wipe = [&plain] {
      OPENSSL_cleanse(plain.data(), plain.size());
      plain.clear();
    };
    struct WipeOnExit {
      std::function<void()> fn;
      ~WipeOnExit() { fn(); }
    } guard{wipe};
    if (parsed.header.type == EnvelopeType::kSingle) {
      plain.reserve(envelope.size());  // no reallocation leaves an unwiped copy behind
      EKM_RETURN_IF_ERROR(decoder->Update(envelope, &plain));
      EKM_RETURN_IF_ERROR(decoder->Finish(&plain));
      EKM_RETURN_IF_ERROR(Encrypt(workspace, environment, from.scope, plain, &rewrapped));
    } else {
      EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeEncoder> encoder,
                           NewEncryptStream(workspace, environment, from.scope, false));
      constexpr size_t kChunk = 64 * 1024;
      plain.reserve(2 * kMaxSegmentSize);
      for (size_t off = 0; off < envelope.size(); off += kChunk) {
        ByteView piece = envelope.subspan(off, std::min(kChunk, envelope.size() - off));
        EKM_RETURN_IF_ERROR(decoder->Update(piece, &plain));
        EKM_RETURN_IF_ERROR(encoder->Update(plain, &rewrapped));
        wipe();
      }
      EKM_RETURN_IF_ERROR(decoder->Finish(&plain));
      EKM_RETURN_IF_ERROR(encoder->Update(plain, &rewrapped));
      EKM_RETURN_IF_ERROR(encoder->Finish(&rewrapped));
    }
    EKM_ASSIGN_OR_RETURN(ParsedHeader now, ParseHeader(rewrapped));
    if (text) {
      std::string t = EnvelopeToText(rewrapped);
      if (!as_text.empty() && as_text.back() == '\n' && !t.ends_with('\n')) t += '\n';
      Append(*out, AsBytes(t));
    } else {
      Append(*out, rewrapped);
    }
    return RewrapResult{from.scope, from.dk_version, now.header.context.dk_version};
  }

  StatusOr<ShredConfirmation> RequestShred(std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    std::array<uint8_t, 24> raw;
    EKM_RETURN_IF_ERROR(RandomBytes(raw));
    ShredConfirmation c{env.workspace, env.name, "shred_" + Base64UrlEncode(raw),
                        ToUnixSeconds(options_.clock->Now() + kShredConfirmationTtl)};
    std::lock_guard<std::mutex> lock(shred_mu_);
    // Forget expired tokens so the map stays small.
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    std::erase_if(shred_tokens_, [now](const auto& kv) { return kv.second.expires_at <= now; });
    shred_tokens_[c.token] = c;
    // The confirmation token itself is a capability: not recorded.
    RecordEvent(env.workspace, env.name, event::kShredRequested,
                {{"expires_at", FormatRfc3339(FromUnixSeconds(c.expires_at))}});
    return c;
  }

  StatusOr<ShredResult> ShredEnvironment(std::string_view workspace, std::string_view environment,
                                         std::string_view token,
                                         std::string_view confirm_environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    if (confirm_environment != environment) {
      return InvalidArgumentError(
          "the confirmation names environment \"" + std::string(confirm_environment) +
              "\", not \"" + std::string(environment) + "\"",
          "type the name of the environment to shred exactly: " + std::string(environment));
    }
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, StoredEnvironment(workspace, environment));
    {
      std::lock_guard<std::mutex> lock(shred_mu_);
      auto it = shred_tokens_.find(std::string(token));
      const std::string ask_again = "ask for a new confirmation (POST …/environments/" + env.name +
                                    "/shred, or run `ekm environment shred` again)";
      if (it == shred_tokens_.end()) {
        return FailedPreconditionError("the shred confirmation token is not known here", ask_again);
      }
      ShredConfirmation c = it->second;
      if (c.workspace != env.workspace || c.environment != env.name) {
        return InvalidArgumentError("the shred confirmation token was issued for " + c.workspace +
                                        "/" + c.environment + ", not for " + env.workspace + "/" +
                                        env.name,
                                    ask_again);
      }
      shred_tokens_.erase(it);  // one use only
      if (c.expires_at <= ToUnixSeconds(options_.clock->Now())) {
        return FailedPreconditionError("the shred confirmation token expired at " +
                                           FormatRfc3339(FromUnixSeconds(c.expires_at)),
                                       ask_again);
      }
    }
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    EKM_ASSIGN_OR_RETURN(Store::EnvironmentShredRecord rec,
                         store_->ShredEnvironment(env.id, now, CurrentActor()));
    // This node forgets every key of the environment now; other nodes within one TTL.
    keys_.PurgeEnvironment(env);
    shred_status_.Put(std::to_string(env.id),
                      std::make_shared<std::optional<Store::EnvironmentShredRecord>>(rec),
                      options_.clock->Monotonic() + std::chrono::hours(24 * 365));
    RecordEvent(
        env.workspace, env.name, event::kEnvironmentShredded,
        {{"ek_versions_destroyed", rec.ek_versions}, {"dk_versions_destroyed", rec.dk_versions}});
    spdlog::warn("environment {}/{} was crypto-shredded by {}", env.workspace, env.name, rec.actor);
    return ShredResult{env.workspace, env.name,        rec.shredded_at,
                       rec.actor,     rec.ek_versions, rec.dk_versions};
  }

  StatusOr<WorkspaceDefaultKey> SetWorkspaceDefaultKey(std::string_view workspace,
                                                       std::string_view provider_name,
                                                       std::string_view key_id) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
    EKM_ASSIGN_OR_RETURN(KeyProvider * provider, providers_->Get(provider_name));
    auto failed = [&](std::string_view step, const Status& cause) {
      std::string message = "the workspace default key was not set: the " + std::string(step) +
                            " check failed: " + cause.message();
      std::string hint = cause.hint();
      if (cause.code() == StatusCode::kPermissionDenied) {
        return FailedPreconditionError(
            message, hint +
                         "; the key policy must allow the platform kms:Encrypt and "
                         "kms:Decrypt for ekm:workspace " +
                         ws.name + " (`ekm key policy` prints the statement)");
      }
      // The platform's own AWS credentials rejected: the operator must fix them (409).
      if (cause.code() == StatusCode::kUnauthenticated) {
        return FailedPreconditionError(message, hint);
      }
      return Status(cause.code(), message, hint);
    };
    Status shape = provider->ValidateKeyId(key_id);
    if (!shape.ok()) return failed("key id", shape);
    // The round trip with the workspace's context only (the key policy pins ekm:workspace).
    EncryptionContext context{{std::string(kEkContextWorkspace), ws.name}};
    EKM_ASSIGN_OR_RETURN(SecretBytes probe, RandomSecret(32));
    auto wrapped = provider->Wrap(key_id, probe, context);
    if (!wrapped.ok()) return failed("encrypt", wrapped.status());
    auto back = provider->Unwrap(key_id, *wrapped, context);
    if (!back.ok()) return failed("decrypt", back.status());
    if (!(*back == probe)) {
      return DataLossError("the key provider returned a different key than it was given",
                           "the provider is misbehaving; do not use this key");
    }
    Store::WorkspaceDefaultKeyRecord rec{ws.id, std::string(provider_name), std::string(key_id),
                                         ToUnixSeconds(options_.clock->Now()), CurrentActor()};
    EKM_RETURN_IF_ERROR(store_->SetWorkspaceDefaultKey(rec));
    RecordEvent(ws.name, "", event::kWorkspaceDefaultKeySet,
                {{"cmk", {{"provider", rec.cmk_provider}, {"key_id", rec.cmk_key_id}}}});
    return DefaultKeyInfo(ws.name, rec);
  }

  StatusOr<WorkspaceDefaultKey> GetWorkspaceDefaultKey(std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
    EKM_ASSIGN_OR_RETURN(std::optional<Store::WorkspaceDefaultKeyRecord> rec,
                         store_->GetWorkspaceDefaultKey(ws.id));
    if (!rec) return DefaultKeyInfo(ws.name, std::nullopt);
    return DefaultKeyInfo(ws.name, *rec);
  }

  StatusOr<WorkspaceDefaultKey> ResetWorkspaceDefaultKey(std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
    EKM_RETURN_IF_ERROR(store_->DeleteWorkspaceDefaultKey(ws.id));
    RecordEvent(ws.name, "", event::kWorkspaceDefaultKeySet,
                {{"cmk",
                  {{"provider", std::string(kPlatformProviderName)},
                   {"key_id", std::string(kPlatformRootKeyId)}}},
                 {"reset", true}});
    return DefaultKeyInfo(ws.name, std::nullopt);
  }

  StatusOr<std::vector<LifecycleEventInfo>> ListEvents(const EventQuery& q) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", q.workspace));
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(q.workspace).status());
    EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> recs, QueryRecords(q, "event"));
    std::vector<LifecycleEventInfo> out;
    out.reserve(recs.size());
    for (auto& r : recs) {
      out.push_back({r.id, r.at_ms, std::move(r.workspace), std::move(r.environment),
                     std::move(r.type), std::move(r.actor), std::move(r.detail)});
    }
    return out;
  }

  StatusOr<NewApiToken> CreateApiToken(const ApiTokenRequest& req) override {
    EKM_ASSIGN_OR_RETURN(auth::Role role, auth::ParseRole(req.role));
    if (role == auth::Role::kAdmin) {
      if (!req.workspace.empty() || !req.environments.empty()) {
        return InvalidArgumentError(
            "an admin token is platform-wide: it takes no workspace or "
            "environment",
            "leave out --workspace and --environment for --role admin");
      }
    } else {
      if (req.workspace.empty()) {
        return InvalidArgumentError("a " + req.role + " token needs a workspace",
                                    "pass --workspace W (\"workspace\" in the API)");
      }
      EKM_RETURN_IF_ERROR(ValidateName("workspace", req.workspace));
      EKM_RETURN_IF_ERROR(store_->GetWorkspace(req.workspace).status());
      for (const std::string& e : req.environments) {
        EKM_RETURN_IF_ERROR(ValidateName("environment", e));
        EKM_RETURN_IF_ERROR(store_->GetEnvironment(req.workspace, e).status());
      }
    }
    auto lifetime = req.expires_in.count() == 0 ? kDefaultApiTokenLifetime : req.expires_in;
    if (lifetime.count() < 60 || lifetime > kMaxApiTokenLifetime) {
      return InvalidArgumentError("a token's lifetime must be between 1 minute and 366 days, got " +
                                      std::to_string(lifetime.count()) + " seconds",
                                  "pass e.g. --expires-in 30d (default 90d)");
    }
    if (req.description.size() > 200) {
      return InvalidArgumentError("the description is longer than 200 characters");
    }
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    return StoreNewToken(role, req.workspace, req.environments, req.description, now,
                         now + lifetime.count(), std::nullopt, req.requested_by);
  }

  StatusOr<std::vector<ApiTokenInfo>> ListApiTokens(std::optional<std::string> workspace) override {
    std::optional<std::string_view> ws;
    if (workspace) ws = *workspace;
    EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> recs, store_->ListApiTokens(ws));
    std::vector<ApiTokenInfo> out;
    for (auto& r : recs) out.push_back(TokenInfo(r));
    return out;
  }

  StatusOr<ApiTokenInfo> GetApiToken(std::string_view id) override {
    EKM_ASSIGN_OR_RETURN(Store::ApiTokenRecord r, StoredToken(id));
    return TokenInfo(r);
  }

  StatusOr<ApiTokenInfo> RevokeApiToken(std::string_view id,
                                        std::optional<auth::Role> requested_by) override {
    EKM_ASSIGN_OR_RETURN(Store::ApiTokenRecord r, StoredToken(id));
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    EKM_RETURN_IF_ERROR(store_->RevokeApiToken(id, now));
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      token_cache_.erase(std::string(id));  // immediate on this node
    }
    if (r.revoked_at == 0) {
      r.revoked_at = now;
      RecordTokenEvent(r.workspace, event::kTokenRevoked, {{"token_id", r.id}, {"role", r.role}},
                       "revoked_by_role", requested_by);
    }
    return TokenInfo(r);
  }

  StatusOr<auth::Principal> Authenticate(std::string_view text, std::string_view route,
                                         std::string_view remote) override {
    std::optional<std::string> id = auth::TokenIdOf(text);
    std::string workspace;  // where the failure is recorded: the token's, else the platform's
    auto fail = [&](std::string_view reason, std::string message) -> Status {
      nlohmann::json d = {{"reason", reason}, {"route", route}, {"remote_address", remote}};
      if (id) d["token_id"] = *id;
      RecordEvent(workspace, "", event::kTokenAuthFailed, d);
      return UnauthenticatedError(std::move(message),
                                  "pass --token or EKM_TOKEN (Authorization: Bearer …)");
    };
    if (text.empty()) return fail("missing", "this route needs an API token");
    auto presented = auth::ParseToken(text);
    if (!presented.ok()) return fail("malformed", "the bearer token is malformed");
    auto rec = CachedToken(presented->id);
    if (!rec.ok()) return rec.status();  // the store is unavailable: not the caller's fault
    // One message for an unknown token and a wrong secret: a guess learns nothing.
    if (!rec->has_value()) return fail("unknown", "the bearer token is not valid");
    const Store::ApiTokenRecord& r = **rec;
    workspace = r.workspace;
    if (!auth::SecretMatches(presented->secret, r.secret_sha256)) {
      return fail("wrong_secret", "the bearer token is not valid");
    }
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    if (r.revoked_at != 0) return fail("revoked", "the bearer token was revoked");
    if (r.expires_at != 0 && now >= r.expires_at) {
      return fail("expired",
                  "the bearer token expired at " + FormatRfc3339(FromUnixSeconds(r.expires_at)));
    }
    auto role = auth::ParseRole(r.role);
    if (!role.ok()) return DataLossError("token " + r.id + " has an unknown role");
    auth::Principal p;
    p.token_id = r.id;
    p.role = *role;
    p.workspace = r.workspace;
    p.environments = r.environments;
    p.expires_at = r.expires_at;
    return p;
  }

  void RecordPermissionDenied(const auth::Principal& p, std::string_view route,
                              std::string_view workspace, std::string_view environment,
                              std::string_view remote, const Status& why) override {
    nlohmann::json d = {{"route", route},
                        {"role", auth::RoleName(p.role)},
                        {"remote_address", remote},
                        {"message", why.message()}};
    if (!p.token_id.empty()) d["token_id"] = p.token_id;
    if (!workspace.empty()) d["workspace"] = workspace;
    if (!environment.empty()) d["environment"] = environment;
    RecordEvent(p.workspace, "", event::kTokenPermissionDenied, d);
  }

  StatusOr<BootstrapAdminToken> EnsureBootstrapAdminToken(
      std::optional<std::string_view> given) override {
    EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> admins, store_->ListApiTokens(""));
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    for (const auto& a : admins) {
      if (a.role == "admin" && a.revoked_at == 0 && (a.expires_at == 0 || a.expires_at > now)) {
        return BootstrapAdminToken{};
      }
    }
    std::optional<auth::PresentedToken> presented;
    if (given) {
      auto p = auth::ParseToken(*given);
      if (!p.ok()) {
        return InvalidArgumentError("the bootstrap token file does not hold an ekm token",
                                    "write one line ekm_<16 hex>_<43 base64url> to it, e.g. "
                                    "from another `ekm init`, or leave the flag out");
      }
      presented = std::move(*p);
    }
    EKM_ASSIGN_OR_RETURN(NewApiToken t,
                         StoreNewToken(auth::Role::kAdmin, "", {}, "bootstrap admin token", now, 0,
                                       std::move(presented)));
    BootstrapAdminToken b;
    b.created = true;
    b.id = t.info.id;
    if (!given) b.token = std::move(t.token);
    return b;
  }

  StatusOr<WorkspaceInfo> GetWorkspace(std::string_view workspace) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord rec, store_->GetWorkspace(workspace));
    return WorkspaceInfo{rec.name, rec.created_at};
  }

  StatusOr<EnvironmentInfo> GetEnvironment(std::string_view workspace,
                                           std::string_view environment) override {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    auto env = store_->GetEnvironment(workspace, environment);
    if (!env.ok() && env.status().code() == StatusCode::kNotFound) {
      EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());  // which part is missing
    }
    EKM_RETURN_IF_ERROR(env.status());
    EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord ek,
                         store_->GetEnvironmentKey(env->id, env->current_ek_version));
    return Info(*env, ek);
  }

  StatusOr<GeneratedDataKey> GenerateDataKey(std::string_view workspace,
                                             std::string_view environment, std::string_view scope,
                                             size_t size, bool with_plaintext) override {
    if (size < kMinDataKeyBytes || size > kMaxDataKeyBytes) {
      return InvalidArgumentError("a data key is " + std::to_string(kMinDataKeyBytes) + " to " +
                                      std::to_string(kMaxDataKeyBytes) + " bytes, not " +
                                      std::to_string(size),
                                  "32 bytes is an AES-256 key (the default)");
    }
    EKM_RETURN_IF_ERROR(ValidateScope(scope));
    EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
    EKM_ASSIGN_OR_RETURN(SecretBytes key, RandomSecret(size));
    GeneratedDataKey out;
    out.scope = std::string(scope);
    Status sealed;
    {
      CountedHere counted_here;  // counted below as generate_data_key, not as an encrypt
      sealed = Encrypt(workspace, environment, scope, key.RevealForCrypto(), &out.ciphertext);
    }
    CountUsage(env, scope, usage_op::kGenerateDataKey, sealed);
    EKM_RETURN_IF_ERROR(sealed);
    if (with_plaintext) out.plaintext = std::move(key);
    return out;
  }

  StatusOr<std::vector<StatusOr<Bytes>>> EncryptBatch(
      std::string_view workspace, std::string_view environment,
      const std::vector<BatchEncryptItem>& items) override {
    EKM_RETURN_IF_ERROR(CheckBatchSize(items.size()));
    // The environment first: a missing one is the request's error, not every item's.
    EKM_RETURN_IF_ERROR(Environment(workspace, environment).status());
    std::vector<StatusOr<Bytes>> out;
    out.reserve(items.size());
    for (const BatchEncryptItem& item : items) {
      Bytes ct;
      Status s = Encrypt(workspace, environment, item.scope, item.plaintext, &ct);
      if (IsOutage(s)) return s;
      out.push_back(s.ok() ? StatusOr<Bytes>(std::move(ct)) : StatusOr<Bytes>(s));
    }
    return out;
  }

  StatusOr<std::vector<StatusOr<Bytes>>> DecryptBatch(
      std::string_view workspace, std::string_view environment,
      const std::vector<Bytes>& envelopes) override {
    EKM_RETURN_IF_ERROR(CheckBatchSize(envelopes.size()));
    EKM_RETURN_IF_ERROR(Environment(workspace, environment).status());
    std::vector<StatusOr<Bytes>> out;
    out.reserve(envelopes.size());
    for (const Bytes& envelope : envelopes) {
      Bytes plain;
      Status s = Decrypt(workspace, environment, envelope, &plain);
      if (IsOutage(s)) return s;
      out.push_back(s.ok() ? StatusOr<Bytes>(std::move(plain)) : StatusOr<Bytes>(s));
    }
    return out;
  }

 private:
  // The CMK's provider out of reach concerns every item: the whole batch answers it, so the
  // caller retries the batch (Retry-After) instead of sorting out items.
  static bool IsOutage(const Status& s) {
    return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded;
  }

  static Status CheckBatchSize(size_t n) {
    if (n == 0) {
      return InvalidArgumentError("\"items\" is empty",
                                  "send 1 to " + std::to_string(kMaxBatchItems) + " items");
    }
    if (n > kMaxBatchItems) {
      return InvalidArgumentError(
          "a batch holds at most " + std::to_string(kMaxBatchItems) + " items, got " +
              std::to_string(n),
          "split the items into batches of " + std::to_string(kMaxBatchItems) + " or fewer");
    }
    return Status::Ok();
  }

  StatusOr<std::vector<LifecycleEventRecord>> QueryAudit(const EventQuery& q) override {
    EKM_RETURN_IF_ERROR(CheckChain(q.workspace));
    return QueryRecords(q, "record");
  }

  Status ExportAudit(std::string_view chain,
                     const std::function<Status(const LifecycleEventRecord&)>& sink) override {
    EKM_RETURN_IF_ERROR(CheckChain(chain));
    LifecycleEventFilter f;
    f.workspace = std::string(chain);
    f.limit = 1000;
    for (;;) {
      EKM_ASSIGN_OR_RETURN(std::vector<LifecycleEventRecord> page, store_->ListLifecycleEvents(f));
      for (const auto& r : page) EKM_RETURN_IF_ERROR(sink(r));
      if (page.size() < f.limit) return Status::Ok();
      f.after_id = page.back().id;
    }
  }

  StatusOr<AuditCheckpoint> CreateAuditCheckpoint(std::string_view chain) override {
    EKM_RETURN_IF_ERROR(CheckChain(chain));
    EKM_ASSIGN_OR_RETURN(Store::AuditChainHead head, store_->GetAuditChainHead(chain));
    if (head.seq == 0) {
      return FailedPreconditionError("the audit chain has no records yet",
                                     "a checkpoint anchors existing records; try again later");
    }
    return SignCheckpoint(head);
  }

  StatusOr<std::vector<AuditCheckpoint>> ListAuditCheckpoints(std::string_view chain) override {
    EKM_RETURN_IF_ERROR(CheckChain(chain));
    EKM_ASSIGN_OR_RETURN(std::vector<Store::AuditCheckpointRecord> recs,
                         store_->ListAuditCheckpoints(chain));
    std::vector<AuditCheckpoint> out;
    out.reserve(recs.size());
    for (auto& r : recs) {
      out.push_back(AuditCheckpoint{std::move(r.chain), r.seq, std::move(r.head_hash), r.at_ms,
                                    std::move(r.key_id), std::move(r.signature)});
    }
    return out;
  }

  const AuditPublicKey& AuditSigningPublicKey() override { return audit_signer_->public_key(); }

  StatusOr<size_t> CheckpointAdvancedChains() override {
    EKM_ASSIGN_OR_RETURN(std::vector<Store::AuditChainHead> heads, store_->ListAuditChainHeads());
    size_t made = 0;
    for (const auto& h : heads) {
      if (h.seq <= h.checkpointed_seq) continue;
      EKM_RETURN_IF_ERROR(SignCheckpoint(h).status());
      ++made;
    }
    return made;
  }

  Status FlushDataPlaneUsage() override {
    std::vector<UsageCounter::Row> rows = usage_->Drain();
    ScopedActor actor{std::string(kUsageActor)};
    Status first = Status::Ok();
    // One record per workspace, environment and minute, listing its scopes and operations
    // (rows come sorted that way).
    for (size_t i = 0; i < rows.size();) {
      const UsageCounter::Row& head = rows[i];
      nlohmann::json counts = nlohmann::json::array();
      size_t j = i;
      for (; j < rows.size() && rows[j].workspace == head.workspace &&
             rows[j].environment == head.environment && rows[j].minute == head.minute;
           ++j) {
        counts.push_back({{"scope", rows[j].scope},
                          {"operation", rows[j].operation},
                          {"outcome", UsageOutcomeName(rows[j].outcome)},
                          {"count", rows[j].count}});
      }
      nlohmann::json detail = {{"minute", FormatRfc3339(FromUnixSeconds(head.minute * 60))},
                               {"counts", counts}};
      Status s = RecordLifecycleEvent(*store_, *options_.clock, head.workspace, head.environment,
                                      event::kDataPlaneUsage, detail);
      if (!s.ok() && first.ok()) first = s;
      i = j;
    }
    return first;
  }

  void StartAuditTasks(std::chrono::milliseconds checkpoint_interval,
                       std::chrono::milliseconds usage_interval) override {
    // One thread for both, so a flush and a checkpoint never run at once.
    auto next_checkpoint = std::chrono::steady_clock::now() + checkpoint_interval;
    auto next_usage = std::chrono::steady_clock::now() + usage_interval;
    audit_tasks_.Start(
        [=, this](bool) mutable {
          const auto now = std::chrono::steady_clock::now();
          if (now >= next_usage) {
            Status s = FlushDataPlaneUsage();
            if (!s.ok()) spdlog::error("audit: flushing data-plane usage: {}", s.ToString());
            next_usage = now + usage_interval;
          }
          if (now >= next_checkpoint) {
            auto made = CheckpointAdvancedChains();
            if (!made.ok()) spdlog::error("audit: checkpoints: {}", made.status().ToString());
            next_checkpoint = now + checkpoint_interval;
          }
          return std::min(next_checkpoint, next_usage);
        },
        std::min(next_checkpoint, next_usage));
  }

  void StopAuditTasks() override {
    const bool was_running = audit_tasks_.running();
    audit_tasks_.Stop();
    Status s = FlushDataPlaneUsage();
    if (!s.ok()) spdlog::error("audit: flushing data-plane usage: {}", s.ToString());
    if (was_running) {
      // ekmd stopping: anchor what it appended.
      auto made = CheckpointAdvancedChains();
      if (!made.ok()) spdlog::error("audit: checkpoints: {}", made.status().ToString());
    }
  }

 private:
  // The one query of the lifecycle/audit rows, behind both GET …/events and GET …/audit
  // (`noun` names a row in their errors); the caller has checked the chain.
  StatusOr<std::vector<LifecycleEventRecord>> QueryRecords(const EventQuery& q,
                                                           std::string_view noun) {
    if (q.environment) EKM_RETURN_IF_ERROR(ValidateName("environment", *q.environment));
    if (q.limit < 1 || q.limit > 1000) {
      return InvalidArgumentError(
          "limit must be between 1 and 1000, got " + std::to_string(q.limit),
          "page with after=<id of the last " + std::string(noun) + " seen>");
    }
    if (q.since_ms >= q.until_ms) {
      return InvalidArgumentError("since must be before until",
                                  "give a start time earlier than the end time, or leave one out");
    }
    LifecycleEventFilter f;
    f.workspace = q.workspace;
    f.environment = q.environment;
    f.type = q.type;
    f.since_ms = q.since_ms;
    f.until_ms = q.until_ms;
    f.after_id = q.after_id;
    f.limit = q.limit;
    return store_->ListLifecycleEvents(f);
  }

  // A chain: "" (the platform's) or an existing workspace's.
  Status CheckChain(std::string_view chain) {
    if (chain.empty()) return Status::Ok();
    EKM_RETURN_IF_ERROR(ValidateName("workspace", chain));
    return store_->GetWorkspace(chain).status();
  }

  StatusOr<AuditCheckpoint> SignCheckpoint(const Store::AuditChainHead& head) {
    AuditCheckpoint c{head.chain,
                      head.seq,
                      head.hash,
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          options_.clock->Now().time_since_epoch())
                          .count(),
                      "",
                      {}};
    EKM_RETURN_IF_ERROR(audit_signer_->Sign(c));
    EKM_RETURN_IF_ERROR(store_->PutAuditCheckpoint(Store::AuditCheckpointRecord{
        0, c.chain, c.seq, c.head_hash, c.at_ms, c.key_id, c.signature}));
    return c;
  }

  // The data plane's one line per operation, with its outcome (`result`): cheap, in memory,
  // flushed as data_plane.usage records.
  void CountUsage(const EnvironmentRecord& env, std::string_view scope, std::string_view op,
                  const Status& result) {
    if (t_usage_counted_by_caller) return;
    usage_->Count(env.workspace, env.name, scope, op, UsageOutcomeOf(result),
                  ToUnixSeconds(options_.clock->NowCoarse()) / 60);
  }

  // The environment as stored now (not the cached record), with a clear NotFound.
  StatusOr<EnvironmentRecord> StoredEnvironment(std::string_view workspace,
                                                std::string_view environment) {
    auto env = store_->GetEnvironment(workspace, environment);
    if (env.ok()) EKM_RETURN_IF_ERROR(RefuseIfShredded(*env, /*cached=*/false));
    if (env.ok() || env.status().code() != StatusCode::kNotFound) return env;
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
    return env;
  }

  // A provider's refusal during "Update key" is about the customer's key, not about the API
  // caller: AccessDenied becomes a failed precondition (the key policy), not a 403, and the
  // platform's own credential trouble is named as such.
  static Status CustomerKeyError(std::string_view workspace, std::string_view environment,
                                 std::string_view check, const Status& cause) {
    std::string message =
        "Update key failed at the " + std::string(check) + " check: " + cause.message();
    std::string hint = cause.hint();
    switch (cause.code()) {
      case StatusCode::kPermissionDenied:
        return FailedPreconditionError(
            message, hint + "; `ekm key policy --workspace " + std::string(workspace) +
                         " --environment " + std::string(environment) +
                         "` prints the statement, and `ekm policy check FILE` checks a policy");
      case StatusCode::kUnauthenticated:
        // AWS rejected the platform's own AWS credentials: not the customer's refusal, and
        // not transient either: the platform operator must fix them (docs/api.md: 409).
        return FailedPreconditionError(message, hint);
      default:
        return Status(cause.code(), message, hint);
    }
  }

  static std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
    std::string out;
    for (const auto& p : parts) {
      if (!out.empty()) out += sep;
      out += p;
    }
    return out;
  }

  // A dry run (ValidateCustomerKey) is recorded as an event only: `key show`'s last
  // validation stays the last real "Update key".
  void RecordValidation(std::string_view workspace, std::string_view environment,
                        const KeyValidation& v, bool dry_run = false) {
    auto env = store_->GetEnvironment(workspace, environment);
    if (!env.ok()) return;
    nlohmann::json checks = nlohmann::json::array();
    for (const auto& c : v.checks) {
      checks.push_back({{"name", c.name}, {"outcome", c.outcome}, {"detail", c.detail}});
    }
    if (!dry_run) {
      KeyValidationRecord r{env->id, v.provider,      v.key_id,        v.checked_at,
                            v.ok,    v.error_code,    v.provider_code, v.message,
                            v.hint,  JsonText(checks)};
      Status s = store_->RecordKeyValidation(r);
      if (!s.ok()) spdlog::warn("could not record a key validation: {}", s.ToString());
    }
    nlohmann::json detail = {{"provider", v.provider}, {"key_id", v.key_id}, {"checks", checks}};
    if (dry_run) detail["dry_run"] = true;
    if (!v.ok) {
      detail["error"] = {
          {"code", v.error_code}, {"provider_code", v.provider_code}, {"message", v.message}};
    }
    RecordEvent(env->workspace, env->name,
                v.ok ? event::kKeyValidated : event::kKeyValidationFailed, detail);
  }

  // Records a lifecycle event; a failure to record is logged (the change itself happened).
  void RecordEvent(std::string_view workspace, std::string_view environment, std::string_view type,
                   const nlohmann::json& detail) {
    RecordLifecycleEvent(*store_, *options_.clock, workspace, environment, type, detail)
        .IgnoreError();
  }

  static KeyValidation FromRecord(const KeyValidationRecord& r) {
    KeyValidation v;
    v.provider = r.cmk_provider;
    v.key_id = r.cmk_key_id;
    v.checked_at = r.checked_at;
    v.ok = r.ok;
    v.error_code = r.error_code;
    v.provider_code = r.provider_code;
    v.message = r.message;
    v.hint = r.hint;
    nlohmann::json checks = nlohmann::json::parse(r.detail, nullptr, false);
    if (checks.is_array()) {
      for (const auto& c : checks) {
        if (!c.is_object()) continue;
        v.checks.push_back({c.value("name", ""), c.value("outcome", ""), c.value("detail", "")});
      }
    }
    return v;
  }

  // `valid_until`, when given, receives when what this read from caches stops being trusted
  // (for the data-path memos).
  StatusOr<EnvironmentRecord> Environment(
      std::string_view workspace, std::string_view environment,
      std::chrono::steady_clock::time_point* valid_until = nullptr) {
    EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
    EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
    auto env = keys_.GetEnvironment(workspace, environment, valid_until);
    if (env.ok()) EKM_RETURN_IF_ERROR(RefuseIfShredded(*env, /*cached=*/true, valid_until));
    if (env.ok() || env.status().code() != StatusCode::kNotFound) return env;
    // Say which part is missing: the workspace or the environment inside it.
    EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
    return env;
  }

  static EnvironmentInfo Info(const EnvironmentRecord& r, const EnvironmentKeyRecord& ek) {
    return EnvironmentInfo{r.workspace,     r.name,        r.created_at,
                           ek.cmk_provider, ek.cmk_key_id, r.current_ek_version};
  }

  // The platform principal the AWS key policy must name: configured, or asked of the AWS
  // provider (STS GetCallerIdentity).
  StatusOr<std::string> PlatformPrincipalArn() {
    if (!options_.aws.principal_arn.empty()) return options_.aws.principal_arn;
    if (auto aws = providers_->Get(kAwsKmsProviderName); aws.ok()) {
      return (*aws)->PlatformIdentity();
    }
    return FailedPreconditionError(
        "the platform principal (the IAM role ekm uses to call AWS KMS) is not configured",
        "start ekmd with --aws-principal-arn arn:aws:iam::ACCOUNT:role/NAME, or give it AWS "
        "credentials so it can ask STS who it is");
  }

  static EnvironmentSettings SettingsFromMap(const std::map<std::string, int64_t>& m) {
    auto get = [&](std::string_view name) -> std::optional<int64_t> {
      auto it = m.find(std::string(name));
      if (it == m.end()) return std::nullopt;
      return it->second;
    };
    EnvironmentSettings s;
    s.key_cache_ttl_seconds = get(kSettingKeyCacheTtl);
    s.grace_period_seconds = get(kSettingGracePeriod);
    s.ek_rotation_period_seconds = get(kSettingEkRotationPeriod);
    s.dk_rotation_period_seconds = get(kSettingDkRotationPeriod);
    s.replacement_period_seconds = get(kSettingReplacementPeriod);
    return s;
  }

  // After a settings change: the parts that cache settings drop them here.
  void OnEnvironmentSettingsChanged(const EnvironmentRecord& env) {
    keys_.ForgetEnvironment(env.workspace, env.name);
    keys_.ForgetEnvironmentSettings(env.id);  // TTL and grace period
  }

  static KeyHierarchyOptions HierarchyOptions(const EkmOptions& o) {
    KeyHierarchyOptions k;
    k.ttl = o.key_cache_ttl;
    k.max_messages_per_dk = o.max_messages_per_dk;
    k.nonce_lease_size = o.nonce_lease_size;
    k.max_cached_keys = o.key_cache_max_entries;
    return k;
  }

  static Status CheckKeyChangeOptions(const KeyChangeOptions& o) {
    if (o.emergency && o.reason.find_first_not_of(" \t\r\n") == std::string::npos) {
      return InvalidArgumentError(
          "an emergency replacement needs a reason",
          "say why the current key must be replaced now, e.g. --reason \"key material may "
          "have leaked (incident 4711)\"; it is recorded with the change");
    }
    if (o.reason.size() > 1000) {
      return InvalidArgumentError("the reason is longer than 1000 characters",
                                  "give a short reason and refer to the incident");
    }
    return Status::Ok();
  }

  // The period in force: the environment's setting (never below the floor, whatever an older
  // version stored), else the deployment default.
  std::chrono::seconds ReplacementPeriod(const EnvironmentRecord& env) {
    auto settings = store_->GetEnvironmentSettings(env.id);
    if (settings.ok()) {
      auto it = settings->find(std::string(kSettingReplacementPeriod));
      if (it != settings->end()) {
        return std::max(std::chrono::seconds(it->second), kMinReplacementPeriod);
      }
    }
    return options_.replacement_period;
  }

  // Where the end of the replacement period running since the last CMK change is kept (unix
  // seconds), as it stood when it began or when the period was last changed: a period shortened
  // since (the setting, or ekmd's default) applies only after it. Not a setting: no route reads
  // or writes it.
  static constexpr std::string_view kReplacementRunningUntil = "replacement_running_until";

  StatusOr<int64_t> StoredReplacementRunningUntil(const EnvironmentRecord& env) {
    EKM_ASSIGN_OR_RETURN(auto stored, store_->GetEnvironmentSettings(env.id));
    auto it = stored.find(std::string(kReplacementRunningUntil));
    return it == stored.end() ? int64_t{0} : it->second;
  }

  // Before the period changes: records the end of the running period under the period in force
  // now (kept if an earlier record ends later).
  Status KeepRunningReplacementPeriod(const EnvironmentRecord& env) {
    EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                         store_->GetLatestCmkChange(env.id));
    if (!last) return Status::Ok();
    EKM_ASSIGN_OR_RETURN(int64_t kept, StoredReplacementRunningUntil(env));
    const int64_t end = last->at + ReplacementPeriod(env).count();
    if (end <= kept) return Status::Ok();
    return store_->SetEnvironmentSetting(env.id, kReplacementRunningUntil, end);
  }

  // When a replacement (not an emergency) is allowed again: the last CMK change plus the period
  // in force, and never before the running period's kept end. 0: no CMK change yet.
  StatusOr<int64_t> NextReplacementAllowedAt(const EnvironmentRecord& env,
                                             Store::CmkChangeRecord* last_change = nullptr) {
    EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                         store_->GetLatestCmkChange(env.id));
    if (!last) return int64_t{0};
    EKM_ASSIGN_OR_RETURN(int64_t kept, StoredReplacementRunningUntil(env));
    if (last_change != nullptr) *last_change = *last;
    return std::max(last->at + ReplacementPeriod(env).count(), kept);
  }

  // A replacement (from one customer CMK to another) is allowed once per replacement period,
  // counted from the environment's last CMK change; the first customer key is not one.
  Status CheckReplacementPeriod(const EnvironmentRecord& env, const EnvironmentKeyRecord& current,
                                std::string_view provider, std::string_view key_id,
                                const KeyChangeOptions& options) {
    if (options.emergency) return Status::Ok();
    Store::CmkChangeRecord last;
    EKM_ASSIGN_OR_RETURN(int64_t next, NextReplacementAllowedAt(env, &last));
    // 0: the first customer key, or changes from before migration 6.
    if (next == 0) return Status::Ok();
    const int64_t period = ReplacementPeriod(env).count();
    const int64_t now = ToUnixSeconds(options_.clock->Now());
    if (now >= next) return Status::Ok();
    auto at = [](int64_t t) { return FormatRfc3339(FromUnixSeconds(t)); };
    RecordEvent(env.workspace, env.name, event::kKeyReplacementRefused,
                {{"from", {{"provider", current.cmk_provider}, {"key_id", current.cmk_key_id}}},
                 {"to", {{"provider", provider}, {"key_id", key_id}}},
                 {"last_change_at", at(last.at)},
                 {"next_allowed_at", at(next)}});
    const std::string rule = next > last.at + period
                                 ? "the replacement period of " + HumanDuration(next - last.at) +
                                       " that began then still runs (the shorter period of " +
                                       HumanDuration(period) + " set since applies only after it)"
                                 : "it may be replaced once per " + HumanDuration(period);
    return FailedPreconditionError(
        "the customer main key of " + env.workspace + "/" + env.name + " was last changed at " +
            at(last.at) + "; " + rule + ": the next replacement is allowed at " + at(next) +
            " (in " + HumanDuration(next - now) + ")",
        "wait until then; if the current key is suspected to be compromised, an owner can make "
        "an emergency replacement now: `ekm key set … --emergency --reason TEXT` (API: "
        "\"emergency\": true, \"reason\": \"…\")");
  }

  // Stores the new EK with the CMK change row (one transaction), records the event and wakes
  // the repack runner.
  Status StoreCmkChange(const EnvironmentRecord& env, const EnvironmentKeyRecord& current,
                        const EnvironmentKeyRecord& rec, const KeyChangeOptions& options) {
    EKM_ASSIGN_OR_RETURN(std::optional<Store::CmkChangeRecord> last,
                         store_->GetLatestCmkChange(env.id));
    Store::CmkChangeRecord c;
    c.environment_id = env.id;
    c.at = ToUnixSeconds(options_.clock->Now());
    c.from_provider = current.cmk_provider;
    c.from_key_id = current.cmk_key_id;
    c.to_provider = rec.cmk_provider;
    c.to_key_id = rec.cmk_key_id;
    c.ek_version = rec.version;
    const bool first = current.cmk_provider == kPlatformProviderName && !last;
    c.kind = first ? "set" : "replacement";
    c.emergency = options.emergency;
    c.reason = options.reason;
    c.actor = CurrentActor();
    EKM_RETURN_IF_ERROR(store_->AddEnvironmentKeyForCmkChange(rec, c));
    // The new period's end under the period in force now, so that a later shortening (also of
    // ekmd's default, by a restart) does not shorten it. Best effort: without it the period in
    // force at the next attempt counts.
    store_
        ->SetEnvironmentSetting(env.id, kReplacementRunningUntil,
                                c.at + ReplacementPeriod(env).count())
        .IgnoreError();
    nlohmann::json detail = {
        {"from", {{"provider", current.cmk_provider}, {"key_id", current.cmk_key_id}}},
        {"to", {{"provider", rec.cmk_provider}, {"key_id", rec.cmk_key_id}}},
        {"ek_version", rec.version}};
    if (options.emergency) {
      detail["emergency"] = true;
      detail["reason"] = options.reason;
    }
    RecordEvent(env.workspace, env.name,
                first               ? event::kKeySet
                : options.emergency ? event::kKeyEmergencyReplaced
                                    : event::kKeyReplaced,
                detail);
    std::lock_guard<std::mutex> lock(repack_mu_);
    if (repack_runner_) repack_runner_->Nudge();
    return Status::Ok();
  }

  // Appended to the "store" check of a CMK change.
  std::string RepackStartedNote(const EnvironmentRecord& env) {
    uint64_t moving = 0;
    auto inv = store_->EnvironmentKeyInventory(env.id);
    if (inv.ok()) {
      for (const auto& r : *inv) {
        if (!r.destroyed_at && r.version <= env.current_ek_version) moving += r.data_keys;
      }
    }
    return "; the repack of " + std::to_string(moving) +
           " data keys under the new environment key has begun (`ekm repack status` shows its "
           "progress); the previous CMK must stay usable until it completes";
  }

  static void FillFromJob(const Store::RepackJobRecord& job, RepackStatus* st) {
    st->state = job.state;
    st->target_ek_version = job.target_ek_version;
    st->done = job.done;
    st->total = std::max(job.total, job.done);
    st->started_at_ms = job.started_at_ms;
    st->updated_at_ms = job.updated_at_ms;
    st->finished_at_ms = job.finished_at_ms;
    st->retry_at_ms = job.retry_at_ms;
    st->last_error = job.last_error;
    if (job.state == "finished") {
      int64_t ms = job.finished_at_ms.value_or(job.updated_at_ms) - job.started_at_ms;
      st->rate = ms > 0 ? double(job.done) * 1000.0 / double(ms) : 0;
      return;
    }
    int64_t ms = job.updated_at_ms - job.run_started_at_ms;
    uint64_t moved = job.done - std::min(job.done, job.run_started_done);
    st->rate = ms > 0 ? double(moved) * 1000.0 / double(ms) : 0;
    if (st->rate > 0) st->eta_seconds = double(st->total - st->done) / st->rate;
  }

  Repacker& repacker() {
    std::call_once(repacker_once_, [this] {
      RepackOptions o;
      o.batch_size = options_.repack_batch_size;
      repacker_ = std::make_unique<Repacker>(store_.get(), &keys_, options_.clock, o);
    });
    return *repacker_;
  }

  std::once_flag repacker_once_;
  std::unique_ptr<Repacker> repacker_;
  std::mutex repack_mu_;
  std::unique_ptr<RepackRunner> repack_runner_;

  // A provider's refusal while wrapping a new EK: about the customer's key (or the platform's
  // own AWS credentials, which the operator must fix), never a 401/403 of the API caller.
  static Status ProviderRefusal(const Status& s) {
    if (s.code() == StatusCode::kPermissionDenied || s.code() == StatusCode::kUnauthenticated) {
      return FailedPreconditionError(s.message(), s.hint());
    }
    return s;
  }

  StatusOr<RotationResult> RotateEk(EnvironmentRecord env) {
    EnvironmentKeyRecord current;
    EnvironmentKeyRecord rec;
    CmkRef cmk;
    // Another rotation (a thread, another node, the CLI) may store the next version first: a
    // routine rotation then wraps the version after it, a few times, rather than fail.
    for (int attempt = 0;; ++attempt) {
      EKM_ASSIGN_OR_RETURN(current, store_->GetEnvironmentKey(env.id, env.current_ek_version));
      cmk = CmkRef{current.cmk_provider, current.cmk_key_id};
      auto ek = keys_.NewEnvironmentKey(env.workspace, env.name, cmk, env.current_ek_version + 1);
      if (!ek.ok()) {
        return ProviderRefusal(ek.status().WithContext(
            "rotating the environment key of " + env.workspace + "/" + env.name + ": the CMK (" +
            cmk.provider + " " + cmk.key_id + ") could not wrap a new version"));
      }
      rec = std::move(ek).value();
      rec.environment_id = env.id;
      Status added = store_->AddEnvironmentKey(rec);
      if (added.ok()) break;
      if (added.code() != StatusCode::kFailedPrecondition || attempt >= 3) return added;
      EKM_ASSIGN_OR_RETURN(EnvironmentRecord fresh, StoredEnvironment(env.workspace, env.name));
      // Only another rotation under the same CMK is retried: a CMK change is not ours to follow.
      EKM_ASSIGN_OR_RETURN(EnvironmentKeyRecord now_current,
                           store_->GetEnvironmentKey(fresh.id, fresh.current_ek_version));
      if (now_current.cmk_provider != cmk.provider || now_current.cmk_key_id != cmk.key_id) {
        return added;
      }
      env = std::move(fresh);
    }
    keys_.ForgetEnvironment(env.workspace, env.name);
    RecordEvent(env.workspace, env.name, event::kEnvironmentKeyRotated,
                {{"cmk", {{"provider", cmk.provider}, {"key_id", cmk.key_id}}},
                 {"from_version", env.current_ek_version},
                 {"to_version", rec.version}});
    return RotationResult{env.workspace, env.name, "ek", "", env.current_ek_version, rec.version};
  }

  StatusOr<RotationResult> RotateDk(const EnvironmentRecord& env, const std::string& scope) {
    EKM_ASSIGN_OR_RETURN(std::optional<DataKeyRecord> latest,
                         store_->GetLatestDataKey(env.id, scope));
    const uint32_t from = latest ? latest->version : 0;
    auto dk = keys_.RotateDataKey(env, scope, from);
    if (!dk.ok()) return ProviderRefusal(dk.status());
    RecordEvent(env.workspace, env.name, event::kDataKeyRotated,
                {{"scope", scope},
                 {"from_version", from},
                 {"to_version", (*dk)->version},
                 {"ek_version", (*dk)->ek_version}});
    return RotationResult{env.workspace, env.name, "dk", scope, from, (*dk)->version};
  }

  // FailedPrecondition when the environment was crypto-shredded. `cached`: a per-node answer
  // up to one key cache TTL old is good enough (the data-plane path).
  // `valid_until`, when given, is lowered to when the status used here stops being trusted.
  Status RefuseIfShredded(const EnvironmentRecord& env, bool cached,
                          std::chrono::steady_clock::time_point* valid_until = nullptr) {
    const std::string key = std::to_string(env.id);
    const auto now = options_.clock->Monotonic();
    std::shared_ptr<std::optional<Store::EnvironmentShredRecord>> status;
    auto expires = now + options_.key_cache_ttl;
    if (cached) status = shred_status_.Get(key, now, &expires);
    if (!status) {
      EKM_ASSIGN_OR_RETURN(std::optional<Store::EnvironmentShredRecord> rec,
                           store_->GetEnvironmentShred(env.id));
      status = std::make_shared<std::optional<Store::EnvironmentShredRecord>>(std::move(rec));
      expires = now + options_.key_cache_ttl;
      shred_status_.Put(key, status, expires);
    }
    if (valid_until != nullptr) *valid_until = std::min(*valid_until, expires);
    if (!status->has_value()) return Status::Ok();
    return ShreddedError(env.workspace, env.name, (*status)->shredded_at);
  }

  static Status ShreddedError(std::string_view workspace, std::string_view environment,
                              int64_t at) {
    return FailedPreconditionError(
        "environment " + std::string(workspace) + "/" + std::string(environment) +
            " was crypto-shredded at " + FormatRfc3339(FromUnixSeconds(at)) +
            "; its data can never be read",
        "the name stays taken: create a new environment under another name");
  }

  // Before a new environment's first EK: its name may belong to a shredded environment, and
  // the workspace may have a default CMK.
  Status PrepareNewEnvironment(std::string_view workspace, std::string_view name, CmkRef* cmk) {
    auto existing = store_->GetEnvironment(workspace, name);
    if (existing.ok()) {
      EKM_ASSIGN_OR_RETURN(std::optional<Store::EnvironmentShredRecord> shred,
                           store_->GetEnvironmentShred(existing->id));
      if (shred) return ShreddedError(workspace, name, shred->shredded_at);
    }
    EKM_ASSIGN_OR_RETURN(WorkspaceRecord ws, store_->GetWorkspace(workspace));
    EKM_ASSIGN_OR_RETURN(std::optional<Store::WorkspaceDefaultKeyRecord> def,
                         store_->GetWorkspaceDefaultKey(ws.id));
    if (def) *cmk = CmkRef{def->cmk_provider, def->cmk_key_id};
    return Status::Ok();
  }

  StatusOr<EnvironmentKeyRecord> NewFirstEnvironmentKey(std::string_view workspace,
                                                        std::string_view name, const CmkRef& cmk) {
    auto ek = keys_.NewEnvironmentKey(workspace, name, cmk, 1);
    if (ek.ok() || cmk.provider == kPlatformProviderName) return ek;
    Status s = ProviderRefusal(
        ek.status().WithContext("the workspace default key (" + cmk.provider + " " + cmk.key_id +
                                ") could not wrap the new environment's key"));
    return Status(s.code(), s.message(),
                  s.hint() + (s.hint().empty() ? "" : "; ") +
                      "fix the key's policy or state, or go back to the platform key with "
                      "`ekm workspace set-default-key --workspace " +
                      std::string(workspace) + " --reset`");
  }

  static WorkspaceDefaultKey DefaultKeyInfo(
      const std::string& workspace, const std::optional<Store::WorkspaceDefaultKeyRecord>& rec) {
    WorkspaceDefaultKey k;
    k.workspace = workspace;
    k.set = rec.has_value();
    k.provider = rec ? rec->cmk_provider : std::string(kPlatformProviderName);
    k.key_id = rec ? rec->cmk_key_id : std::string(kPlatformRootKeyId);
    if (rec) {
      k.set_at = rec->set_at;
      k.actor = rec->actor;
    }
    return k;
  }

  static ApiTokenInfo TokenInfo(const Store::ApiTokenRecord& r) {
    return ApiTokenInfo{r.id,         r.role,       r.workspace,  r.environments, r.description,
                        r.created_at, r.created_by, r.expires_at, r.revoked_at};
  }

  StatusOr<Store::ApiTokenRecord> StoredToken(std::string_view id) {
    if (!auth::TokenIdOf(std::string(auth::kTokenPrefix) + std::string(id) + "_")) {
      return InvalidArgumentError("\"" + std::string(id) + "\" is not a token id",
                                  "a token id is 16 hex digits (ekm token list shows them)");
    }
    EKM_ASSIGN_OR_RETURN(std::optional<Store::ApiTokenRecord> r, store_->GetApiToken(id));
    if (!r) return NotFoundError("token " + std::string(id) + " not found");
    return std::move(*r);
  }

  // `presented`: a token given by the operator (bootstrap file); else a new one is generated.
  // `requested_by`: the caller's role (ekmd); nullopt: the operator (local mode, bootstrap).
  StatusOr<NewApiToken> StoreNewToken(auth::Role role, const std::string& workspace,
                                      const std::vector<std::string>& environments,
                                      const std::string& description, int64_t now,
                                      int64_t expires_at,
                                      std::optional<auth::PresentedToken> presented,
                                      std::optional<auth::Role> requested_by = std::nullopt) {
    Store::ApiTokenRecord r;
    NewApiToken out;
    if (presented) {
      r.id = presented->id;
      r.secret_sha256 = auth::SecretHash(presented->secret);
    } else {
      EKM_ASSIGN_OR_RETURN(auth::GeneratedToken g, auth::GenerateToken());
      r.id = g.id;
      r.secret_sha256 = std::move(g.secret_sha256);
      out.token = std::move(g.text);
    }
    r.role = std::string(auth::RoleName(role));
    r.workspace = workspace;
    r.environments = environments;
    r.description = description;
    r.created_at = now;
    r.created_by = CurrentActor();
    r.expires_at = expires_at;
    nlohmann::json d = {{"token_id", r.id}, {"role", r.role}, {"expires_at", r.expires_at}};
    if (!environments.empty()) d["environments"] = environments;
    if (requested_by == auth::Role::kAdmin && role == auth::Role::kOwner) {
      // The admin creates a workspace's owner only while none is valid: the first owner, or a
      // recovery after every owner token expired or was revoked (which the customer must see).
      EKM_ASSIGN_OR_RETURN(std::vector<Store::ApiTokenRecord> before,
                           store_->ListApiTokens(workspace));
      const bool had_owners = std::any_of(before.begin(), before.end(), [](const auto& t) {
        return t.role == auth::RoleName(auth::Role::kOwner);
      });
      Status s = store_->CreateOwnerTokenUnlessOneIsValid(r, now);
      if (s.code() == StatusCode::kFailedPrecondition) {
        return PermissionDeniedError(
            "workspace \"" + workspace +
                "\" has a valid owner token: its owners create "
                "further owner tokens; the admin creates one only for a workspace that has none",
            "ask an owner of " + workspace + " (EKM_TOKEN=<owner token> ekm token create -w " +
                workspace +
                " -r owner); once every owner token has expired or been revoked, "
                "the admin can create one again, recorded in the workspace's audit log");
      }
      EKM_RETURN_IF_ERROR(s);
      d["recovery"] = had_owners;
    } else {
      EKM_RETURN_IF_ERROR(store_->CreateApiToken(r));
    }
    RecordTokenEvent(workspace, event::kTokenCreated, std::move(d), "created_by_role",
                     requested_by);
    out.info = TokenInfo(r);
    return out;
  }

  // token.created / token.revoked in the token's workspace's chain ("" for admin tokens), with
  // the caller's role ("operator" in local mode); what the admin does to a workspace's tokens
  // also in the platform chain, where admin actions are recorded.
  void RecordTokenEvent(const std::string& workspace, std::string_view type, nlohmann::json d,
                        std::string_view role_field, std::optional<auth::Role> requested_by) {
    d[std::string(role_field)] = requested_by ? auth::RoleName(*requested_by) : "operator";
    RecordEvent(workspace, "", type, d);
    if (requested_by == auth::Role::kAdmin && !workspace.empty()) {
      d["workspace"] = workspace;
      RecordEvent("", "", type, d);
    }
  }

  // The token's record, from the cache when read less than kApiTokenCacheTtl ago.
  StatusOr<std::optional<Store::ApiTokenRecord>> CachedToken(const std::string& id) {
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      auto it = token_cache_.find(id);
      if (it != token_cache_.end() && now - it->second.read_at < kApiTokenCacheTtl) {
        return std::optional<Store::ApiTokenRecord>(it->second.record);
      }
    }
    EKM_ASSIGN_OR_RETURN(std::optional<Store::ApiTokenRecord> r, store_->GetApiToken(id));
    if (r) {  // unknown ids are not cached: a token created on another node works at once
      std::lock_guard<std::mutex> lock(token_mu_);
      if (token_cache_.size() >= kMaxCachedTokens) token_cache_.clear();
      token_cache_[id] = CachedTokenRecord{*r, now};
    }
    return r;
  }

  struct CachedTokenRecord {
    Store::ApiTokenRecord record;
    std::chrono::steady_clock::time_point read_at;
  };
  static constexpr size_t kMaxCachedTokens = 10000;
  std::mutex token_mu_;
  std::unordered_map<std::string, CachedTokenRecord> token_cache_;

  std::mutex shred_mu_;
  std::unordered_map<std::string, ShredConfirmation> shred_tokens_;

  std::unique_ptr<AuditSigner> audit_signer_;
  // Shared with the streams it counts (which may end after a call returned).
  std::shared_ptr<UsageCounter> usage_ = std::make_shared<UsageCounter>();
  BackgroundLoop audit_tasks_;

  EkmOptions options_;
  StorePtr store_;
  std::unique_ptr<ProviderRegistry> providers_;
  KeyHierarchy keys_;
  // After keys_: its changes move the data-path memos' generation too.
  KeyCache<std::optional<Store::EnvironmentShredRecord>> shred_status_{100000,
                                                                       &keys_.memos().generation()};
};

StatusOr<KeyPolicyAdvice> EkmServiceImpl::KeyPolicy(std::string_view workspace,
                                                    std::string_view environment) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", environment));
  EKM_RETURN_IF_ERROR(StoredEnvironment(workspace, environment).status());
  EKM_ASSIGN_OR_RETURN(std::string principal, PlatformPrincipalArn());
  KeyPolicyStatementOptions o;
  o.platform_principal = principal;
  o.workspace = std::string(workspace);
  KeyPolicyAdvice a;
  EKM_ASSIGN_OR_RETURN(a.statement, KeyPolicyStatementsText(o));
  EKM_ASSIGN_OR_RETURN(PlatformPrincipal p, ParsePlatformPrincipal(principal));
  a.principal_arn = p.arn;
  // The example names a placeholder account as the key's owner (the one the policy doctor's
  // example names too): the admin replaces it with their own account id.
  EKM_ASSIGN_OR_RETURN(a.example_policy, ExampleKeyPolicyText(kExampleKeyAccountId, o));
  return a;
}

StatusOr<std::string> EkmServiceImpl::CheckKeyPolicy(std::string_view workspace,
                                                     std::string_view policy_text) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", workspace));
  EKM_RETURN_IF_ERROR(store_->GetWorkspace(workspace).status());
  auto principal = PlatformPrincipalArn();
  PolicyCheckRequest req;
  req.policy_text = policy_text;
  // JSON mistakes do not depend on the principal: report them even when it is unknown.
  req.platform_principal =
      principal.ok() ? *principal : "arn:aws:iam::000000000000:role/principal-not-configured";
  req.workspace = std::string(workspace);
  EKM_ASSIGN_OR_RETURN(PolicyReport report, ::ekm::CheckKeyPolicy(req));
  if (!principal.ok() && !report.syntax_error) return principal.status();
  nlohmann::ordered_json j = report.ToJson();
  j["granted"] = report.ok();
  j["text"] = report.ToText();
  return JsonText(j);
}

}  // namespace

std::unique_ptr<EkmService> NewEkmService(EkmOptions options, StorePtr store,
                                          std::unique_ptr<ProviderRegistry> providers,
                                          std::unique_ptr<AuditSigner> audit_signer) {
  return std::make_unique<EkmServiceImpl>(std::move(options), std::move(store),
                                          std::move(providers), std::move(audit_signer));
}

}  // namespace ekm
