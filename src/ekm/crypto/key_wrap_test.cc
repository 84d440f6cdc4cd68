#include "ekm/crypto/key_wrap.h"

#include <gtest/gtest.h>

#include "ekm/base/random.h"

namespace ekm {
namespace {

TEST(KeyWrapTest, RoundTripBindsAad) {
  auto kek = RandomSecret(32), key = RandomSecret(32);
  Bytes aad = ToBytes("acme/prod/orders");
  auto wrapped = WrapKey(*kek, *key, aad);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(wrapped->size(), 61u);
  auto back = UnwrapKey(*kek, *wrapped, aad);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == *key);
  EXPECT_EQ(UnwrapKey(*kek, *wrapped, ToBytes("globex/prod/orders")).status().code(),
            StatusCode::kDataLoss);
  auto other = RandomSecret(32);
  EXPECT_EQ(UnwrapKey(*other, *wrapped, aad).status().code(), StatusCode::kDataLoss);
}

TEST(KeyWrapTest, MalformedBlobsAreRefused) {
  auto kek = RandomSecret(32), key = RandomSecret(32);
  auto wrapped = WrapKey(*kek, *key, {});
  ASSERT_TRUE(wrapped.ok());
  for (size_t i = 0; i < wrapped->size(); ++i) {
    Bytes bad = *wrapped;
    bad[i] ^= 0x80;
    EXPECT_FALSE(UnwrapKey(*kek, bad, {}).ok()) << i;
    EXPECT_FALSE(UnwrapKey(*kek, ByteView(*wrapped).first(i), {}).ok()) << i;
  }
  Bytes longer = *wrapped;
  longer.resize(200);
  EXPECT_FALSE(UnwrapKey(*kek, longer, {}).ok());
  EXPECT_FALSE(WrapKey(*kek, SecretBytes(8), {}).ok());
}

}  // namespace
}  // namespace ekm
