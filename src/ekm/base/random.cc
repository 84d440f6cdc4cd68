#include "ekm/base/random.h"

#include <openssl/rand.h>

#include <climits>

#include "ekm/base/ossl.h"

namespace ekm {

Status RandomBytes(std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  if (out.size() > INT_MAX) return InvalidArgumentError("random request too large");
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    return OsslError("RAND_bytes");
  }
  return Status::Ok();
}

StatusOr<SecretBytes> RandomSecret(size_t size) {
  SecretBytes s(size);
  EKM_RETURN_IF_ERROR(RandomBytes(s.MutableForCrypto()));
  return s;
}

StatusOr<uint64_t> RandomUint64() {
  uint8_t b[8];
  EKM_RETURN_IF_ERROR(RandomBytes(b));
  uint64_t v = 0;
  for (uint8_t x : b) v = (v << 8) | x;
  return v;
}

}  // namespace ekm
