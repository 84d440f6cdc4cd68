// Golden vectors for envelope format v1 (testdata/envelope/v1/*.json): fixed keys, nonces and
// salts must give exactly the checked-in bytes, and those bytes must decrypt, forever.
// EKM_REGENERATE_GOLDEN=1 rewrites the files; never do that for a released version.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ekm/base/encoding.h"
#include "ekm/crypto/key_wrap.h"
#include "ekm/envelope/envelope.h"

namespace ekm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kDir = fs::path(EKM_SOURCE_DIR) / "testdata/envelope/v1";

std::shared_ptr<const SecretBytes> FixedKey(uint8_t start) {
  SecretBytes k(32);
  for (size_t i = 0; i < 32; ++i) k.MutableForCrypto()[i] = static_cast<uint8_t>(start + i);
  return std::make_shared<const SecretBytes>(std::move(k));
}

Bytes Pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 3);
  return b;
}

// Produces the envelope for a vector description.
Bytes Produce(const json& v) {
  auto key = FixedKey(static_cast<uint8_t>(v["key_start"].get<int>()));
  EnvelopeContext ctx{v["workspace"], v["environment"], v["scope"], v["dk_version"]};
  Bytes plain = *HexDecode(v["plaintext"].get<std::string>());
  Bytes out;
  if (v["form"] == "single") {
    Bytes nonce = *HexDecode(v["nonce"].get<std::string>());
    std::array<uint8_t, 12> n;
    std::copy(nonce.begin(), nonce.end(), n.begin());
    EXPECT_TRUE(SealSingle(ctx, *key, n, plain, &out).ok());
    if (v["encoding"] == "text") {
      std::string t = EnvelopeToText(out);
      out.assign(t.begin(), t.end());
    }
  } else {
    Bytes salt = *HexDecode(v["salt"].get<std::string>());
    std::array<uint8_t, kStreamSaltSize> s;
    std::copy(salt.begin(), salt.end(), s.begin());
    auto enc = EnvelopeEncoder::CreateForTest(ctx, key, v["encoding"] == "text",
                                              v["segment_size"].get<uint32_t>(), s);
    EXPECT_TRUE(enc.ok());
    EXPECT_TRUE((*enc)->Update(plain, &out).ok());
    EXPECT_TRUE((*enc)->Finish(&out).ok());
  }
  return out;
}

json Vector(std::string description, std::string form, std::string encoding, size_t size,
            std::string scope = "orders") {
  json v = {{"description", description},
            {"key_start", 0},
            {"workspace", "acme"},
            {"environment", "prod"},
            {"scope", scope},
            {"dk_version", 1},
            {"form", form},
            {"encoding", encoding},
            {"plaintext", HexEncode(Pattern(size))}};
  if (form == "single") {
    v["nonce"] = "a0a1a2a3a4a5a6a700000007";
  } else {
    v["segment_size"] = 4096;
    Bytes salt(32);
    for (size_t i = 0; i < 32; ++i) salt[i] = static_cast<uint8_t>(0xc0 + i);
    v["salt"] = HexEncode(salt);
  }
  return v;
}

