// EkmService: the one facade over the key hierarchy that both the `ekm` CLI (local mode) and
// `ekmd` (every API route) call. It owns the store, the providers and the key cache.
//
// Flow of an encrypt: workspace/environment -> current DK of the scope (cache, else unwrap the
// EK through the CMK's provider, then the DK under the EK; a scope's first use creates its DK)
// -> nonce from the DK's nonce lease -> envelope. The provider is called only on a cache miss.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/bytes.h"
#include "ekm/base/clock.h"
#include "ekm/base/status.h"
#include "ekm/envelope/envelope.h"

namespace ekm {

inline constexpr std::string_view kDefaultScope = "default";

struct EkmOptions {
  std::string data_dir;       // holds ekm.db and, by default, root.key
  std::string root_key_file;  // the platform provider's root key; default <data_dir>/root.key
  // How long unwrapped EKs and DKs may be used without asking the provider again.
  std::chrono::seconds key_cache_ttl{300};
  // Bound on AES-GCM messages per DK version; past it the scope's DK rotates by itself.
  uint64_t max_messages_per_dk = uint64_t{1} << 32;
  // Nonces reserved from the store at a time (see keys/nonce_sequence.h).
  uint32_t nonce_lease_size = 1u << 20;
  Clock* clock = &Clock::Real();
};

struct WorkspaceInfo {
  std::string name;
  int64_t created_at = 0;
};

struct EnvironmentInfo {
  std::string workspace;
  std::string name;
  int64_t created_at = 0;
  std::string cmk_provider;
  std::string cmk_key_id;
  uint32_t ek_version = 0;
};

class EkmService {
 public:
  virtual ~EkmService() = default;

  // Creates the data directory, the root key and the store if they do not exist yet.
  static Status Initialize(const EkmOptions& options);
  // Opens an initialized data directory; FailedPrecondition with "run `ekm init`" otherwise.
  static StatusOr<std::unique_ptr<EkmService>> Open(const EkmOptions& options);

  // Admin plane.
  virtual StatusOr<WorkspaceInfo> CreateWorkspace(std::string_view name) = 0;
  virtual StatusOr<std::vector<WorkspaceInfo>> ListWorkspaces() = 0;
  virtual StatusOr<EnvironmentInfo> CreateEnvironment(std::string_view workspace,
                                                      std::string_view name) = 0;
  virtual StatusOr<std::vector<EnvironmentInfo>> ListEnvironments(std::string_view workspace) = 0;

  // Data plane, whole messages. Encrypt appends a single-form binary envelope to `out`.
  virtual Status Encrypt(std::string_view workspace, std::string_view environment,
                         std::string_view scope, ByteView plaintext, Bytes* out) = 0;
  // Accepts either form, binary or text; appends the plaintext to `out`. An envelope of another
  // workspace or environment is refused with InvalidArgument naming both.
  virtual Status Decrypt(std::string_view workspace, std::string_view environment,
                         ByteView envelope, Bytes* out) = 0;

  // Data plane, streams of any size in bounded memory.
  virtual StatusOr<std::unique_ptr<EnvelopeEncoder>> NewEncryptStream(
      std::string_view workspace, std::string_view environment, std::string_view scope,
      bool text) = 0;
  virtual StatusOr<std::unique_ptr<EnvelopeDecoder>> NewDecryptStream(
      std::string_view workspace, std::string_view environment) = 0;
};

}  // namespace ekm
