// Process metrics in the Prometheus text format 0.0.4: counters, gauges and histograms, each
// a family with fixed label names. A child (one label-value tuple) is found once under a
// read lock and then updated with relaxed atomics only, so hot paths keep the child pointer
// (children live as long as the registry). Label values must never carry tenant names
// (workspace, environment, scope): they would leak tenants to whoever scrapes /metrics and
// let a tenant grow the series without bound.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ekm::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v);
  // Cumulative counts per bound (the +Inf bucket is Count()), the sum and the count.
  std::vector<uint64_t> Buckets() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

// One metric name with its label names; children by label values.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels,
         std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(labels)),
        bounds_(std::move(bounds)) {}

  // The child for `values` (one per label name), created on first use.
  T& WithValues(const std::vector<std::string>& values) {
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      auto it = children_.find(values);
      if (it != children_.end()) return *it->second;
    }
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto& slot = children_[values];
    if (!slot) slot = Make();
    return *slot;
  }
  T& With(std::initializer_list<std::string_view> values) {
    return WithValues(std::vector<std::string>(values.begin(), values.end()));
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& labels() const { return labels_; }
  const std::vector<double>& bounds() const { return bounds_; }
  template <typename F>
  void ForEach(F f) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [values, child] : children_) f(values, *child);
  }

 private:
  std::unique_ptr<T> Make() {
    if constexpr (std::is_same_v<T, Histogram>) {
      return std::make_unique<T>(&bounds_);
    } else {
      return std::make_unique<T>();
    }
  }

  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
  std::vector<double> bounds_;
  mutable std::shared_mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

class Registry {
 public:
  // Families are created once (usually at start) and live as long as the registry; asking
  // again for a name returns the same family.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> labels = {});
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> labels = {});
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> labels, std::vector<double> bounds);
  // A gauge read at scrape time (e.g. the key cache's entries).
  void AddCallbackGauge(const std::string& name, const std::string& help,
                        std::function<double()> read);
  // A counter read at scrape time (a total kept elsewhere).
  void AddCallbackCounter(const std::string& name, const std::string& help,
                          std::function<double()> read);

  void RemoveCallback(const std::string& name);

  // Every family, sorted by name, in the text exposition format 0.0.4.
  std::string Exposition() const;

 private:
  struct Callback {
    std::string help;
    Type type;
    std::function<double()> read;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, std::unique_ptr<Family<Histogram>>> histograms_;
  std::map<std::string, Callback> callbacks_;
};

// The process's registry: libekm's own series (provider calls, repack progress) and ekmd's.
Registry& Default();

// Prometheus text escaping of a label value (\\, \" and \n) and of HELP text (\\ and \n).
std::string EscapeLabelValue(std::string_view v);
std::string EscapeHelp(std::string_view v);
// A sample value: integers without a fraction, +Inf/-Inf/NaN by name.
std::string FormatValue(double v);

// When this process started (seconds since the Unix epoch).
double ProcessStartTimeSeconds();

// Latency buckets in seconds, 1 ms to 10 s.
const std::vector<double>& LatencyBuckets();

// libekm's series, on Default().
// Calls to a customer main key's provider: provider type (aws-kms, local, imported, …),
// operation (wrap, unwrap), result (ok or the error code).
void CountProviderCall(std::string_view provider, std::string_view operation,
                       std::string_view result);
// Repack progress: jobs running and their data keys done / to do.
Gauge& RepackRunningJobs();
Gauge& RepackDataKeysDone();
Gauge& RepackDataKeysTotal();

}  // namespace ekm::metrics
