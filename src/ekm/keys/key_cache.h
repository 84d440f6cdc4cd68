// A bounded TTL cache of unwrapped keys (and the records that locate them).
// Entries expire at a time the caller sets (a DK never outlives the EK unwrap it came from),
// the least recently used entry is evicted past `max_entries`, and values are shared_ptrs so an
// evicted key is wiped (SecretBytes) as soon as the last in-flight request drops it.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace ekm {

template <typename V>
class KeyCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `generation`, when given, is bumped on every change of the cache's contents (see
  // DataPathMemos, which trusts what it remembered from the cache while it does not move).
  explicit KeyCache(size_t max_entries, std::atomic<uint64_t>* generation = nullptr)
      : max_entries_(max_entries), generation_(generation) {}

  // The value, unless absent or expired at `now` (an expired entry is dropped). `expires_at`,
  // when given, receives the entry's expiry.
  std::shared_ptr<V> Get(const std::string& key, TimePoint now, TimePoint* expires_at = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++misses_;
      return nullptr;
    }
    if (now >= it->second.expires_at) {
      lru_.erase(it->second.lru_pos);
      map_.erase(it);
      Changed();
      ++misses_;
      return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
    ++hits_;
    if (expires_at != nullptr) *expires_at = it->second.expires_at;
    return it->second.value;
  }

  void Put(const std::string& key, std::shared_ptr<V> value, TimePoint expires_at) {
    std::lock_guard<std::mutex> lock(mu_);
    Changed();
    auto it = map_.find(key);
    if (it != map_.end()) {
      it->second.value = std::move(value);
      it->second.expires_at = expires_at;
      lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
      return;
    }
    lru_.push_front(key);
    map_.emplace(key, Entry{std::move(value), expires_at, lru_.begin()});
    while (map_.size() > max_entries_) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
  }

  void Erase(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    Changed();
    lru_.erase(it->second.lru_pos);
    map_.erase(it);
  }

  // Drops every entry whose value matches `pred` (called with the lock held; keep it short).
  // Returns how many were dropped.
  template <typename Pred>
  size_t EraseIf(Pred pred) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (auto it = map_.begin(); it != map_.end();) {
      if (pred(*it->second.value)) {
        lru_.erase(it->second.lru_pos);
        it = map_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    if (n > 0) Changed();
    return n;
  }

  // Drops every entry whose key starts with `prefix` (crypto-shredding drops
  // one environment's keys at once).
  void ErasePrefix(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    Changed();
    for (auto it = map_.begin(); it != map_.end();) {
      if (it->first.compare(0, prefix.size(), prefix) == 0) {
        lru_.erase(it->second.lru_pos);
        it = map_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    Changed();
    map_.clear();
    lru_.clear();
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return map_.size();
  }
  uint64_t hits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hits_;
  }
  uint64_t misses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return misses_;
  }

 private:
  void Changed() {
    if (generation_ != nullptr) generation_->fetch_add(1, std::memory_order_acq_rel);
  }

  struct Entry {
    std::shared_ptr<V> value;
    TimePoint expires_at;
    std::list<std::string>::iterator lru_pos;
  };

  const size_t max_entries_;
  std::atomic<uint64_t>* const generation_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace ekm
