#include "ekm/base/encoding.h"

#include <array>

namespace ekm {

namespace {

constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(ByteView in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  size_t rest = in.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{in[i]} << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (pad) out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (pad) out += "=";
  }
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
  Bytes out;
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    int8_t v = kTable[static_cast<uint8_t>(in[i])];
    if (v < 0) {
      return InvalidArgumentError(std::string(what) + " has an invalid character at position " +
                                  std::to_string(i + 1));
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
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
StatusOr<Bytes> Base64UrlDecode(std::string_view in) { return Decode(in, "base64url text"); }
std::string Base64Encode(ByteView in) { return Encode(in, kStd, true); }
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

}  // namespace ekm
