// The imported provider on its own: key ids, sealing, wrap/unwrap under stored material, and
// the error contract once the material is deleted. (The RSA import flow is tested at the
// service level, service/key_material_import_test.cc.)
#include "ekm/provider/imported/imported_key_provider.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "ekm/base/random.h"
#include "ekm/keys/key_hierarchy.h"
#include "ekm/provider/platform/platform_key_provider.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/store_binding.h"
#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

class ImportedKeyProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string key_path = dir_.path() + "/root.key";
    ASSERT_TRUE(PlatformKeyProvider::CreateRootKeyFile(key_path).ok());
    auto platform = PlatformKeyProvider::Open(key_path);
    ASSERT_TRUE(platform.ok());
    platform_ = std::move(*platform);
    auto store = OpenSqliteStore(dir_.path() + "/ekm.db", testing::TestStoreBinding());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->CreateWorkspace("acme", 1).ok());
    for (const char* name : {"prod", "dev"}) {
      auto ek = RandomSecret(32);
      EnvironmentKeyRecord first{0, 1, "platform", "root", {}, 1};
      first.wrapped = *platform_->Wrap("root", *ek, EnvironmentKeyContext("acme", name, 1));
      ASSERT_TRUE(store_->CreateEnvironment("acme", name, first, 1).ok());
    }
    provider_ = std::make_unique<ImportedKeyProvider>(store_.get(), platform_.get());
    material_ = *RandomSecret(32);
    key_id_ = *ImportedKeyId(material_);
  }

  // Stores `material_` sealed for acme/`env`, as an import does.
  void StoreMaterial(std::string_view env) {
    auto e = store_->GetEnvironment("acme", env);
    ASSERT_TRUE(e.ok());
    Store::KeyMaterialRecord rec{e->id, key_id_, {}, 100, 0};
    rec.sealed_material =
        *SealSecret(*platform_, material_, KeyMaterialSealContext("acme", env, key_id_));
    ASSERT_TRUE(store_->PutKeyMaterial(rec).ok());
  }

  testing::TempDir dir_;
  std::unique_ptr<PlatformKeyProvider> platform_;
  StorePtr store_;
  std::unique_ptr<ImportedKeyProvider> provider_;
  SecretBytes material_;
  std::string key_id_;
};

