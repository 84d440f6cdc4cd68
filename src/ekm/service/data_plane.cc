#include <openssl/crypto.h>

#include <algorithm>

#include "ekm/base/non_blocking_scope.h"
#include "ekm/base/random.h"
#include "ekm/service/ekm_service_impl.h"

namespace ekm {

namespace {

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
    // A deferred try is no outcome: the run on the blocking pool counts (non_blocking_scope.h).
    if (counted_ || scope_.empty() || BlockingDeferred()) return;
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
    if (!kept_.empty()) {
      // Input kept by a call that would have waited (base/non_blocking_scope.h), first.
      Status s = FeedKept(out);
      if (!s.ok()) {
        if (BlockingDeferred()) Append(kept_, chunk);
        return s;
      }
    }
    return Feed(chunk, out);
  }
  Status Finish(Bytes* out) override {
    if (!kept_.empty()) EKM_RETURN_IF_ERROR(FeedKept(out));
    EKM_RETURN_IF_ERROR(check_());
    return inner_->Finish(out);
  }
  void ForwardSealInParallel(EnvelopeEncoder::ParallelSealing parallel) {
    pooled_ = parallel.pool != nullptr;
    inner_->SealInParallel(std::move(parallel));
  }

 private:
  // Feeds kept_ (an encrypt stream's plaintext: wiped once fed, as the server wipes its
  // buffers).
  Status FeedKept(Bytes* out) {
    Bytes kept;
    kept.swap(kept_);
    Status s = Feed(kept, out);
    OPENSSL_cleanse(kept.data(), kept.size());
    return s;
  }

  Status Feed(ByteView chunk, Bytes* out) {
    while (!chunk.empty()) {
      // Sealing on a pool (the CLI's bounded 1 MiB chunks) takes a chunk at once: the check is
      // about time (a revocation within the TTL), and a chunk seals in well under a millisecond.
      const size_t n = pooled_ ? chunk.size() : std::min(chunk.size(), kCheckEvery);
      Status s = check_();
      if (s.ok()) {
        s = inner_->Update(chunk.first(n), out);
        if (!s.ok() && BlockingDeferred()) chunk = chunk.subspan(n);  // the inner coder kept it
      }
      if (!s.ok()) {
        // A check or key lookup that would have waited: the rest is fed at the next call,
        // made where it may wait.
        if (BlockingDeferred()) kept_.assign(chunk.begin(), chunk.end());
        return s;
      }
      chunk = chunk.subspan(n);
    }
    return Status::Ok();
  }

  std::unique_ptr<Coder> inner_;
  std::function<Status()> check_;
  bool pooled_ = false;
  Bytes kept_;  // input not yet fed: its key check would have waited
};

}  // namespace

Status EkmServiceImpl::Encrypt(const CallContext& /*ctx*/, std::string_view workspace,
                               std::string_view environment, std::string_view scope,
                               ByteView plaintext, Bytes* out) {
  return EncryptMessage(workspace, environment, scope, plaintext, out, UsageCount::kHere);
}

Status EkmServiceImpl::EncryptMessage(std::string_view workspace, std::string_view environment,
                                      std::string_view scope, ByteView plaintext, Bytes* out,
                                      UsageCount usage) {
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
      if (usage == UsageCount::kHere) CountUsage(e->env, scope, usage_op::kEncrypt, sealed);
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
  if (usage == UsageCount::kHere) CountUsage(env, scope, usage_op::kEncrypt, sealed);
  EKM_RETURN_IF_ERROR(sealed);
  Remember(generation, valid_until, workspace, environment, scope, 0, env, std::move(dk));
  return Status::Ok();
}

