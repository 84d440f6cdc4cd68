// Writes the seed corpus of envelope_parse_fuzz: envelopes sealed under exactly the harness's
// data key (32 zero bytes) so the fuzzer starts from inputs that authenticate and reaches the
// decryption paths, not only header rejection. Deterministic (fixed nonces and salts), so
// regenerating gives the same files:
//
//   cmake --build build/fuzz --target envelope_seed_gen
//   build/fuzz/fuzz/envelope_seed_gen fuzz/corpus/envelope_parse_fuzz
//
// Seeds: single form (empty, short, 1 KiB), stream form (empty, one short segment, three and a
// half minimum-size segments), each in binary and text form, and truncations of each (header
// cut, tag cut, last segment missing).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "ekm/envelope/envelope.h"

namespace {

int failures = 0;

void Write(const std::string& dir, const std::string& name, ekm::ByteView bytes) {
  std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
    ++failures;
  }
}

void WriteText(const std::string& dir, const std::string& name, const std::string& text) {
  Write(dir, name, ekm::ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

ekm::Bytes Plaintext(size_t n) {
  ekm::Bytes p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>('a' + i % 26);
  return p;
}

// The binary envelope plus its truncations: mid-header, header only, and one byte short.
void WriteWithTruncations(const std::string& dir, const std::string& name, const ekm::Bytes& env) {
  Write(dir, name, env);
  auto header = ekm::ParseHeader(env);
  if (!header.ok()) {
    std::fprintf(stderr, "%s: own envelope does not parse\n", name.c_str());
    ++failures;
    return;
  }
  Write(dir, name + ".cut_in_header", ekm::ByteView(env).first(header->size / 2));
  Write(dir, name + ".header_only", ekm::ByteView(env).first(header->size));
  Write(dir, name + ".one_short", ekm::ByteView(env).first(env.size() - 1));
  WriteText(dir, name + ".txt", ekm::EnvelopeToText(env));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  // Exactly the harness's key (fuzz/envelope_parse_fuzz.cc); the harness's lookup accepts any
  // context, so the seeds use a realistic one.
  const auto dk = std::make_shared<const ekm::SecretBytes>(ekm::SecretBytes(32));
  const ekm::EnvelopeContext ctx{"acme", "prod", "billing/invoices", 3};

  const size_t single_sizes[] = {0, 13, 1024};
  for (size_t n : single_sizes) {
    std::array<uint8_t, 12> nonce{};
    nonce[0] = static_cast<uint8_t>(n);
    ekm::Bytes env;
    ekm::Status s = ekm::SealSingle(ctx, *dk, nonce, Plaintext(n), &env);
    if (!s.ok()) {
      std::fprintf(stderr, "SealSingle: %s\n", s.ToString().c_str());
      return 1;
    }
    WriteWithTruncations(dir, "single_" + std::to_string(n), env);
  }

  const size_t stream_sizes[] = {0, 100, 3 * ekm::kMinSegmentSize + ekm::kMinSegmentSize / 2};
  for (size_t n : stream_sizes) {
    for (bool text : {false, true}) {
      std::array<uint8_t, ekm::kStreamSaltSize> salt{};
      salt[0] = static_cast<uint8_t>(n);
      auto enc = ekm::EnvelopeEncoder::CreateForTest(ctx, dk, text, ekm::kMinSegmentSize, salt);
      if (!enc.ok()) {
        std::fprintf(stderr, "EnvelopeEncoder: %s\n", enc.status().ToString().c_str());
        return 1;
      }
      ekm::Bytes env;
      const ekm::Bytes p = Plaintext(n);
      // Fed in uneven chunks, as a caller would.
      for (size_t off = 0; off < n; off += 1000) {
        if (!(*enc)
                 ->Update(ekm::ByteView(p).subspan(off, std::min<size_t>(1000, n - off)), &env)
                 .ok()) {
          return 1;
        }
      }
      if (!(*enc)->Finish(&env).ok()) return 1;
      const std::string name = "stream_" + std::to_string(n);
      if (text) {
        Write(dir, name + ".stream_txt", env);
        Write(dir, name + ".stream_txt.one_short", ekm::ByteView(env).first(env.size() - 2));
      } else {
        WriteWithTruncations(dir, name, env);
        if (n > ekm::kMinSegmentSize) {  // the last segment missing: a segment-boundary cut
          auto header = ekm::ParseHeader(env);
          const size_t seg = ekm::kMinSegmentSize + 16;
          Write(dir, name + ".last_segment_missing",
                ekm::ByteView(env).first(header->size + 3 * seg));
        }
      }
    }
  }
  return failures == 0 ? 0 : 1;
}
