#include "ekm/metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace ekm::metrics {
namespace {

TEST(MetricsTest, CountersGaugesAndHistogramsInTextFormat) {
  Registry r;
  auto& requests = r.AddCounter("t_requests_total", "Requests", {"route", "status"});
  requests.With({"key.show", "200"}).Inc();
  requests.With({"key.show", "200"}).Inc(2);
  requests.With({"data.encrypt", "429"}).Inc();
  r.AddGauge("t_running", "Running\njobs").With({}).Set(3);
  auto& h = r.AddHistogram("t_latency_seconds", "Latency", {"route"}, {0.1, 1});
  h.With({"health"}).Observe(0.05);
  h.With({"health"}).Observe(0.5);
  h.With({"health"}).Observe(5);
  r.AddCallbackGauge("t_entries", "Entries", [] { return 7.0; });

  const std::string sum = FormatValue(((0.0 + 0.05) + 0.5) + 5);
  EXPECT_EQ(r.Exposition(),
            "# HELP t_entries Entries\n"
            "# TYPE t_entries gauge\n"
            "t_entries 7\n"
            "# HELP t_latency_seconds Latency\n"
            "# TYPE t_latency_seconds histogram\n"
            "t_latency_seconds_bucket{route=\"health\",le=\"0.1\"} 1\n"
            "t_latency_seconds_bucket{route=\"health\",le=\"1\"} 2\n"
            "t_latency_seconds_bucket{route=\"health\",le=\"+Inf\"} 3\n"
            "t_latency_seconds_sum{route=\"health\"} " +
                sum +
                "\n"
                "t_latency_seconds_count{route=\"health\"} 3\n"
                "# HELP t_requests_total Requests\n"
                "# TYPE t_requests_total counter\n"
                "t_requests_total{route=\"data.encrypt\",status=\"429\"} 1\n"
                "t_requests_total{route=\"key.show\",status=\"200\"} 3\n"
                "# HELP t_running Running\\njobs\n"
                "# TYPE t_running gauge\n"
                "t_running 3\n");
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry r;
  r.AddCounter("t_total", "T", {"v"}).With({"a\"b\\c\nd"}).Inc();
  EXPECT_NE(r.Exposition().find("t_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

TEST(MetricsTest, FormatValue) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(12345678), "12345678");
  EXPECT_EQ(FormatValue(0.5), "0.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.0025), "0.0025");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
}

TEST(MetricsTest, SameNameSameFamilyAndConcurrentIncrements) {
  Registry r;
  auto& a = r.AddCounter("t_total", "T", {"k"});
  auto& b = r.AddCounter("t_total", "T", {"k"});
  EXPECT_EQ(&a, &b);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) a.With({i % 2 ? "x" : "y"}).Inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(a.With({"x"}).Value() + a.With({"y"}).Value(), 40000u);
}

TEST(MetricsTest, RemovedCallbackIsGone) {
  Registry r;
  r.AddCallbackCounter("t_cb_total", "T", [] { return 1.0; });
  EXPECT_NE(r.Exposition().find("# TYPE t_cb_total counter\nt_cb_total 1\n"), std::string::npos);
  r.RemoveCallback("t_cb_total");
  EXPECT_EQ(r.Exposition(), "");
}

}  // namespace
}  // namespace ekm::metrics