void EkmServiceImpl::Remember(uint64_t generation,
                              std::chrono::steady_clock::time_point valid_until,
                              std::string_view workspace, std::string_view environment,
                              std::string_view scope, uint32_t version,
                              const EnvironmentRecord& env, std::shared_ptr<DataKeyHandle> dk) {
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

Status EkmServiceImpl::Decrypt(const CallContext& /*ctx*/, std::string_view workspace,
                               std::string_view environment, ByteView envelope, Bytes* out) {
  return DecryptMessage(workspace, environment, envelope, out, UsageCount::kHere);
}

Status EkmServiceImpl::DecryptMessage(std::string_view workspace, std::string_view environment,
                                      ByteView envelope, Bytes* out, UsageCount usage) {
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
    if (parsed.ok()) return DecryptSingle(workspace, environment, *parsed, whole, out, usage);
  }
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> decoder,
                       OpenDecryptStream(workspace, environment, usage));
  Bytes plain;
  Status s = decoder->Update(envelope, &plain);
  if (s.ok()) s = decoder->Finish(&plain);
  if (!s.ok()) return s;
  Append(*out, plain);
  return Status::Ok();
}

Status EkmServiceImpl::DecryptSingle(std::string_view workspace, std::string_view environment,
                                     const ParsedHeader& parsed, ByteView whole, Bytes* out,
                                     UsageCount usage) {
  const EnvelopeContext& c = parsed.header.context;
  const bool count = usage == UsageCount::kHere;
  // This thread's memo first, as in Encrypt; a header naming another environment always
  // takes the full path (and its error).
  const uint64_t generation = keys_.memos().current_generation();
  if (c.workspace == workspace && c.environment == environment) {
    const auto now = options_.clock->Monotonic();
    DataPathMemos::Block* block = nullptr;
    auto lock = keys_.memos().Lock(&block);
    DataPathMemos::Entry* e = block->Find(generation, now.time_since_epoch().count(), workspace,
                                          environment, c.scope, c.dk_version);
    if (e != nullptr && e->dk->ValidAt(now)) {
      keys_.CountMemoHit();
      Status opened = OpenSingle(parsed, whole, *e->dk->key, out);
      if (count) CountUsage(e->env, c.scope, usage_op::kDecrypt, opened);
      return opened;
    }
  }
  auto valid_until = std::chrono::steady_clock::time_point::max();
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment, &valid_until));
  // Counted with its outcome from here on (the header named the scope): a decrypt refused
  // while the CMK is revoked, or one that does not authenticate, is no decrypt done.
  auto dk = DataKeyFor(env, c);
  Status opened = dk.ok() ? OpenSingle(parsed, whole, *(*dk)->key, out) : dk.status();
  if (count) CountUsage(env, c.scope, usage_op::kDecrypt, opened);
  EKM_RETURN_IF_ERROR(opened);
  if (c.dk_version != 0) {
    Remember(generation, valid_until, workspace, environment, c.scope, c.dk_version, env,
             std::move(*dk));
  }
  return Status::Ok();
}

