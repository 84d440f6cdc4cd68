// Text encodings of non-secret bytes: base64url (RFC 4648 §5, no padding), standard base64
// (for JSON payloads, as AWS uses), and lower-case hex.
#pragma once

#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm {

std::string Base64UrlEncode(ByteView in);
// Base64UrlEncode, appended to `out` (no intermediate string).
void AppendBase64Url(ByteView in, std::string* out);
// Accepts unpadded input (padding '=' is tolerated). Names the first bad character.
StatusOr<Bytes> Base64UrlDecode(std::string_view in);

std::string Base64Encode(ByteView in);  // standard alphabet, padded
// Base64Encode, appended to `out`.
void AppendBase64(ByteView in, std::string* out);
// Standard alphabet; padding optional; also accepts the URL-safe alphabet.
StatusOr<Bytes> Base64Decode(std::string_view in);

std::string HexEncode(ByteView in);
StatusOr<Bytes> HexDecode(std::string_view in);

// Percent-encoding (RFC 3986 §2.1) of one path segment or query value: every byte but the
// unreserved A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex), appended to `out`.
void AppendPercentEncoded(std::string_view in, std::string* out);
std::string PercentEncode(std::string_view in);

// A caller's text (a field or parameter name, a value that is not secret) quoted in an error
// message: in double quotes, cut to its first 64 bytes at a UTF-8 character boundary (then
// "…"), so that a megabyte sent does not come back in the error.
std::string QuotedExcerpt(std::string_view text);

}  // namespace ekm
