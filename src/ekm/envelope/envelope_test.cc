#include "ekm/envelope/envelope.h"

#include <gtest/gtest.h>

#include "ekm/base/non_blocking_scope.h"
#include "ekm/base/random.h"

namespace ekm {
namespace {

std::shared_ptr<const SecretBytes> Key() {
  auto k = RandomSecret(32);
  return std::make_shared<const SecretBytes>(std::move(*k));
}

const EnvelopeContext kCtx{"acme", "prod", "orders", 3};

DataKeyLookup LookupFor(std::shared_ptr<const SecretBytes> key) {
  return
      [key](const EnvelopeHeader&) -> StatusOr<std::shared_ptr<const SecretBytes>> { return key; };
}

// Decrypts `in` fed in chunks of `chunk` bytes.
Status Decode(const std::shared_ptr<const SecretBytes>& key, ByteView in, Bytes* out,
              size_t chunk = 1 << 20) {
  auto dec = EnvelopeDecoder::Create(LookupFor(key));
  for (size_t off = 0; off < in.size(); off += chunk) {
    EKM_RETURN_IF_ERROR(dec->Update(in.subspan(off, std::min(chunk, in.size() - off)), out));
  }
  return dec->Finish(out);
}

Bytes Seal(const std::shared_ptr<const SecretBytes>& key, std::string_view plain) {
  std::array<uint8_t, 12> nonce{};
  EXPECT_TRUE(RandomBytes(nonce).ok());
  Bytes out;
  EXPECT_TRUE(SealSingle(kCtx, *key, nonce, AsBytes(plain), &out).ok());
  return out;
}

Bytes Stream(const std::shared_ptr<const SecretBytes>& key, ByteView plain, bool text,
             uint32_t segment = kMinSegmentSize) {
  auto enc = EnvelopeEncoder::Create(kCtx, key, text, segment);
  EXPECT_TRUE(enc.ok());
  Bytes out;
  EXPECT_TRUE((*enc)->Update(plain, &out).ok());
  EXPECT_TRUE((*enc)->Finish(&out).ok());
  return out;
}

TEST(EnvelopeTest, NamesAreValidatedWithPosition) {
  EXPECT_TRUE(ValidateName("workspace", "acme-1.prod_x").ok());
  Status s = ValidateName("workspace", "Acme Corp");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'A' at position 1"), std::string::npos) << s.message();
  s = ValidateName("workspace", "acme corp");
  EXPECT_NE(s.message().find("position 5"), std::string::npos) << s.message();
  EXPECT_FALSE(ValidateName("environment", "").ok());
  EXPECT_FALSE(ValidateName("environment", std::string(65, 'a')).ok());
  EXPECT_FALSE(ValidateName("environment", "-x").ok());
  EXPECT_TRUE(ValidateScope("Connection/sales:v2@eu").ok());
  EXPECT_FALSE(ValidateScope("a b").ok());
  EXPECT_FALSE(ValidateScope(std::string(129, 'a')).ok());
}

TEST(EnvelopeTest, HeaderRoundTripsAndNamesItsContext) {
  auto key = Key();
  Bytes ct = Seal(key, "hi");
  auto parsed = ParseHeader(ct);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->header.context.workspace, "acme");
  EXPECT_EQ(parsed->header.context.environment, "prod");
  EXPECT_EQ(parsed->header.context.scope, "orders");
  EXPECT_EQ(parsed->header.context.dk_version, 3u);
  EXPECT_EQ(parsed->size, 5u + 5 + 5 + 7 + 4 + 12);
  EXPECT_EQ(SerializeHeader(parsed->header), Bytes(ct.begin(), ct.begin() + 38));
  Bytes out;
  ASSERT_TRUE(OpenSingle(*parsed, ct, *key, &out).ok());
  EXPECT_EQ(AsChars(out), "hi");
}

TEST(EnvelopeTest, ParserGivesClearErrors) {
  auto key = Key();
  Bytes ct = Seal(key, "hello");
  EXPECT_NE(ParseHeader(AsBytes("hello")).status().message().find("not an ekm ciphertext"),
            std::string::npos);
  for (size_t n = 0; n < 38; ++n) {
    auto r = ParseHeader(ByteView(ct).first(n));
    ASSERT_FALSE(r.ok()) << n;
  }
  EXPECT_NE(ParseHeader(ByteView(ct).first(20)).status().message().find("truncated"),
            std::string::npos);
  Bytes v2 = ct;
  v2[3] = 2;
  EXPECT_NE(ParseHeader(v2).status().message().find("unsupported envelope version 2"),
            std::string::npos);
  Bytes badtype = ct;
  badtype[4] = 9;
  EXPECT_FALSE(ParseHeader(badtype).ok());
  Bytes longname = ct;
  longname[5] = 200;  // workspace length beyond the buffer
  EXPECT_FALSE(ParseHeader(longname).ok());
}

bool Has(const Status& s, std::string_view needle) {
  return s.message().find(needle) != std::string::npos;
}

// Bytes that are no envelope at all are told so, whatever their size and form: never
// "truncated" (200 bytes whose garbage "header" would need more), never "does not start with
// ekm1:" for a text that does.
TEST(EnvelopeTest, NonEnvelopesAreToldTheyAreNoCiphertext) {
  auto key = Key();
  for (size_t size : {size_t{200}, size_t{1} << 20}) {
    Bytes junk(size);
    ASSERT_TRUE(RandomBytes(junk).ok());
    junk[0] = 'E';  // the binary form's first byte: the decoder takes it for binary
    junk[1] = 0x90;
    Bytes out;
    Status s = Decode(key, junk, &out, 64 * 1024);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(Has(s, "not an ekm ciphertext: no ekm magic")) << s.ToString();
    EXPECT_FALSE(Has(s, "truncated")) << s.ToString();

    // The same bytes as a text ciphertext: it does start with ekm1:, its content is wrong.
    std::string text = EnvelopeToText(junk);
    for (size_t chunk : {size_t{7}, size_t{64 * 1024}}) {
      s = Decode(key, AsBytes(text), &out, chunk);
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      EXPECT_TRUE(Has(s,
                      "the text starts with ekm1: but what follows does not decode to an "
                      "ekm ciphertext"))
          << size << " " << s.ToString();
    }
    EXPECT_TRUE(Has(EnvelopeFromText(text).status(), "the text starts with ekm1:"));
    EXPECT_TRUE(Has(EnvelopeFromText(text + "\n").status(), "the text starts with ekm1:"));
  }
  // The magic, then garbage: a name length out of range is corrupt, not truncated.
  Bytes corrupt(200, 0xff);
  std::copy(kEnvelopeMagic, kEnvelopeMagic + 3, corrupt.begin());
  corrupt[3] = kEnvelopeVersion;
  corrupt[4] = static_cast<uint8_t>(EnvelopeType::kStream);
  Bytes out;
  Status s = Decode(key, corrupt, &out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Has(s, "ciphertext header is corrupt: its workspace name length is 255 (1 to 64)"))
      << s.ToString();
  corrupt[3] = 7;
  EXPECT_TRUE(Has(Decode(key, corrupt, &out), "unsupported envelope version 7"));
  corrupt[3] = kEnvelopeVersion;
  corrupt[4] = 9;
  EXPECT_TRUE(Has(Decode(key, corrupt, &out), "unknown type 9"));

  // A text with a byte order mark, or with something before ekm1:.
  Bytes ct = Stream(key, AsBytes("x"), /*text=*/true);
  Bytes bom = {0xEF, 0xBB, 0xBF};
  Append(bom, ct);
  s = Decode(key, bom, &out);
  EXPECT_TRUE(Has(s, "byte order mark")) << s.ToString();
  std::string labelled = "ciphertext: " + std::string(AsChars(ct));
  s = Decode(key, AsBytes(labelled), &out);
  EXPECT_TRUE(Has(s, "it starts with \"cipherte\"")) << s.ToString();
  EXPECT_NE(s.hint().find("begins at character 13"), std::string::npos) << s.hint();
  EXPECT_TRUE(Has(EnvelopeFromText(labelled).status(), "no ekm magic"));

  // Real truncation is still called truncated.
  Bytes single = Seal(key, "hello");
  for (size_t n = 1; n < 38; ++n) {
    s = Decode(key, ByteView(single).first(n), &out);
    EXPECT_TRUE(Has(s, "truncated")) << n << " " << s.ToString();
  }
}

TEST(EnvelopeTest, SingleFormEveryBitFlipAndTruncationFails) {
  auto key = Key();
  Bytes ct = Seal(key, "attack at dawn");
  for (size_t i = 0; i < ct.size() * 8; ++i) {
    Bytes bad = ct;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    Bytes out;
    ASSERT_FALSE(Decode(key, bad, &out).ok()) << "bit " << i;
    ASSERT_TRUE(out.empty());
  }
  for (size_t n = 0; n < ct.size(); ++n) {
    Bytes out;
    ASSERT_FALSE(Decode(key, ByteView(ct).first(n), &out).ok()) << n;
  }
  Bytes longer = ct;
  longer.push_back(0);
  Bytes out;
  EXPECT_FALSE(Decode(key, longer, &out).ok());
}

TEST(EnvelopeTest, MovedToAnotherContextFails) {
  auto key = Key();
  Bytes ct = Seal(key, "secret");
  auto parsed = ParseHeader(ct);
  ASSERT_TRUE(parsed.ok());
  for (int field = 0; field < 4; ++field) {
    EnvelopeHeader h = parsed->header;
    if (field == 0) h.context.workspace = "globex";
    if (field == 1) h.context.environment = "dev";
    if (field == 2) h.context.scope = "payments";
    if (field == 3) h.context.dk_version = 4;
    Bytes moved = SerializeHeader(h);
    moved.insert(moved.end(), ct.begin() + static_cast<ptrdiff_t>(parsed->size), ct.end());
    Bytes out;
    EXPECT_EQ(Decode(key, moved, &out).code(), StatusCode::kDataLoss) << field;
  }
}

TEST(EnvelopeTest, StreamRoundTripsAnySizeAnyChunking) {
  auto key = Key();
  for (bool text : {false, true}) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097},
                        size_t{3 * 4096}, size_t{50000}}) {
      Bytes plain(size);
      ASSERT_TRUE(RandomBytes(plain).ok());
      Bytes ct = Stream(key, plain, text);
      for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, size_t{1 << 20}}) {
        if (chunk == 1 && size > 5000) continue;
        Bytes out;
        Status s = Decode(key, ct, &out, chunk);
        ASSERT_TRUE(s.ok()) << s.ToString() << " size " << size << " chunk " << chunk;
        ASSERT_EQ(out, plain);
      }
    }
  }
}

