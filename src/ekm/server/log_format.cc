#include "ekm/server/log_format.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace ekm {

namespace {

std::atomic<bool> g_json{false};
thread_local const LogFields* t_fields = nullptr;

class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto since = msg.time.time_since_epoch();
    const std::time_t secs = duration_cast<seconds>(since).count();
    const int ms = static_cast<int>(duration_cast<milliseconds>(since).count() % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[96];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    std::string line = "{\"ts\":\"";
    line += ts;
    line += "\",\"level\":";
    auto level = spdlog::level::to_string_view(msg.level);
    line += JsonQuote(std::string(level.data(), level.size()));
    line += ",\"msg\":";
    line += JsonQuote(std::string(msg.payload.data(), msg.payload.size()));
    if (t_fields != nullptr) {
      for (const LogField& f : *t_fields) {
        // Appended piece by piece (no temporaries, and GCC 12 at -O3 misreports `"," + …`).
        line += ',';
        line += JsonQuote(f.key);
        line += ':';
        line += f.raw ? f.value : JsonQuote(f.value);
      }
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string JsonQuote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::unique_ptr<spdlog::formatter> NewJsonLogFormatter() {
  return std::make_unique<JsonFormatter>();
}

void SetJsonLogs(bool json) { g_json = json; }

void LogWithFields(spdlog::level::level_enum level, const std::string& msg,
                   const LogFields& fields) {
  if (!spdlog::default_logger_raw()->should_log(level)) return;
  if (g_json) {
    t_fields = &fields;
    spdlog::log(level, "{}", msg);
    t_fields = nullptr;
    return;
  }
  std::string line = msg;
  for (const LogField& f : fields) {
    line += " " + f.key + "=";
    // Quote text that would split the line into ambiguous pairs.
    bool plain = !f.value.empty() && f.value.find_first_of(" \"=\n\r\t") == std::string::npos;
    line += (f.raw || plain) ? f.value : JsonQuote(f.value);
  }
  spdlog::log(level, "{}", line);
}

}  // namespace ekm
