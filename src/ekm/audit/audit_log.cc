#include "ekm/audit/audit_log.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstring>
#include <map>
#include <span>

#include "ekm/base/encoding.h"
#include "ekm/base/key_file.h"
#include "ekm/base/ossl.h"
#include "ekm/base/secret_bytes.h"

namespace ekm {

template <>
struct OsslDeleter<BIO> {
  void operator()(BIO* p) const { BIO_free(p); }
};

namespace {

// Domain separation: a record hash can never be mistaken for a checkpoint's signed bytes.
constexpr std::string_view kRecordMagic = "ekm-audit-record";
constexpr std::string_view kCheckpointMagic = "ekm-audit-checkpoint";
constexpr std::string_view kCheckpointFormat = "ekm-audit-checkpoint-v1";

void PutU32(Bytes& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(Bytes& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutString(Bytes& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  Append(out, AsBytes(s));
}
void PutHash(Bytes& out, ByteView h) {
  // A hash of the wrong length is encoded as it is (length-prefixed), so it cannot collide
  // with a well-formed one and verification fails on it.
  if (h.size() == kAuditHashSize) {
    Append(out, h);
  } else {
    PutU32(out, static_cast<uint32_t>(h.size()));
    Append(out, h);
  }
}

std::string Who(const LifecycleEventRecord& r) {
  return "record seq " + std::to_string(r.seq) + " (id " + std::to_string(r.id) + ", " + r.type +
         ")";
}
std::string ChainName(std::string_view chain) {
  return chain.empty() ? std::string("the platform chain")
                       : "the chain of workspace \"" + std::string(chain) + "\"";
}

StatusOr<Bytes> HexField(const nlohmann::json& j, const char* name) {
  if (!j.contains(name) || !j[name].is_string()) {
    return InvalidArgumentError(std::string("missing or non-string field \"") + name + "\"");
  }
  return HexDecode(j[name].get<std::string>());
}
StatusOr<std::string> StringField(const nlohmann::json& j, const char* name) {
  if (!j.contains(name) || !j[name].is_string()) {
    return InvalidArgumentError(std::string("missing or non-string field \"") + name + "\"");
  }
  return j[name].get<std::string>();
}
StatusOr<int64_t> IntField(const nlohmann::json& j, const char* name) {
  if (!j.contains(name) || !j[name].is_number_integer()) {
    return InvalidArgumentError(std::string("missing or non-integer field \"") + name + "\"");
  }
  return j[name].get<int64_t>();
}

}  // namespace

Bytes Sha256(ByteView data) {
  Bytes out(kAuditHashSize);
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

Bytes AuditRecordEncoding(const LifecycleEventRecord& r) {
  Bytes out;
  PutString(out, kRecordMagic);
  out.push_back(static_cast<uint8_t>(kAuditFormatVersion));
  PutString(out, r.chain);
  PutU64(out, static_cast<uint64_t>(r.seq));
  PutU64(out, static_cast<uint64_t>(r.at_ms));
  PutString(out, r.workspace);
  PutString(out, r.environment);
  PutString(out, r.type);
  PutString(out, r.actor);
  PutString(out, r.detail);
  PutHash(out, r.prev_hash);
  return out;
}

Bytes AuditRecordHash(const LifecycleEventRecord& r) { return Sha256(AuditRecordEncoding(r)); }

void ChainAuditRecord(LifecycleEventRecord& r, int64_t head_seq, ByteView head_hash) {
  r.chain = r.workspace;
  r.seq = head_seq + 1;
  r.prev_hash =
      head_seq == 0 ? Bytes(kAuditHashSize, 0) : Bytes(head_hash.begin(), head_hash.end());
  r.hash = AuditRecordHash(r);
}

nlohmann::json AuditRecordExportJson(const LifecycleEventRecord& r) {
  return {{"v", kAuditFormatVersion},
          {"id", r.id},
          {"chain", r.chain},
          {"seq", r.seq},
          {"at_ms", r.at_ms},
          {"workspace", r.workspace},
          {"environment", r.environment},
          {"type", r.type},
          {"actor", r.actor},
          {"detail", r.detail},
          {"prev_hash", HexEncode(r.prev_hash)},
          {"hash", HexEncode(r.hash)}};
}

StatusOr<LifecycleEventRecord> ParseAuditRecordExportJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgumentError("an audit record must be a JSON object");
  EKM_ASSIGN_OR_RETURN(int64_t v, IntField(j, "v"));
  if (v != kAuditFormatVersion) {
    return InvalidArgumentError("unknown audit record format version " + std::to_string(v),
                                "use an ekm at least as new as the one that exported it");
  }
  LifecycleEventRecord r;
  EKM_ASSIGN_OR_RETURN(r.id, IntField(j, "id"));
  EKM_ASSIGN_OR_RETURN(r.chain, StringField(j, "chain"));
  EKM_ASSIGN_OR_RETURN(r.seq, IntField(j, "seq"));
  EKM_ASSIGN_OR_RETURN(r.at_ms, IntField(j, "at_ms"));
  EKM_ASSIGN_OR_RETURN(r.workspace, StringField(j, "workspace"));
  EKM_ASSIGN_OR_RETURN(r.environment, StringField(j, "environment"));
  EKM_ASSIGN_OR_RETURN(r.type, StringField(j, "type"));
  EKM_ASSIGN_OR_RETURN(r.actor, StringField(j, "actor"));
  EKM_ASSIGN_OR_RETURN(r.detail, StringField(j, "detail"));
  EKM_ASSIGN_OR_RETURN(r.prev_hash, HexField(j, "prev_hash"));
  EKM_ASSIGN_OR_RETURN(r.hash, HexField(j, "hash"));
  return r;
}

Bytes AuditCheckpointSignedBytes(const AuditCheckpoint& c) {
  Bytes out;
  PutString(out, kCheckpointMagic);
  out.push_back(static_cast<uint8_t>(kAuditFormatVersion));
  PutString(out, c.chain);
  PutU64(out, static_cast<uint64_t>(c.seq));
  PutHash(out, c.head_hash);
  PutU64(out, static_cast<uint64_t>(c.at_ms));
  PutString(out, c.key_id);
  return out;
}

nlohmann::json AuditCheckpointJson(const AuditCheckpoint& c) {
  return {{"format", kCheckpointFormat},         {"chain", c.chain}, {"seq", c.seq},
          {"head_hash", HexEncode(c.head_hash)}, {"at_ms", c.at_ms}, {"key_id", c.key_id},
          {"signature", HexEncode(c.signature)}};
}

StatusOr<AuditCheckpoint> ParseAuditCheckpointJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgumentError("a checkpoint must be a JSON object");
  EKM_ASSIGN_OR_RETURN(std::string format, StringField(j, "format"));
  if (format != kCheckpointFormat) {
    // Quoted from an auditor's file: at most 64 characters, anything not printable ASCII as '?'.
    std::string shown = format.substr(0, 64);
    for (char& ch : shown) {
      if (ch < 0x20 || ch > 0x7E) ch = '?';
    }
    return InvalidArgumentError("unknown checkpoint format \"" + shown + "\"",
                                "expected " + std::string(kCheckpointFormat));
  }
  AuditCheckpoint c;
  EKM_ASSIGN_OR_RETURN(c.chain, StringField(j, "chain"));
  EKM_ASSIGN_OR_RETURN(c.seq, IntField(j, "seq"));
  EKM_ASSIGN_OR_RETURN(c.head_hash, HexField(j, "head_hash"));
  EKM_ASSIGN_OR_RETURN(c.at_ms, IntField(j, "at_ms"));
  EKM_ASSIGN_OR_RETURN(c.key_id, StringField(j, "key_id"));
  EKM_ASSIGN_OR_RETURN(c.signature, HexField(j, "signature"));
  return c;
}

StatusOr<AuditPublicKey> AuditPublicKey::FromPem(std::string_view pem) {
  OsslPtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OsslError("BIO_new_mem_buf");
  OsslPtr<EVP_PKEY> key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_ED25519) {
    return InvalidArgumentError("not an Ed25519 public key in PEM (SubjectPublicKeyInfo)",
                                "use the file `ekm audit public-key` printed");
  }
  AuditPublicKey out;
  out.raw_.resize(32);
  size_t n = out.raw_.size();
  EKM_OSSL_CHECK(EVP_PKEY_get_raw_public_key(key.get(), out.raw_.data(), &n),
                 "EVP_PKEY_get_raw_public_key");
  out.raw_.resize(n);
  Bytes digest = Sha256(out.raw_);
  out.key_id_ = HexEncode(ByteView(digest.data(), 8));
  out.pem_ = std::string(pem);
  return out;
}

bool AuditPublicKey::Verify(const AuditCheckpoint& c) const {
  if (c.key_id != key_id_ || c.signature.size() != 64) return false;
  OsslPtr<EVP_PKEY> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw_.data(), raw_.size()));
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!key || !ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  Bytes msg = AuditCheckpointSignedBytes(c);
  return EVP_DigestVerify(ctx.get(), c.signature.data(), c.signature.size(), msg.data(),
                          msg.size()) == 1;
}

