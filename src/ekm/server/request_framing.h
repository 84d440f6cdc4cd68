// How ekmd frames HTTP/1.1 requests on a connection: the Beast parser it reads each request with,
// that parser's limits, and the Transfer-Encoding / Content-Length rules it enforces on top
// (request smuggling). Coroutine-free, so the fuzz build (clang 14, which cannot compile the
// server's Asio coroutines against libstdc++) can drive it byte by byte
// (fuzz/http_framing_fuzz.cc).
#pragma once
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstddef>

#include "ekm/base/status.h"

namespace ekm {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;

// The request line and headers together: beyond this the request is refused as malformed.
inline constexpr size_t kMaxRequestHeaderBytes = 16 * 1024;

// Header fields in one request: more is refused (400), whatever their total size. Real clients
// send about ten; thousands of tiny ones only cost the server time per field.
inline constexpr size_t kMaxRequestHeaderFields = 100;

// A fresh parser's limits: kMaxRequestHeaderBytes of header; the body limit is set per route
// once the header is read (the server's --max-body-size, or none for streams).
void ConfigureRequestParser(RequestParser& parser);

// Whether a request's body framing is one this server reads exactly as every proxy in front of
// it would (RFC 9112 §6.1): a Transfer-Encoding other than a single "chunked" (an unknown
// coding, "chunked, identity", a second header) could be read as "no body" here and as a body
// elsewhere, and the body would then run as the next request (request smuggling). Called once
// the header is parsed; InvalidArgument (answered 400, connection closed) otherwise. Also refuses
// more than kMaxRequestHeaderFields header fields.
Status CheckFraming(const RequestParser& parser);

}  // namespace ekm
