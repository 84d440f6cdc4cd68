// Fuzz target: HTTP/1.1 request framing as ekmd does it (src/ekm/server/request_framing.h):
// the input is a connection's byte stream, fed to Beast's request parser the way the server's
// read loop feeds it (a growing window, like its flat_buffer, in input-derived step sizes),
// header then CheckFraming then body into a bounded buffer_body, then the next pipelined
// request while the connection is kept alive.
// Contract checks: a request CheckFraming accepts with Transfer-Encoding is HTTP/1.1 and
// chunked; no request is both chunked and Content-Length framed; a complete Content-Length
// body delivers exactly that many bytes; the parser never consumes more than it was given.
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "ekm/server/request_framing.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t step = (data[0] % 32) + 1;          // bytes that "arrive" per read
  const bool unlimited_body = (data[1] & 1) != 0;  // a stream route, else --max-body-size
  data += 2;
  size -= 2;
  std::array<char, 4096> scratch;
  size_t pos = 0;                      // consumed by the parser
  size_t have = std::min(step, size);  // arrived, not consumed
  for (int request = 0; request < 16; ++request) {
    ekm::RequestParser parser;
    ekm::ConfigureRequestParser(parser);
    boost::beast::error_code ec;
    // Header (the server's async_read_header).
    while (!parser.is_header_done()) {
      const size_t n = parser.put(boost::asio::buffer(data + pos, have), ec);
      if (n > have) __builtin_trap();
      pos += n;
      have -= n;
      if (ec == http::error::need_more) {
        if (pos + have == size) return 0;  // the connection ends mid-header
        have = std::min(have + step, size - pos);
        ec = {};
        continue;
      }
      if (ec) return 0;  // answered 400 "malformed HTTP request", connection closed
    }
    if (!ekm::CheckFraming(parser).ok()) return 0;  // answered 400, connection closed
    const auto& req = parser.get();
    const bool has_te = req.find(http::field::transfer_encoding) != req.end();
    if (has_te && (req.version() < 11 || !parser.chunked())) __builtin_trap();
    if (parser.chunked() && parser.content_length()) __builtin_trap();
    const auto length = parser.content_length();
    if (unlimited_body) {
      parser.body_limit(boost::none);
    } else {
      parser.body_limit(64 * 1024);
    }
    // Body (the server's ReadBody / drain), into a bounded buffer.
    uint64_t body = 0;
    while (!parser.is_done()) {
      parser.get().body().data = scratch.data();
      parser.get().body().size = scratch.size();
      const size_t n = parser.put(boost::asio::buffer(data + pos, have), ec);
      if (n > have) __builtin_trap();
      pos += n;
      have -= n;
      body += scratch.size() - parser.get().body().size;
      if (ec == http::error::need_buffer) {
        ec = {};
        continue;
      }
      if (ec == http::error::need_more || (!ec && n == 0)) {
        if (pos + have == size) return 0;  // the connection ends mid-body
        have = std::min(have + step, size - pos);
        ec = {};
        continue;
      }
      if (ec) return 0;  // body_limit or a bad chunk: an error answer, connection closed
    }
    if (length && body != *length) __builtin_trap();
    if (!parser.keep_alive()) return 0;
    if (pos == size) return 0;
    if (have == 0) have = std::min(step, size - pos);
  }
  return 0;
}
