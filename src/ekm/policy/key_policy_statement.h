// The key policy statements an AWS administrator pastes into the key policy of their customer
// main key ("Permission to access key"), and a complete example key policy for a new key.
//
// ekm wraps an environment key with kms:Encrypt and unwraps it with kms:Decrypt, always sending
// the encryption context {"ekm:workspace": W, "ekm:environment": E, "ekm:ek-version": "N"}.
// The statement pins the platform principal to W with
//   "Condition": {"StringEquals": {"kms:EncryptionContext:ekm:workspace": W}}
// so the platform can never be made to use one customer's key for another workspace (confused
// deputy). A second, optional statement allows kms:DescribeKey and kms:GetKeyRotationStatus;
// those calls carry no encryption context, so they cannot be pinned the same way.
//
// The platform principal is an IAM role or user ARN (arn:PARTITION:iam::ACCOUNT:role/NAME,
// .../user/NAME). An assumed-role session ARN (arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/S)
// is mapped to its role, arn:PARTITION:iam::ACCOUNT:role/ROLE (a role path, if any, is not part
// of the session ARN and is lost: configure the role ARN itself in that case).
//
// All inputs are validated; errors are kInvalidArgument with a hint. Thread-safe (pure
// functions).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ekm/base/status.h"

namespace ekm {

// The platform principal as ekm uses it in key policies.
struct PlatformPrincipal {
  std::string arn;          // role or user ARN: what goes into Principal {"AWS": ...}
  std::string partition;    // "aws", "aws-cn", "aws-us-gov", ...
  std::string account;      // 12 digits
  bool is_role = false;     // role (true) or IAM user (false)
  std::string session_arn;  // the assumed-role session ARN, if that is what was given

  // arn:PARTITION:iam::ACCOUNT:root
  std::string AccountRootArn() const;
};

// Parses a role, user or assumed-role session ARN (see above). The error names what is wrong
// and where ("account id '1111' must be 12 digits", "… is an assumed-role session of …").
StatusOr<PlatformPrincipal> ParsePlatformPrincipal(std::string_view arn);

// Sids of ekm's statements; the policy doctor replaces statements with these Sids.
std::string EkmUseStatementSid(std::string_view workspace);       // Encrypt/Decrypt
std::string EkmMetadataStatementSid(std::string_view workspace);  // DescribeKey/…RotationStatus

struct KeyPolicyStatementOptions {
  std::string platform_principal;          // role/user/assumed-role ARN
  std::string workspace;                   // ekm workspace name (ValidateName rules)
  bool include_metadata_statement = true;  // the optional DescribeKey/GetKeyRotationStatus one
};

// ekm's statement(s) as a JSON array of one or two statement objects (key order as shown to
// the administrator).
StatusOr<nlohmann::ordered_json> KeyPolicyStatements(const KeyPolicyStatementOptions& options);

// The same, as text to paste into the Statement array: each object pretty-printed with a
// 2-space indent, objects separated by ",\n", no surrounding brackets.
StatusOr<std::string> KeyPolicyStatementsText(const KeyPolicyStatementOptions& options);

// The key's account in an example policy when the real one is not known: AWS's documentation
// placeholder, the same wherever ekm prints an example (`ekm key policy --example`, the policy
// doctor's corrected policy); the administrator replaces it with the key's account id.
inline constexpr std::string_view kExampleKeyAccountId = "111122223333";

// A complete key policy for a new key owned by `account_id` (12 digits): the account-root
// "Enable IAM User Permissions" statement (so the account keeps managing the key) followed by
// ekm's statements.
StatusOr<nlohmann::ordered_json> ExampleKeyPolicy(std::string_view account_id,
                                                  const KeyPolicyStatementOptions& options);
StatusOr<std::string> ExampleKeyPolicyText(std::string_view account_id,
                                           const KeyPolicyStatementOptions& options);

}  // namespace ekm