// The header keeps EVP_PKEY out of sight as void*; ownership is taken back here.
AuditSigner::~AuditSigner() { OsslPtr<EVP_PKEY> owned(static_cast<EVP_PKEY*>(pkey_)); }

StatusOr<SecretBytes> AuditSigner::NewPrivateKeyPem() {
  OsslPtr<EVP_PKEY> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return OsslError("generating the audit signing key");
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));  // freed with OPENSSL_clear_free
  if (!bio) return OsslError("BIO_new");
  EKM_OSSL_CHECK(
      PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
      "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return SecretBytes(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len));
}

Status AuditSigner::CreateKeyFile(const std::string& path) {
  EKM_ASSIGN_OR_RETURN(SecretBytes pem, NewPrivateKeyPem());
  return WriteNewKeyFile(path, "audit signing key file", pem.RevealForCrypto());
}

StatusOr<std::unique_ptr<AuditSigner>> AuditSigner::Load(const std::string& path) {
  EKM_ASSIGN_OR_RETURN(SecretBytes pem, ReadKeyFile(path, "audit signing key file", 16384));
  return FromPem(pem, "audit signing key file " + path);
}

StatusOr<std::unique_ptr<AuditSigner>> AuditSigner::FromPem(const SecretBytes& pem,
                                                            const std::string& source) {
  auto text = pem.RevealForCrypto();
  OsslPtr<BIO> in(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!in) return OsslError("BIO_new_mem_buf");
  OsslPtr<EVP_PKEY> owned_key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  if (!owned_key || EVP_PKEY_get_base_id(owned_key.get()) != EVP_PKEY_ED25519) {
    ERR_clear_error();
    return DataLossError(source + " does not hold an Ed25519 key",
                         "restore it from backup; a new key would not match kept checkpoints");
  }
  std::unique_ptr<AuditSigner> signer(new AuditSigner());
  EVP_PKEY* key = owned_key.release();
  signer->pkey_ = key;  // the signer owns it from here
  OsslPtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio) return OsslError("BIO_new");
  EKM_OSSL_CHECK(PEM_write_bio_PUBKEY(bio.get(), key), "PEM_write_bio_PUBKEY");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  EKM_ASSIGN_OR_RETURN(signer->public_key_,
                       AuditPublicKey::FromPem(std::string_view(data, static_cast<size_t>(len))));
  return signer;
}

