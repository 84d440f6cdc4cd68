// Injectable time, so tests of TTLs and schedules need no sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "ekm/base/status.h"

namespace ekm {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, for records and expiry.
  virtual std::chrono::system_clock::time_point Now() const = 0;
  // Monotonic time, for TTLs and deadlines.
  virtual std::chrono::steady_clock::time_point Monotonic() const = 0;
  // Wall-clock time good to a few milliseconds, for what only needs the second or minute
  // (the data path's per-minute usage counts): cheaper than Now() on every message.
  virtual std::chrono::system_clock::time_point NowCoarse() const { return Now(); }

  // The process-wide real clock.
  static Clock& Real();
};

class FakeClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(std::chrono::nanoseconds(ns_.load()));
  }
  std::chrono::steady_clock::time_point Monotonic() const override {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns_.load()));
  }
  void Advance(std::chrono::nanoseconds d) { ns_ += d.count(); }
  void SetUnixSeconds(int64_t s) { ns_ = s * 1'000'000'000; }

 private:
  std::atomic<int64_t> ns_{1'700'000'000LL * 1'000'000'000LL};
};

// "2026-11-24T10:04:05Z"
std::string FormatRfc3339(std::chrono::system_clock::time_point t);
// The one RFC 3339 reader, for UTC times: YYYY-MM-DDTHH:MM:SS, optional fractional seconds
// (dropped), then Z or +00:00 (what ekm writes, and what AWS STS and IMDS answer).
// Years outside [kRfc3339FirstYear, kRfc3339LastYear] are refused: a system_clock time point
// cannot hold them.
inline constexpr int kRfc3339FirstYear = 1970;
inline constexpr int kRfc3339LastYear = 2261;
StatusOr<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text);
int64_t ToUnixSeconds(std::chrono::system_clock::time_point t);
int64_t ToUnixMillis(std::chrono::system_clock::time_point t);
std::chrono::system_clock::time_point FromUnixSeconds(int64_t s);

}  // namespace ekm
