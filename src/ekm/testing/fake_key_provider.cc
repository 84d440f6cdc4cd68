#include "ekm/testing/fake_key_provider.h"

#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

namespace ekm::testing {

std::unique_ptr<FakeKeyProvider> FakeKeyProvider::Create(std::string name,
                                                         const std::string& key_path) {
  Status created = PlatformKeyProvider::CreateRootKeyFile(key_path);
  auto inner = PlatformKeyProvider::Open(key_path);
  if (!created.ok() || !inner.ok()) std::abort();  // a test set-up that cannot go on
  return std::make_unique<FakeKeyProvider>(std::move(name), std::move(inner).value());
}

Status FakeKeyProvider::Scripted(std::string_view operation) {
  if (int ms = latency_ms.load(); ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  switch (answer.load()) {
    case Answer::kRefuse:
      return PermissionDeniedError(name_ + " " + std::string(operation) +
                                       " failed: " + refusal_code + " (scripted refusal)",
                                   "grant the platform the key again")
          .WithProviderCode(refusal_code);
    case Answer::kUnreachable:
      return UnavailableError(
          name_ + " " + std::string(operation) + " failed: HTTP 503 (scripted outage)",
          "retry later");
    case Answer::kOk:
      break;
  }
  return Status::Ok();
}

StatusOr<Bytes> FakeKeyProvider::Wrap(std::string_view, const SecretBytes& key,
                                      const EncryptionContext& context) {
  ++wraps;
  EKM_RETURN_IF_ERROR(Scripted("Encrypt"));
  return inner_->Wrap(kPlatformRootKeyId, key, context);
}

StatusOr<SecretBytes> FakeKeyProvider::Unwrap(std::string_view, ByteView wrapped,
                                              const EncryptionContext& context) {
  ++unwraps;
  std::function<void()> hook;
  {
    std::unique_lock<std::mutex> lock(mu_);
    hook = std::exchange(before_unwrap, nullptr);
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !gate_closed_; });
    --held_;
  }
  if (hook) hook();
  EKM_RETURN_IF_ERROR(Scripted("Decrypt"));
  return inner_->Unwrap(kPlatformRootKeyId, wrapped, context);
}

StatusOr<CmkDescription> FakeKeyProvider::Describe(std::string_view key_id) {
  EKM_RETURN_IF_ERROR(Scripted("Describe"));
  EKM_ASSIGN_OR_RETURN(CmkDescription d, inner_->Describe(kPlatformRootKeyId));
  d.provider = name_;
  d.key_id = std::string(key_id);
  return d;
}

void FakeKeyProvider::CloseGate() {
  std::lock_guard<std::mutex> lock(mu_);
  gate_closed_ = true;
}

void FakeKeyProvider::OpenGate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    gate_closed_ = false;
  }
  cv_.notify_all();
}

void FakeKeyProvider::WaitUntilHeld(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return held_ >= n; });
}

}  // namespace ekm::testing
