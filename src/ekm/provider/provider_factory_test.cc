#include "ekm/provider/provider_factory.h"

#include <gtest/gtest.h>

#include "ekm/provider/aws/aws_kms_setup.h"
#include "ekm/provider/imported/imported_key_provider.h"

namespace ekm {
namespace {

class NamedProvider : public KeyProvider {
 public:
  explicit NamedProvider(std::string name) : name_(std::move(name)) {}
  std::string_view Name() const override { return name_; }
  StatusOr<Bytes> Wrap(std::string_view, const SecretBytes&, const EncryptionContext&) override {
    return InternalError("not used");
  }
  StatusOr<SecretBytes> Unwrap(std::string_view, ByteView, const EncryptionContext&) override {
    return InternalError("not used");
  }
  StatusOr<CmkDescription> Describe(std::string_view) override { return InternalError("not used"); }

 private:
  std::string name_;
};

ProviderFactory Factory(std::string name, std::string builds) {
  return ProviderFactory{
      name, "", "", [builds](const ProviderDependencies&) {
        return StatusOr<KeyProviderPtr>(KeyProviderPtr(std::make_unique<NamedProvider>(builds)));
      }};
}

TEST(ProviderFactoryTest, BuildsEveryFactorysProviderIntoTheRegistry) {
  ProviderRegistry registry;
  ASSERT_TRUE(CreateProviders({Factory("one", "one"), Factory("two", "two")}, {}, &registry).ok());
  EXPECT_TRUE(registry.Get("one").ok());
  EXPECT_TRUE(registry.Get("two").ok());
  auto missing = registry.Get("three");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().hint().find("one, two"), std::string::npos);
}

TEST(ProviderFactoryTest, AFactoryThatBuildsAnotherNameOrFailsIsNamed) {
  ProviderRegistry registry;
  Status wrong = CreateProviders({Factory("one", "other")}, {}, &registry);
  EXPECT_EQ(wrong.code(), StatusCode::kInternal);
  EXPECT_NE(wrong.message().find("one"), std::string::npos);
  // The imported provider needs the store and the platform key.
  Status imported = CreateProviders({ImportedKeyProviderFactory()}, {}, &registry);
  EXPECT_FALSE(imported.ok());
  EXPECT_NE(imported.message().find("setting up key provider imported"), std::string::npos)
      << imported.message();
}

TEST(ProviderFactoryTest, TheAwsFactoryNamesItsProviderAndConfigSection) {
  AwsKmsSetupOptions o;
  o.principal_arn = "arn:aws:iam::111122223333:role/ekm";
  o.env = [](std::string_view) { return std::optional<std::string>(); };
  ProviderFactory f = AwsKmsProviderFactory(o);
  EXPECT_EQ(f.name, kAwsKmsProviderName);
  EXPECT_EQ(f.config_section, "aws");
  ProviderRegistry registry;
  ASSERT_TRUE(CreateProviders({f}, {}, &registry).ok());
  auto aws = registry.Get(kAwsKmsProviderName);
  ASSERT_TRUE(aws.ok());
  // The configured principal is the platform's identity at AWS, without asking STS.
  auto identity = (*aws)->PlatformIdentity();
  ASSERT_TRUE(identity.ok()) << identity.status().ToString();
  EXPECT_EQ(*identity, "arn:aws:iam::111122223333:role/ekm");
}

}  // namespace
}  // namespace ekm
