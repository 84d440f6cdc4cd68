// FakeKeyProvider: the CMK for tests of everything above provider/. It wraps for real (a
// platform root key in a file the test owns, so the context is bound exactly as in production)
// under any provider name, and the test scripts what the KMS answers: refusals (with a provider
// code), outages, latency, a gate that holds unwraps until released, a hook before the next
// unwrap; it counts calls. Tests of the AWS provider itself use moto instead. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "ekm/provider/key_provider.h"
#include "ekm/provider/platform/platform_key_provider.h"

namespace ekm::testing {

class FakeKeyProvider : public KeyProvider {
 public:
  enum class Answer { kOk, kRefuse, kUnreachable };

  // A new root key at `key_path` (which must not exist), serving as provider `name`.
  static std::unique_ptr<FakeKeyProvider> Create(std::string name, const std::string& key_path);
  FakeKeyProvider(std::string name, std::unique_ptr<PlatformKeyProvider> inner)
      : name_(std::move(name)), inner_(std::move(inner)) {}

  std::string_view Name() const override { return name_; }
  // Every key id names the one root key.
  StatusOr<Bytes> Wrap(std::string_view key_id, const SecretBytes& key,
                       const EncryptionContext& context) override;
  StatusOr<SecretBytes> Unwrap(std::string_view key_id, ByteView wrapped,
                               const EncryptionContext& context) override;
  StatusOr<CmkDescription> Describe(std::string_view key_id) override;

  // The script. `answer` applies to wraps and unwraps; a refusal is PermissionDenied with
  // provider code `refusal_code` (set it before the calls that use it).
  std::atomic<Answer> answer{Answer::kOk};
  std::string refusal_code = "AccessDeniedException";
  std::atomic<int> latency_ms{0};
  std::function<void()> before_unwrap;  // runs once, at the next unwrap (set it while idle)

  // Unwraps wait at the gate while it is closed; WaitUntilHeld(n) returns once n wait there.
  void CloseGate();
  void OpenGate();
  void WaitUntilHeld(int unwraps);

  std::atomic<int> wraps{0};
  std::atomic<int> unwraps{0};

 private:
  Status Scripted(std::string_view operation);

  std::string name_;
  std::unique_ptr<PlatformKeyProvider> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_closed_ = false;
  int held_ = 0;
};

}  // namespace ekm::testing
