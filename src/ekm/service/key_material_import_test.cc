// Uploaded key material (BYOK without a KMS) through EkmService: import parameters, the token
// checks, RSAES-OAEP-SHA256 unwrapping, "Update key", deletion as a revocation, and restoring
// access by importing the same material again. FakeClock for the token expiry and the key
// cache TTL. RSA-4096 key generation is slow (more so under ASan): each test makes as few
// import parameters as it can.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>

#include "ekm/api/key_status_json.h"
#include "ekm/base/encoding.h"
#include "ekm/base/ossl.h"
#include "ekm/base/random.h"
#include "ekm/events/lifecycle_event.h"
#include "ekm/provider/imported/imported_key_provider.h"
#include "ekm/service/ekm_service.h"
#include "ekm/store/sqlite/sqlite_store.h"
#include "ekm/testing/temp_dir.h"
#include "ekm/testing/test_caller.h"

namespace ekm {
namespace {

struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* c) const {
    EVP_PKEY_CTX_free(c);  // NOLINT(grep-lint): the deleter
  }
};

enum class Padding { kOaepSha256, kOaepSha1, kPkcs1 };

// What the admin does with openssl: wraps `material` under the PEM public key.
Bytes Wrap(const std::string& pem, ByteView material, Padding padding = Padding::kOaepSha256) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  OsslPtr<EVP_PKEY> key(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  EXPECT_NE(key, nullptr);
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter> owner(
      EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  EVP_PKEY_CTX* ctx = owner.get();
  EXPECT_EQ(EVP_PKEY_encrypt_init(ctx), 1);
  if (padding == Padding::kPkcs1) {
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
  } else {
    const EVP_MD* md = padding == Padding::kOaepSha256 ? EVP_sha256() : EVP_sha1();
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md), 1);
  }
  size_t len = 0;
  EXPECT_EQ(EVP_PKEY_encrypt(ctx, nullptr, &len, material.data(), material.size()), 1);
  Bytes out(len);
  EXPECT_EQ(EVP_PKEY_encrypt(ctx, out.data(), &len, material.data(), material.size()), 1);
  out.resize(len);
  return out;
}

class KeyMaterialImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.path() + "/data";
    options_.clock = &clock_;
    options_.aws.enabled = false;
    ASSERT_TRUE(EkmService::Initialize(options_).ok());
    auto s = EkmService::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    svc_ = std::move(*s);
    ASSERT_TRUE(svc_->CreateWorkspace(TestOp(), "acme").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "prod").ok());
    ASSERT_TRUE(svc_->CreateEnvironment(TestOp(), "acme", "dev").ok());
    material_ = *RandomSecret(32);
  }

  KeyImportParameters Params(std::string_view env) {
    auto p = svc_->CreateKeyImportParameters(TestOp(), "acme", env, std::chrono::hours(24));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : KeyImportParameters{};
  }
  Bytes Wrapped(const KeyImportParameters& p, Padding padding = Padding::kOaepSha256) {
    return Wrap(p.wrapping_key_pem, material_.RevealForCrypto(), padding);
  }
  StatusOr<KeyValidation> Import(std::string_view env, const Bytes& wrapped,
                                 const std::string& token) {
    return svc_->ImportKeyMaterial(TestOp(), "acme", env, wrapped, token);
  }
  Bytes Encrypt(std::string_view text) {
    Bytes ct;
    Status s = svc_->Encrypt(TestOp(), "acme", "prod", "default", AsBytes(text), &ct);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ct;
  }
  Status Decrypt(const Bytes& ct, std::string* text) {
    Bytes pt;
    Status s = svc_->Decrypt(TestOp(), "acme", "prod", ct, &pt);
    if (s.ok()) *text = std::string(AsChars(pt));
    return s;
  }
  std::vector<std::string> EventTypes(std::string_view env) {
    auto store = EkmService::OpenStore(options_);
    LifecycleEventFilter f;
    f.workspace = "acme";
    f.environment = std::string(env);
    std::vector<std::string> out;
    auto events = (*store)->ListLifecycleEvents(f);
    for (const auto& e : *events) out.push_back(e.type);
    return out;
  }
  size_t StoredMaterialRows(std::string_view env) {
    auto store = EkmService::OpenStore(options_);
    auto e = (*store)->GetEnvironment("acme", env);
    return (*store)->GetKeyMaterial(e->id, KeyId())->has_value() ? 1 : 0;
  }
  std::string KeyId() { return *ImportedKeyId(material_); }

  testing::TempDir dir_;
  FakeClock clock_;
  EkmOptions options_;
  std::unique_ptr<EkmService> svc_;
  SecretBytes material_;
};

