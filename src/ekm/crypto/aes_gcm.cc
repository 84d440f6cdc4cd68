#include "ekm/crypto/aes_gcm.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <mutex>
#include <thread>
#include <vector>

#include "ekm/base/ossl.h"

namespace ekm {

namespace {

// Fetched once: EVP_CIPHER_fetch per call would cost a lock and a lookup.
const EVP_CIPHER* Aes256Gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

// One context per thread and direction, reused: EVP_CIPHER_CTX_new + free per message would
// cost two allocations. It also remembers which key it holds (SecretBytes::serial()): for the
// same key again only the nonce is set, which skips the AES key schedule and the GHASH table,
// most of the fixed cost of a small message. A failed call forgets the key.
//
// A context keeps the key schedule of the last key it used after the operation: when the key
// hierarchy drops keys (revocation, shred, expiry), AesGcmForgetKeys wipes every thread's
// contexts, idle threads' included. `state` says who may touch the context: its thread while
// kBusy (one operation), AesGcmForgetKeys while kClearing. A context found busy is wiped by its
// own thread when the operation ends: it sees that the epoch moved since the operation began.
enum : uint32_t { kIdle = 0, kBusy = 1, kClearing = 2 };

struct ThreadContext {
  OsslPtr<EVP_CIPHER_CTX> ctx{EVP_CIPHER_CTX_new()};
  bool ready = false;
  uint64_t key_serial = 0;
  std::atomic<uint32_t> state{kIdle};

  // The context keyed with `key` and set to `nonce`, or nullptr.
  EVP_CIPHER_CTX* Start(bool encrypt, const SecretBytes& key, ByteView nonce) {
    if (!ready) {
      if (!ctx) return nullptr;
      const int ok = encrypt
                         ? EVP_EncryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr)
                         : EVP_DecryptInit_ex(ctx.get(), Aes256Gcm(), nullptr, nullptr, nullptr);
      if (ok != 1) return nullptr;
      ready = true;
    }
    const bool same_key = key.serial() != 0 && key.serial() == key_serial;
    const uint8_t* k = same_key ? nullptr : key.RevealForCrypto().data();
    key_serial = 0;  // until this call succeeds
    const int ok = encrypt ? EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, k, nonce.data())
                           : EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, k, nonce.data());
    if (ok != 1) return nullptr;
    key_serial = key.serial();
    return ctx.get();
  }
  void Forget() { key_serial = 0; }
  // Drops the key schedule and GHASH table: OpenSSL frees the cipher's state with
  // OPENSSL_clear_free. The next operation keys the context afresh.
  void Wipe() {
    if (ctx) EVP_CIPHER_CTX_reset(ctx.get());
    ready = false;
    key_serial = 0;
  }
};

// Every thread's contexts, so that AesGcmForgetKeys reaches threads that are not running.
struct Registry {
  std::mutex mu;
  std::vector<ThreadContext*> contexts;
  std::atomic<uint64_t> epoch{0};  // one more per AesGcmForgetKeys
};

Registry& Contexts() {
  // Never destroyed: a thread may end (and deregister) after static destructors ran.
  static Registry* const registry = new Registry;
  return *registry;
}

// This thread's two contexts, registered while the thread lives (the registration is the only
// lock and allocation, once per thread).
struct ThreadContexts {
  ThreadContext encrypt, decrypt;
  ThreadContexts() {
    std::lock_guard<std::mutex> lock(Contexts().mu);
    Contexts().contexts.push_back(&encrypt);
    Contexts().contexts.push_back(&decrypt);
  }
  ~ThreadContexts() {
    std::lock_guard<std::mutex> lock(Contexts().mu);
    auto& all = Contexts().contexts;
    all.erase(std::remove_if(all.begin(), all.end(),
                             [&](ThreadContext* c) { return c == &encrypt || c == &decrypt; }),
              all.end());
  }
};

ThreadContexts& Mine() {
  thread_local ThreadContexts c;
  return c;
}

// One operation on this thread's context, from before Start to after the tag.
class InUse {
 public:
  explicit InUse(ThreadContext& tc)
      : tc_(tc), epoch_(Contexts().epoch.load(std::memory_order_seq_cst)) {
    uint32_t idle = kIdle;
    // Fails only while AesGcmForgetKeys wipes this context, for a few microseconds.
    while (!tc_.state.compare_exchange_weak(idle, kBusy, std::memory_order_seq_cst,
                                            std::memory_order_relaxed)) {
      idle = kIdle;
      std::this_thread::yield();
    }
  }
  ~InUse() {
    tc_.state.store(kIdle, std::memory_order_seq_cst);
    // Keys were dropped while this operation ran: AesGcmForgetKeys found the context busy and
    // left it to this thread (seq_cst: it bumped the epoch before it looked at the state, and
    // this thread reads the epoch after it set kIdle, so one of the two always sees the other).
    if (Contexts().epoch.load(std::memory_order_seq_cst) != epoch_) {
      uint32_t idle = kIdle;
      if (tc_.state.compare_exchange_strong(idle, kBusy, std::memory_order_seq_cst)) {
        tc_.Wipe();
        tc_.state.store(kIdle, std::memory_order_seq_cst);
      }  // else AesGcmForgetKeys is wiping it right now
    }
  }
  InUse(const InUse&) = delete;
  InUse& operator=(const InUse&) = delete;

