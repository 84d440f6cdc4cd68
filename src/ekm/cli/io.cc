#include "ekm/cli/io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "ekm/base/file_reader.h"

namespace ekm::cli {
namespace {

StatusOr<size_t> ReadStdin(uint8_t* buf, size_t cap) {
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, cap);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return FailedPreconditionError(std::string("cannot read standard input: ") +
                                   std::strerror(errno));
  }
}

}  // namespace

StdinInput::StdinInput() {
  struct stat st {};
  if (::fstat(STDIN_FILENO, &st) != 0 || !S_ISREG(st.st_mode)) return;
  const off_t offset = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
  if (offset < 0 || st.st_size - offset < (1 << 20)) return;
  const long page = ::sysconf(_SC_PAGESIZE);
  const off_t start = offset / page * page;
  const size_t length = static_cast<size_t>(st.st_size - start);
  void* p = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, STDIN_FILENO, start);
  if (p == MAP_FAILED) return;
  ::madvise(p, length, MADV_SEQUENTIAL);  // advice only: ignored if refused
  map_ = p;
  map_length_ = length;
  data_ = ByteView(static_cast<const uint8_t*>(p) + (offset - start),
                   static_cast<size_t>(st.st_size - offset));
  offset_ = offset;
}

void StdinInput::Release(size_t used) {
  if (used == data_.size()) ::lseek(STDIN_FILENO, offset_ + static_cast<off_t>(used), SEEK_SET);
  const size_t end = static_cast<size_t>(data_.data() - static_cast<uint8_t*>(map_)) + used;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t upto = end / page * page;
  if (upto < released_ + (8u << 20)) return;
  ::madvise(static_cast<uint8_t*>(map_) + released_, upto - released_, MADV_DONTNEED);
  released_ = upto;
}

StdinInput::~StdinInput() {
  if (map_ != nullptr) ::munmap(map_, map_length_);
}

StreamSource StdinInput::source() {
  StreamSource s{&ReadStdin, std::nullopt, nullptr};
  if (map_ != nullptr) {
    s.mapped = data_;
    s.release = [this](size_t used) { Release(used); };
  }
  return s;
}

StreamSink StdoutSink() {
  return [](ByteView data) -> Status {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(STDOUT_FILENO, data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return FailedPreconditionError(std::string("cannot write standard output: ") +
                                       std::strerror(errno));
      }
      off += static_cast<size_t>(n);
    }
    return Status::Ok();
  };
}

StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what) {
  auto text = ReadSmallFile(path, what, 1 << 20);
  if (!text.ok()) return text.status().WithCode(StatusCode::kInvalidArgument);
  return text;
}

Status WriteFileWithMode(const std::string& path, std::string_view data, mode_t mode, bool force) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return AlreadyExistsError(path + " exists already",
                                "pass --force to replace it, or choose another --out directory");
    }
    return FailedPreconditionError("cannot create " + path + ": " + std::strerror(errno));
  }
  Status s =
      ::fchmod(fd, mode) == 0
          ? Status::Ok()
          : FailedPreconditionError("cannot set the mode of " + path + ": " + std::strerror(errno));
  size_t off = 0;
  while (s.ok() && off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      s = FailedPreconditionError("cannot write " + path + ": " + std::strerror(errno));
    else
      off += static_cast<size_t>(n);
  }
  ::close(fd);
  return s;
}

StatusOr<Bytes> ReadSecretInput(const std::string& path, std::string_view what) {
  auto data = ReadSecretFile(path, what, 64 * 1024);
  if (!data.ok()) return data.status().WithCode(StatusCode::kInvalidArgument);
  // The caller wipes this copy when it is done (the SecretBytes wipes itself).
  return Bytes(data->RevealForCrypto().begin(), data->RevealForCrypto().end());
}

StatusOr<Bytes> ReadAllBytes(const std::string& path) {
  int fd = path.empty() || path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return InvalidArgumentError("cannot open " + path + ": " + std::strerror(errno),
                                "give the path of a ciphertext file, or - for standard input");
  }
  Bytes out;
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string why = std::strerror(errno);
      if (fd != STDIN_FILENO) ::close(fd);
      return InvalidArgumentError("cannot read " + path + ": " + why);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  if (fd != STDIN_FILENO) ::close(fd);
  return out;
}

Status WriteAllBytes(const std::string& path, ByteView data) {
  if (path.empty() || path == "-") return StdoutSink()(data);
  // Written beside the target and renamed into place: never half a ciphertext.
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return InvalidArgumentError("cannot create " + tmp + ": " + std::strerror(errno));
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return FailedPreconditionError("cannot write " + tmp + ": " + why);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return FailedPreconditionError("cannot write " + path + ": " + why);
  }
  return Status::Ok();
}

std::string AskLine(const std::string& prompt) {
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  std::string line;
  std::getline(std::cin, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

}  // namespace ekm::cli
