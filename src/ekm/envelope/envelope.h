// ekm's data ciphertext format ("envelope"), version 1. docs/format.md specifies it byte by byte.
//
// Two forms share one header:
//  - single: one AES-256-GCM message under the DK, nonce from the DK's nonce sequence; for API
//    payloads. The header is the associated data.
//  - stream: segmented, for inputs of any size in bounded memory. A per-stream key is derived
//    with HKDF-SHA256 from the DK and a random 32-byte salt in the header; segment i uses nonce
//    0^7 | i (4 bytes BE) | last (1 byte) and associated data header | i | last, so reordering,
//    truncation and extension all fail.
// Every header names workspace, environment, scope and DK version, all bound as associated data:
// a ciphertext moved to another workspace, environment or scope fails to decrypt.
//
// Text form: "ekm1:" followed by base64url (no padding) of the binary form; whitespace between
// characters (line breaks) is ignored on input.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"
#include "ekm/base/worker_pool.h"

namespace ekm {

inline constexpr uint8_t kEnvelopeMagic[3] = {'E', 'K', 'M'};
inline constexpr uint8_t kEnvelopeVersion = 1;
inline constexpr std::string_view kEnvelopeTextPrefix = "ekm1:";
inline constexpr size_t kMaxNameSize = 64;    // workspace and environment names
inline constexpr size_t kMaxScopeSize = 128;  // scope names
inline constexpr uint32_t kMinSegmentSize = 4 * 1024;
inline constexpr uint32_t kMaxSegmentSize = 4 * 1024 * 1024;
inline constexpr uint32_t kDefaultSegmentSize = 64 * 1024;
inline constexpr size_t kStreamSaltSize = 32;
// The decoder buffers a single-form body up to this size; larger data belongs in a stream.
inline constexpr size_t kMaxSinglePlaintextSize = 64 << 20;

enum class EnvelopeType : uint8_t { kSingle = 1, kStream = 2 };

// What an envelope is bound to.
struct EnvelopeContext {
  std::string workspace;
  std::string environment;
  std::string scope;
  uint32_t dk_version = 0;
};

struct EnvelopeHeader {
  EnvelopeType type = EnvelopeType::kSingle;
  EnvelopeContext context;
  std::array<uint8_t, 12> nonce{};              // kSingle only
  std::array<uint8_t, kStreamSaltSize> salt{};  // kStream only
  uint32_t segment_size = 0;                    // kStream only: plaintext bytes per segment
};

// Names: 1..64 characters of [a-z0-9-_.], starting with a letter or digit.
// `what` is "workspace" or "environment"; the error names the bad character and its position.
Status ValidateName(std::string_view what, std::string_view name);
// Scopes: 1..128 characters of [A-Za-z0-9-_.:/@], starting with a letter or digit.
Status ValidateScope(std::string_view scope);

Bytes SerializeHeader(const EnvelopeHeader& header);

struct ParsedHeader {
  EnvelopeHeader header;
  size_t size = 0;  // bytes of `input` taken by the header
};
// Parses the header at the front of a binary envelope. Truncated, oversized or garbage input gets
// an InvalidArgument/DataLoss error that says what is wrong; never reads past `input`.
StatusOr<ParsedHeader> ParseHeader(ByteView input);
// How many bytes of input ParseHeader needs to succeed or fail definitively, given a prefix:
// 0 when `prefix` already holds the whole header (or is already known to be bad).
size_t HeaderBytesNeeded(ByteView prefix);

// Single form. Appends header | ciphertext | tag to `out`.
Status SealSingle(const EnvelopeContext& context, const SecretBytes& dk,
                  std::span<const uint8_t, 12> nonce, ByteView plaintext, Bytes* out);
// Opens a whole single-form envelope whose header was parsed from `envelope`.
// Appends the plaintext to `out`.
Status OpenSingle(const ParsedHeader& parsed, ByteView envelope, const SecretBytes& dk, Bytes* out);

// The key for an envelope: called once per envelope with its parsed header. The callee checks
// the header names what the caller expects and returns the DK (or an error to stop).
using DataKeyLookup =
    std::function<StatusOr<std::shared_ptr<const SecretBytes>>(const EnvelopeHeader& header)>;

// Encrypts input of any size, fed in chunks, into the stream form (binary or text), in memory
// bounded by about two segments.
class EnvelopeEncoder {
 public:
  static StatusOr<std::unique_ptr<EnvelopeEncoder>> Create(
      const EnvelopeContext& context, std::shared_ptr<const SecretBytes> dk, bool text,
      uint32_t segment_size = kDefaultSegmentSize);
  // Test seam: a fixed salt, for golden vectors only.
  static StatusOr<std::unique_ptr<EnvelopeEncoder>> CreateForTest(
      const EnvelopeContext& context, std::shared_ptr<const SecretBytes> dk, bool text,
      uint32_t segment_size, std::span<const uint8_t, kStreamSaltSize> salt);
  virtual ~EnvelopeEncoder() = default;
  // Appends whatever output is ready to `out`.
  virtual Status Update(ByteView chunk, Bytes* out) = 0;
  // Seals the last segment (empty if the input was empty) and appends the rest of the output;
  // the text form ends with a newline.
  virtual Status Finish(Bytes* out) = 0;
  // For a caller with cores to spare moving a file (the CLI), never for ekmd, where one
  // tenant's stream must not take every core. The output is byte for byte the same.
  struct ParallelSealing {
    // Seals the whole segments of each Update side by side (not owned; it must outlive the
    // encoder's use). Segments are independent (own nonce and AAD). Binary form only.
    WorkerPool* pool = nullptr;
    // The input's total size, when known (a regular file): a segment is then sealed as soon as
    // it is whole and more input is known to follow, instead of being held back (and copied)
    // until the next Update in case it is the last.
    std::optional<uint64_t> input_size;
    // Where output goes: with a sink, Update hands the segments it seals on the pool straight
    // from the encoder's own buffer (no zero-filled growth of `out`, no copy), after first
    // handing it what `out` holds; `out` then holds only what follows. The caller still
    // writes `out` after each call.
    std::function<Status(ByteView)> sink;
  };
  virtual void SealInParallel(ParallelSealing parallel) = 0;
};

// Decrypts either form, binary or text, fed in chunks, in bounded memory (a single-form body
// is buffered up to `max_single_size`).
class EnvelopeDecoder {
 public:
  static std::unique_ptr<EnvelopeDecoder> Create(DataKeyLookup lookup,
                                                 size_t max_single_size = kMaxSinglePlaintextSize);
  virtual ~EnvelopeDecoder() = default;
  // Appends authenticated plaintext to `out` as segments complete. Stream plaintext is released
  // one authenticated segment at a time: a later failure (truncation) still fails Finish, and
  // callers must discard output on failure.
  virtual Status Update(ByteView chunk, Bytes* out) = 0;
  // At end of input: fails on truncation (missing last segment, incomplete header).
  virtual Status Finish(Bytes* out) = 0;
};

// Text form of a whole binary envelope, and back.
std::string EnvelopeToText(ByteView binary);
StatusOr<Bytes> EnvelopeFromText(std::string_view text);

}  // namespace ekm
