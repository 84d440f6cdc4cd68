#include "ekm/server/bulkhead.h"

namespace ekm {

Bulkhead::Ticket& Bulkhead::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = other.owner_;
    name_ = std::move(other.name_);
    other.owner_ = nullptr;
  }
  return *this;
}

void Bulkhead::Ticket::Release() {
  if (owner_ == nullptr) return;
  std::lock_guard<std::mutex> lock(owner_->mu_);
  auto it = owner_->in_use_.find(name_);
  if (it != owner_->in_use_.end() && --it->second == 0) owner_->in_use_.erase(it);
  owner_ = nullptr;
}

Bulkhead::Ticket Bulkhead::TryEnter(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(key);
  if (it == in_use_.end()) it = in_use_.emplace(std::string(key), 0).first;
  if (limit_ > 0 && it->second >= limit_) return Ticket();
  ++it->second;
  return Ticket(this, std::string(key));
}

int Bulkhead::InUse(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(key);
  return it == in_use_.end() ? 0 : it->second;
}

}  // namespace ekm
