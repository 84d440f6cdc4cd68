// The policy doctor behind `ekm policy check FILE` and the policy-check API: reads a whole AWS
// KMS key policy as an administrator pasted it and tells them whether ekm's platform principal
// can use the key for their workspace, why not, and what to paste instead.
//
// - Invalid JSON: the report carries the 1-based line and column (in characters, not bytes) of
//   the first error and a hint for the usual paste mistakes: the missing comma between two
//   Statement objects, a trailing comma, comments, curly quotes, single quotes, unquoted keys,
//   a byte order mark, empty input, text after the end of the policy, a truncated policy, a
//   statement pasted after the ] that closes Statement, a number too large for a double.
// - Valid JSON: kms:Encrypt and kms:Decrypt (required) and kms:DescribeKey,
//   kms:GetKeyRotationStatus (optional) are evaluated for the platform principal with the
//   encryption context ekm sends. Explicit Deny beats Allow; otherwise Allow; otherwise the
//   action is implicitly denied. An Allow through the account root (or 12-digit account id) only
//   delegates to IAM: verdict kGrantedIfIamAllows. A condition ekm cannot evaluate is named in
//   the reasons and makes the verdict kUncertain; it is never ignored.
// - Structural problems and risks (missing Version, wrong Statement type, missing Effect,
//   duplicate Sids, an Allow without the workspace condition, a condition on another
//   workspace, a Deny of Encrypt/Decrypt to the platform principal, a statement granting them
//   to another principal, ...) are findings naming their statement.
// - The corrected policy is the input with ekm's statements merged in (same Sid replaced, a
//   single Statement object turned into an array, everything else kept in order), and every
//   Deny that denies (or may deny) the platform principal kms:Encrypt or kms:Decrypt narrowed
//   with "ArnNotEquals": {"aws:PrincipalArn": PLATFORM} (removed if it names only the platform
//   principal), so that it always passes this check. When the JSON is broken the doctor first
//   tries to repair the mistakes it diagnosed (each repair is listed); only if that fails is the
//   corrected policy the example policy for a new key.
//
// Hostile input: at most kMaxPolicyBytes (32 KiB, the AWS key policy limit) and
// kMaxPolicyDepth levels of nesting; all work is linear or bounded by those limits.
// Thread-safe (pure functions); no I/O.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ekm/base/status.h"

namespace ekm {

inline constexpr size_t kMaxPolicyBytes = 32768;
inline constexpr int kMaxPolicyDepth = 32;

struct PolicyCheckRequest {
  std::string_view policy_text;    // the key policy as pasted (untrusted)
  std::string platform_principal;  // role, user or assumed-role session ARN
  std::string workspace;           // the ekm workspace the key is for
  std::string environment;         // optional: evaluates conditions on ekm:environment
  std::string key_arn;             // optional: evaluates Resource / NotResource other than "*"
};

enum class Verdict {
  kGranted,             // the key policy itself allows it
  kGrantedIfIamAllows,  // allowed through the account root: the principal's IAM policy decides
  kUncertain,           // depends on something ekm cannot evaluate (named in the reasons)
  kDenied,              // explicitly or implicitly denied
};
// "granted", "granted_if_iam_allows", "uncertain", "denied".
std::string_view VerdictName(Verdict verdict);

struct ActionVerdict {
  std::string action;  // "kms:Encrypt"
  bool required = false;
  Verdict verdict = Verdict::kDenied;
  std::vector<std::string> reasons;  // which statement allows/denies it and why
};

enum class Severity { kError, kWarning, kInfo };
std::string_view SeverityName(Severity severity);  // "error", "warning", "info"

struct PolicyFinding {
  Severity severity = Severity::kWarning;
  std::string code;  // stable identifier, e.g. "missing-version", "confused-deputy"
  std::string message;
  std::string hint;
  int statement = -1;  // 1-based statement index, -1 if not about one statement
};

struct JsonSyntaxError {
  int line = 0;            // 1-based
  int column = 0;          // 1-based, in Unicode characters
  size_t byte_offset = 0;  // 0-based
  std::string message;     // what is wrong
  std::string hint;        // what to do
};

struct PolicyReport {
  std::optional<JsonSyntaxError> syntax_error;  // set when the text is not valid JSON
  std::vector<ActionVerdict> actions;  // Encrypt, Decrypt, DescribeKey, GetKeyRotationStatus
  std::vector<PolicyFinding> findings;
  std::string corrected_policy;          // pretty-printed (2-space indent)
  std::vector<std::string> corrections;  // what was changed to get corrected_policy
  bool corrected_is_example = false;     // the input could not be repaired

  // Encrypt and Decrypt are granted (kGranted) and there is no error finding.
  bool ok() const;
  // OK, or an error (kInvalidArgument for invalid JSON, with line/column and hint; kPermission
  // Denied when a required action is not granted) for callers that want one Status.
  Status ToStatus() const;
  nlohmann::ordered_json ToJson() const;
  std::string ToText() const;  // for the CLI
};

// Errors (as Status) only for bad arguments: an invalid platform principal or workspace, or a
// policy larger than kMaxPolicyBytes. Everything wrong with the policy is in the report.
StatusOr<PolicyReport> CheckKeyPolicy(const PolicyCheckRequest& request);

// Line and column (1-based, column in UTF-8 characters) of a byte offset in `text`.
// Exposed for tests.
std::pair<int, int> LineColumnForTest(std::string_view text, size_t byte_offset);

}  // namespace ekm
