// The tamper-evident audit log: every lifecycle/admin event (events/lifecycle_event.h) is a
// record in a hash chain, one chain per workspace plus the platform chain (workspace ""), and
// chain heads are anchored by checkpoints signed with the platform audit signing key (Ed25519).
//
// This header is the part an auditor needs offline: the canonical record encoding and hash,
// checkpoints and their signatures, the JSON-lines export format and the verifier. The encoding
// is specified in docs/format.md ("Audit records"); what verification proves in docs/audit.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/audit/audit_record.h"
#include "ekm/base/bytes.h"
#include "ekm/base/secret_bytes.h"
#include "ekm/base/status.h"

namespace ekm {

inline constexpr int kAuditFormatVersion = 1;
inline constexpr size_t kAuditHashSize = 32;  // SHA-256

Bytes Sha256(ByteView data);

// The canonical, versioned encoding of a record (every field but id and hash): the bytes that
// `hash` is the SHA-256 of. prev_hash must be 32 bytes (zeros for seq 1).
Bytes AuditRecordEncoding(const LifecycleEventRecord& r);
Bytes AuditRecordHash(const LifecycleEventRecord& r);
// Fills seq, prev_hash and hash of `r` to follow a chain whose head is (head_seq, head_hash);
// head_seq 0 for an empty chain.
void ChainAuditRecord(LifecycleEventRecord& r, int64_t head_seq, ByteView head_hash);

// One export line: every field, hashes hex, detail as the exact stored JSON text (the hashed
// bytes; parse it for its content).
nlohmann::json AuditRecordExportJson(const LifecycleEventRecord& r);
StatusOr<LifecycleEventRecord> ParseAuditRecordExportJson(const nlohmann::json& j);

// A signed statement "chain `chain` had `seq` records and its head hash was `head_hash` at
// `at_ms`", by the key `key_id`.
struct AuditCheckpoint {
  std::string chain;  // workspace name; "" for the platform chain
  int64_t seq = 0;
  Bytes head_hash;
  int64_t at_ms = 0;
  std::string key_id;
  Bytes signature;  // Ed25519 over AuditCheckpointSignedBytes
};
Bytes AuditCheckpointSignedBytes(const AuditCheckpoint& c);
// The checkpoint file / API form: {"format":"ekm-audit-checkpoint-v1","chain",...} hex fields.
nlohmann::json AuditCheckpointJson(const AuditCheckpoint& c);
StatusOr<AuditCheckpoint> ParseAuditCheckpointJson(const nlohmann::json& j);

// The public half of the audit signing key.
class AuditPublicKey {
 public:
  static StatusOr<AuditPublicKey> FromPem(std::string_view pem);
  const std::string& pem() const { return pem_; }
  const std::string& key_id() const { return key_id_; }
  bool Verify(const AuditCheckpoint& c) const;

 private:
  std::string pem_;
  std::string key_id_;
  Bytes raw_;  // 32-byte Ed25519 public key
};

// The platform audit signing key: <data-dir>/audit-signing.key, PKCS#8 PEM, mode 0600.
class AuditSigner {
 public:
  ~AuditSigner();
  AuditSigner(const AuditSigner&) = delete;
  AuditSigner& operator=(const AuditSigner&) = delete;

  // Creates the key file (refusing to overwrite anything there) with a fresh Ed25519 key;
  // the file and its directory are fsync'd.
  static Status CreateKeyFile(const std::string& path);
  // Loads the key file: a regular file, not a symbolic link, owned by the user ekm runs as,
  // mode 0600 (base/key_file.h). NotFound when it does not exist. Which key a store's audit
  // log is signed with is the service's business (it records the key id in the store).
  static StatusOr<std::unique_ptr<AuditSigner>> Load(const std::string& path);
  // A fresh Ed25519 key as PKCS#8 PEM, and a signer from one (`source` names where it came
  // from in errors): for a key kept sealed in a shared store instead of a file.
  static StatusOr<SecretBytes> NewPrivateKeyPem();
  static StatusOr<std::unique_ptr<AuditSigner>> FromPem(const SecretBytes& pem,
                                                        const std::string& source);

  const AuditPublicKey& public_key() const { return public_key_; }
  // Sets key_id and signature of `c`.
  Status Sign(AuditCheckpoint& c) const;

 private:
  AuditSigner() = default;
  void* pkey_ = nullptr;  // EVP_PKEY*, kept out of this header
  AuditPublicKey public_key_;
};

// What the verifier found. ok when `problems` is empty.
struct AuditVerifyReport {
  size_t records = 0;
  size_t chains = 0;
  size_t checkpoints = 0;             // checkpoints checked against the records
  std::vector<std::string> problems;  // first one names the first bad record
  bool ok() const { return problems.empty(); }
};

// Checks records (in export order: by id) chain by chain: each hash (an edit), seq continuity
// from 1 (a removal), each prev_hash link (a reorder or rewrite), then each checkpoint: its
// signature by `key` (when given; a key_id that is not the key's is a problem), and that the
// records reach its seq with its head hash (a cut-off tail or a rewritten history).
//
// Record by record: it keeps per chain only its last record's seq and hash and the hashes at
// the checkpoints' seqs, so an export of any length is verified in bounded memory. The
// checkpoints are given first; a checkpoint taken after the records were read would name a
// seq beyond them (read the checkpoints, then the records).
class AuditLogVerifier {
 public:
  // `key` (may be null: signatures are not checked) must outlive the verifier.
  AuditLogVerifier(std::vector<AuditCheckpoint> checkpoints, const AuditPublicKey* key);
  void Add(const LifecycleEventRecord& r);
  // The report; the verifier is spent.
  AuditVerifyReport Finish();

  // Problems listed in the report; beyond them only counted (a log rewritten from its first
  // record would name every record).
  static constexpr size_t kMaxListedProblems = 100;

 private:
  struct ChainState {
    int64_t last_seq = 0;
    Bytes last_hash;
    std::map<int64_t, Bytes> hash_at_checkpoint;  // seq -> the record's hash, checkpoint seqs only
  };
  void Problem(std::string text);

  std::vector<AuditCheckpoint> checkpoints_;
  const AuditPublicKey* key_;
  std::map<std::string, std::set<int64_t>> checkpoint_seqs_;  // by chain
  std::map<std::string, ChainState> chains_;
  AuditVerifyReport report_;
  size_t unlisted_problems_ = 0;
};

// The same over records in memory.
AuditVerifyReport VerifyAuditLog(const std::vector<LifecycleEventRecord>& records,
                                 const std::vector<AuditCheckpoint>& checkpoints,
                                 const AuditPublicKey* key);

}  // namespace ekm
