#include "ekm/base/bulkhead.h"

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

Bulkhead::Ticket Bulkhead::TryEnter(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(name);
  if (it == in_use_.end()) it = in_use_.emplace(std::string(name), 0).first;
  if (limit_ > 0 && it->second >= limit_) return Ticket();
  ++it->second;
  return Ticket(this, std::string(name));
}

int Bulkhead::InUse(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_use_.find(name);
  return it == in_use_.end() ? 0 : it->second;
}

}  // namespace ekm
