#include "ekm/base/secret_bytes.h"

#include <gtest/gtest.h>

#include <sstream>
#include <type_traits>

#include "ekm/base/random.h"

namespace ekm {
namespace {

static_assert(!std::is_copy_constructible_v<SecretBytes>);
static_assert(!std::is_copy_assignable_v<SecretBytes>);
static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);

TEST(SecretBytesTest, NeverPrintsItsBytes) {
  const uint8_t raw[4] = {'k', 'e', 'y', '!'};
  SecretBytes s(raw, 4);
  EXPECT_EQ(s.ToString(), "<redacted:4B>");
  EXPECT_EQ(s.ToString().find("key!"), std::string::npos);
}

TEST(SecretBytesTest, MoveEmptiesTheSource) {
  auto a = RandomSecret(32);
  ASSERT_TRUE(a.ok());
  SecretBytes b = std::move(*a);
  EXPECT_EQ(b.size(), 32u);
  EXPECT_EQ(a->size(), 0u);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

TEST(SecretBytesTest, SerialIsUniqueMovesAndChangesWithTheBytes) {
  SecretBytes a(32), b(32), empty;
  EXPECT_NE(a.serial(), 0u);
  EXPECT_NE(a.serial(), b.serial());
  EXPECT_EQ(empty.serial(), 0u);
  EXPECT_NE(a.Clone().serial(), a.serial());
  const uint64_t s = a.serial();
  SecretBytes moved(std::move(a));
  EXPECT_EQ(moved.serial(), s);
  EXPECT_EQ(a.serial(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  moved.MutableForCrypto()[0] = 1;
  EXPECT_NE(moved.serial(), s);
}

TEST(SecretBytesTest, ConstantTimeEquality) {
  auto a = RandomSecret(32);
  ASSERT_TRUE(a.ok());
  SecretBytes b = a->Clone();
  EXPECT_TRUE(*a == b);
  b.MutableForCrypto()[31] ^= 1;
  EXPECT_FALSE(*a == b);
  EXPECT_FALSE(*a == SecretBytes(31));
}

TEST(SecretBytesTest, RandomSecretsDiffer) {
  auto a = RandomSecret(32), b = RandomSecret(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(*a == *b);
}

TEST(SecretBytesTest, LockInMemoryIsBestEffort) {
  auto a = RandomSecret(32);
  ASSERT_TRUE(a.ok());
  (void)a->LockInMemory();  // may be refused by RLIMIT_MEMLOCK or sanitizers; must not crash
  SecretBytes moved = std::move(*a);
  EXPECT_EQ(moved.size(), 32u);
}

TEST(WipeString, EmptiesTheString) {
  std::string s = "aws_secret_access_key = wJalrXUtnFEMI";
  WipeString(s);
  EXPECT_TRUE(s.empty());
  WipeString(s);  // an empty one too
  EXPECT_TRUE(s.empty());
}

}  // namespace
}  // namespace ekm
