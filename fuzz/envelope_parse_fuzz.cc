// Fuzz target: envelope parsing and decryption of untrusted ciphertexts.
// Targets ParseHeader, HeaderBytesNeeded, EnvelopeFromText and EnvelopeDecoder (both forms,
// both encodings) fed in input-derived chunk sizes. Deterministic: a fixed key.
#include <cstddef>
#include <cstdint>

#include "ekm/envelope/envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto key = std::make_shared<const ekm::SecretBytes>(ekm::SecretBytes(32));
  ekm::ByteView in(data, size);
  (void)ekm::HeaderBytesNeeded(in);
  auto parsed = ekm::ParseHeader(in);
  if (parsed.ok() && parsed->header.type == ekm::EnvelopeType::kSingle) {
    ekm::Bytes out;
    (void)ekm::OpenSingle(*parsed, in, *key, &out);
  }
  (void)ekm::EnvelopeFromText(std::string_view(reinterpret_cast<const char*>(data), size));

  auto decoder = ekm::EnvelopeDecoder::Create(
      [](const ekm::EnvelopeHeader&) -> ekm::StatusOr<std::shared_ptr<const ekm::SecretBytes>> {
        return key;
      },
      1 << 16);
  size_t chunk = size > 0 ? (data[0] % 64) + 1 : 1;
  ekm::Bytes out;
  for (size_t off = 0; off < size; off += chunk) {
    if (!decoder->Update(in.subspan(off, std::min(chunk, size - off)), &out).ok()) return 0;
    out.clear();
  }
  (void)decoder->Finish(&out);
  return 0;
}
