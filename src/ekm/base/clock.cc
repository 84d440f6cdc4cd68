#include "ekm/base/clock.h"

#include <ctime>

namespace ekm {

namespace {
class RealClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::now();
  }
  std::chrono::steady_clock::time_point Monotonic() const override {
    return std::chrono::steady_clock::now();
  }
  // CLOCK_REALTIME_COARSE reads the kernel's last tick (no TSC or paravirtual clock read):
  // a few nanoseconds instead of tens on a virtual machine's kvm-clock.
  std::chrono::system_clock::time_point NowCoarse() const override {
    timespec ts{};
    if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) != 0) return Now();
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
  }
};
}  // namespace

Clock& Clock::Real() {
  static RealClock clock;
  return clock;
}

int64_t ToUnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point FromUnixSeconds(int64_t s) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(s));
}

std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t tt = static_cast<std::time_t>(ToUnixSeconds(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ekm