Status AuditSigner::Sign(AuditCheckpoint& c) const {
  c.key_id = public_key_.key_id();
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx) return OsslError("EVP_MD_CTX_new");
  EKM_OSSL_CHECK(
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(pkey_)),
      "EVP_DigestSignInit");
  Bytes msg = AuditCheckpointSignedBytes(c);
  c.signature.resize(64);
  size_t n = c.signature.size();
  EKM_OSSL_CHECK(EVP_DigestSign(ctx.get(), c.signature.data(), &n, msg.data(), msg.size()),
                 "signing an audit checkpoint");
  c.signature.resize(n);
  return Status::Ok();
}

AuditLogVerifier::AuditLogVerifier(std::vector<AuditCheckpoint> checkpoints,
                                   const AuditPublicKey* key)
    : checkpoints_(std::move(checkpoints)), key_(key) {
  for (const AuditCheckpoint& cp : checkpoints_) checkpoint_seqs_[cp.chain].insert(cp.seq);
}

void AuditLogVerifier::Problem(std::string text) {
  if (report_.problems.size() < kMaxListedProblems) {
    report_.problems.push_back(std::move(text));
  } else {
    ++unlisted_problems_;
  }
}

void AuditLogVerifier::Add(const LifecycleEventRecord& r) {
  ++report_.records;
  ChainState& c = chains_[r.chain];
  // Built only for a problem: most records have none.
  auto where = [&r] { return Who(r) + " of " + ChainName(r.chain); };
  if (r.chain != r.workspace) {
    Problem(where() + ": its workspace \"" + r.workspace +
            "\" is not its chain's (moved between chains)");
  }
  Bytes computed = AuditRecordHash(r);
  bool edited = computed != r.hash;
  if (edited) {
    Problem(where() + " was edited: its content does not match its hash");
  }
  if (r.seq != c.last_seq + 1) {
    if (r.seq > c.last_seq + 1) {
      Problem(where() + ": records seq " + std::to_string(c.last_seq + 1) +
              (r.seq - 1 > c.last_seq + 1 ? ".." + std::to_string(r.seq - 1) : std::string()) +
              " before it are missing (removed)");
    } else {
      Problem(where() + " is out of order (reordered): it follows seq " +
              std::to_string(c.last_seq));
    }
  } else if (!edited) {
    const bool links =
        c.last_seq == 0 ? r.prev_hash == Bytes(kAuditHashSize, 0) : r.prev_hash == c.last_hash;
    if (!links) {
      Problem(where() +
              " does not link to the record before it (prev_hash differs): reordered, or "
              "history rewritten");
    }
  }
  auto wanted = checkpoint_seqs_.find(r.chain);
  if (wanted != checkpoint_seqs_.end() && wanted->second.count(r.seq) > 0) {
    c.hash_at_checkpoint[r.seq] = r.hash;
  }
  c.last_seq = r.seq;
  c.last_hash = r.hash;
}

