#include "ekm/provider/platform/platform_key_provider.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "ekm/base/random.h"

namespace ekm {
namespace {

class PlatformKeyProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ekm-platform-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/root.key";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::string dir_, path_;
  EncryptionContext ctx_{
      {"ekm:workspace", "acme"}, {"ekm:environment", "prod"}, {"ekm:ek-version", "1"}};
};

TEST_F(PlatformKeyProviderTest, CreatesRootKeyWithMode0600AndNeverOverwrites) {
  ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(path_).ok());
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Status again = PlatformKeyProvider::CreateRootKeyFile(path_);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
}

TEST_F(PlatformKeyProviderTest, WrapUnwrapRoundTripBindsContext) {
  ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(path_).ok());
  auto p = PlatformKeyProvider::Open(path_);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto ek = RandomSecret(32);
  ASSERT_TRUE(ek.ok());
  auto wrapped = (*p)->Wrap("root", *ek, ctx_);
  ASSERT_TRUE(wrapped.ok());
  auto back = (*p)->Unwrap("root", *wrapped, ctx_);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == *ek);

  EncryptionContext other = ctx_;
  other["ekm:workspace"] = "globex";
  EXPECT_EQ((*p)->Unwrap("root", *wrapped, other).status().code(), StatusCode::kDataLoss);
  Bytes flipped = *wrapped;
  flipped.back() ^= 1;
  EXPECT_EQ((*p)->Unwrap("root", flipped, ctx_).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ((*p)->Unwrap("nope", *wrapped, ctx_).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PlatformKeyProviderTest, WrongRootKeyIsNamedByFingerprint) {
  ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(path_).ok());
  std::string other_path = dir_ + "/other.key";
  ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(other_path).ok());
  auto p = PlatformKeyProvider::Open(path_);
  auto q = PlatformKeyProvider::Open(other_path);
  ASSERT_TRUE(p.ok() && q.ok());
  auto ek = RandomSecret(32);
  auto wrapped = (*p)->Wrap("root", *ek, ctx_);
  ASSERT_TRUE(wrapped.ok());
  auto s = (*q)->Unwrap("root", *wrapped, ctx_).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find((*p)->fingerprint()), std::string::npos);
  EXPECT_NE(s.hint().find("--root-key-file"), std::string::npos);
}

TEST_F(PlatformKeyProviderTest, RefusesLooseModeAndGarbage) {
  ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(path_).ok());
  chmod(path_.c_str(), 0644);
  auto p = PlatformKeyProvider::Open(path_);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().hint().find("chmod 600"), std::string::npos);

  std::string bad = dir_ + "/bad.key";
  { std::ofstream(bad) << "not a key\n"; }
  chmod(bad.c_str(), 0600);
  EXPECT_EQ(PlatformKeyProvider::Open(bad).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(PlatformKeyProvider::Open(dir_ + "/missing.key").status().code(),
            StatusCode::kNotFound);
}

TEST_F(PlatformKeyProviderTest, AcceptsRawAndHexKeys) {
  std::string raw = dir_ + "/raw.key";
  {
    std::ofstream f(raw, std::ios::binary);
    for (int i = 0; i < 32; ++i) f.put(static_cast<char>(i));
  }
  chmod(raw.c_str(), 0600);
  std::string hex = dir_ + "/hex.key";
  {
    std::ofstream f(hex);
    for (int i = 0; i < 32; ++i) {
      char b[3];
      std::snprintf(b, sizeof(b), "%02x", i);
      f << b;
    }
    f << "\n";
  }
  chmod(hex.c_str(), 0600);
  auto a = PlatformKeyProvider::Open(raw);
  auto b = PlatformKeyProvider::Open(hex);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->fingerprint(), (*b)->fingerprint());
  auto d = (*a)->Describe("root");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state, CmkKeyState::kEnabled);
  EXPECT_EQ(d->provider_state, "Enabled");
  EXPECT_EQ(d->generation, (*a)->fingerprint());
}

}  // namespace
}  // namespace ekm
