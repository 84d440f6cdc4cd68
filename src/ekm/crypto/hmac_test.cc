#include "ekm/crypto/hmac.h"

#include <gtest/gtest.h>

#include "ekm/base/encoding.h"

namespace ekm {
namespace {

TEST(HmacTest, Rfc4231Vectors) {
  // Test case 1: a 20-byte key of 0x0b.
  SecretBytes key1(*HexDecode("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"));
  auto mac1 = HmacSha256(key1, AsBytes("Hi There"));
  ASSERT_TRUE(mac1.ok());
  EXPECT_EQ(HexEncode(*mac1), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2: a key shorter than the block.
  SecretBytes key2(AsBytes("Jefe"));
  auto mac2 = HmacSha256(key2, AsBytes("what do ya want for nothing?"));
  ASSERT_TRUE(mac2.ok());
  EXPECT_EQ(HexEncode(*mac2), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace
}  // namespace ekm
