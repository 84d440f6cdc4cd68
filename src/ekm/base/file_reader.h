// Reading a whole small file, the one way ekm does it: configuration, credentials, tokens,
// policies, PEM files. (Key files add their own checks on top: key_file.h.)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

// The whole file at `path` ("-": standard input), at most `max_size` bytes. `what` names the
// file in errors ("AWS credentials file"). NotFound when nothing is at `path` (or a directory
// on the way is missing); FailedPrecondition naming the file and the reason when it cannot be
// opened or read, or is larger than `max_size` (what was read is wiped then; the caller wipes
// the text it gets when it holds a secret).
StatusOr<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                    size_t max_size);

// The same for a secret (a token, a credentials file): its bytes are never left behind in a
// buffer that is not wiped.
StatusOr<SecretBytes> ReadSecretFile(const std::string& path, std::string_view what,
                                     size_t max_size);

}  // namespace ekm
