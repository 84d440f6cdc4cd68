// Fuzz target: the AWS KMS "Key ARN" field, untrusted text from a form or API request.
// Besides not crashing, checks the parser's contract: an accepted text round-trips through
// ToString() unchanged, and every error is kInvalidArgument with a printable-ASCII message and
// hint (invisible characters are named, never echoed).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ekm/provider/aws/kms_arn.h"

namespace {

bool PrintableAscii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = ekm::ParseKmsArn(text);
  if (parsed.ok()) {
    if (parsed->ToString() != text) __builtin_trap();
    auto again = ekm::ParseKmsArn(parsed->ToString());
    if (!again.ok() || !(*again == *parsed)) __builtin_trap();
  } else {
    const ekm::Status s = parsed.status();
    if (s.code() != ekm::StatusCode::kInvalidArgument) __builtin_trap();
    if (s.message().empty() || s.hint().empty()) __builtin_trap();
    if (!PrintableAscii(s.message()) || !PrintableAscii(s.hint())) __builtin_trap();
  }
  return 0;
}
