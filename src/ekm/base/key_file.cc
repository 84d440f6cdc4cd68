#include "ekm/base/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace ekm {

namespace {

std::string Errno() { return std::strerror(errno); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string Named(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path;
}

}  // namespace

StatusOr<SecretBytes> ReadKeyFile(const std::string& path, std::string_view what, size_t max_size) {
  // O_NONBLOCK: a FIFO put in its place must not hang the start; it is refused below.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFoundError(Named(what, path) + " does not exist");
    if (errno == ELOOP) {
      return FailedPreconditionError(
          Named(what, path) + " is a symbolic link",
          "ekm opens key files only directly: put the file itself there (mode 0600, owned by "
          "the user ekm runs as), or point the option at it");
    }
    return FailedPreconditionError("cannot open " + Named(what, path) + ": " + Errno(),
                                   "check the file and the permissions of its directory");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return FailedPreconditionError("cannot stat " + Named(what, path) + ": " + Errno());
  }
  if (!S_ISREG(st.st_mode)) {
    return FailedPreconditionError(Named(what, path) + " is not a regular file",
                                   "restore the key file from your backup (a file, mode 0600)");
  }
  if (st.st_uid != ::geteuid()) {
    return FailedPreconditionError(
        Named(what, path) + " is owned by uid " + std::to_string(st.st_uid) +
            ", not by the user ekm runs as (uid " + std::to_string(::geteuid()) + ")",
        "run ekm as the service user that owns its key files, or `chown " +
            std::to_string(::geteuid()) + " " + path + "` if that file is the right one");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return FailedPreconditionError(
        Named(what, path) + " is accessible by other users (mode " + mode + ")",
        "restrict it with `chmod 600 " + path + "`");
  }
  // One byte more than allowed tells a file that is too large from one that fits exactly.
  SecretBytes buf(max_size + 1);
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.MutableForCrypto().data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailedPreconditionError("cannot read " + Named(what, path) + ": " + Errno());
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max_size) {
    return FailedPreconditionError(Named(what, path) + " is larger than a key file (over " +
                                       std::to_string(max_size) + " bytes)",
                                   "point the option at the key file ekm created");
  }
  return SecretBytes(buf.RevealForCrypto().data(), got);
}

Status WriteNewKeyFile(const std::string& path, std::string_view what,
                       std::span<const uint8_t> contents) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) {
    if (errno == EEXIST) return AlreadyExistsError(Named(what, path) + " already exists");
    return FailedPreconditionError("cannot create " + Named(what, path) + ": " + Errno(),
                                   "check that the directory exists and is writable");
  }
  size_t off = 0;
  while (off < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + off, contents.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  bool ok = off == contents.size() && ::fsync(fd.get()) == 0;
  std::string error = ok ? "" : Errno();
  ok = ::close(fd.Release()) == 0 && ok;
  Status synced = ok ? SyncParentDirectory(path) : Status::Ok();
  if (!ok || !synced.ok()) {
    ::unlink(path.c_str());
    return synced.ok() ? FailedPreconditionError("cannot write " + Named(what, path) + ": " + error)
                       : synced;
  }
  return Status::Ok();
}

Status SyncParentDirectory(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
    return FailedPreconditionError("cannot sync directory " + dir + ": " + Errno());
  }
  return Status::Ok();
}

}  // namespace ekm