StatusOr<std::shared_ptr<DataKeyHandle>> EkmServiceImpl::DataKeyFor(const EnvironmentRecord& env,
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

StatusOr<std::unique_ptr<EnvelopeEncoder>> EkmServiceImpl::NewEncryptStream(
    const CallContext& /*ctx*/, std::string_view workspace, std::string_view environment,
    std::string_view scope, bool text) {
  return OpenEncryptStream(workspace, environment, scope, text, UsageCount::kHere);
}

StatusOr<std::unique_ptr<EnvelopeEncoder>> EkmServiceImpl::OpenEncryptStream(
    std::string_view workspace, std::string_view environment, std::string_view scope, bool text,
    UsageCount usage) {
  EKM_RETURN_IF_ERROR(ValidateScope(scope));
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
  const bool count = usage == UsageCount::kHere;
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
  auto counted = std::make_shared<StreamUsage>(usage_, options_.clock, env.workspace, env.name,
                                               usage_op::kEncrypt, std::string(scope));
  if (!encoder.ok()) return counted->End(encoder.status());
  return std::unique_ptr<EnvelopeEncoder>(
      new CountedCoder<EnvelopeEncoder>(std::move(encoder).value(), std::move(counted)));
}

StatusOr<std::unique_ptr<EnvelopeDecoder>> EkmServiceImpl::NewDecryptStream(
    const CallContext& /*ctx*/, std::string_view workspace, std::string_view environment) {
  return OpenDecryptStream(workspace, environment, UsageCount::kHere);
}

StatusOr<std::unique_ptr<EnvelopeDecoder>> EkmServiceImpl::OpenDecryptStream(
    std::string_view workspace, std::string_view environment, UsageCount usage) {
  EKM_ASSIGN_OR_RETURN(EnvironmentRecord env, Environment(workspace, environment));
  // One envelope, one decrypt: counted when the stream ends, under the scope its header names.
  std::shared_ptr<StreamUsage> counted;
  if (usage == UsageCount::kHere) {
    counted = std::make_shared<StreamUsage>(usage_, options_.clock, env.workspace, env.name,
                                            usage_op::kDecrypt);
  }
  auto key = std::make_shared<StreamKey>();
  key->workspace = std::string(workspace);
  key->environment = std::string(environment);
  auto lookup = [this, env, counted,
                 key](const EnvelopeHeader& h) -> StatusOr<std::shared_ptr<const SecretBytes>> {
    if (counted) counted->NameScope(h.context.scope);
    EKM_ASSIGN_OR_RETURN(std::shared_ptr<DataKeyHandle> dk, DataKeyFor(env, h.context));
    key->scope = h.context.scope;
    key->version = h.context.dk_version;  // checked from here on
    return dk->key;
  };
  std::unique_ptr<EnvelopeDecoder> decoder(new KeyCheckedCoder<EnvelopeDecoder>(
      EnvelopeDecoder::Create(std::move(lookup)), [this, key] { return CheckStreamKey(*key); }));
  if (!counted) return decoder;
  return std::unique_ptr<EnvelopeDecoder>(
      new CountedCoder<EnvelopeDecoder>(std::move(decoder), std::move(counted)));
}

Status EkmServiceImpl::CheckStreamKey(StreamKey& k) {
  if (k.version == 0) return Status::Ok();
  const auto now = options_.clock->Monotonic();
  const uint64_t generation = keys_.memos().current_generation();
  if (k.dk != nullptr && generation == k.generation && now < k.valid_until && k.dk->ValidAt(now)) {
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

StatusOr<RewrapResult> EkmServiceImpl::Rewrap(const CallContext& /*ctx*/,
                                              std::string_view workspace,
                                              std::string_view environment, ByteView envelope,
                                              Bytes* out) {
  // Counted once, as a rewrap with its outcome (once the ciphertext's header named the scope),
  // not as its inner decrypt and encrypt.
  std::optional<EnvironmentRecord> env;
  std::string scope;
  StatusOr<RewrapResult> result =
      RewrapUncounted(workspace, environment, envelope, out, &env, &scope);
  if (env) CountUsage(*env, scope, usage_op::kRewrap, result.status());
  return result;
}

StatusOr<RewrapResult> EkmServiceImpl::RewrapUncounted(
    std::string_view workspace, std::string_view environment, ByteView envelope, Bytes* out,
    std::optional<EnvironmentRecord>* counted_env, std::string* counted_scope) {
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
  Bytes rewrapped;
  EKM_RETURN_IF_ERROR(Reencrypt(workspace, environment, parsed, envelope, &rewrapped));
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

Status EkmServiceImpl::Reencrypt(std::string_view workspace, std::string_view environment,
                                 const ParsedHeader& parsed, ByteView envelope, Bytes* rewrapped) {
  const EnvelopeContext& from = parsed.header.context;
  // The plaintext passes through here one piece at a time and is wiped after each use.
  EKM_ASSIGN_OR_RETURN(std::unique_ptr<EnvelopeDecoder> decoder,
                       OpenDecryptStream(workspace, environment, UsageCount::kByCaller));
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
    EKM_RETURN_IF_ERROR(EncryptMessage(workspace, environment, from.scope, plain, rewrapped,
                                       UsageCount::kByCaller));
  } else {
    EKM_ASSIGN_OR_RETURN(
        std::unique_ptr<EnvelopeEncoder> encoder,
        OpenEncryptStream(workspace, environment, from.scope, false, UsageCount::kByCaller));
    constexpr size_t kChunk = 64 * 1024;
    plain.reserve(2 * kMaxSegmentSize);
    for (size_t off = 0; off < envelope.size(); off += kChunk) {
      ByteView piece = envelope.subspan(off, std::min(kChunk, envelope.size() - off));
      EKM_RETURN_IF_ERROR(decoder->Update(piece, &plain));
      EKM_RETURN_IF_ERROR(encoder->Update(plain, rewrapped));
      wipe();
    }
    EKM_RETURN_IF_ERROR(decoder->Finish(&plain));
    EKM_RETURN_IF_ERROR(encoder->Update(plain, rewrapped));
    EKM_RETURN_IF_ERROR(encoder->Finish(rewrapped));
  }
  return Status::Ok();
}

StatusOr<GeneratedDataKey> EkmServiceImpl::GenerateDataKey(const CallContext& /*ctx*/,
                                                           std::string_view workspace,
                                                           std::string_view environment,
                                                           std::string_view scope, size_t size,
                                                           bool with_plaintext) {
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
  // Counted below as generate_data_key, not as an encrypt.
  sealed = EncryptMessage(workspace, environment, scope, key.RevealForCrypto(), &out.ciphertext,
                          UsageCount::kByCaller);
  CountUsage(env, scope, usage_op::kGenerateDataKey, sealed);
  EKM_RETURN_IF_ERROR(sealed);
  if (with_plaintext) out.plaintext = std::move(key);
  return out;
}

StatusOr<std::vector<StatusOr<Bytes>>> EkmServiceImpl::EncryptBatch(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<BatchEncryptItem>& items) {
  EKM_RETURN_IF_ERROR(CheckBatchSize(items.size()));
  UsageCounter::Hold hold(usage_.get());  // counted once, where the batch completes
  // The environment first: a missing one is the request's error, not every item's.
  EKM_RETURN_IF_ERROR(Environment(workspace, environment).status());
  std::vector<StatusOr<Bytes>> out;
  out.reserve(items.size());
  for (const BatchEncryptItem& item : items) {
    Bytes ct;
    Status s = Encrypt(ctx, workspace, environment, item.scope, item.plaintext, &ct);
    if (IsOutage(s)) return s;
    out.push_back(s.ok() ? StatusOr<Bytes>(std::move(ct)) : StatusOr<Bytes>(s));
  }
  return out;
}

StatusOr<std::vector<StatusOr<Bytes>>> EkmServiceImpl::DecryptBatch(
    const CallContext& ctx, std::string_view workspace, std::string_view environment,
    const std::vector<Bytes>& envelopes) {
  EKM_RETURN_IF_ERROR(CheckBatchSize(envelopes.size()));
  UsageCounter::Hold hold(usage_.get());  // counted once, where the batch completes
  EKM_RETURN_IF_ERROR(Environment(workspace, environment).status());
  std::vector<StatusOr<Bytes>> out;
  out.reserve(envelopes.size());
  for (const Bytes& envelope : envelopes) {
    Bytes plain;
    Status s = Decrypt(ctx, workspace, environment, envelope, &plain);
    if (IsOutage(s)) return s;
    out.push_back(s.ok() ? StatusOr<Bytes>(std::move(plain)) : StatusOr<Bytes>(s));
  }
  return out;
}

bool EkmServiceImpl::IsOutage(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded;
}

Status EkmServiceImpl::CheckBatchSize(size_t n) {
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

void EkmServiceImpl::CountUsage(const EnvironmentRecord& env, std::string_view scope,
                                std::string_view op, const Status& result) {
  if (BlockingDeferred()) return;  // the run on the blocking pool counts (non_blocking_scope.h)
  usage_->Count(env.workspace, env.name, scope, op, UsageOutcomeOf(result),
                ToUnixSeconds(options_.clock->NowCoarse()) / 60);
}

}  // namespace ekm
