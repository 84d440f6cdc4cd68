#include "ekm/envelope/envelope.h"

#include <algorithm>
#include <cstring>

#include "ekm/base/encoding.h"
#include "ekm/base/endian.h"
#include "ekm/base/non_blocking_scope.h"
#include "ekm/base/random.h"
#include "ekm/crypto/aes_gcm.h"
#include "ekm/crypto/hkdf.h"

namespace ekm {

namespace {

constexpr size_t kFixedPrefix = 5;  // magic (3) | version (1) | type (1)
constexpr std::string_view kStreamInfo = "ekm stream v1";
constexpr size_t kSegmentTrailer = 5;  // segment index (4) | last flag (1)

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string DescribeChar(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%02x", u);
  return u == ' ' ? "' ' (space)" : std::string(buf);
}

Status ValidateIdentifier(std::string_view what, std::string_view name, size_t max,
                          bool (*allowed)(char), std::string_view rule) {
  if (name.empty()) {
    return InvalidArgumentError(std::string(what) + " name is empty", std::string(rule));
  }
  if (name.size() > max) {
    return InvalidArgumentError(std::string(what) + " name is " + std::to_string(name.size()) +
                                    " characters long; the limit is " + std::to_string(max),
                                std::string(rule));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!allowed(c) || (i == 0 && !alnum)) {
      return InvalidArgumentError(std::string(what) + " name " + Quote(name) +
                                      " has an invalid character " + DescribeChar(c) +
                                      " at position " + std::to_string(i + 1),
                                  std::string(rule));
    }
  }
  return Status::Ok();
}

constexpr bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}
constexpr bool ScopeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '/' || c == '@';
}

// magic | version | type | 3 length-prefixed names | dk_version, then the type's own fields.
size_t HeaderSize(const EnvelopeContext& c, EnvelopeType type) {
  return kFixedPrefix + 3 + c.workspace.size() + c.environment.size() + c.scope.size() + 4 +
         (type == EnvelopeType::kSingle ? 12 : 4 + kStreamSaltSize);
}

// Writes the part both forms share; returns where the type's own fields go.
uint8_t* WriteHeaderPrefix(const EnvelopeContext& c, EnvelopeType type, uint8_t* p) {
  std::memcpy(p, kEnvelopeMagic, 3);
  p[3] = kEnvelopeVersion;
  p[4] = static_cast<uint8_t>(type);
  p += kFixedPrefix;
  for (const std::string* s : {&c.workspace, &c.environment, &c.scope}) {
    *p++ = static_cast<uint8_t>(s->size());
    if (!s->empty()) std::memcpy(p, s->data(), s->size());
    p += s->size();
  }
  StoreBigEndian32(p, c.dk_version);
  return p + 4;
}

void AppendHeader(const EnvelopeHeader& h, Bytes* out) {
  const size_t at = out->size();
  out->resize(at + HeaderSize(h.context, h.type));
  uint8_t* p = WriteHeaderPrefix(h.context, h.type, out->data() + at);
  if (h.type == EnvelopeType::kSingle) {
    std::memcpy(p, h.nonce.data(), h.nonce.size());
  } else {
    StoreBigEndian32(p, h.segment_size);
    std::memcpy(p + 4, h.salt.data(), h.salt.size());
  }
}

Status ValidateContext(const EnvelopeContext& c) {
  EKM_RETURN_IF_ERROR(ValidateName("workspace", c.workspace));
  EKM_RETURN_IF_ERROR(ValidateName("environment", c.environment));
  EKM_RETURN_IF_ERROR(ValidateScope(c.scope));
  if (c.dk_version == 0) return InvalidArgumentError("data key version 0 is not valid");
  return Status::Ok();
}

Status Truncated(size_t need, size_t got) {
  return DataLossError("ciphertext is truncated: its header needs " + std::to_string(need) +
                       " bytes, got " + std::to_string(got));
}

constexpr uint8_t kUtf8Bom[3] = {0xEF, 0xBB, 0xBF};

// The first bytes of what was given, for messages: text quoted, anything else in hex.
std::string DescribeStart(ByteView in) {
  ByteView head = in.first(std::min<size_t>(in.size(), 8));
  bool printable =
      std::all_of(head.begin(), head.end(), [](uint8_t c) { return c >= 0x20 && c < 0x7f; });
  if (printable) return Quote(AsChars(head)) + (in.size() > head.size() ? "…" : "");
  std::string out;
  for (uint8_t c : head) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "%s0x%02x", out.empty() ? "" : " ", c);
    out += buf;
  }
  return "the bytes " + out + (in.size() > head.size() ? " …" : "");
}

