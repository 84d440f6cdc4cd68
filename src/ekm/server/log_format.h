// ekmd's log lines: `--log-format text` (spdlog's usual line) or `json` (one JSON object per
// line: ts, level, msg, then the fields). Fields are given per line with LogWithFields; they
// reach the formatter through a thread-local, since spdlog's sinks format on the caller's
// thread (ekmd's loggers are synchronous).
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ekm {

// A field's value: text (escaped in json) or a number/bool written as is.
struct LogField {
  std::string key;
  std::string value;
  bool raw = false;  // a JSON number or boolean
};
using LogFields = std::vector<LogField>;

// A formatter for --log-format json (install with logger->set_formatter).
std::unique_ptr<spdlog::formatter> NewJsonLogFormatter();
// Whether json lines are in use (set by ekmd when it installs the formatter).
void SetJsonLogs(bool json);

// Logs `msg` with `fields`: json puts them in the object; text appends ` key=value` pairs.
void LogWithFields(spdlog::level::level_enum level, const std::string& msg,
                   const LogFields& fields);

// One line of JSON text for `s` (quoted, escaped; invalid UTF-8 replaced).
std::string JsonQuote(const std::string& s);

}  // namespace ekm
