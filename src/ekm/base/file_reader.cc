#include "ekm/base/file_reader.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ekm {

namespace {

std::string Named(std::string_view what, const std::string& path) {
  return std::string(what) + " " + (path == "-" ? std::string("(standard input)") : path);
}

// Reads into `buf` (capacity max_size + 1: one byte more tells a file that is too large from
// one that fits exactly); the number of bytes read.
StatusOr<size_t> ReadInto(const std::string& path, std::string_view what, uint8_t* buf,
                          size_t capacity) {
  const bool in = path == "-";
  int fd = in ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return NotFoundError(Named(what, path) + " does not exist",
                           "check the path: nothing is there");
    }
    return FailedPreconditionError("cannot open " + Named(what, path) + ": " + std::strerror(errno),
                                   "check the file and the permissions of its directory");
  }
  size_t got = 0;
  Status failed;
  while (got < capacity) {
    ssize_t n = ::read(fd, buf + got, capacity - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failed =
          FailedPreconditionError("cannot read " + Named(what, path) + ": " + std::strerror(errno),
                                  "check that it is a readable file, not a directory");
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (!in) ::close(fd);
  if (!failed.ok()) return failed;
  if (got == capacity) {
    return FailedPreconditionError(
        Named(what, path) + " is larger than " + std::to_string(capacity - 1) + " bytes",
        "is this the right file?");
  }
  return got;
}

}  // namespace

StatusOr<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                    size_t max_size) {
  std::string out;
  out.resize(max_size + 1);
  auto got = ReadInto(path, what, reinterpret_cast<uint8_t*>(out.data()), out.size());
  if (!got.ok()) {
    // What was read may be a secret (an AWS credentials file): not left behind in the heap.
    OPENSSL_cleanse(out.data(), out.size());
    return got.status();
  }
  out.resize(*got);
  return out;
}

StatusOr<SecretBytes> ReadSecretFile(const std::string& path, std::string_view what,
                                     size_t max_size) {
  SecretBytes buf(max_size + 1);
  EKM_ASSIGN_OR_RETURN(size_t got, ReadInto(path, what, buf.MutableForCrypto().data(), buf.size()));
  return SecretBytes(buf.RevealForCrypto().data(), got);
}

}  // namespace ekm
