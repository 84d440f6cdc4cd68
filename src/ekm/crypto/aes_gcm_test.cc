#include "ekm/crypto/aes_gcm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ekm/base/encoding.h"
#include "ekm/base/random.h"

namespace ekm {
namespace {

SecretBytes Key(std::string_view hex) {
  auto b = HexDecode(hex);
  return SecretBytes(*b);
}
Bytes Hex(std::string_view hex) { return *HexDecode(hex); }

struct GcmVector {
  const char *key, *iv, *pt, *aad, *ct, *tag;
};

// The GCM specification's AES-256 test cases 13-16 (McGrew & Viega, NIST SP 800-38D).
const GcmVector kVectors[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "52"
     "5b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828"
     "838"
     "c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b"
     "52"
     "5b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828"
     "838"
     "c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST(AesGcmTest, KnownAnswers) {
  for (const auto& v : kVectors) {
    SecretBytes key = Key(v.key);
    Bytes iv = Hex(v.iv), pt = Hex(v.pt), aad = Hex(v.aad);
    Bytes expected = Hex(v.ct);
    Append(expected, Hex(v.tag));
    Bytes out(pt.size() + kAesGcmTagSize);
    ASSERT_TRUE(AesGcmSeal(key, iv, aad, pt, out.data()).ok());
    EXPECT_EQ(HexEncode(out), HexEncode(expected));
    Bytes back(pt.size());
    ASSERT_TRUE(AesGcmOpen(key, iv, aad, expected, back.data()).ok());
    EXPECT_EQ(back, pt);
  }
}

// The thread's context keeps the last key's schedule and re-keys by SecretBytes::serial(): the
// known answers must hold in any order of keys, after a key's bytes change in place, and after
// a failed open.
TEST(AesGcmTest, KeyedContextReuseKeepsKnownAnswers) {
  std::vector<SecretBytes> keys;
  for (const auto& v : kVectors) keys.push_back(Key(v.key));
  auto check = [&](size_t i, const SecretBytes& key) {
    const auto& v = kVectors[i];
    Bytes iv = Hex(v.iv), pt = Hex(v.pt), aad = Hex(v.aad);
    Bytes expected = Hex(v.ct);
    Append(expected, Hex(v.tag));
    Bytes out(pt.size() + kAesGcmTagSize);
    ASSERT_TRUE(AesGcmSeal(key, iv, aad, pt, out.data()).ok());
    EXPECT_EQ(HexEncode(out), HexEncode(expected)) << "vector " << i;
    Bytes back(pt.size());
    ASSERT_TRUE(AesGcmOpen(key, iv, aad, expected, back.data()).ok());
    EXPECT_EQ(back, pt);
  };
  for (size_t round = 0; round < 3; ++round) {
    for (size_t i : {0, 0, 2, 2, 1, 3, 0, 3}) check(i, keys[i]);
  }
  // Same object, new bytes: vector 0's key overwritten with vector 2's.
  SecretBytes changing = Key(kVectors[0].key);
  check(0, changing);
  const uint64_t before = changing.serial();
  Bytes other = Hex(kVectors[2].key);
  std::copy(other.begin(), other.end(), changing.MutableForCrypto().begin());
  EXPECT_NE(changing.serial(), before);
  check(2, changing);
  // A failed open (wrong tag), then the same key again.
  Bytes iv = Hex(kVectors[2].iv), bad = Hex(kVectors[2].ct);
  Append(bad, Bytes(kAesGcmTagSize, 0));
  Bytes sink(bad.size() - kAesGcmTagSize);
  EXPECT_FALSE(AesGcmOpen(keys[2], iv, {}, bad, sink.data()).ok());
  check(2, keys[2]);
}

TEST(AesGcmTest, EveryBitFlipAndTruncationFails) {
  SecretBytes key = Key(kVectors[3].key);
  Bytes iv = Hex(kVectors[3].iv), aad = Hex(kVectors[3].aad);
  Bytes sealed = Hex(kVectors[3].ct);
  Append(sealed, Hex(kVectors[3].tag));
  Bytes out(sealed.size());
  for (size_t i = 0; i < sealed.size() * 8; ++i) {
    Bytes bad = sealed;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    Status s = AesGcmOpen(key, iv, aad, bad, out.data());
    ASSERT_EQ(s.code(), StatusCode::kDataLoss) << "bit " << i;
  }
  for (size_t i = 0; i < aad.size() * 8; ++i) {
    Bytes bad = aad;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    ASSERT_FALSE(AesGcmOpen(key, iv, bad, sealed, out.data()).ok());
  }
  for (size_t n = 0; n < sealed.size(); ++n) {
    ASSERT_FALSE(AesGcmOpen(key, iv, aad, ByteView(sealed).first(n), out.data()).ok());
  }
}

TEST(AesGcmTest, RejectsBadSizes) {
  SecretBytes short_key(16);
  Bytes iv(12), out(32);
  EXPECT_EQ(AesGcmSeal(short_key, iv, {}, {}, out.data()).code(), StatusCode::kInvalidArgument);
  SecretBytes key(32);
  Bytes short_iv(8);
  EXPECT_EQ(AesGcmSeal(key, short_iv, {}, {}, out.data()).code(), StatusCode::kInvalidArgument);
}

TEST(AesGcmTest, ThreadsDoNotShareState) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto key = RandomSecret(32);
      Bytes iv(12), pt(1000), ct(1016), back(1000);
      for (int i = 0; i < 500; ++i) {
        (void)RandomBytes(iv);
        (void)RandomBytes(pt);
        if (!AesGcmSeal(*key, iv, {}, pt, ct.data()).ok() ||
            !AesGcmOpen(*key, iv, {}, ct, back.data()).ok() || back != pt) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
}

// A thread parked after its last operation, until told to go on (or to seal once more).
class ParkedThread {
 public:
  explicit ParkedThread(std::function<void()> work)
      : thread_([this, work = std::move(work)] {
          work();
          std::unique_lock<std::mutex> lock(mu_);
          done_ = true;
          cv_.notify_all();
          cv_.wait(lock, [&] { return release_; });
        }) {}
  ~ParkedThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      release_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void WaitUntilParked() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, release_ = false;
  std::thread thread_;
};

// The per-thread contexts keep the last key's AES schedule after the operation: forgetting keys
// must reach threads that are not running at all.
TEST(AesGcmContextsTest, ForgettingKeysWipesIdleThreadsContexts) {
  auto key = RandomSecret(32);
  ASSERT_TRUE(key.ok());
  Bytes iv(12), pt(100), ct(116), back(100);
  std::atomic<bool> ok{false};
  ParkedThread t([&] {
    ok = AesGcmSeal(*key, iv, {}, pt, ct.data()).ok() &&
         AesGcmOpen(*key, iv, {}, ct, back.data()).ok();
  });
  t.WaitUntilParked();
  ASSERT_TRUE(ok);
  EXPECT_EQ(AesGcmContextsHolding(*key), 2u) << "its encrypt and decrypt contexts";
  AesGcmForgetKeys();
  EXPECT_EQ(AesGcmContextsHolding(*key), 0u);
  // A wiped context keys itself afresh.
  ASSERT_TRUE(AesGcmSeal(*key, iv, {}, pt, ct.data()).ok());
  ASSERT_TRUE(AesGcmOpen(*key, iv, {}, ct, back.data()).ok());
  EXPECT_EQ(back, pt);
  AesGcmForgetKeys();
  EXPECT_EQ(AesGcmContextsHolding(*key), 0u);
}

// A thread in the middle of an operation when keys are forgotten wipes its own context when
// the operation ends (forgetting never waits for it, nor touches a context in use).
TEST(AesGcmContextsTest, AThreadBusyWhileKeysAreForgottenWipesItsOwnContext) {
  auto key = RandomSecret(32);
  ASSERT_TRUE(key.ok());
  Bytes iv(12), big(32u << 20), sealed(big.size() + 16);
  std::atomic<bool> ok{false};
  ParkedThread t([&] {
    ok = AesGcmSeal(*key, iv, {}, big, sealed.data()).ok();  // long enough to be caught in
  });
  // Until the thread's context is in use (or, on a slow machine, already done and holding the
  // key): a context in use counts as holding. Forgetting before the seal began would test
  // nothing, since the seal may then rightly key its context afresh.
  while (AesGcmContextsHolding(*key) == 0) std::this_thread::yield();
  AesGcmForgetKeys();  // once, most likely while the seal runs
  t.WaitUntilParked();
  ASSERT_TRUE(ok);
  EXPECT_EQ(AesGcmContextsHolding(*key), 0u);
  Bytes back(big.size());
  ASSERT_TRUE(AesGcmOpen(*key, iv, {}, sealed, back.data()).ok());
  EXPECT_EQ(back, big);
}

// Forgetting keys over and over while threads encrypt and decrypt with several keys: every
// result is right (no operation ever sees a context wiped under it), and once the threads are
// idle no context holds any of their keys.
TEST(AesGcmContextsTest, ForgettingKeysDuringOperationsNeverDisturbsThem) {
  constexpr int kThreads = 4;
  std::vector<SecretBytes> keys;
  for (int i = 0; i < kThreads * 2; ++i) keys.push_back(*RandomSecret(32));
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<ParkedThread>> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.push_back(std::make_unique<ParkedThread>([&, t] {
      Bytes iv(12), pt(300), ct(316), back(300);
      for (int i = 0; i < 3000; ++i) {
        const SecretBytes& key = keys[static_cast<size_t>(t * 2 + i % 2)];  // re-keys too
        (void)RandomBytes(iv);
        (void)RandomBytes(pt);
        if (!AesGcmSeal(key, iv, AsBytes("aad"), pt, ct.data()).ok() ||
            !AesGcmOpen(key, iv, AsBytes("aad"), ct, back.data()).ok() || back != pt) {
          ++failures;
        }
      }
    }));
  }
  std::thread forgetter([&] {
    while (!stop) AesGcmForgetKeys();
  });
  for (auto& t : threads) t->WaitUntilParked();
  stop = true;
  forgetter.join();
  EXPECT_EQ(failures, 0);
  AesGcmForgetKeys();
  for (const SecretBytes& key : keys) EXPECT_EQ(AesGcmContextsHolding(key), 0u);
}

}  // namespace
}  // namespace ekm
