// Fuzz target: what `ekm audit verify` reads from an auditor's files — JSON-lines audit exports
// (`ekm audit export`) and checkpoint files — and the verifier over what parsed.
// Lines with a "format" member go to the checkpoint parser, the others to the record parser.
// Contract checks: an accepted record or checkpoint re-exports to JSON that parses back to the
// same export (round trip); every rejection is kInvalidArgument with a printable message; and
// the accepted records, re-chained by the library (workspace = chain, ChainAuditRecord per chain
// in input order), verify clean (the verifier's positive control), and the records as given
// verify clean only if they are exactly that chain (its negative control).
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ekm/audit/audit_log.h"

namespace {

bool PrintableAscii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

void CheckError(const ekm::Status& s) {
  if (s.code() != ekm::StatusCode::kInvalidArgument || s.message().empty() ||
      !PrintableAscii(s.message())) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<ekm::LifecycleEventRecord> records;
  std::vector<ekm::AuditCheckpoint> checkpoints;
  for (size_t i = 0; i < text.size();) {
    size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(i, nl - i);
    i = nl + 1;
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("format")) {
      auto cp = ekm::ParseAuditCheckpointJson(j);
      if (!cp.ok()) {
        CheckError(cp.status());
        continue;
      }
      const nlohmann::json out = ekm::AuditCheckpointJson(*cp);
      auto again = ekm::ParseAuditCheckpointJson(nlohmann::json::parse(out.dump()));
      if (!again.ok() || ekm::AuditCheckpointJson(*again) != out) __builtin_trap();
      checkpoints.push_back(std::move(*cp));
    } else {
      auto r = ekm::ParseAuditRecordExportJson(j);
      if (!r.ok()) {
        CheckError(r.status());
        continue;
      }
      const nlohmann::json out = ekm::AuditRecordExportJson(*r);
      auto again = ekm::ParseAuditRecordExportJson(nlohmann::json::parse(out.dump()));
      if (!again.ok() || ekm::AuditRecordExportJson(*again) != out) __builtin_trap();
      records.push_back(std::move(*r));
    }
  }
  const ekm::AuditVerifyReport as_given = ekm::VerifyAuditLog(records, checkpoints, nullptr);

  // The records as ekm would have written them: workspace = chain, chained in input order.
  const std::vector<ekm::LifecycleEventRecord> original = records;
  std::map<std::string, std::pair<int64_t, ekm::Bytes>> heads;
  for (auto& r : records) {
    r.workspace = r.chain;
    auto& [seq, hash] = heads[r.chain];
    if (seq == 0) hash = ekm::Bytes(ekm::kAuditHashSize, 0);
    ekm::ChainAuditRecord(r, seq, hash);
    seq = r.seq;
    hash = r.hash;
  }
  const ekm::AuditVerifyReport rechained = ekm::VerifyAuditLog(records, {}, nullptr);
  if (!rechained.ok()) __builtin_trap();
  // Negative control: records that differ from the chain ekm would write must not verify.
  bool differs = false;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& a = original[i];
    const auto& b = records[i];
    if (a.workspace != b.workspace || a.seq != b.seq || a.prev_hash != b.prev_hash ||
        a.hash != b.hash) {
      differs = true;
    }
  }
  if (differs && as_given.ok()) __builtin_trap();
  return 0;
}