// Input that is neither form: no "EKM" magic (binary) and no "ekm1:" prefix (text).
Status NotEkm(ByteView start) {
  if (start.size() >= 3 && std::equal(kUtf8Bom, kUtf8Bom + 3, start.begin())) {
    return InvalidArgumentError(
        "not an ekm ciphertext: it starts with a byte order mark (0xef 0xbb 0xbf), not with "
        "\"ekm1:\"",
        "save the text without a byte order mark (UTF-8 without BOM), or copy the ciphertext "
        "itself");
  }
  std::string_view text = AsChars(start.first(std::min<size_t>(start.size(), 256)));
  size_t at = text.find(kEnvelopeTextPrefix);
  return InvalidArgumentError(
      "not an ekm ciphertext: no ekm magic (it starts with " + DescribeStart(start) +
          ", where a ciphertext starts with \"EKM\" in binary form or \"ekm1:\" in text form)",
      at != std::string_view::npos
          ? "the ciphertext begins at character " + std::to_string(at + 1) +
                " (ekm1:): pass it alone, without what comes before it"
          : "pass the output of `ekm encrypt` or of the encrypt API");
}

// A text form whose base64 does not decode to an envelope.
Status NotEkmText() {
  return InvalidArgumentError(
      "not an ekm ciphertext: the text starts with ekm1: but what follows does not decode to "
      "an ekm ciphertext (no ekm magic: the characters after ekm1: start with RUtN in every "
      "ciphertext)",
      "pass the whole text that `ekm encrypt --text` or the encrypt API wrote, unchanged");
}

bool HasMagic(ByteView in) {
  return in.size() >= 3 && std::equal(kEnvelopeMagic, kEnvelopeMagic + 3, in.begin());
}

// Decoded text that cannot be (the start of) an envelope.
bool DecodedIsNotEkm(ByteView in) {
  const size_t n = std::min<size_t>(in.size(), 3);
  return n > 0 && !std::equal(in.begin(), in.begin() + static_cast<ptrdiff_t>(n), kEnvelopeMagic);
}

void SegmentNonce(uint32_t index, bool last, uint8_t nonce[12]) {
  std::memset(nonce, 0, 7);
  StoreBigEndian32(nonce + 7, index);
  nonce[11] = last ? 1 : 0;
}

StatusOr<SecretBytes> StreamKey(const SecretBytes& dk, const EnvelopeHeader& h,
                                ByteView header_bytes) {
  Bytes info(kStreamInfo.begin(), kStreamInfo.end());
  Append(info, header_bytes);
  return HkdfSha256(dk, h.salt, info, kAesGcmKeySize);
}

// AAD of segment i: header | i | last. `aad` holds the header already, plus 5 spare bytes.
void SetSegmentAad(Bytes& aad, size_t header_size, uint32_t index, bool last) {
  aad.resize(header_size + kSegmentTrailer);
  StoreBigEndian32(aad.data() + header_size, index);
  aad[header_size + 4] = last ? 1 : 0;
}

Status AuthFailure() {
  return DataLossError(
      "ciphertext failed authentication: it was modified, truncated, or belongs to another "
      "workspace, environment or scope");
}

