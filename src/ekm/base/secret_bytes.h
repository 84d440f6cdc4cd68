// SecretBytes: the only type that holds key material (EKs, DKs, root keys, plaintext keys).
//
// Contract:
//  - move-only; copying a secret needs the explicit Clone();
//  - wiped with OPENSSL_cleanse on destruction and when moved from;
//  - never printable: no operator<<, no formatter, ToString() says "<redacted:NB>";
//  - compared only in constant time (CRYPTO_memcmp);
//  - raw bytes only through RevealForCrypto(), a greppable accessor for code review;
//  - LockInMemory() pins long-lived keys (mlock + MADV_DONTDUMP) where the OS allows.
// Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace ekm {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled
  SecretBytes(const uint8_t* data, size_t size);
  explicit SecretBytes(std::span<const uint8_t> data) : SecretBytes(data.data(), data.size()) {}
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Clone() const { return SecretBytes(data_, size_); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Raw access for crypto code only. Grep for this name when reviewing.
  std::span<const uint8_t> RevealForCrypto() const { return {data_, size_}; }
  // Writing through the span gives the secret a new serial(); do not keep the span across
  // crypto calls.
  std::span<uint8_t> MutableForCrypto() {
    serial_ = size_ > 0 ? NextSerial() : 0;
    return {data_, size_};
  }

  // A number unique in this process to these bytes: new whenever they may change, moved with
  // them, 0 when empty. Lets crypto code keep state derived from a key (a keyed AES context)
  // and reuse it for the same key without comparing or copying the key.
  uint64_t serial() const { return serial_; }

  // Pins the bytes in RAM and out of core dumps. Best effort: returns false where the OS
  // refuses (RLIMIT_MEMLOCK) or in sanitizer builds. For long-lived keys only.
  bool LockInMemory();

  std::string ToString() const { return "<redacted:" + std::to_string(size_) + "B>"; }

  // Constant-time equality.
  bool operator==(const SecretBytes& other) const;

 private:
  void Release();
  static uint64_t NextSerial();

  uint8_t* data_ = nullptr;
  uint64_t serial_ = 0;
  size_t size_ = 0;
  bool locked_ = false;
};

// Wipes a string that held a secret on its way into or out of SecretBytes (a credentials
// file's text, a KMS answer's plaintext field) and empties it.
void WipeString(std::string& s);

}  // namespace ekm
