#include "ekm/crypto/hkdf.h"

#include <gtest/gtest.h>

#include "ekm/base/encoding.h"

namespace ekm {
namespace {

TEST(HkdfTest, Rfc5869Vectors) {
  SecretBytes ikm(*HexDecode("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"));
  auto okm = HkdfSha256(ikm, *HexDecode("000102030405060708090a0b0c"),
                        *HexDecode("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_TRUE(okm.ok());
  EXPECT_EQ(HexEncode(okm->RevealForCrypto()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  auto okm3 = HkdfSha256(ikm, {}, {}, 42);
  ASSERT_TRUE(okm3.ok());
  EXPECT_EQ(HexEncode(okm3->RevealForCrypto()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
  EXPECT_FALSE(HkdfSha256(ikm, {}, {}, 0).ok());
}

}  // namespace
}  // namespace ekm
