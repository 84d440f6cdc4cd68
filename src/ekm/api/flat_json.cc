#include "ekm/api/flat_json.h"

namespace ekm {

bool ParseFlatStringObject(std::string_view body, FlatFields* fields, size_t* count) {
  size_t i = 0, n = 0;
  auto space = [&] {
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) {
      ++i;
    }
  };
  auto string = [&](std::string_view* out) {
    if (i >= body.size() || body[i] != '"') return false;
    const size_t start = ++i;
    while (i < body.size() && body[i] != '"') {
      const auto c = static_cast<unsigned char>(body[i]);
      if (c < 0x20 || c > 0x7e || c == '\\') return false;
      ++i;
    }
    if (i >= body.size()) return false;
    *out = body.substr(start, i - start);
    ++i;
    return true;
  };
  space();
  if (i >= body.size() || body[i++] != '{') return false;
  space();
  if (i < body.size() && body[i] == '}') {
    ++i;
  } else {
    for (;;) {
      FlatField f;
      space();
      if (!string(&f.key)) return false;
      space();
      if (i >= body.size() || body[i++] != ':') return false;
      space();
      if (!string(&f.value)) return false;
      for (size_t k = 0; k < n; ++k) {
        if ((*fields)[k].key == f.key) return false;
      }
      if (n == kMaxFlatFields) return false;
      (*fields)[n++] = f;
      space();
      if (i >= body.size()) return false;
      if (body[i] == ',') {
        ++i;
        continue;
      }
      if (body[i++] != '}') return false;
      break;
    }
  }
  space();
  if (i != body.size()) return false;
  *count = n;
  return true;
}

// The value of `name` in a flat object read by ParseFlatStringObject, or nullptr.
const std::string_view* FlatValue(const FlatFields& fields, size_t count, std::string_view name) {
  for (size_t k = 0; k < count; ++k) {
    if (fields[k].key == name) return &fields[k].value;
  }
  return nullptr;
}

}  // namespace ekm