bool IsSpace(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// --- base64url streaming ---------------------------------------------------------------------

constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void EncodeGroups(ByteView in, Bytes* out) {  // in.size() % 3 == 0 except at the very end
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out->push_back(kB64Url[(v >> 18) & 63]);
    out->push_back(kB64Url[(v >> 12) & 63]);
    out->push_back(kB64Url[(v >> 6) & 63]);
    out->push_back(kB64Url[v & 63]);
  }
  size_t rest = in.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{in[i]} << 16;
    out->push_back(kB64Url[(v >> 18) & 63]);
    out->push_back(kB64Url[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    out->push_back(kB64Url[(v >> 18) & 63]);
    out->push_back(kB64Url[(v >> 12) & 63]);
    out->push_back(kB64Url[(v >> 6) & 63]);
  }
}

int8_t B64Value(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return static_cast<int8_t>(c - 'A');
  if (c >= 'a' && c <= 'z') return static_cast<int8_t>(c - 'a' + 26);
  if (c >= '0' && c <= '9') return static_cast<int8_t>(c - '0' + 52);
  if (c == '-' || c == '+') return 62;
  if (c == '_' || c == '/') return 63;
  return -1;
}

class Base64Decoder {
 public:
  // Decodes what it can; keeps up to 3 pending characters.
  Status Update(ByteView in, Bytes* out) {
    for (uint8_t c : in) {
      ++position_;
      if (IsSpace(c)) continue;
      if (c == '=') {
        padding_ = true;
        continue;
      }
      int8_t v = B64Value(c);
      if (v < 0 || padding_) {
        return InvalidArgumentError("text ciphertext has an invalid character " +
                                    DescribeChar(static_cast<char>(c)) + " at position " +
                                    std::to_string(position_));
      }
      acc_ = (acc_ << 6) | static_cast<uint32_t>(v);
      if (++count_ == 4) {
        out->push_back(static_cast<uint8_t>(acc_ >> 16));
        out->push_back(static_cast<uint8_t>(acc_ >> 8));
        out->push_back(static_cast<uint8_t>(acc_));
        acc_ = 0;
        count_ = 0;
      }
    }
    return Status::Ok();
  }
  Status Finish(Bytes* out) {
    if (count_ == 1) return DataLossError("text ciphertext is truncated (a dangling character)");
    if (count_ == 2) out->push_back(static_cast<uint8_t>(acc_ >> 4));
    if (count_ == 3) {
      out->push_back(static_cast<uint8_t>(acc_ >> 10));
      out->push_back(static_cast<uint8_t>(acc_ >> 2));
    }
    count_ = 0;
    return Status::Ok();
  }

 private:
  uint32_t acc_ = 0;
  int count_ = 0;
  size_t position_;
  bool padding_ = false;

 public:
  explicit Base64Decoder(size_t start_position) : position_(start_position) {}
};

// --- encoder ---------------------------------------------------------------------------------

class StreamEncoder : public EnvelopeEncoder {
 public:
  StreamEncoder(EnvelopeHeader header, Bytes header_bytes, SecretBytes stream_key, bool text)
      : header_(std::move(header)),
        aad_(std::move(header_bytes)),
        header_size_(aad_.size()),
        key_(std::move(stream_key)),
        text_(text) {
    pending_.reserve(header_.segment_size * 2);
  }

  // A full segment is sealed only once more input follows it (the last segment is flagged).
  // Whole segments are sealed straight from `chunk`; only a tail shorter than a segment (or one
  // that may be the last) is copied, into pending_.
  Status Update(ByteView chunk, Bytes* out) override {
    if (finished_) return FailedPreconditionError("encoder already finished");
    EKM_RETURN_IF_ERROR(EmitHeader(out));
    const size_t segment = header_.segment_size;
    consumed_ += chunk.size();
    // More input follows this chunk for certain (the caller said how much comes): nothing needs
    // holding back for the last flag.
    const bool more_follows = input_size_ && consumed_ < *input_size_;
    if (!pending_.empty()) {
      const size_t take = std::min(segment - pending_.size(), chunk.size());
      pending_.insert(pending_.end(), chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(take));
      chunk = chunk.subspan(take);
      if (chunk.empty() && !(more_follows && pending_.size() == segment)) return Status::Ok();
      EKM_RETURN_IF_ERROR(SealSegment(pending_, false, out));
      pending_.clear();
    }
    if (chunk.empty()) return Status::Ok();
    const size_t whole = more_follows ? chunk.size() / segment : (chunk.size() - 1) / segment;
    EKM_RETURN_IF_ERROR(SealWholeSegments(chunk.first(whole * segment), out));
    const ByteView tail = chunk.subspan(whole * segment);
    pending_.assign(tail.begin(), tail.end());
    return Status::Ok();
  }

  void SealInParallel(ParallelSealing parallel) override {
    pool_ = parallel.pool;
    input_size_ = parallel.input_size;
    sink_ = std::move(parallel.sink);
  }

  Status Finish(Bytes* out) override {
    if (finished_) return FailedPreconditionError("encoder already finished");
    EKM_RETURN_IF_ERROR(EmitHeader(out));
    EKM_RETURN_IF_ERROR(SealSegment(pending_, true, out));
    pending_.clear();
    finished_ = true;
    if (text_) {
      EncodeGroups(carry_, out);
      carry_.clear();
      out->push_back('\n');
    }
    return Status::Ok();
  }

 private:
  Status EmitHeader(Bytes* out) {
    if (header_emitted_) return Status::Ok();
    header_emitted_ = true;
    if (text_) out->insert(out->end(), kEnvelopeTextPrefix.begin(), kEnvelopeTextPrefix.end());
    Emit(ByteView(aad_.data(), header_size_), out);
    return Status::Ok();
  }

  Status SealSegment(ByteView plain, bool last, Bytes* out) {
    if (segment_index_ == UINT32_MAX) {
      return ResourceExhaustedError("stream too long: more than 2^32 segments");
    }
    uint8_t nonce[12];
    SegmentNonce(segment_index_, last, nonce);
    SetSegmentAad(aad_, header_size_, segment_index_, last);
    Bytes* target = text_ ? &scratch_ : out;
    if (text_) scratch_.clear();
    size_t at = target->size();
    target->resize(at + plain.size() + kAesGcmTagSize);
    EKM_RETURN_IF_ERROR(AesGcmSeal(key_, ByteView(nonce, 12), aad_, plain, target->data() + at));
    if (text_) Emit(scratch_, out);
    ++segment_index_;
    return Status::Ok();
  }

  // Seals plain.size() / segment_size non-last segments; on the pool when there is one (the
  // binary form only: the text form's base64 runs through one carry).
  Status SealWholeSegments(ByteView plain, Bytes* out) {
    const size_t segment = header_.segment_size;
    const size_t count = plain.size() / segment;
    if (pool_ == nullptr || text_ || count < 2) {
      for (size_t i = 0; i < count; ++i) {
        EKM_RETURN_IF_ERROR(SealSegment(plain.subspan(i * segment, segment), false, out));
      }
      return Status::Ok();
    }
    if (count > UINT32_MAX - segment_index_) {
      return ResourceExhaustedError("stream too long: more than 2^32 segments");
    }
    const size_t sealed_size = segment + kAesGcmTagSize;
    // With a sink: what `out` holds goes first, then the segments from sealed_, which only ever
    // grows (so it is zero-filled once, not per chunk). Without one: appended to `out`.
    uint8_t* target;
    size_t at = 0;
    if (sink_) {
      if (!out->empty()) {
        EKM_RETURN_IF_ERROR(sink_(*out));
        out->clear();
      }
      if (sealed_.size() < count * sealed_size) sealed_.resize(count * sealed_size);
      target = sealed_.data();
    } else {
      at = out->size();
      out->resize(at + count * sealed_size);
      target = out->data() + at;
    }
    if (segment_aads_.size() < count) segment_aads_.resize(count, aad_);
    std::vector<Status> results(count);
    pool_->ParallelFor(count, [&](size_t i) {
      const uint32_t index = segment_index_ + static_cast<uint32_t>(i);
      uint8_t nonce[12];
      SegmentNonce(index, false, nonce);
      SetSegmentAad(segment_aads_[i], header_size_, index, false);
      results[i] = AesGcmSeal(key_, ByteView(nonce, 12), segment_aads_[i],
                              plain.subspan(i * segment, segment), target + i * sealed_size);
    });
    for (Status& s : results) {
      if (!s.ok()) {
        if (!sink_) out->resize(at);
        return std::move(s);
      }
    }
    segment_index_ += static_cast<uint32_t>(count);
    if (sink_) return sink_(ByteView(sealed_.data(), count * sealed_size));
    return Status::Ok();
  }

  // Binary output goes straight out; text output is base64url in whole 3-byte groups.
  void Emit(ByteView bytes, Bytes* out) {
    if (!text_) {
      Append(*out, bytes);
      return;
    }
    carry_.insert(carry_.end(), bytes.begin(), bytes.end());
    size_t whole = carry_.size() / 3 * 3;
    EncodeGroups(ByteView(carry_.data(), whole), out);
    carry_.erase(carry_.begin(), carry_.begin() + static_cast<ptrdiff_t>(whole));
  }

  EnvelopeHeader header_;
  Bytes aad_;  // header bytes, then the segment trailer
  size_t header_size_;
  SecretBytes key_;
  bool text_;
  bool header_emitted_ = false;
  bool finished_ = false;
  uint32_t segment_index_ = 0;
  Bytes pending_;
  Bytes carry_;
  Bytes scratch_;
  WorkerPool* pool_ = nullptr;
  std::optional<uint64_t> input_size_;
  uint64_t consumed_ = 0;
  std::function<Status(ByteView)> sink_;
  Bytes sealed_;                     // with a sink: segments sealed side by side, handed out
  std::vector<Bytes> segment_aads_;  // one AAD buffer per segment sealed side by side
};

StatusOr<std::unique_ptr<EnvelopeEncoder>> NewStreamEncoder(
    const EnvelopeContext& context, const SecretBytes& dk, bool text, uint32_t segment_size,
    std::span<const uint8_t, kStreamSaltSize> salt) {
  EKM_RETURN_IF_ERROR(ValidateContext(context));
  if (segment_size < kMinSegmentSize || segment_size > kMaxSegmentSize) {
    return InvalidArgumentError("segment size must be between 4 KiB and 4 MiB");
  }
  EnvelopeHeader h;
  h.type = EnvelopeType::kStream;
  h.context = context;
  h.segment_size = segment_size;
  std::copy(salt.begin(), salt.end(), h.salt.begin());
  Bytes header_bytes = SerializeHeader(h);
  EKM_ASSIGN_OR_RETURN(SecretBytes key, StreamKey(dk, h, header_bytes));
  return std::unique_ptr<EnvelopeEncoder>(
      new StreamEncoder(std::move(h), std::move(header_bytes), std::move(key), text));
}

// --- decoder ---------------------------------------------------------------------------------

class Decoder : public EnvelopeDecoder {
 public:
  Decoder(DataKeyLookup lookup, size_t max_single_size)
      : lookup_(std::move(lookup)), max_single_size_(max_single_size) {}

  Status Update(ByteView chunk, Bytes* out) override {
    if (!error_.ok()) return error_;
    Status s = Feed(chunk, out);
    // A key lookup that would have waited (base/non_blocking_scope.h) kept the input: the
    // caller calls again, with nothing new, where it may wait.
    if (!s.ok() && !BlockingDeferred()) error_ = s;
    return s;
  }

  Status Finish(Bytes* out) override {
    if (!error_.ok()) return error_;
    Status s = DoFinish(out);
    if (!s.ok() && BlockingDeferred()) return s;  // called again where it may wait
    error_ = s.ok() ? FailedPreconditionError("decoder already finished") : s;
    return s;
  }

 private:
  enum class Form { kUnknown, kBinary, kText };

  Status Feed(ByteView chunk, Bytes* out) {
    if (form_ == Form::kUnknown) {
      // Leading whitespace can only precede the text form; a binary envelope starts with "EKM".
      size_t i = 0;
      if (sniff_.empty()) {
        while (i < chunk.size() && IsSpace(chunk[i])) ++i;
        consumed_ += i;
      }
      sniff_.insert(sniff_.end(), chunk.begin() + static_cast<ptrdiff_t>(i), chunk.end());
      if (sniff_.empty()) return Status::Ok();
      if (sniff_[0] == 'E') {
        form_ = Form::kBinary;
      } else if (sniff_[0] == 'e') {
        size_t n = std::min(sniff_.size(), kEnvelopeTextPrefix.size());
        // The prefix is public.
        if (std::memcmp(sniff_.data(), kEnvelopeTextPrefix.data(), n) != 0) {  // NOLINT(grep-lint)
          return NotEkm(sniff_);
        }
        if (sniff_.size() < kEnvelopeTextPrefix.size()) return Status::Ok();
        form_ = Form::kText;
        text_ = std::make_unique<Base64Decoder>(consumed_ + kEnvelopeTextPrefix.size());
        Bytes rest(sniff_.begin() + static_cast<ptrdiff_t>(kEnvelopeTextPrefix.size()),
                   sniff_.end());
        sniff_.clear();
        return FeedText(rest, out);
      } else {
        return NotEkm(sniff_);
      }
      Bytes first;
      first.swap(sniff_);
      return FeedBinary(first, out);
    }
    if (form_ == Form::kText) return FeedText(chunk, out);
    return FeedBinary(chunk, out);
  }

  Status FeedText(ByteView chunk, Bytes* out) {
    decoded_.clear();
    EKM_RETURN_IF_ERROR(text_->Update(chunk, &decoded_));
    return FeedBinary(decoded_, out);
  }

  Status FeedBinary(ByteView chunk, Bytes* out) {
    buf_.insert(buf_.end(), chunk.begin(), chunk.end());
    if (!have_header_) {
      size_t need = HeaderBytesNeeded(Available());
      if (need > 0) return Status::Ok();
      EKM_RETURN_IF_ERROR(StartBody());
    }
    return Drain(out, /*at_end=*/false);
  }

  Status StartBody() {
    // In the text form the bytes were decoded from base64: say so, not "does not start".
    if (form_ == Form::kText && DecodedIsNotEkm(Available())) return NotEkmText();
    EKM_ASSIGN_OR_RETURN(parsed_, ParseHeader(Available()));
    have_header_ = true;
    header_bytes_.assign(buf_.begin() + static_cast<ptrdiff_t>(pos_),
                         buf_.begin() + static_cast<ptrdiff_t>(pos_ + parsed_.size));
    pos_ += parsed_.size;
    auto dk = lookup_(parsed_.header);
    if (!dk.ok()) {
      if (BlockingDeferred()) {  // looked up again at the next call: as if the header just came
        have_header_ = false;
        pos_ -= parsed_.size;
      }
      return dk.status();
    }
    dk_ = std::move(dk).value();
    if (!dk_) return InternalError("no data key returned for the envelope");
    if (parsed_.header.type == EnvelopeType::kStream) {
      EKM_ASSIGN_OR_RETURN(stream_key_, StreamKey(*dk_, parsed_.header, header_bytes_));
      aad_ = header_bytes_;
    }
    return Status::Ok();
  }

  ByteView Available() const { return ByteView(buf_.data() + pos_, buf_.size() - pos_); }

  void Compact() {
    if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(pos_));
      pos_ = 0;
    }
  }

  Status Drain(Bytes* out, bool at_end) {
    if (parsed_.header.type == EnvelopeType::kSingle) {
      if (Available().size() > max_single_size_ + kAesGcmTagSize) {
        return ResourceExhaustedError(
            "single-form ciphertext is larger than " + std::to_string(max_single_size_) + " bytes",
            "encrypt large data as a stream (ekm encrypt, or the octet-stream API)");
      }
      if (!at_end) return Status::Ok();
      ByteView body = Available();
      if (body.size() < kAesGcmTagSize) return AuthFailure();
      size_t at = out->size();
      out->resize(at + body.size() - kAesGcmTagSize);
      Status s = AesGcmOpen(*dk_, parsed_.header.nonce, header_bytes_, body, out->data() + at);
      if (!s.ok()) {
        out->resize(at);
        return s;
      }
      pos_ = buf_.size();
      return Status::Ok();
    }
    const size_t seg = size_t{parsed_.header.segment_size} + kAesGcmTagSize;
    // A full segment is known not to be the last once any byte follows it.
    while (Available().size() > seg) {
      EKM_RETURN_IF_ERROR(OpenSegment(Available().first(seg), false, out));
      pos_ += seg;
    }
    if (at_end) {
      ByteView last = Available();
      if (last.size() < kAesGcmTagSize) {
        return DataLossError("ciphertext is truncated: the final segment is missing");
      }
      EKM_RETURN_IF_ERROR(OpenSegment(last, true, out));
      pos_ = buf_.size();
    }
    Compact();
    return Status::Ok();
  }

  Status OpenSegment(ByteView sealed, bool last, Bytes* out) {
    uint8_t nonce[12];
    SegmentNonce(segment_index_, last, nonce);
    SetSegmentAad(aad_, header_bytes_.size(), segment_index_, last);
    size_t at = out->size();
    out->resize(at + sealed.size() - kAesGcmTagSize);
    Status s = AesGcmOpen(stream_key_, ByteView(nonce, 12), aad_, sealed, out->data() + at);
    if (!s.ok()) {
      out->resize(at);
      return last ? s : AuthFailure();
    }
    ++segment_index_;
    return Status::Ok();
  }

  Status DoFinish(Bytes* out) {
    if (form_ == Form::kUnknown) {
      if (sniff_.empty()) return DataLossError("ciphertext is empty");
      return NotEkm(sniff_);  // only a partial "ekm1:" prefix arrived
    }
    if (form_ == Form::kText && !text_finished_) {
      decoded_.clear();
      EKM_RETURN_IF_ERROR(text_->Finish(&decoded_));
      buf_.insert(buf_.end(), decoded_.begin(), decoded_.end());
      text_finished_ = true;  // (a Finish deferred by its key lookup comes back here)
    }
    if (!have_header_) {
      size_t need = HeaderBytesNeeded(Available());
      if (need > 0) return Truncated(Available().size() + need, Available().size());
      EKM_RETURN_IF_ERROR(StartBody());
    }
    return Drain(out, /*at_end=*/true);
  }

  DataKeyLookup lookup_;
  size_t max_single_size_;
  Status error_;
  Form form_ = Form::kUnknown;
  bool text_finished_ = false;
  size_t consumed_ = 0;
  Bytes sniff_;
  std::unique_ptr<Base64Decoder> text_;
  Bytes decoded_;
  Bytes buf_;
  size_t pos_ = 0;
  bool have_header_ = false;
  ParsedHeader parsed_;
  Bytes header_bytes_;
  Bytes aad_;
  std::shared_ptr<const SecretBytes> dk_;
  SecretBytes stream_key_;
  uint32_t segment_index_ = 0;
};

}  // namespace

