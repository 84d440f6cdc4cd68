// The files and standard streams of `ekm`: standard input for encrypt and decrypt (mapped when it
// is a large regular file), standard output as a sink, small input files, files written whole.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "ekm/api/ekm_api.h"
#include "ekm/base/bytes.h"
#include "ekm/base/status.h"

namespace ekm::cli {

// Standard input for encrypt and decrypt. A regular file of at least 1 MiB is also mapped (from
// the current offset to its end), so the local backend reads it without copying (and leaves the
// offset where reading would have); anything else (a pipe, a terminal, a small file, a failed
// mmap), and the server backend, reads.
// A file truncated by someone else while it is mapped ends the process with SIGBUS, as it would
// leave a half-read file with read(2): either way that output must be discarded.
class StdinInput {
 public:
  StdinInput();
  ~StdinInput();
  StdinInput(const StdinInput&) = delete;
  StdinInput& operator=(const StdinInput&) = delete;

  // Drops the pages of data_[0, used) from this process, 8 MiB at a time (they stay in the
  // page cache): without it a 10 GiB file would end with 10 GiB resident.
  void Release(size_t used);

  StreamSource source();

 private:
  void* map_ = nullptr;
  size_t map_length_ = 0;
  size_t released_ = 0;  // bytes from map_ already dropped
  off_t offset_ = 0;     // of data_ in the file
  ByteView data_;
};

StreamSink StdoutSink();

// A file the command reads (at most 1 MiB; "-": standard input). A path that does not work is
// the caller's input: InvalidArgument.
StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what);

// Writes `data` to `path` with `mode`; refuses to replace an existing file unless `force`.
Status WriteFileWithMode(const std::string& path, std::string_view data, mode_t mode, bool force);

// A small binary or text file (at most 64 KiB) that may be a secret (a token).
StatusOr<Bytes> ReadSecretInput(const std::string& path, std::string_view what);

// Reads all of FILE ("-" or empty: standard input). Rewrap works on whole messages.
StatusOr<Bytes> ReadAllBytes(const std::string& path);

// Writes `data` to `path` ("-" or empty: standard output), whole or not at all.
Status WriteAllBytes(const std::string& path, ByteView data);

// Reads one line typed on the terminal.
std::string AskLine(const std::string& prompt);

}  // namespace ekm::cli