TEST_F(ImportedKeyProviderTest, KeyIdIsAStableFingerprintOfTheMaterial) {
  EXPECT_EQ(*ImportedKeyId(material_), key_id_);
  EXPECT_EQ(key_id_.rfind("imported:", 0), 0u);
  EXPECT_EQ(key_id_.size(), 9u + 32u);
  EXPECT_TRUE(provider_->ValidateKeyId(key_id_).ok());
  EXPECT_NE(*ImportedKeyId(*RandomSecret(32)), key_id_);
  for (const std::string& bad :
       std::vector<std::string>{"root", "imported:", "imported:XYZ", key_id_ + "0",
                                "imported:" + std::string(32, 'A')}) {
    Status s = provider_->ValidateKeyId(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(ImportedKeyProviderTest, WrapsAndUnwrapsUnderTheStoredMaterial) {
  StoreMaterial("prod");
  auto ek = *RandomSecret(32);
  auto ctx = EnvironmentKeyContext("acme", "prod", 2);
  auto wrapped = provider_->Wrap(key_id_, ek, ctx);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
  auto back = provider_->Unwrap(key_id_, *wrapped, ctx);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == ek);
  // Another context (EK version) does not authenticate.
  EXPECT_EQ(provider_->Unwrap(key_id_, *wrapped, EnvironmentKeyContext("acme", "prod", 3))
                .status()
                .code(),
            StatusCode::kDataLoss);
  // The material is per environment: dev never got it.
  Status dev =
      provider_->Unwrap(key_id_, *wrapped, EnvironmentKeyContext("acme", "dev", 2)).status();
  EXPECT_EQ(dev.code(), StatusCode::kNotFound) << dev.ToString();
  EXPECT_NE(dev.hint().find("ekm key import"), std::string::npos);
}

TEST_F(ImportedKeyProviderTest, StoredMaterialIsSealedNotInClear) {
  StoreMaterial("prod");
  auto e = store_->GetEnvironment("acme", "prod");
  auto rec = store_->GetKeyMaterial(e->id, key_id_);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  const Bytes& sealed = (*rec)->sealed_material;
  auto m = material_.RevealForCrypto();
  EXPECT_EQ(std::search(sealed.begin(), sealed.end(), m.begin(), m.end()), sealed.end());
  // Sealed for prod: opening it as dev's fails authentication.
  EXPECT_EQ(UnsealSecret(*platform_, sealed, KeyMaterialSealContext("acme", "dev", key_id_))
                .status()
                .code(),
            StatusCode::kDataLoss);
  EXPECT_TRUE(
      UnsealSecret(*platform_, sealed, KeyMaterialSealContext("acme", "prod", key_id_)).ok());
}

TEST_F(ImportedKeyProviderTest, DeletedMaterialIsADefinitiveRefusalNamingWhen) {
  StoreMaterial("prod");
  auto ctx = EnvironmentKeyContext("acme", "prod", 2);
  auto wrapped = *provider_->Wrap(key_id_, *RandomSecret(32), ctx);
  auto described = provider_->Describe(key_id_);
  ASSERT_TRUE(described.ok());
  EXPECT_EQ(described->state, CmkKeyState::kEnabled);
  EXPECT_EQ(described->rotation, CmkRotation::kDisabled);

  auto e = store_->GetEnvironment("acme", "prod");
  ASSERT_TRUE(store_->DeleteKeyMaterial(e->id, key_id_, 1'700'000'000).ok());
  EXPECT_EQ(store_->DeleteKeyMaterial(e->id, key_id_, 1'700'000'001).code(), StatusCode::kNotFound);
  auto rec = store_->GetKeyMaterial(e->id, key_id_);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_TRUE((*rec)->sealed_material.empty());  // destroyed, not just flagged

  for (Status s : {provider_->Unwrap(key_id_, wrapped, ctx).status(),
                   provider_->Wrap(key_id_, *RandomSecret(32), ctx).status()}) {
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_NE(s.message().find("acme/prod"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("was deleted at 2023-11-14T22:13:20Z"), std::string::npos)
        << s.message();
    EXPECT_NE(s.hint().find("import the same material again"), std::string::npos);
  }
  described = provider_->Describe(key_id_);
  ASSERT_TRUE(described.ok());
  EXPECT_EQ(described->state, CmkKeyState::kDisabled);
  EXPECT_EQ(described->provider_state, "Deleted");
  EXPECT_EQ(described->usable.code(), StatusCode::kFailedPrecondition);

  // The same material again: the old wrapped EK opens again.
  StoreMaterial("prod");
  auto back = provider_->Unwrap(key_id_, wrapped, ctx);
  EXPECT_TRUE(back.ok()) << back.status().ToString();
}

// Every bit flipped and every truncation of a sealed secret and of a wrapped EK fails, with
// DataLoss, and never opens to something else.
TEST_F(ImportedKeyProviderTest, EveryModifiedSealedSecretOrWrappedKeyFails) {
  StoreMaterial("prod");
  auto ctx = KeyMaterialSealContext("acme", "prod", key_id_);
  Bytes sealed = *SealSecret(*platform_, material_, ctx);
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = sealed;
      bad[i] ^= static_cast<uint8_t>(1 << bit);
      auto r = UnsealSecret(*platform_, bad, ctx);
      ASSERT_FALSE(r.ok()) << "byte " << i << " bit " << bit;
    }
  }
  for (size_t n = 0; n < sealed.size(); ++n) {
    auto r = UnsealSecret(*platform_, ByteView(sealed.data(), n), ctx);
    ASSERT_FALSE(r.ok()) << "truncated to " << n;
  }
  auto ek_ctx = EnvironmentKeyContext("acme", "prod", 2);
  Bytes wrapped = *provider_->Wrap(key_id_, *RandomSecret(32), ek_ctx);
  for (size_t i = 0; i < wrapped.size(); ++i) {
    Bytes bad = wrapped;
    bad[i] ^= 0x01;
    auto r = provider_->Unwrap(key_id_, bad, ek_ctx);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << "byte " << i;
  }
  for (size_t n = 0; n < wrapped.size(); ++n) {
    EXPECT_EQ(provider_->Unwrap(key_id_, ByteView(wrapped.data(), n), ek_ctx).status().code(),
              StatusCode::kDataLoss)
        << "truncated to " << n;
  }
}

TEST_F(ImportedKeyProviderTest, UnknownKeyAndForeignBlobs) {
  EXPECT_EQ(provider_->Describe(key_id_).status().code(), StatusCode::kNotFound);
  StoreMaterial("prod");
  auto ctx = EnvironmentKeyContext("acme", "prod", 2);
  auto platform_blob = *platform_->Wrap("root", *RandomSecret(32), ctx);
  EXPECT_EQ(provider_->Unwrap(key_id_, platform_blob, ctx).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(provider_->Unwrap(key_id_, Bytes{}, ctx).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ekm