TEST(EnvelopeTest, StreamEncoderChunkingDoesNotChangeSegmentation) {
  auto key = Key();
  Bytes plain(10000);
  ASSERT_TRUE(RandomBytes(plain).ok());
  auto enc = EnvelopeEncoder::Create(kCtx, key, false, kMinSegmentSize);
  ASSERT_TRUE(enc.ok());
  Bytes ct;
  for (size_t off = 0; off < plain.size(); off += 333) {
    ASSERT_TRUE(
        (*enc)
            ->Update(ByteView(plain).subspan(off, std::min<size_t>(333, plain.size() - off)), &ct)
            .ok());
  }
  ASSERT_TRUE((*enc)->Finish(&ct).ok());
  auto parsed = ParseHeader(ct);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(ct.size(), parsed->size + 10000 + 3 * 16);
  Bytes out;
  ASSERT_TRUE(Decode(key, ct, &out).ok());
  EXPECT_EQ(out, plain);
}

// Sealing segments side by side (the CLI's pool) must give the very bytes one thread gives, for
// every way the input is chunked, including segment-exact sizes where the last segment is held.
TEST(EnvelopeTest, StreamSealedOnAPoolIsByteForByteTheSame) {
  auto key = Key();
  const std::array<uint8_t, kStreamSaltSize> salt{7, 7, 7};
  WorkerPool pool(3);
  for (size_t size :
       {size_t{0}, size_t{4096}, size_t{5 * 4096}, size_t{5 * 4096 + 1}, size_t{100000}}) {
    Bytes plain(size);
    ASSERT_TRUE(RandomBytes(plain).ok());
    Bytes expected;
    {
      auto enc = EnvelopeEncoder::CreateForTest(kCtx, key, false, kMinSegmentSize, salt);
      ASSERT_TRUE(enc.ok());
      ASSERT_TRUE((*enc)->Update(plain, &expected).ok());
      ASSERT_TRUE((*enc)->Finish(&expected).ok());
    }
    // Every combination of: chunking; the input size told or not; a sink or `out` only.
    for (size_t chunk : {size_t{1000}, size_t{4096}, size_t{3 * 4096}, size_t{1 << 20}}) {
      for (bool sized : {false, true}) {
        for (bool with_sink : {false, true}) {
          auto enc = EnvelopeEncoder::CreateForTest(kCtx, key, false, kMinSegmentSize, salt);
          ASSERT_TRUE(enc.ok());
          Bytes ct;
          EnvelopeEncoder::ParallelSealing parallel;
          parallel.pool = &pool;
          if (sized) parallel.input_size = size;
          if (with_sink) {
            parallel.sink = [&ct](ByteView b) {
              ct.insert(ct.end(), b.begin(), b.end());
              return Status::Ok();
            };
          }
          (*enc)->SealInParallel(std::move(parallel));
          Bytes out;
          for (size_t off = 0; off < plain.size(); off += chunk) {
            out.clear();
            ASSERT_TRUE(
                (*enc)
                    ->Update(ByteView(plain).subspan(off, std::min(chunk, plain.size() - off)),
                             &out)
                    .ok());
            ct.insert(ct.end(), out.begin(), out.end());
          }
          out.clear();
          ASSERT_TRUE((*enc)->Finish(&out).ok());
          ct.insert(ct.end(), out.begin(), out.end());
          ASSERT_EQ(ct, expected) << "size " << size << " chunk " << chunk << " sized " << sized
                                  << " sink " << with_sink;
          Bytes back;
          ASSERT_TRUE(Decode(key, ct, &back).ok());
          ASSERT_EQ(back, plain);
        }
      }
    }
  }
}

