// The key files of a data directory (root.key, audit-signing.key): created once, mode 0600,
// with the file and its directory entry on disk before anyone relies on them; read only when
// they are what they should be: a regular file, not reached through a symbolic link
// (O_NOFOLLOW), owned by the user ekm runs as, not accessible by group or others. A key file
// that fails a check is refused with an error naming the file, what is wrong and the fix.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// The whole file, at most `max_size` bytes. `what` names it in errors ("root key file").
// NotFound when nothing is at `path`; FailedPrecondition for a file that fails a check.
StatusOr<SecretBytes> ReadKeyFile(const std::string& path, std::string_view what, size_t max_size);

// Creates `path` holding `contents`, mode 0600, never replacing anything there (AlreadyExists,
// also for a symbolic link); fsyncs the file, then its directory. On failure nothing is left.
Status WriteNewKeyFile(const std::string& path, std::string_view what,
                       std::span<const uint8_t> contents);

// fsync of the directory that holds `path`, so a file just created there survives a crash.
Status SyncParentDirectory(const std::string& path);

}  // namespace ekm
