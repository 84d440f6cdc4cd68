#include "ekm/base/encoding.h"

#include <array>

namespace ekm {

namespace {

constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Appends the encoding of `in` to `out`: sized once, written through a pointer (this runs on
// every API payload).
void EncodeTo(ByteView in, const char* alphabet, bool pad, std::string* out) {
  const size_t whole = in.size() / 3, rest = in.size() % 3;
  const size_t size = whole * 4 + (rest == 0 ? 0 : pad ? 4 : rest + 1);
  const size_t at = out->size();
  out->resize(at + size);
  char* p = out->data() + at;
  const uint8_t* q = in.data();
  for (size_t i = 0; i < whole; ++i, q += 3, p += 4) {
    const uint32_t v = (uint32_t{q[0]} << 16) | (uint32_t{q[1]} << 8) | q[2];
    p[0] = alphabet[(v >> 18) & 63];
    p[1] = alphabet[(v >> 12) & 63];
    p[2] = alphabet[(v >> 6) & 63];
    p[3] = alphabet[v & 63];
  }
  if (rest == 1) {
    const uint32_t v = uint32_t{q[0]} << 16;
    p[0] = alphabet[(v >> 18) & 63];
    p[1] = alphabet[(v >> 12) & 63];
    if (pad) p[2] = p[3] = '=';
  } else if (rest == 2) {
    const uint32_t v = (uint32_t{q[0]} << 16) | (uint32_t{q[1]} << 8);
    p[0] = alphabet[(v >> 18) & 63];
    p[1] = alphabet[(v >> 12) & 63];
    p[2] = alphabet[(v >> 6) & 63];
    if (pad) p[3] = '=';
  }
}

std::string Encode(ByteView in, const char* alphabet, bool pad) {
  std::string out;
  EncodeTo(in, alphabet, pad, &out);
  return out;
}

// -1 = invalid. Both alphabets decode ('+' '-' → 62, '/' '_' → 63).
constexpr std::array<int8_t, 256> MakeTable() {
  std::array<int8_t, 256> t{};
  for (auto& x : t) x = -1;
  for (int i = 0; i < 64; ++i) {
    t[static_cast<uint8_t>(kStd[i])] = static_cast<int8_t>(i);
    t[static_cast<uint8_t>(kUrl[i])] = static_cast<int8_t>(i);
  }
  return t;
}
constexpr auto kTable = MakeTable();

StatusOr<Bytes> Decode(std::string_view in, std::string_view what) {
  // Strip padding at the end only.
  size_t n = in.size();
  size_t pads = 0;
  while (n > 0 && in[n - 1] == '=' && pads < 2) {
    --n;
    ++pads;
  }
  if (pads > 0 && (n + pads) % 4 != 0) {
    return InvalidArgumentError(std::string(what) + " has wrong padding");
  }
  if (n % 4 == 1) {
    return InvalidArgumentError(std::string(what) + " is truncated (length " +
                                std::to_string(in.size()) + " is not a valid base64 length)");
  }
  Bytes out(n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1));
  uint8_t* p = out.data();
  auto invalid_at = [&](size_t from) -> Status {
    size_t i = from;
    while (i < n && kTable[static_cast<uint8_t>(in[i])] >= 0) ++i;
    return InvalidArgumentError(std::string(what) + " has an invalid character at position " +
                                std::to_string(i + 1));
  };
  // Whole groups of four characters: one check of all four, three bytes out.
  size_t i = 0;
  for (; i + 4 <= n; i += 4, p += 3) {
    const int8_t a = kTable[static_cast<uint8_t>(in[i])],
                 b = kTable[static_cast<uint8_t>(in[i + 1])],
                 c = kTable[static_cast<uint8_t>(in[i + 2])],
                 d = kTable[static_cast<uint8_t>(in[i + 3])];
    if ((a | b | c | d) < 0) return invalid_at(i);
    const uint32_t v = (uint32_t(a) << 18) | (uint32_t(b) << 12) | (uint32_t(c) << 6) | uint32_t(d);
    p[0] = static_cast<uint8_t>(v >> 16);
    p[1] = static_cast<uint8_t>(v >> 8);
    p[2] = static_cast<uint8_t>(v);
  }
  uint32_t acc = 0;
  int bits = 0;
  for (; i < n; ++i) {
    int8_t v = kTable[static_cast<uint8_t>(in[i])];
    if (v < 0) return invalid_at(i);
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *p++ = static_cast<uint8_t>(acc >> bits);
    }
  }
  // Non-canonical trailing bits must be zero.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return InvalidArgumentError(std::string(what) + " has non-zero trailing bits (corrupted?)");
  }
  return out;
}

}  // namespace

std::string Base64UrlEncode(ByteView in) { return Encode(in, kUrl, false); }
void AppendBase64Url(ByteView in, std::string* out) { EncodeTo(in, kUrl, false, out); }
StatusOr<Bytes> Base64UrlDecode(std::string_view in) { return Decode(in, "base64url text"); }
std::string Base64Encode(ByteView in) { return Encode(in, kStd, true); }
void AppendBase64(ByteView in, std::string* out) { EncodeTo(in, kStd, true, out); }
StatusOr<Bytes> Base64Decode(std::string_view in) { return Decode(in, "base64 text"); }

std::string HexEncode(ByteView in) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size() * 2);
  for (uint8_t b : in) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

void AppendPercentEncoded(std::string_view in, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char c : in) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out->push_back(c);
    } else {
      out->push_back('%');
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 15]);
    }
  }
}

std::string PercentEncode(std::string_view in) {
  std::string out;
  AppendPercentEncoded(in, &out);
  return out;
}

StatusOr<Bytes> HexDecode(std::string_view in) {
  if (in.size() % 2 != 0) return InvalidArgumentError("hex text has an odd length");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(in.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(in[2 * i]), lo = nibble(in[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgumentError("hex text has an invalid character at position " +
                                  std::to_string(2 * i + (hi < 0 ? 1 : 2)));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::string QuotedExcerpt(std::string_view text) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  if (text.size() <= kMax) {
    out.append(text);
  } else {
    size_t cut = kMax;  // back to the first byte of a character
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    out.append(text.substr(0, cut)).append("…");
  }
  out += '"';
  return out;
}

}  // namespace ekm