class SeedOverview : public KeyMaterialImportTest {};
class SeedKeysAndEnvironments : public KeyMaterialImportTest {};

// "You could do this in AWS KMS using an access policy or by uploading a key material file to
// Workato." The upload path end to end: parameters, wrap, import, data round trip; the token
// is spent.
TEST_F(SeedOverview, YouCouldDoThisByUploadingAKeyMaterialFile) {
  Bytes before = Encrypt("on the platform key");
  KeyImportParameters p = Params("prod");
  EXPECT_EQ(p.algorithm, "RSAES_OAEP_SHA_256");
  EXPECT_EQ(p.material_size, 32u);
  EXPECT_EQ(p.wrapping_key_pem.rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  EXPECT_EQ(p.import_token.size(), 43u);
  EXPECT_EQ(p.expires_at, ToUnixSeconds(clock_.Now()) + 24 * 3600);

  Bytes wrapped = Wrapped(p);
  auto v = Import("prod", wrapped, p.import_token + "\n");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok);
  EXPECT_EQ(v->provider, "imported");
  EXPECT_EQ(v->key_id, KeyId());

  auto shown = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(shown.ok());
  EXPECT_EQ(shown->provider, "imported");
  EXPECT_EQ(shown->key_id, KeyId());
  ASSERT_TRUE(shown->description.has_value()) << shown->description_error;
  EXPECT_EQ(shown->description->state, CmkKeyState::kEnabled);

  Bytes after = Encrypt("on the uploaded key");
  std::string text;
  ASSERT_TRUE(Decrypt(after, &text).ok());
  EXPECT_EQ(text, "on the uploaded key");
  ASSERT_TRUE(Decrypt(before, &text).ok());
  EXPECT_EQ(text, "on the platform key");

  // One import per token.
  Status again = Import("prod", wrapped, p.import_token).status();
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition) << again.ToString();
  EXPECT_NE(again.message().find("used already"), std::string::npos);

  auto types = EventTypes("prod");
  EXPECT_NE(std::find(types.begin(), types.end(), "key_material.imported"), types.end());
  EXPECT_NE(std::find(types.begin(), types.end(), "key.set"), types.end());
}

// "Workato accesses the key and uses it to encrypt other keys in the hierarchy." After the
// import the environment key is wrapped under the uploaded material, and it survives a
// restart (the material is stored sealed, not held in memory).
TEST_F(SeedOverview, WorkatoAccessesTheKeyAndUsesItToEncryptOtherKeysInTheHierarchy) {
  KeyImportParameters p = Params("prod");
  auto v = Import("prod", Wrapped(p), p.import_token);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  Bytes ct = Encrypt("hierarchy");
  auto envs = svc_->ListEnvironments(TestOp(), "acme");
  ASSERT_TRUE(envs.ok());
  for (const auto& e : *envs) {
    if (e.name == "prod") {
      EXPECT_EQ(e.cmk_provider, "imported");
      EXPECT_EQ(e.ek_version, 2u);
    } else {
      EXPECT_EQ(e.cmk_provider, "platform");
    }
  }
  svc_.reset();
  svc_ = std::move(*EkmService::Open(options_));
  std::string text;
  ASSERT_TRUE(Decrypt(ct, &text).ok());
  EXPECT_EQ(text, "hierarchy");
}

