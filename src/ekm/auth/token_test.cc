#include "ekm/auth/token.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

namespace ekm::auth {
namespace {

std::string Text(const SecretBytes& s) {
  auto r = s.RevealForCrypto();
  return std::string(r.begin(), r.end());
}

TEST(TokenTest, GeneratedTokensHaveTheDocumentedFormAndParseBack) {
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto t = GenerateToken();
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    std::string text = Text(t->text);
    EXPECT_TRUE(std::regex_match(text, std::regex("ekm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}"))) << i;
    EXPECT_TRUE(ids.insert(t->id).second);
    auto p = ParseToken(text);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->id, t->id);
    EXPECT_TRUE(SecretMatches(p->secret, t->secret_sha256));
    EXPECT_EQ(TokenIdOf(text), t->id);
  }
}

TEST(TokenTest, AnotherSecretDoesNotMatch) {
  auto a = GenerateToken();
  auto b = GenerateToken();
  ASSERT_TRUE(a.ok() && b.ok());
  auto pa = ParseToken(Text(a->text));
  ASSERT_TRUE(pa.ok());
  EXPECT_FALSE(SecretMatches(pa->secret, b->secret_sha256));
  EXPECT_FALSE(SecretMatches(pa->secret, Bytes(31)));
}

TEST(TokenTest, MalformedTokensAreRefusedWithoutQuotingThem) {
  auto t = GenerateToken();
  ASSERT_TRUE(t.ok());
  std::string good = Text(t->text);
  std::string upper_hex = good;
  upper_hex[4] = 'A';
  std::string bad_char = good;
  bad_char.back() = '!';
  std::string noncanonical = good;  // last char carries 2 unused bits: must be zero
  noncanonical.back() = 'B';
  for (const std::string& bad :
       {std::string(), std::string("ekm_"), good.substr(1), good + "A", "xyz" + good.substr(3),
        upper_hex, bad_char, noncanonical, std::string("Bearer ") + good}) {
    auto p = ParseToken(bad);
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(p.status().message().find(good.substr(21)), std::string::npos);
  }
}

TEST(TokenTest, RolesParseAndPrint) {
  for (std::string_view name : {"admin", "owner", "key-manager", "app", "auditor"}) {
    auto r = ParseRole(name);
    ASSERT_TRUE(r.ok()) << name;
    EXPECT_EQ(RoleName(*r), name);
  }
  EXPECT_EQ(ParseRole("root").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRole("Owner").status().code(), StatusCode::kInvalidArgument);
}

TEST(TokenTest, PrincipalActorAndEnvironments) {
  Principal p;
  p.token_id = "0123456789abcdef";
  p.role = Role::kKeyManager;
  p.workspace = "acme";
  EXPECT_EQ(p.Actor(), "token:0123456789abcdef");
  EXPECT_TRUE(p.MayUseEnvironment("prod"));
  p.environments = {"staging"};
  EXPECT_FALSE(p.MayUseEnvironment("prod"));
  EXPECT_TRUE(p.MayUseEnvironment("staging"));
  EXPECT_TRUE(Principal::LocalOperator().IsAdmin());
}

}  // namespace
}  // namespace ekm::auth