AuditVerifyReport AuditLogVerifier::Finish() {
  report_.chains = chains_.size();
  for (const AuditCheckpoint& cp : checkpoints_) {
    std::string what = "checkpoint of " + ChainName(cp.chain) + " at seq " + std::to_string(cp.seq);
    if (key_) {
      if (cp.key_id != key_->key_id()) {
        Problem(what + " is signed by key " + cp.key_id + ", not by " + key_->key_id());
        continue;
      }
      if (!key_->Verify(cp)) {
        Problem(what + " has an invalid signature (forged or altered)");
        continue;
      }
    }
    auto it = chains_.find(cp.chain);
    if (it == chains_.end()) {
      Problem(what + ": none of the chain's records are present (cut off)");
      continue;
    }
    ++report_.checkpoints;
    const ChainState& c = it->second;
    auto rec = c.hash_at_checkpoint.find(cp.seq);
    if (rec == c.hash_at_checkpoint.end()) {
      if (cp.seq > c.last_seq) {
        Problem(what + ": the records end at seq " + std::to_string(c.last_seq) +
                " (the tail after it was cut off)");
      } else {
        Problem(what + ": record seq " + std::to_string(cp.seq) + " is missing");
      }
    } else if (rec->second != cp.head_hash) {
      Problem(what + ": record seq " + std::to_string(cp.seq) +
              " has another hash (history rewritten)");
    }
  }
  if (unlisted_problems_ > 0) {
    report_.problems.push_back("... and " + std::to_string(unlisted_problems_) +
                               " more problem(s) not listed");
  }
  return std::move(report_);
}

AuditVerifyReport VerifyAuditLog(const std::vector<LifecycleEventRecord>& records,
                                 const std::vector<AuditCheckpoint>& checkpoints,
                                 const AuditPublicKey* key) {
  AuditLogVerifier verifier(checkpoints, key);
  for (const LifecycleEventRecord& r : records) verifier.Add(r);
  return verifier.Finish();
}

}  // namespace ekm