// "you can configure each environment in your workspace with its own Customer Main Key": an
// import token and wrapping key belong to one environment.
TEST_F(SeedKeysAndEnvironments, EachEnvironmentHasItsOwnCustomerMainKey) {
  KeyImportParameters prod = Params("prod");
  KeyImportParameters dev = Params("dev");
  // dev's token presented to prod.
  Status s = Import("prod", Wrapped(dev), dev.import_token).status();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("another environment"), std::string::npos) << s.message();
  // prod's token, but the material wrapped under dev's wrapping key.
  s = Import("prod", Wrapped(dev), prod.import_token).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.hint().find("rsa_oaep_md:sha256"), std::string::npos) << s.hint();
  // Each environment with its own token: both work, and only prod's CMK changes with prod's.
  ASSERT_TRUE(Import("prod", Wrapped(prod), prod.import_token).ok());
  material_ = *RandomSecret(32);
  ASSERT_TRUE(Import("dev", Wrapped(dev), dev.import_token).ok());
  auto p = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  auto d = svc_->ShowCustomerKey(TestOp(), "acme", "dev");
  EXPECT_EQ(p->provider, "imported");
  EXPECT_EQ(d->provider, "imported");
  EXPECT_NE(p->key_id, d->key_id);
}

TEST_F(KeyMaterialImportTest, WrongTokenWrongWrappingAndWrongSizeChangeNothing) {
  KeyImportParameters p = Params("prod");
  // Malformed and unknown tokens.
  Status s = Import("prod", Wrapped(p), "not a token").status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  Bytes other(32, 7);
  s = Import("prod", Wrapped(p), Base64UrlEncode(other)).status();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("not the current import token of acme/prod"), std::string::npos);

  // Wrong paddings: explained, and the token is not spent.
  std::vector<Status> failed;
  for (Padding bad : {Padding::kPkcs1, Padding::kOaepSha1}) {
    s = Import("prod", Wrapped(p, bad), p.import_token).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.hint().find("not PKCS#1 v1.5, not OAEP with SHA-1"), std::string::npos);
    EXPECT_NE(s.hint().find("openssl pkeyutl -encrypt -pubin"), std::string::npos);
    failed.push_back(s);
  }
  // Not an RSA-4096 ciphertext at all (the clear material uploaded by mistake).
  s = Import("prod", Bytes(material_.RevealForCrypto().begin(), material_.RevealForCrypto().end()),
             p.import_token)
          .status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("32 bytes; an RSA-4096 ciphertext is exactly 512 bytes"),
            std::string::npos)
      << s.message();
  // 16 bytes of material, correctly wrapped: the same answer as a bad padding (no oracle on
  // whether the OAEP decoding succeeded), but for the attempt count.
  Bytes short_material(16, 1);
  s = Import("prod", Wrap(p.wrapping_key_pem, short_material), p.import_token).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.hint().find("openssl rand -out material.bin 32"), std::string::npos);
  failed.push_back(s);
  for (size_t i = 0; i < failed.size(); ++i) {
    std::string message = failed[i].message();
    std::string count = "attempt " + std::to_string(i + 1) + " of 5";
    ASSERT_NE(message.find(count), std::string::npos) << message;
    message.replace(message.find(count), count.size(), "attempt N of 5");
    EXPECT_EQ(message,
              "the wrapped key material does not unwrap to 32 bytes of key material "
              "with this environment's wrapping key (failed attempt N of 5; then the "
              "import token is locked)");
    EXPECT_EQ(failed[i].hint(), failed[0].hint());
  }

  auto shown = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  EXPECT_EQ(shown->provider, "platform");
  EXPECT_EQ(StoredMaterialRows("prod"), 0u);
  // The token still works after all that.
  ASSERT_TRUE(Import("prod", Wrapped(p), p.import_token).ok());
}