namespace {

// The data path checks names on every call: a table lookup per character, and the error (with
// its message) only built when the check fails.
using CharTable = std::array<bool, 256>;
constexpr CharTable MakeTable(bool (*allowed)(char)) {
  CharTable t{};
  for (int c = 0; c < 256; ++c) t[static_cast<size_t>(c)] = allowed(static_cast<char>(c));
  return t;
}
constexpr CharTable kNameChars = MakeTable(NameChar);
constexpr CharTable kScopeChars = MakeTable(ScopeChar);

bool IsValidIdentifier(std::string_view name, size_t max, const CharTable& allowed) {
  if (name.empty() || name.size() > max) return false;
  const auto first = static_cast<unsigned char>(name[0]);
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') ||
        (first >= '0' && first <= '9'))) {
    return false;
  }
  bool ok = true;
  for (char c : name) ok &= allowed[static_cast<unsigned char>(c)];
  return ok;
}

}  // namespace

Status ValidateName(std::string_view what, std::string_view name) {
  if (IsValidIdentifier(name, kMaxNameSize, kNameChars)) return Status::Ok();
  return ValidateIdentifier(what, name, kMaxNameSize, NameChar,
                            "use 1-64 characters a-z, 0-9, '-', '_', '.', starting with a letter "
                            "or digit");
}

