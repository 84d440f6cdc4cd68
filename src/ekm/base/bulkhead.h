// A bulkhead: at most `limit` pieces of work at once per name (an environment, a key provider),
// so that one tenant or KMS that is slow holds a bounded share of the threads and the others
// keep theirs; past the limit, work is refused at once (503 with Retry-After) instead of queueing
// behind the slow one's. Thread-safe, with one lock: for the slow path only (work that waits).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace ekm {

class Bulkhead {
 public:
  explicit Bulkhead(int limit) : limit_(limit) {}
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // A place taken; given back on destruction. Empty (held() false) when the name was full.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept : owner_(other.owner_), name_(std::move(other.name_)) {
      other.owner_ = nullptr;
    }
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket() { Release(); }
    bool held() const { return owner_ != nullptr; }

   private:
    friend class Bulkhead;
    Ticket(Bulkhead* owner, std::string name) : owner_(owner), name_(std::move(name)) {}
    void Release();
    Bulkhead* owner_ = nullptr;
    std::string name_;  // what the place is for (an environment)
  };

  // A place for `name`, or an empty ticket when `limit` are taken. A limit of 0: no limit.
  Ticket TryEnter(std::string_view name);
  int limit() const { return limit_; }
  // Places taken for `name` now (tests, metrics).
  int InUse(std::string_view name) const;

 private:
  const int limit_;
  mutable std::mutex mu_;
  std::map<std::string, int, std::less<>> in_use_;
};

}  // namespace ekm
