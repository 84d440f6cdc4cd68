#include "ekm/base/encoding.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

TEST(EncodingTest, Base64UrlRfc4648Vectors) {
  const char* in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(Base64UrlEncode(AsBytes(in[i])), out[i]);
    auto d = Base64UrlDecode(out[i]);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(AsChars(*d), in[i]);
  }
  EXPECT_EQ(Base64Encode(AsBytes("foob")), "Zm9vYg==");
  Bytes b = {0xfb, 0xff};
  EXPECT_EQ(Base64UrlEncode(b), "-_8");
  EXPECT_EQ(Base64Encode(b), "+/8=");
}

TEST(EncodingTest, Base64RejectsGarbageWithPosition) {
  auto d = Base64UrlDecode("Zm9v*mFy");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("position 5"), std::string::npos);
  EXPECT_FALSE(Base64UrlDecode("Z").ok());
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());  // non-zero trailing bits
}

TEST(EncodingTest, Hex) {
  Bytes b = {0x00, 0xab, 0xff};
  EXPECT_EQ(HexEncode(b), "00abff");
  auto d = HexDecode("00ABff");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, b);
  EXPECT_FALSE(HexDecode("0g").ok());
  EXPECT_FALSE(HexDecode("abc").ok());
}

// RFC 3986 §2.3: only the unreserved characters stand for themselves.
TEST(EncodingTest, PercentEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(PercentEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(PercentEncode("a b/c?d&e=f%+"), "a%20b%2Fc%3Fd%26e%3Df%25%2B");
  EXPECT_EQ(PercentEncode("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(PercentEncode(std::string_view("\0", 1)), "%00");
  EXPECT_EQ(PercentEncode(""), "");
}

TEST(EncodingTest, QuotedExcerptCutsLongTextAtACharacterBoundary) {
  EXPECT_EQ(QuotedExcerpt("acme"), "\"acme\"");
  EXPECT_EQ(QuotedExcerpt(std::string(64, 'k')), "\"" + std::string(64, 'k') + "\"");
  EXPECT_EQ(QuotedExcerpt(std::string(100000, 'k')), "\"" + std::string(64, 'k') + "…\"");
  // "é" is two bytes: byte 64 is the second byte of the 32nd, so the cut keeps 31 of them.
  std::string accents = "x";
  for (int i = 0; i < 40; ++i) accents += "\xC3\xA9";
  std::string cut = "\"x";
  for (int i = 0; i < 31; ++i) cut += "\xC3\xA9";
  EXPECT_EQ(QuotedExcerpt(accents), cut + "…\"");
}

}  // namespace
}  // namespace ekm
