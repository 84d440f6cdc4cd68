#include "ekm/provider/platform/platform_key_provider.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

#include "ekm/base/encoding.h"
#include "ekm/base/ossl.h"
#include "ekm/base/endian.h"
#include "ekm/base/random.h"
#include "ekm/crypto/key_wrap.h"

namespace ekm {

namespace {

constexpr uint8_t kPlatformWrapVersion = 1;
constexpr size_t kRootKeySize = 32;
constexpr std::string_view kWrapLabel = "ekm platform wrap v1";
constexpr std::string_view kFingerprintLabel = "ekm platform root key fingerprint v1";

std::string Errno() { return std::strerror(errno); }

Status ComputeFingerprint(const SecretBytes& key, uint8_t out[8]) {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx) return OsslError("EVP_MD_CTX_new");
  EKM_OSSL_CHECK(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr), "SHA-256 init");
  EKM_OSSL_CHECK(EVP_DigestUpdate(ctx.get(), kFingerprintLabel.data(), kFingerprintLabel.size()),
                 "SHA-256 update");
  auto k = key.RevealForCrypto();
  EKM_OSSL_CHECK(EVP_DigestUpdate(ctx.get(), k.data(), k.size()), "SHA-256 update");
  EKM_OSSL_CHECK(EVP_DigestFinal_ex(ctx.get(), digest, &len), "SHA-256 final");
  std::memcpy(out, digest, 8);
  return Status::Ok();
}

Bytes WrapAad(std::string_view key_id, const EncryptionContext& context) {
  Bytes aad(kWrapLabel.begin(), kWrapLabel.end());
  aad.push_back(0);
  Append(aad, EncodeEncryptionContext(context));
  uint8_t len[4];
  StoreBigEndian32(len, static_cast<uint32_t>(key_id.size()));
  aad.insert(aad.end(), len, len + 4);
  Append(aad, AsBytes(key_id));
  return aad;
}

}  // namespace

Status PlatformKeyProvider::CreateRootKeyFile(const std::string& path) {
  EKM_ASSIGN_OR_RETURN(SecretBytes key, RandomSecret(kRootKeySize));
  std::string hex = HexEncode(key.RevealForCrypto());
  hex.push_back('\n');
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    Status s = errno == EEXIST
                   ? AlreadyExistsError("root key file " + path + " already exists")
                   : FailedPreconditionError("cannot create root key file " + path + ": " +
                                                 Errno(),
                                             "check that the directory exists and is writable");
    OPENSSL_cleanse(hex.data(), hex.size());
    return s;
  }
  size_t off = 0;
  while (off < hex.size()) {
    ssize_t n = ::write(fd, hex.data() + off, hex.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  OPENSSL_cleanse(hex.data(), hex.size());
  bool ok = off == hex.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return FailedPreconditionError("cannot write root key file " + path + ": " + Errno());
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<PlatformKeyProvider>> PlatformKeyProvider::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return NotFoundError("root key file " + path + " does not exist",
                           "run `ekm init` to create one, or pass the right --root-key-file");
    }
    return FailedPreconditionError("cannot open root key file " + path + ": " + Errno());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return FailedPreconditionError("cannot stat root key file " + path + ": " + Errno());
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return FailedPreconditionError("root key file " + path + " is accessible by other users (mode " +
                                       mode + ")",
                                   "restrict it with `chmod 600 " + path + "`");
  }
  // Raw 32 bytes, or 64 hex characters with optional trailing whitespace.
  SecretBytes buf(130);
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd, buf.MutableForCrypto().data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  const uint8_t* b = buf.RevealForCrypto().data();
  SecretBytes key;
  if (got == kRootKeySize) {
    key = SecretBytes(b, kRootKeySize);
  } else {
    size_t n = got;
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' ')) --n;
    if (n != 2 * kRootKeySize) {
      return FailedPreconditionError(
          "root key file " + path + " is not a root key (expected 32 raw bytes or 64 hex "
          "characters, found " + std::to_string(got) + " bytes)",
          "point --root-key-file at the key file created by `ekm init`");
    }
    key = SecretBytes(kRootKeySize);
    auto out = key.MutableForCrypto();
    for (size_t i = 0; i < kRootKeySize; ++i) {
      auto nib = [](uint8_t c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = nib(b[2 * i]), lo = nib(b[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        return FailedPreconditionError("root key file " + path +
                                           " has a non-hex character at position " +
                                           std::to_string(2 * i + (hi < 0 ? 1 : 2)),
                                       "point --root-key-file at the key file created by `ekm init`");
      }
      out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
  key.LockInMemory();
  auto provider =
      std::unique_ptr<PlatformKeyProvider>(new PlatformKeyProvider(std::move(key), path));
  EKM_RETURN_IF_ERROR(ComputeFingerprint(provider->root_key_, provider->fingerprint_));
  provider->fingerprint_hex_ = HexEncode(ByteView(provider->fingerprint_, 8));
  return provider;
}

PlatformKeyProvider::PlatformKeyProvider(SecretBytes root_key, std::string path)
    : root_key_(std::move(root_key)), path_(std::move(path)) {}

Status PlatformKeyProvider::CheckKeyId(std::string_view key_id) const {
  if (key_id != kPlatformRootKeyId) {
    return InvalidArgumentError("platform provider has no key \"" + std::string(key_id) + "\"",
                                "the platform-managed CMK is called \"root\"");
  }
  return Status::Ok();
}

StatusOr<Bytes> PlatformKeyProvider::Wrap(std::string_view key_id, const SecretBytes& key,
                                          const EncryptionContext& context) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  EKM_ASSIGN_OR_RETURN(Bytes inner, WrapKey(root_key_, key, WrapAad(key_id, context)));
  Bytes out;
  out.reserve(1 + 8 + inner.size());
  out.push_back(kPlatformWrapVersion);
  out.insert(out.end(), fingerprint_, fingerprint_ + 8);
  Append(out, inner);
  return out;
}

StatusOr<SecretBytes> PlatformKeyProvider::Unwrap(std::string_view key_id, ByteView wrapped,
                                                  const EncryptionContext& context) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  if (wrapped.size() < 9 || wrapped[0] != kPlatformWrapVersion) {
    return DataLossError("wrapped environment key is malformed (not a platform provider blob)");
  }
  if (!std::equal(fingerprint_, fingerprint_ + 8, wrapped.begin() + 1)) {  // public value
    return FailedPreconditionError(
        "this environment key was wrapped under another platform root key (fingerprint " +
            HexEncode(wrapped.subspan(1, 8)) + "); the root key in " + path_ +
            " has fingerprint " + fingerprint_hex_,
        "point --root-key-file at the original root key file");
  }
  return UnwrapKey(root_key_, wrapped.subspan(9), WrapAad(key_id, context));
}

StatusOr<CmkDescription> PlatformKeyProvider::Describe(std::string_view key_id) {
  EKM_RETURN_IF_ERROR(CheckKeyId(key_id));
  CmkDescription d;
  d.provider = std::string(kPlatformProviderName);
  d.key_id = std::string(key_id);
  d.generation = fingerprint_hex_;
  d.state = "Enabled";
  d.rotation = CmkRotation::kDisabled;
  d.describe_permitted = true;
  d.detail = "platform-managed root key in " + path_;
  return d;
}

}  // namespace ekm
