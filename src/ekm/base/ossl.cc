#include "ekm/base/ossl.h"

#include <openssl/err.h>

#include <string>

namespace ekm {

Status OsslError(std::string_view what) {
  std::string msg = "OpenSSL: ";
  msg += what;
  msg += " failed";
  unsigned long e;
  bool first = true;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    msg += first ? ": " : "; ";
    msg += buf;
    first = false;
  }
  return InternalError(std::move(msg));
}

}  // namespace ekm
