#include "ekm/base/secret_bytes.h"

#include <openssl/crypto.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <new>

namespace ekm {

namespace {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
}  // namespace

uint64_t SecretBytes::NextSerial() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size_ > 0) {
    data_ = new uint8_t[size_];
    std::memset(data_, 0, size_);
    serial_ = NextSerial();
  }
}

SecretBytes::SecretBytes(const uint8_t* data, size_t size) : size_(size) {
  if (size_ > 0) {
    data_ = new uint8_t[size_];
    std::memcpy(data_, data, size_);
    serial_ = NextSerial();
  }
}

SecretBytes::~SecretBytes() { Release(); }

void WipeString(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(other.data_), serial_(other.serial_), size_(other.size_), locked_(other.locked_) {
  other.data_ = nullptr;
  other.serial_ = 0;
  other.size_ = 0;
  other.locked_ = false;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = other.data_;
    serial_ = other.serial_;
    size_ = other.size_;
    locked_ = other.locked_;
    other.data_ = nullptr;
    other.serial_ = 0;
    other.size_ = 0;
    other.locked_ = false;
  }
  return *this;
}

void SecretBytes::Release() {
  if (data_ != nullptr) {
    OPENSSL_cleanse(data_, size_);
    if (locked_) munlock(data_, size_);
    delete[] data_;
  }
  data_ = nullptr;
  serial_ = 0;
  size_ = 0;
  locked_ = false;
}

bool SecretBytes::LockInMemory() {
  if (kSanitized || data_ == nullptr || locked_) return locked_;
  if (mlock(data_, size_) != 0) return false;
#ifdef MADV_DONTDUMP
  // madvise needs page alignment; mark the enclosing pages. Best effort.
  const uintptr_t page = 4096;
  uintptr_t start = reinterpret_cast<uintptr_t>(data_) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data_) + size_ + page - 1) & ~(page - 1);
  (void)madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTDUMP);
#endif
  locked_ = true;
  return true;
}

bool SecretBytes::operator==(const SecretBytes& other) const {
  if (size_ != other.size_) return false;
  if (size_ == 0) return true;
  return CRYPTO_memcmp(data_, other.data_, size_) == 0;
}

}  // namespace ekm