// An import token allows 5 unwraps: the count lives in the store, so another process (here a
// second service on the same data directory) sees the lock, and the right material comes too
// late. A new set of parameters starts afresh.
TEST_F(KeyMaterialImportTest, ImportTokenLocksAfterFiveFailedUnwraps) {
  KeyImportParameters p = Params("prod");
  auto other = EkmService::Open(options_);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  for (int i = 0; i < 5; ++i) {
    EkmService& svc = i % 2 == 0 ? *svc_ : **other;
    Bytes wrong = i % 2 == 0 ? Wrapped(p, Padding::kPkcs1) : Wrap(p.wrapping_key_pem, Bytes(16, 1));
    Status s = svc.ImportKeyMaterial(TestOp(), "acme", "prod", wrong, p.import_token).status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("failed attempt " + std::to_string(i + 1) + " of 5"),
              std::string::npos)
        << s.message();
  }
  for (EkmService* svc : {svc_.get(), other->get()}) {
    Status s =
        svc->ImportKeyMaterial(TestOp(), "acme", "prod", Wrapped(p), p.import_token).status();
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_NE(s.message().find("this import token is locked after 5 failed imports"),
              std::string::npos)
        << s.message();
    EXPECT_NE(s.hint().find("ekm key import-params"), std::string::npos) << s.hint();
  }
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->provider, "platform");
  EXPECT_EQ(StoredMaterialRows("prod"), 0u);

  KeyImportParameters fresh = Params("prod");
  auto v = Import("prod", Wrapped(fresh), fresh.import_token);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(svc_->ShowCustomerKey(TestOp(), "acme", "prod")->provider, "imported");
}

TEST_F(KeyMaterialImportTest, ExpiredTokenAndReplacedParameters) {
  KeyImportParameters p = Params("prod");
  clock_.Advance(std::chrono::hours(24));
  Status s = Import("prod", Wrapped(p), p.import_token).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("expired at"), std::string::npos);
  EXPECT_NE(s.hint().find("run `ekm key import-params` again"), std::string::npos);
  // Out-of-range lifetimes are refused before any key is generated.
  EXPECT_EQ(svc_->CreateKeyImportParameters(TestOp(), "acme", "prod", std::chrono::seconds(10))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateKeyImportParameters(TestOp(), "acme", "prod", std::chrono::hours(24 * 8))
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->CreateKeyImportParameters(TestOp(), "acme", "nope", std::chrono::hours(1))
                .status()
                .code(),
            StatusCode::kNotFound);
}

