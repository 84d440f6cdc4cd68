#include "ekm/server/request_framing.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>

namespace ekm {

namespace http = boost::beast::http;

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

void ConfigureRequestParser(RequestParser& parser) {
  parser.header_limit(kMaxRequestHeaderBytes);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
}

Status CheckFraming(const RequestParser& parser) {
  const auto& req = parser.get();
  size_t fields = 0;
  for (auto it = req.begin(); it != req.end(); ++it) {
    if (++fields > kMaxRequestHeaderFields) {
      return InvalidArgumentError(
          "the request has more than " + std::to_string(kMaxRequestHeaderFields) + " header fields",
          "send fewer headers (ekm needs Authorization, Content-Type and Content-Length)");
    }
  }
  auto [first, last] = req.equal_range(http::field::transfer_encoding);
  if (first == last) return Status::Ok();
  const std::string hint =
      "send the body with Content-Length, or with the single header Transfer-Encoding: chunked";
  if (std::next(first) != last) {
    return InvalidArgumentError("the request has more than one Transfer-Encoding header", hint);
  }
  std::string_view value(first->value().data(), first->value().size());
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (!EqualsIgnoreCase(value, "chunked")) {
    std::string shown(value.substr(0, 64));
    return InvalidArgumentError("Transfer-Encoding \"" + shown +
                                    "\" is not supported: only "
                                    "\"chunked\" is",
                                hint);
  }
  if (req.version() < 11) {
    return InvalidArgumentError("an HTTP/1.0 request cannot use Transfer-Encoding",
                                "use HTTP/1.1, or send the body with Content-Length");
  }
  return Status::Ok();
}

}  // namespace ekm