Status ValidateScope(std::string_view scope) {
  if (IsValidIdentifier(scope, kMaxScopeSize, kScopeChars)) return Status::Ok();
  return ValidateIdentifier("scope", scope, kMaxScopeSize, ScopeChar,
                            "use 1-128 characters A-Z, a-z, 0-9, '-', '_', '.', ':', '/', '@', "
                            "starting with a letter or digit");
}

Bytes SerializeHeader(const EnvelopeHeader& header) {
  Bytes out;
  AppendHeader(header, &out);
  return out;
}

size_t HeaderBytesNeeded(ByteView p) {
  auto need = [&](size_t total) -> size_t { return total > p.size() ? total - p.size() : 0; };
  // Known bad already (magic, version, type, a name length)? Then no more bytes are needed to
  // say so: garbage is "not an ekm ciphertext" or "corrupt", never "truncated".
  for (size_t i = 0; i < p.size() && i < 3; ++i) {
    if (p[i] != kEnvelopeMagic[i]) return 0;
  }
  if (p.size() > 3 && p[3] != kEnvelopeVersion) return 0;
  if (p.size() > 4 && p[4] != static_cast<uint8_t>(EnvelopeType::kSingle) &&
      p[4] != static_cast<uint8_t>(EnvelopeType::kStream)) {
    return 0;
  }
  if (p.size() < kFixedPrefix) return need(kFixedPrefix + 1);
  size_t off = kFixedPrefix;
  for (int field = 0; field < 3; ++field) {
    if (p.size() <= off) return need(off + 1);
    if (p[off] == 0 || p[off] > (field < 2 ? kMaxNameSize : kMaxScopeSize)) return 0;
    off += 1 + p[off];
  }
  off += 4;  // dk version
  if (p[4] == static_cast<uint8_t>(EnvelopeType::kStream)) {
    off += 4 + kStreamSaltSize;
  } else {
    off += 12;
  }
  return need(off);
}

