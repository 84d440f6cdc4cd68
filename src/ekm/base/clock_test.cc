#include "ekm/base/clock.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "ekm/base/json_text.h"

namespace ekm {
namespace {

TEST(ClockTest, Rfc3339ReadsWhatEkmAndAwsWrite) {
  auto t = ParseRfc3339("2026-11-24T10:04:05Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(ToUnixSeconds(*t), 1795514645);
  EXPECT_EQ(FormatRfc3339(*t), "2026-11-24T10:04:05Z");
  EXPECT_EQ(ToUnixSeconds(*ParseRfc3339("2026-11-24T10:04:05.359Z")), 1795514645);
  EXPECT_EQ(ToUnixSeconds(*ParseRfc3339("2026-11-24T10:04:05+00:00")), 1795514645);
  for (const char* bad :
       {"", "2026-11-24", "2026-11-24T10:04:05", "2026-13-24T10:04:05Z",
        "2026-11-24T10:04:05+02:00", "2026-11-24X10:04:05Z", "abcd-11-24T10:04:05Z"}) {
    auto r = ParseRfc3339(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("RFC 3339"), std::string::npos);
  }
}

// Found by request_decoding_fuzz: year 4052 overflowed the nanosecond count (undefined).
TEST(ClockTest, Rfc3339RefusesYearsAClockCannotHold) {
  ASSERT_TRUE(ParseRfc3339("2261-12-31T23:59:59Z").ok());
  ASSERT_TRUE(ParseRfc3339("1970-01-01T00:00:00Z").ok());
  for (const char* far : {"2262-04-12T00:00:00Z", "4052-12-01T00:00:00Z", "9999-12-31T23:59:59Z",
                          "1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z"}) {
    auto r = ParseRfc3339(far);
    ASSERT_FALSE(r.ok()) << far;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("outside the years"), std::string::npos)
        << r.status().ToString();
  }
}

TEST(ClockTest, UnixSecondsSaturateInsteadOfOverflowing) {
  const auto max = FromUnixSeconds(std::numeric_limits<int64_t>::max());
  EXPECT_GT(ToUnixSeconds(max), 9'000'000'000LL);
  EXPECT_LT(ToUnixSeconds(FromUnixSeconds(std::numeric_limits<int64_t>::min())), 0);
  EXPECT_EQ(ToUnixSeconds(FromUnixSeconds(1795514645)), 1795514645);
}

TEST(ClockTest, JsonTimesAreZeroWhenAbsentOrNotATime) {
  const auto j = nlohmann::json::parse(
      R"({"at": "2026-11-24T10:04:05Z", "never": null, "bad": "yesterday", "n": 5})");
  EXPECT_EQ(JsonTimeSeconds(j, "at"), 1795514645);
  EXPECT_EQ(JsonTimeSeconds(j, "never"), 0);
  EXPECT_EQ(JsonTimeSeconds(j, "bad"), 0);
  EXPECT_EQ(JsonTimeSeconds(j, "n"), 0);
  EXPECT_EQ(JsonTimeSeconds(j, "missing"), 0);
}

}  // namespace
}  // namespace ekm
