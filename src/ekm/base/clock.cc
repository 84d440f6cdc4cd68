#include "ekm/base/clock.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <limits>
#include <string>

#include "ekm/base/encoding.h"

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

int64_t ToUnixMillis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

int64_t ToUnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point FromUnixSeconds(int64_t s) {
  // Saturates instead of overflowing the nanosecond count (values may come from a peer).
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 1'000'000'000;
  return std::chrono::system_clock::time_point(std::chrono::seconds(std::clamp(s, -kMax, kMax)));
}

std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t tt = static_cast<std::time_t>(ToUnixSeconds(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

StatusOr<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)
  auto bad = [&] {
    return InvalidArgumentError("not an RFC 3339 UTC time: " + QuotedExcerpt(t),
                                "write e.g. 2026-11-25T10:00:00Z");
  };
  if (t.size() < 20) return bad();
  auto num = [&](size_t pos, size_t len, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  struct tm tm = {};
  int year, mon, day, hour, min, sec;
  if (!num(0, 4, year) || t[4] != '-' || !num(5, 2, mon) || t[7] != '-' || !num(8, 2, day) ||
      (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !num(11, 2, hour) || t[13] != ':' ||
      !num(14, 2, min) || t[16] != ':' || !num(17, 2, sec)) {
    return bad();
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) return bad();
  // system_clock counts nanoseconds in 64 bits: it ends in April 2262.
  if (year < kRfc3339FirstYear || year > kRfc3339LastYear) {
    return InvalidArgumentError(
        "the year in " + QuotedExcerpt(t) + " is outside the years ekm reads",
        "write a year from " + std::to_string(kRfc3339FirstYear) + " to " +
            std::to_string(kRfc3339LastYear));
  }
  std::string_view rest = t.substr(19);
  if (!rest.empty() && rest[0] == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest[0])))
      rest.remove_prefix(1);
  }
  if (rest != "Z" && rest != "z" && rest != "+00:00") return bad();
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  time_t secs = timegm(&tm);
  return std::chrono::system_clock::from_time_t(secs);
}

}  // namespace ekm