void Regenerate() {
  fs::create_directories(kDir);
  std::vector<json> good = {
      Vector("single form, empty plaintext", "single", "binary", 0),
      Vector("single form, 1 byte", "single", "binary", 1),
      Vector("single form, 100 bytes", "single", "binary", 100),
      Vector("single form, text encoding", "single", "text", 100),
      Vector("stream, empty plaintext (one empty final segment)", "stream", "binary", 0),
      Vector("stream, 3 segments of 4096 (last partial)", "stream", "binary", 2 * 4096 + 100),
      Vector("stream, exactly 2 full segments (the last is full)", "stream", "binary", 2 * 4096),
      Vector("stream, text encoding", "stream", "text", 5000, "files/2026:q4@eu"),
  };
  const char* names[] = {"single_empty",
                         "single_1",
                         "single_100",
                         "single_text",
                         "stream_empty",
                         "stream_3_segments",
                         "stream_2_full_segments",
                         "stream_text"};
  for (size_t i = 0; i < good.size(); ++i) {
    json v = good[i];
    Bytes env = Produce(v);
    if (v["encoding"] == "text") {
      v["envelope_text"] = std::string(env.begin(), env.end());
    } else {
      v["envelope"] = HexEncode(env);
    }
    std::ofstream(kDir / (std::string(names[i]) + ".json")) << v.dump(2) << "\n";
  }
  // Negatives: derived from single_100 and stream_3_segments.
  json base = good[2];
  Bytes env = Produce(base);
  auto bad = [&](const char* name, const char* description, Bytes bytes, const char* error) {
    json v = base;
    v["description"] = description;
    v["envelope"] = HexEncode(bytes);
    v["error"] = error;
    std::ofstream(kDir / (std::string(name) + ".json")) << v.dump(2) << "\n";
  };
  Bytes b = env;
  b.back() ^= 1;
  bad("bad_flipped_tag", "last tag byte flipped", b, "failed authentication");
  bad("bad_truncated", "last 5 bytes cut", Bytes(env.begin(), env.end() - 5),
      "failed authentication");
  b = env;
  b[3] = 2;
  bad("bad_version", "version byte 2", b, "unsupported envelope version 2");
  b = env;
  b[0] = 'X';
  bad("bad_magic", "wrong magic", b, "not an ekm ciphertext");
  b = env;
  b.push_back(0);
  bad("bad_trailing_data", "one byte appended", b, "failed authentication");
  b = env;
  b[6] = 'A';  // workspace "Acme"
  bad("bad_header_name", "upper-case workspace name", b, "ciphertext header is corrupt");
  json s = good[5];
  Bytes senv = Produce(s);
  const size_t header = ParseHeader(senv)->size;
  Bytes dropped(senv.begin(), senv.begin() + static_cast<ptrdiff_t>(header + 2 * (4096 + 16)));
  base = s;
  bad("bad_stream_final_segment_dropped", "stream cut after 2 segments", dropped,
      "failed authentication");
  Bytes swapped(senv.begin(), senv.begin() + static_cast<ptrdiff_t>(header));
  Append(swapped, ByteView(senv).subspan(header + 4112, 4112));
  Append(swapped, ByteView(senv).subspan(header, 4112));
  Append(swapped, ByteView(senv).subspan(header + 2 * 4112));
  bad("bad_stream_segments_swapped", "segments 0 and 1 swapped", swapped, "failed authentication");

  // A wrapped key (crypto/key_wrap.h) under a fixed KEK and AAD: decryption only (its nonce is
  // random by design).
  auto kek = FixedKey(0x40);
  auto dk = FixedKey(0x80);
  auto wrapped = WrapKey(*kek, *dk, AsBytes("ekm dk wrap v1"));
  json w = {{"description", "a 32-byte key wrapped by WrapKey v1"},
            {"kek_start", 0x40},
            {"key_start", 0x80},
            {"aad", HexEncode(AsBytes("ekm dk wrap v1"))},
            {"wrapped", HexEncode(*wrapped)}};
  std::ofstream(kDir / "wrapped_key.json") << w.dump(2) << "\n";
}

TEST(GoldenTest, VectorsAreFrozen) {
  if (std::getenv("EKM_REGENERATE_GOLDEN") != nullptr) Regenerate();
  ASSERT_TRUE(fs::exists(kDir)) << kDir;
  int good = 0, bad = 0;
  for (const auto& entry : fs::directory_iterator(kDir)) {
    std::ifstream f(entry.path());
    json v = json::parse(f);
    SCOPED_TRACE(entry.path().filename().string());
    if (entry.path().filename() == "wrapped_key.json") {
      auto kek = FixedKey(static_cast<uint8_t>(v["kek_start"].get<int>()));
      auto back = UnwrapKey(*kek, *HexDecode(v["wrapped"].get<std::string>()),
                            *HexDecode(v["aad"].get<std::string>()));
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_TRUE(*back == *FixedKey(static_cast<uint8_t>(v["key_start"].get<int>())));
      continue;
    }
    Bytes expected = v.contains("envelope_text") ? ToBytes(v["envelope_text"].get<std::string>())
                                                 : *HexDecode(v["envelope"].get<std::string>());
    auto key = FixedKey(static_cast<uint8_t>(v["key_start"].get<int>()));
    auto decoder = EnvelopeDecoder::Create(
        [&](const EnvelopeHeader& h) -> StatusOr<std::shared_ptr<const SecretBytes>> {
          EXPECT_EQ(h.context.workspace, v["workspace"].get<std::string>());
          return key;
        });
    Bytes plain;
    Status s = decoder->Update(expected, &plain);
    if (s.ok()) s = decoder->Finish(&plain);
    if (v.contains("error")) {
      ++bad;
      ASSERT_FALSE(s.ok());
      EXPECT_NE(s.message().find(v["error"].get<std::string>()), std::string::npos) << s.message();
      continue;
    }
    ++good;
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(HexEncode(plain), v["plaintext"].get<std::string>());
    EXPECT_EQ(Produce(v), expected) << "the envelope format changed: v1 bytes are frozen";
  }
  EXPECT_GE(good, 8);
  EXPECT_GE(bad, 8);
}

}  // namespace
}  // namespace ekm