// Deleting the material is a revocation: data becomes unavailable once the cached keys expire;
// importing the same material again brings everything back.
TEST_F(KeyMaterialImportTest, DeleteRevokesAfterTheCacheTtlAndReimportRestores) {
  KeyImportParameters p = Params("prod");
  ASSERT_TRUE(Import("prod", Wrapped(p), p.import_token).ok());
  Bytes ct = Encrypt("precious");

  // Only imported material can be deleted this way.
  Status s = svc_->DeleteKeyMaterial(TestOp(), "acme", "dev", "").status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();

  auto d = svc_->DeleteKeyMaterial(TestOp(), "acme", "prod", "");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->key_id, KeyId());
  EXPECT_TRUE(d->in_use);
  EXPECT_EQ(svc_->DeleteKeyMaterial(TestOp(), "acme", "prod", "").status().code(),
            StatusCode::kNotFound);

  // Within the TTL the cached keys still serve (as with a KMS revocation).
  std::string text;
  EXPECT_TRUE(Decrypt(ct, &text).ok());
  clock_.Advance(options_.key_cache_ttl + std::chrono::seconds(1));
  s = Decrypt(ct, &text);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.ToString().find("was deleted at"), std::string::npos) << s.ToString();
  Bytes out;
  EXPECT_FALSE(svc_->Encrypt(TestOp(), "acme", "prod", "default", AsBytes("x"), &out).ok());
  auto shown = svc_->ShowCustomerKey(TestOp(), "acme", "prod");
  ASSERT_TRUE(shown->description.has_value());
  EXPECT_EQ(shown->description->provider_state, "Deleted");
  auto status = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->state, "unavailable");
  EXPECT_EQ(status->error_resolved_at, 0);  // current: its hint is what to do now
  EXPECT_NE(status->hint.find("import the same material again"), std::string::npos);
  EXPECT_TRUE(EnvironmentKeyStatusToJson(*status)["last_error"]["resolved_at"].is_null());

  // The same material, wrapped under fresh parameters: the same key id, and the data is back.
  KeyImportParameters again = Params("prod");
  auto v = Import("prod", Wrapped(again), again.import_token);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->key_id, KeyId());
  ASSERT_TRUE(Decrypt(ct, &text).ok());
  EXPECT_EQ(text, "precious");
  ASSERT_TRUE(Decrypt(Encrypt("new"), &text).ok());
  // Healthy again: the old error is shown as history, resolved when the state changed.
  status = svc_->KeyStatus(TestOp(), "acme", "prod");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, "healthy");
  EXPECT_EQ(status->error_code, "failed_precondition");
  EXPECT_GT(status->since, 0);
  EXPECT_EQ(status->error_resolved_at, status->since);
  nlohmann::json j = EnvironmentKeyStatusToJson(*status);
  EXPECT_EQ(j["last_error"]["resolved_at"], FormatRfc3339(FromUnixSeconds(status->since)));
  EXPECT_EQ(EnvironmentKeyStatusFromJson(j).error_resolved_at, status->since);

  // --key-id: a malformed id, and material this environment never had.
  EXPECT_EQ(svc_->DeleteKeyMaterial(TestOp(), "acme", "prod", "arn:aws:kms:x").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(svc_->DeleteKeyMaterial(TestOp(), "acme", "prod", "imported:" + std::string(32, '0'))
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(svc_->DeleteKeyMaterial(TestOp(), "acme", "dev", KeyId()).status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(Decrypt(ct, &text).ok());

  auto types = EventTypes("prod");
  EXPECT_EQ(std::count(types.begin(), types.end(), "key_material.imported"), 2);
  EXPECT_EQ(std::count(types.begin(), types.end(), "key_material.deleted"), 1);
}

// Importing other material inside the replacement period is a replacement like `ekm key set`:
// refused with the next allowed time (and no new material left behind), allowed as an
// emergency with a reason, which then starts the repack of the environment's DKs.
TEST_F(KeyMaterialImportTest, ImportingOtherMaterialIsAReplacementOncePerPeriod) {
  auto p = Params("prod");
  ASSERT_TRUE(Import("prod", Wrapped(p), p.import_token).ok());
  Bytes first = Encrypt("before");
  clock_.Advance(std::chrono::hours(1));

  material_ = *RandomSecret(32);  // other material: another CMK
  auto p2 = Params("prod");
  auto refused = Import("prod", Wrapped(p2), p2.import_token);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("next"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(StoredMaterialRows("prod"), 0u) << "a refused import leaves no material behind";

  auto p3 = Params("prod");
  KeyChangeOptions emergency{true, "suspected compromise of the first material"};
  auto v =
      svc_->ImportKeyMaterial(TestOp(), "acme", "prod", Wrapped(p3), p3.import_token, emergency);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->key_id, KeyId());
  EXPECT_EQ(StoredMaterialRows("prod"), 1u);
  auto events = EventTypes("prod");
  EXPECT_NE(std::find(events.begin(), events.end(), "key.emergency_replaced"), events.end());
  std::string text;
  ASSERT_TRUE(Decrypt(first, &text).ok());
  EXPECT_EQ(text, "before");
}

}  // namespace
}  // namespace ekm