StatusOr<ParsedHeader> ParseHeader(ByteView in) {
  if (!HasMagic(in)) {
    if (in.size() < 3 && std::equal(in.begin(), in.end(), kEnvelopeMagic)) {
      return Truncated(kFixedPrefix + 1, in.size());
    }
    return NotEkm(in);
  }
  if (in.size() < kFixedPrefix) return Truncated(kFixedPrefix + 1, in.size());
  if (in[3] != kEnvelopeVersion) {
    return InvalidArgumentError(
        "unsupported envelope version " + std::to_string(in[3]) + "; this build reads version 1",
        "upgrade ekm to read newer ciphertexts");
  }
  ParsedHeader out;
  EnvelopeHeader& h = out.header;
  if (in[4] == static_cast<uint8_t>(EnvelopeType::kSingle)) {
    h.type = EnvelopeType::kSingle;
  } else if (in[4] == static_cast<uint8_t>(EnvelopeType::kStream)) {
    h.type = EnvelopeType::kStream;
  } else {
    return DataLossError("ciphertext header has unknown type " + std::to_string(in[4]));
  }
  // A name length out of range is corrupt, however many bytes follow it.
  const char* field_names[] = {"workspace", "environment", "scope"};
  for (size_t off = kFixedPrefix, i = 0; i < 3 && off < in.size(); ++i, off += 1 + in[off]) {
    const size_t max = i < 2 ? kMaxNameSize : kMaxScopeSize;
    if (in[off] == 0 || in[off] > max) {
      return DataLossError("ciphertext header is corrupt: its " + std::string(field_names[i]) +
                           " name length is " + std::to_string(in[off]) + " (1 to " +
                           std::to_string(max) + ")");
    }
  }
  size_t total = HeaderBytesNeeded(in) + in.size();
  if (HeaderBytesNeeded(in) > 0) return Truncated(total, in.size());
  size_t off = kFixedPrefix;
  const char* names[] = {"workspace", "environment", "scope"};
  std::string* fields[] = {&h.context.workspace, &h.context.environment, &h.context.scope};
  for (int i = 0; i < 3; ++i) {
    size_t len = in[off++];
    fields[i]->assign(reinterpret_cast<const char*>(in.data() + off), len);
    off += len;
    Status s = i < 2 ? ValidateName(names[i], *fields[i]) : ValidateScope(*fields[i]);
    if (!s.ok()) return DataLossError("ciphertext header is corrupt: " + s.message());
  }
  h.context.dk_version = LoadBigEndian32(in.data() + off);
  off += 4;
  if (h.context.dk_version == 0) {
    return DataLossError("ciphertext header is corrupt: data key version 0");
  }
  if (h.type == EnvelopeType::kSingle) {
    std::memcpy(h.nonce.data(), in.data() + off, 12);
    off += 12;
  } else {
    h.segment_size = LoadBigEndian32(in.data() + off);
    off += 4;
    if (h.segment_size < kMinSegmentSize || h.segment_size > kMaxSegmentSize) {
      return DataLossError("ciphertext header is corrupt: segment size " +
                           std::to_string(h.segment_size) + " is out of range");
    }
    std::memcpy(h.salt.data(), in.data() + off, kStreamSaltSize);
    off += kStreamSaltSize;
  }
  out.size = off;
  return out;
}