// A file that ends before the size it was opened with (it shrank meanwhile): its last whole
// segment was sealed as not the last, and the stream ends with an empty last segment, which
// still decrypts to exactly the input.
TEST(EnvelopeTest, StreamShorterThanItsToldSizeStillDecrypts) {
  auto key = Key();
  WorkerPool pool(2);
  for (size_t size : {size_t{4096}, size_t{3 * 4096}, size_t{3 * 4096 + 5}}) {
    Bytes plain(size);
    ASSERT_TRUE(RandomBytes(plain).ok());
    auto enc = EnvelopeEncoder::Create(kCtx, key, false, kMinSegmentSize);
    ASSERT_TRUE(enc.ok());
    EnvelopeEncoder::ParallelSealing parallel;
    parallel.pool = &pool;
    parallel.input_size = size + 4096;
    (*enc)->SealInParallel(std::move(parallel));
    Bytes ct;
    ASSERT_TRUE((*enc)->Update(plain, &ct).ok());
    ASSERT_TRUE((*enc)->Finish(&ct).ok());
    Bytes back;
    Status s = Decode(key, ct, &back);
    ASSERT_TRUE(s.ok()) << size << ": " << s.ToString();
    EXPECT_EQ(back, plain);
  }
}

TEST(EnvelopeTest, StreamReorderTruncateExtendFail) {
  auto key = Key();
  Bytes plain(3 * 4096 + 100);
  ASSERT_TRUE(RandomBytes(plain).ok());
  Bytes ct = Stream(key, plain, false);
  size_t h = ParseHeader(ct)->size;
  const size_t seg = 4096 + 16;
  auto segment = [&](size_t i) {
    size_t start = h + i * seg;
    size_t end = std::min(ct.size(), start + seg);
    return Bytes(ct.begin() + static_cast<ptrdiff_t>(start),
                 ct.begin() + static_cast<ptrdiff_t>(end));
  };
  Bytes header(ct.begin(), ct.begin() + static_cast<ptrdiff_t>(h));
  auto build = [&](std::initializer_list<size_t> order) {
    Bytes b = header;
    for (size_t i : order) Append(b, segment(i));
    return b;
  };
  Bytes out;
  ASSERT_TRUE(Decode(key, build({0, 1, 2, 3}), &out).ok());
  for (auto order : {build({1, 0, 2, 3}), build({0, 2, 1, 3}), build({0, 1, 2}), build({0, 1, 3}),
                     build({0, 1, 2, 3, 3}), build({0, 0, 1, 2, 3}), build({})}) {
    Bytes o;
    EXPECT_FALSE(Decode(key, order, &o).ok());
  }
  // Truncation at a segment boundary (the final segment dropped) and inside one.
  for (size_t n : {h + seg, h + 2 * seg, h + 3 * seg, ct.size() - 1, h + 10}) {
    Bytes o;
    EXPECT_FALSE(Decode(key, ByteView(ct).first(n), &o).ok()) << n;
  }
  Bytes extended = ct;
  extended.insert(extended.end(), 16, 0);
  Bytes o;
  EXPECT_FALSE(Decode(key, extended, &o).ok());
  // Every byte flipped in a small stream.
  Bytes small = Stream(key, AsBytes("hello stream"), false);
  for (size_t i = 0; i < small.size(); ++i) {
    Bytes bad = small;
    bad[i] ^= 0x40;
    Bytes x;
    ASSERT_FALSE(Decode(key, bad, &x).ok()) << i;
  }
}

