#include "ekm/metrics/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ekm::metrics {

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_->size() && v > (*bounds_)[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::Buckets() const {
  std::vector<uint64_t> out(bounds_->size());
  uint64_t total = 0;
  for (size_t i = 0; i < bounds_->size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = counters_[name];
  if (!f) f = std::make_unique<Family<Counter>>(name, help, std::move(labels));
  return *f;
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = gauges_[name];
  if (!f) f = std::make_unique<Family<Gauge>>(name, help, std::move(labels));
  return *f;
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> labels,
                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& f = histograms_[name];
  if (!f) f = std::make_unique<Family<Histogram>>(name, help, std::move(labels), std::move(bounds));
  return *f;
}

void Registry::AddCallbackGauge(const std::string& name, const std::string& help,
                                std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  callbacks_[name] = Callback{help, Type::kGauge, std::move(read)};
}

void Registry::AddCallbackCounter(const std::string& name, const std::string& help,
                                  std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  callbacks_[name] = Callback{help, Type::kCounter, std::move(read)};
}

void Registry::RemoveCallback(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  callbacks_.erase(name);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  // The shortest text that reads back as the same double ("0.1", not "0.10000000000000001").
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

namespace {

// {a="x",b="y"} with an optional extra pair (le for histogram buckets); "" without labels.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    out += out.empty() ? "{" : ",";
    out += std::string(extra_name) + "=\"" + std::string(extra_value) + "\"";
  }
  if (!out.empty()) out += "}";
  return out;
}

void Head(std::string* out, const std::string& name, const std::string& help, const char* type) {
  *out += "# HELP " + name + " " + EscapeHelp(help) + "\n";
  *out += "# TYPE " + name + " " + type + "\n";
}

}  // namespace

std::string Registry::Exposition() const {
  // One sorted list of names across the kinds, so the output is stable.
  std::map<std::string, std::function<void(std::string*)>> parts;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, f] : counters_) {
    const auto* fam = f.get();
    parts[name] = [fam](std::string* out) {
      Head(out, fam->name(), fam->help(), "counter");
      fam->ForEach([&](const std::vector<std::string>& v, const Counter& c) {
        *out += fam->name() + LabelText(fam->labels(), v) + " " +
                FormatValue(static_cast<double>(c.Value())) + "\n";
      });
    };
  }
  for (const auto& [name, f] : gauges_) {
    const auto* fam = f.get();
    parts[name] = [fam](std::string* out) {
      Head(out, fam->name(), fam->help(), "gauge");
      fam->ForEach([&](const std::vector<std::string>& v, const Gauge& g) {
        *out += fam->name() + LabelText(fam->labels(), v) + " " + FormatValue(g.Value()) + "\n";
      });
    };
  }
  for (const auto& [name, f] : histograms_) {
    const auto* fam = f.get();
    parts[name] = [fam](std::string* out) {
      Head(out, fam->name(), fam->help(), "histogram");
      fam->ForEach([&](const std::vector<std::string>& v, const Histogram& h) {
        // Read count first: buckets observed after it may only make them larger, and
        // Prometheus tolerates +Inf >= the last bucket.
        std::vector<uint64_t> buckets = h.Buckets();
        uint64_t count = std::max(h.Count(), buckets.empty() ? 0 : buckets.back());
        for (size_t i = 0; i < buckets.size(); ++i) {
          *out += fam->name() + "_bucket" +
                  LabelText(fam->labels(), v, "le", FormatValue(fam->bounds()[i])) + " " +
                  FormatValue(static_cast<double>(buckets[i])) + "\n";
        }
        *out += fam->name() + "_bucket" + LabelText(fam->labels(), v, "le", "+Inf") + " " +
                FormatValue(static_cast<double>(count)) + "\n";
        *out +=
            fam->name() + "_sum" + LabelText(fam->labels(), v) + " " + FormatValue(h.Sum()) + "\n";
        *out += fam->name() + "_count" + LabelText(fam->labels(), v) + " " +
                FormatValue(static_cast<double>(count)) + "\n";
      });
    };
  }
  for (const auto& [name, cb] : callbacks_) {
    const Callback* c = &cb;
    const std::string n = name;
    parts[name] = [c, n](std::string* out) {
      Head(out, n, c->help, c->type == Type::kCounter ? "counter" : "gauge");
      *out += n + " " + FormatValue(c->read()) + "\n";
    };
  }
  std::string out;
  for (const auto& [name, write] : parts) write(&out);
  return out;
}

Registry& Default() {
  // Never destroyed: threads may still count at exit.
  static Registry* r = [] {
    auto* reg = new Registry();
    reg->AddCallbackGauge("process_start_time_seconds",
                          "Start time of the process since the Unix epoch, in seconds",
                          [] { return ProcessStartTimeSeconds(); });
    return reg;
  }();
  return *r;
}

namespace {
// Set during static initialisation, i.e. at the process's start.
const double g_start_time =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}  // namespace

double ProcessStartTimeSeconds() { return g_start_time; }

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10};
  return b;
}

void CountProviderCall(std::string_view provider, std::string_view operation,
                       std::string_view result) {
  static auto& calls = Default().AddCounter(
      "ekm_provider_calls_total",
      "Calls to customer main key providers by provider type, operation and result (ok or the "
      "error code)",
      {"provider", "operation", "result"});
  static auto& errors = Default().AddCounter(
      "ekm_provider_errors_total",
      "Failed calls to customer main key providers by provider type, operation and error code",
      {"provider", "operation", "code"});
  calls.With({provider, operation, result}).Inc();
  if (result != "ok") errors.With({provider, operation, result}).Inc();
}

Gauge& RepackRunningJobs() {
  static Gauge& g =
      Default().AddGauge("ekm_repack_running_jobs", "Repack jobs running now").With({});
  return g;
}
Gauge& RepackDataKeysDone() {
  static Gauge& g = Default()
                        .AddGauge("ekm_repack_data_keys_done",
                                  "Data keys repacked so far by the running repack jobs")
                        .With({});
  return g;
}
Gauge& RepackDataKeysTotal() {
  static Gauge& g = Default()
                        .AddGauge("ekm_repack_data_keys_total",
                                  "Data keys to repack in all by the running repack jobs")
                        .With({});
  return g;
}

}  // namespace ekm::metrics
