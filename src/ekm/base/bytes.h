// Byte containers for non-secret data (ciphertexts, headers, wrapped keys).
// Key material never goes in these: see secret_bytes.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ekm {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsChars(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

inline void Append(Bytes& out, ByteView in) { out.insert(out.end(), in.begin(), in.end()); }

}  // namespace ekm