Status SealSingle(const EnvelopeContext& context, const SecretBytes& dk,
                  std::span<const uint8_t, 12> nonce, ByteView plaintext, Bytes* out) {
  EKM_RETURN_IF_ERROR(ValidateContext(context));
  // One resize for header, ciphertext and tag; the header is written in place.
  const size_t start = out->size();
  const size_t header_size = HeaderSize(context, EnvelopeType::kSingle);
  out->resize(start + header_size + plaintext.size() + kAesGcmTagSize);
  uint8_t* p = WriteHeaderPrefix(context, EnvelopeType::kSingle, out->data() + start);
  std::memcpy(p, nonce.data(), nonce.size());
  Status s = AesGcmSeal(dk, nonce, ByteView(out->data() + start, header_size), plaintext,
                        out->data() + start + header_size);
  if (!s.ok()) out->resize(start);
  return s;
}

Status OpenSingle(const ParsedHeader& parsed, ByteView envelope, const SecretBytes& dk,
                  Bytes* out) {
  if (parsed.header.type != EnvelopeType::kSingle) {
    return InvalidArgumentError("envelope is a stream, not a single message");
  }
  ByteView body = envelope.subspan(parsed.size);
  if (body.size() < kAesGcmTagSize) return AuthFailure();
  size_t at = out->size();
  out->resize(at + body.size() - kAesGcmTagSize);
  Status s =
      AesGcmOpen(dk, parsed.header.nonce, envelope.first(parsed.size), body, out->data() + at);
  if (!s.ok()) out->resize(at);
  return s;
}

