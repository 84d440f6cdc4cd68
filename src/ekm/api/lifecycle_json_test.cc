#include "ekm/api/lifecycle_json.h"

#include <gtest/gtest.h>

namespace ekm {
namespace {

TEST(DurationTest, ParsesEveryUnitAndFormatsBack) {
  EXPECT_EQ(*ParseDurationSeconds("300s"), 300);
  EXPECT_EQ(*ParseDurationSeconds("5m"), 300);
  EXPECT_EQ(*ParseDurationSeconds("24h"), 86400);
  EXPECT_EQ(*ParseDurationSeconds("90d"), 90 * 86400);
  EXPECT_EQ(*ParseDurationSeconds("3600"), 3600);
  EXPECT_EQ(FormatDuration(90 * 86400), "90d");
  EXPECT_EQ(FormatDuration(7200), "2h");
  EXPECT_EQ(FormatDuration(61), "61s");
}

// The error quotes what was typed, its unit letter included ("bogus" once lost its "s").
TEST(DurationTest, ErrorQuotesTheWholeText) {
  for (const char* text : {"bogus", "5x", "1.5h", "", "h", "9999999999999d"}) {
    auto d = ParseDurationSeconds(text);
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    std::string quoted = "\"";
    quoted.append(text).push_back('"');
    EXPECT_NE(d.status().message().find(quoted), std::string::npos) << d.status().message();
  }
}

}  // namespace
}  // namespace ekm
