#include "ekm/provider/imported/key_material_import.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "ekm/base/clock.h"
#include "ekm/base/encoding.h"
#include "ekm/base/ossl.h"
#include "ekm/base/random.h"
#include "ekm/provider/imported/imported_key_provider.h"

namespace ekm {

namespace {

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};

Bytes Sha256(ByteView in) {
  Bytes out(SHA256_DIGEST_LENGTH);
  SHA256(in.data(), in.size(), out.data());
  return out;
}

std::string Where(const EnvironmentRecord& env) { return env.workspace + "/" + env.name; }

std::string ParamsCommand(const EnvironmentRecord& env) {
  return "`ekm key import-params --workspace " + env.workspace + " --environment " + env.name +
         " --out DIR`";
}

// One answer for every way the unwrap can fail (the OAEP decoding, or a plaintext that is not
// 32 bytes): telling them apart would say whether a ciphertext has valid OAEP padding, an
// oracle on the wrapping key. With the attempt count, since the token locks at the limit.
Status WrongWrapping(int64_t attempt) {
  return InvalidArgumentError(
      "the wrapped key material does not unwrap to 32 bytes of key material with this "
      "environment's wrapping key (failed attempt " +
          std::to_string(attempt) + " of " + std::to_string(kMaxImportAttempts) +
          "; then the import token is locked)",
      "wrap exactly 32 random bytes with RSAES-OAEP with SHA-256 and MGF1-SHA-256 (not PKCS#1 "
      "v1.5, not OAEP with SHA-1) under the wrapping-key.pem of the current import "
      "parameters: " +
          ImportOpensslCommands("DIR"));
}

}  // namespace

StatusOr<ImportParameters> CreateImportParameters(Store& store, KeyProvider& platform,
                                                  const EnvironmentRecord& env, int64_t now,
                                                  int64_t lifetime_seconds) {
  if (lifetime_seconds < kMinImportTokenLifetimeSeconds ||
      lifetime_seconds > kMaxImportTokenLifetimeSeconds) {
    return InvalidArgumentError("an import token may live between 60 seconds and 7 days, not " +
                                    std::to_string(lifetime_seconds) + " seconds",
                                "pass --expires-in between 1m and 7d (default 24h)");
  }
  OsslPtr<EVP_PKEY> pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", kImportWrappingKeyBits));
  if (!pkey) return OsslError("generating an RSA-4096 wrapping key");

  std::unique_ptr<BIO, BioDeleter> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey.get()) != 1) {
    return OsslError("writing the wrapping public key as PEM");
  }
  char* pem = nullptr;
  long pem_len = BIO_get_mem_data(bio.get(), &pem);
  ImportParameters out;
  out.wrapping_key_pem.assign(pem, static_cast<size_t>(pem_len));

  int der_len = i2d_PrivateKey(pkey.get(), nullptr);
  if (der_len <= 0) return OsslError("encoding the wrapping private key");
  SecretBytes der(static_cast<size_t>(der_len));
  uint8_t* p = der.MutableForCrypto().data();
  if (i2d_PrivateKey(pkey.get(), &p) != der_len)
    return OsslError("encoding the wrapping private key");

  EKM_ASSIGN_OR_RETURN(SecretBytes token, RandomSecret(kImportTokenSize));
  out.import_token = Base64UrlEncode(token.RevealForCrypto());
  out.expires_at = now + lifetime_seconds;

  Store::ImportParamsRecord rec;
  rec.environment_id = env.id;
  rec.token_sha256 = Sha256(token.RevealForCrypto());
  rec.public_key_pem = out.wrapping_key_pem;
  EKM_ASSIGN_OR_RETURN(
      rec.sealed_private_key,
      SealSecret(platform, der, ImportWrappingKeySealContext(env.workspace, env.name)));
  rec.created_at = now;
  rec.expires_at = out.expires_at;
  EKM_RETURN_IF_ERROR(store.PutImportParams(rec));
  return out;
}

StatusOr<SecretBytes> OpenImportedMaterial(Store& store, KeyProvider& platform,
                                           const EnvironmentRecord& env, ByteView wrapped_material,
                                           std::string_view import_token, int64_t now) {
  EKM_ASSIGN_OR_RETURN(
      Bytes hash,
      ImportTokenHash(import_token, "pass the import-token file written by " + ParamsCommand(env)));

  EKM_ASSIGN_OR_RETURN(std::optional<Store::ImportParamsRecord> params,
                       store.GetImportParams(env.id));
  bool match = params && params->token_sha256.size() == hash.size() &&
               CRYPTO_memcmp(params->token_sha256.data(), hash.data(), hash.size()) == 0;
  if (!match) {
    EKM_ASSIGN_OR_RETURN(std::optional<int64_t> owner, store.FindImportTokenEnvironment(hash));
    if (owner && *owner != env.id) {
      return PermissionDeniedError(
          "this import token was issued for another environment, not " + Where(env),
          "a token imports only into the environment it was issued "
          "for: run " +
              ParamsCommand(env) +
              " and wrap the material "
              "with that wrapping key");
    }
    return PermissionDeniedError("this import token is not the current import token of " +
                                     Where(env) +
                                     " (unknown, or replaced by newer import "
                                     "parameters)",
                                 "use the import-token file written with the wrapping key you "
                                 "used, or run " +
                                     ParamsCommand(env) + " again");
  }
  if (params->used_at != 0) {
    return FailedPreconditionError(
        "this import token was used already, at " + FormatRfc3339(FromUnixSeconds(params->used_at)),
        "a token imports once: run " + ParamsCommand(env) + " again");
  }
  if (now >= params->expires_at) {
    return FailedPreconditionError(
        "this import token expired at " + FormatRfc3339(FromUnixSeconds(params->expires_at)),
        "run `ekm key import-params` again and wrap the material with the new wrapping key");
  }

  // The size of the upload is public: checked before any attempt is counted.
  EKM_RETURN_IF_ERROR(CheckWrappedMaterialSize(wrapped_material));
  // Counted before the private key is used, atomically in the store: at most
  // kMaxImportAttempts unwraps per token, whichever processes try.
  auto attempt = store.TakeImportAttempt(env.id, params->token_sha256, kMaxImportAttempts);
  if (!attempt.ok()) {
    if (attempt.status().code() != StatusCode::kFailedPrecondition) return attempt.status();
    return FailedPreconditionError("this import token is locked after " +
                                       std::to_string(kMaxImportAttempts) + " failed imports",
                                   "run " + ParamsCommand(env) +
                                       " again for a new token and wrapping key, and wrap the "
                                       "material with that key: " +
                                       ImportOpensslCommands("DIR"));
  }
  EKM_ASSIGN_OR_RETURN(SecretBytes der,
                       UnsealSecret(platform, params->sealed_private_key,
                                    ImportWrappingKeySealContext(env.workspace, env.name)));
  EKM_ASSIGN_OR_RETURN(std::optional<SecretBytes> material,
                       UnwrapImportedMaterial(der, wrapped_material));
  if (!material) return WrongWrapping(*attempt);
  EKM_RETURN_IF_ERROR(store.SpendImportToken(env.id, params->token_sha256, now));
  return std::move(*material);
}

}  // namespace ekm