 private:
  ThreadContext& tc_;
  const uint64_t epoch_;
};

// Any failure after Start leaves the context in an unknown state: key it afresh next time.
struct ForgetUnlessOk {
  ThreadContext& tc;
  bool ok = false;
  ~ForgetUnlessOk() {
    if (!ok) tc.Forget();
  }
};

Status CheckSizes(const SecretBytes& key, ByteView nonce, ByteView aad, size_t data) {
  if (key.size() != kAesGcmKeySize) {
    return InvalidArgumentError("AES-256-GCM needs a 32-byte key, got " +
                                std::to_string(key.size()));
  }
  if (nonce.size() != kAesGcmNonceSize) {
    return InvalidArgumentError("AES-256-GCM needs a 12-byte nonce, got " +
                                std::to_string(nonce.size()));
  }
  if (aad.size() > INT_MAX || data > static_cast<size_t>(INT_MAX)) {
    return InvalidArgumentError("message too large for one AES-GCM operation");
  }
  return Status::Ok();
}

}  // namespace

Status AesGcmSeal(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView plaintext,
                  uint8_t* out) {
  EKM_RETURN_IF_ERROR(CheckSizes(key, nonce, aad, plaintext.size()));
  ThreadContext& tc = Mine().encrypt;
  InUse in_use(tc);
  EVP_CIPHER_CTX* ctx = tc.Start(true, key, nonce);
  if (ctx == nullptr) return OsslError("AES-GCM encrypt init");
  ForgetUnlessOk guard{tc};
  int len = 0;
  if (!aad.empty()) {
    EKM_OSSL_CHECK(EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())),
                   "AES-GCM aad");
  }
  int written = 0;
  if (!plaintext.empty()) {
    EKM_OSSL_CHECK(
        EVP_EncryptUpdate(ctx, out, &len, plaintext.data(), static_cast<int>(plaintext.size())),
        "AES-GCM encrypt");
    written = len;
  }
  EKM_OSSL_CHECK(EVP_EncryptFinal_ex(ctx, out + written, &len), "AES-GCM encrypt final");
  written += len;
  EKM_OSSL_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAesGcmTagSize),
                                     out + written),
                 "AES-GCM get tag");
  guard.ok = true;
  return Status::Ok();
}

Status AesGcmOpen(const SecretBytes& key, ByteView nonce, ByteView aad, ByteView sealed,
                  uint8_t* out) {
  if (sealed.size() < kAesGcmTagSize) {
    return DataLossError("ciphertext is shorter than its 16-byte authentication tag");
  }
  const size_t ct_len = sealed.size() - kAesGcmTagSize;
  EKM_RETURN_IF_ERROR(CheckSizes(key, nonce, aad, ct_len));
  ThreadContext& tc = Mine().decrypt;
  InUse in_use(tc);
  EVP_CIPHER_CTX* ctx = tc.Start(false, key, nonce);
  if (ctx == nullptr) return OsslError("AES-GCM decrypt init");
  ForgetUnlessOk guard{tc};
  int len = 0;
  if (!aad.empty()) {
    EKM_OSSL_CHECK(EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())),
                   "AES-GCM aad");
  }
  int written = 0;
  if (ct_len > 0) {
    EKM_OSSL_CHECK(EVP_DecryptUpdate(ctx, out, &len, sealed.data(), static_cast<int>(ct_len)),
                   "AES-GCM decrypt");
    written = len;
  }
  // The tag is set before the final call, and nothing above branched on the plaintext.
  EKM_OSSL_CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAesGcmTagSize),
                                     const_cast<uint8_t*>(sealed.data() + ct_len)),
                 "AES-GCM set tag");
  if (EVP_DecryptFinal_ex(ctx, out + written, &len) != 1) {
    if (ct_len > 0) OPENSSL_cleanse(out, ct_len);
    return DataLossError(
        "ciphertext failed authentication: it was modified, truncated, or belongs to another "
        "workspace, environment or scope");
  }
  guard.ok = true;
  return Status::Ok();
}

void AesGcmForgetKeys() {
  Registry& r = Contexts();
  r.epoch.fetch_add(1, std::memory_order_seq_cst);
  std::lock_guard<std::mutex> lock(r.mu);
  for (ThreadContext* tc : r.contexts) {
    uint32_t idle = kIdle;
    // A busy context is wiped by its own thread when its operation ends (see InUse).
    if (tc->state.compare_exchange_strong(idle, kClearing, std::memory_order_seq_cst)) {
      tc->Wipe();
      tc->state.store(kIdle, std::memory_order_seq_cst);
    }
  }
}

size_t AesGcmContextsHolding(const SecretBytes& key) {
  if (key.serial() == 0) return 0;
  Registry& r = Contexts();
  std::lock_guard<std::mutex> lock(r.mu);
  size_t n = 0;
  for (ThreadContext* tc : r.contexts) {
    uint32_t idle = kIdle;
    if (!tc->state.compare_exchange_strong(idle, kClearing, std::memory_order_seq_cst)) {
      ++n;  // in use right now: it may hold the key
      continue;
    }
    if (tc->ready && tc->key_serial == key.serial()) ++n;
    tc->state.store(kIdle, std::memory_order_seq_cst);
  }
  return n;
}

}  // namespace ekm
