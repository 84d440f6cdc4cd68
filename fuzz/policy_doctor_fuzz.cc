// Fuzz target: the key policy doctor on untrusted pasted text.
// Targets CheckKeyPolicy (JSON diagnosis, repair loop, statement evaluation, merge) and the
// report's ToJson/ToText. Deterministic: fixed principal, workspace, environment and key ARN;
// the first input byte picks whether the principal is a role or an assumed-role session.
// Invariant checked: the corrected policy, checked again, grants kms:Encrypt and kms:Decrypt
// (the doctor never offers a correction that still fails).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ekm/policy/policy_doctor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ekm::PolicyCheckRequest request;
  request.policy_text = std::string_view(reinterpret_cast<const char*>(data), size);
  request.platform_principal = size > 0 && (data[0] & 1)
                                   ? "arn:aws:sts::111122223333:assumed-role/ekm-platform/ekmd-1"
                                   : "arn:aws:iam::111122223333:role/ekm-platform";
  request.workspace = "acme";
  if (size > 0 && (data[0] & 2)) {
    request.environment = "prod";
    request.key_arn = "arn:aws:kms:us-east-1:444455556666:key/00000000-1111-2222-3333-444444444444";
  }
  auto report = ekm::CheckKeyPolicy(request);
  if (report.ok()) {
    (void)report->ToJson().dump();
    (void)report->ToText();
    (void)report->ToStatus();
    ekm::PolicyCheckRequest again = request;
    again.policy_text = report->corrected_policy;
    auto second = ekm::CheckKeyPolicy(again);
    if (!second.ok() || second->actions.size() < 2 ||
        second->actions[0].verdict != ekm::Verdict::kGranted ||
        second->actions[1].verdict != ekm::Verdict::kGranted) {
      __builtin_trap();
    }
  }
  return 0;
}