StatusOr<std::unique_ptr<EnvelopeEncoder>> EnvelopeEncoder::Create(
    const EnvelopeContext& context, std::shared_ptr<const SecretBytes> dk, bool text,
    uint32_t segment_size) {
  std::array<uint8_t, kStreamSaltSize> salt;
  EKM_RETURN_IF_ERROR(RandomBytes(salt));
  return NewStreamEncoder(context, *dk, text, segment_size, salt);
}

StatusOr<std::unique_ptr<EnvelopeEncoder>> EnvelopeEncoder::CreateForTest(
    const EnvelopeContext& context, std::shared_ptr<const SecretBytes> dk, bool text,
    uint32_t segment_size, std::span<const uint8_t, kStreamSaltSize> salt) {
  return NewStreamEncoder(context, *dk, text, segment_size, salt);
}

std::unique_ptr<EnvelopeDecoder> EnvelopeDecoder::Create(DataKeyLookup lookup,
                                                         size_t max_single_size) {
  return std::make_unique<Decoder>(std::move(lookup), max_single_size);
}

std::string EnvelopeToText(ByteView binary) {
  std::string out;
  out.reserve(kEnvelopeTextPrefix.size() + (binary.size() + 2) / 3 * 4);
  out.append(kEnvelopeTextPrefix);
  AppendBase64Url(binary, &out);
  return out;
}

StatusOr<Bytes> EnvelopeFromText(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && IsSpace(static_cast<uint8_t>(text[i]))) ++i;
  if (text.substr(i, kEnvelopeTextPrefix.size()) != kEnvelopeTextPrefix) {
    return NotEkm(AsBytes(text.substr(i)));
  }
  // Canonical one-line text (what ekm writes) takes the whole-buffer decoder; anything else
  // (line breaks, padding, a bad character) the streaming one, whose errors count positions
  // from the start of the text.
  if (i == 0) {
    auto fast = Base64UrlDecode(text.substr(kEnvelopeTextPrefix.size()));
    if (fast.ok()) {
      if (DecodedIsNotEkm(*fast)) return NotEkmText();
      return fast;
    }
  }
  Base64Decoder dec(i + kEnvelopeTextPrefix.size());
  Bytes out;
  out.reserve((text.size() - i) / 4 * 3 + 3);
  EKM_RETURN_IF_ERROR(dec.Update(AsBytes(text.substr(i + kEnvelopeTextPrefix.size())), &out));
  EKM_RETURN_IF_ERROR(dec.Finish(&out));
  if (DecodedIsNotEkm(out)) return NotEkmText();
  return out;
}

}  // namespace ekm