TEST(EnvelopeTest, TextFormToleratesLineBreaksAndNamesBadCharacters) {
  auto key = Key();
  Bytes ct = Seal(key, "hello");
  std::string text = EnvelopeToText(ct);
  EXPECT_EQ(text.rfind("ekm1:", 0), 0u);
  std::string wrapped = "  " + text.substr(0, 20) + "\n" + text.substr(20) + "\r\n";
  Bytes out;
  ASSERT_TRUE(Decode(key, AsBytes(wrapped), &out, 3).ok());
  EXPECT_EQ(AsChars(out), "hello");
  auto back = EnvelopeFromText(wrapped);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, ct);
  std::string bad = text;
  bad[12] = '*';
  Bytes o;
  Status s = Decode(key, AsBytes(bad), &o);
  EXPECT_NE(s.message().find("position 13"), std::string::npos) << s.message();
  EXPECT_FALSE(Decode(key, AsBytes("ekm2:abc"), &o).ok());
  EXPECT_EQ(Decode(key, {}, &o).code(), StatusCode::kDataLoss);
}

TEST(EnvelopeTest, LookupErrorsStopDecryption) {
  auto key = Key();
  Bytes ct = Seal(key, "x");
  auto dec = EnvelopeDecoder::Create(
      [](const EnvelopeHeader& h) -> StatusOr<std::shared_ptr<const SecretBytes>> {
        return InvalidArgumentError("belongs to workspace " + h.context.workspace);
      });
  Bytes out;
  Status s = dec->Update(ct, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(dec->Finish(&out).ok());
}

// A key lookup that would have waited on a thread that must not (base/non_blocking_scope.h)
// leaves the decoder as if the header had just come: the same call again, with no new input,
// where waiting is allowed, carries on, in either form, whatever came before in the call.
TEST(EnvelopeTest, ALookupDeferredByANonBlockingScopeResumes) {
  auto key = Key();
  Bytes plain(3 * kMinSegmentSize + 17, 0x5a);
  int lookups = 0;
  auto lookup = [&](const EnvelopeHeader&) -> StatusOr<std::shared_ptr<const SecretBytes>> {
    ++lookups;
    EKM_RETURN_IF_ERROR(MayBlock("a test's key"));
    return key;
  };
  for (bool text : {false, true}) {
    for (size_t head : {size_t{0}, size_t{9}}) {  // the header whole in the deferred call, or not
      SCOPED_TRACE(std::string(text ? "text" : "binary") + ", " + std::to_string(head));
      lookups = 0;
      Bytes ct = Stream(key, plain, text);
      auto dec = EnvelopeDecoder::Create(lookup);
      Bytes out;
      ASSERT_TRUE(dec->Update(ByteView(ct).first(head), &out).ok());
      Status s;
      {
        NonBlockingScope scope;
        s = dec->Update(ByteView(ct).subspan(head), &out);
        EXPECT_TRUE(scope.deferred());
      }
      EXPECT_EQ(s.code(), StatusCode::kUnavailable);
      EXPECT_TRUE(out.empty());
      ASSERT_TRUE(dec->Update({}, &out).ok());  // where it may wait: again, with nothing new
      ASSERT_TRUE(dec->Finish(&out).ok());
      EXPECT_EQ(out, plain);
      EXPECT_EQ(lookups, 2);
    }
  }
  // Any other lookup error still stops the decoder for good.
  auto dec = EnvelopeDecoder::Create(
      [](const EnvelopeHeader&) -> StatusOr<std::shared_ptr<const SecretBytes>> {
        return UnavailableError("the KMS is down");
      });
  Bytes out;
  EXPECT_FALSE(dec->Update(Seal(key, "x"), &out).ok());
  EXPECT_FALSE(dec->Update({}, &out).ok());
}

TEST(EnvelopeTest, SingleFormSizeCapIsEnforcedEarly) {
  auto key = Key();
  Bytes big(100000);
  std::array<uint8_t, 12> nonce{};
  Bytes ct;
  ASSERT_TRUE(SealSingle(kCtx, *key, nonce, big, &ct).ok());
  auto dec = EnvelopeDecoder::Create(LookupFor(key), 1000);
  Bytes out;
  EXPECT_EQ(dec->Update(ct, &out).code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace ekm
