#include "ekm/policy/key_policy_statement.h"

#include <array>
#include <vector>

#include "ekm/envelope/envelope.h"

namespace ekm {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::array<std::string_view, 8> kPartitions = {
    "aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"};

const char* kPrincipalHint =
    "use the platform's IAM role ARN, e.g. arn:aws:iam::111122223333:role/ekm-platform";

bool IsIamNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '=' || c == ',' || c == '.' || c == '@' || c == '_' || c == '-';
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

Status BadPrincipal(std::string message) {
  return InvalidArgumentError("platform principal: " + std::move(message), kPrincipalHint);
}

// A role/user name or path segment: 1..64 IAM name characters.
Status CheckIamName(std::string_view what, std::string_view name) {
  if (name.empty()) return BadPrincipal(std::string(what) + " is empty");
  if (name.size() > 64) {
    return BadPrincipal(std::string(what) + " '" + std::string(name) +
                        "' is longer than 64 characters");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsIamNameChar(name[i])) {
      return BadPrincipal(std::string(what) + " '" + std::string(name) +
                          "' contains a character IAM does not allow at position " +
                          std::to_string(i + 1) + " (allowed: letters, digits and + = , . @ _ -)");
    }
  }
  return Status::Ok();
}

Status CheckAccount(std::string_view account) {
  bool digits = account.size() == 12;
  for (char c : account) digits = digits && c >= '0' && c <= '9';
  if (!digits) {
    return BadPrincipal("account id '" + std::string(account) + "' must be 12 digits");
  }
  return Status::Ok();
}

ojson PrincipalJson(const PlatformPrincipal& p) { return ojson{{"AWS", p.arn}}; }

}  // namespace

std::string PlatformPrincipal::AccountRootArn() const {
  return "arn:" + partition + ":iam::" + account + ":root";
}

StatusOr<PlatformPrincipal> ParsePlatformPrincipal(std::string_view arn) {
  if (arn.empty()) return BadPrincipal("the ARN is empty");
  for (size_t i = 0; i < arn.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(arn[i]);
    if (c <= ' ' || c >= 0x7f) {
      return BadPrincipal("unexpected " +
                          std::string(c == ' ' ? "space" : "control or non-ASCII character") +
                          " at position " + std::to_string(i + 1) + " of the ARN");
    }
  }
  std::vector<std::string_view> parts = Split(arn, ':');
  if (parts.size() != 6 || parts[0] != "arn") {
    return BadPrincipal("'" + std::string(arn) +
                        "' is not an ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)");
  }
  PlatformPrincipal p;
  p.partition = std::string(parts[1]);
  bool known_partition = false;
  for (auto k : kPartitions) known_partition = known_partition || k == parts[1];
  if (!known_partition) {
    return BadPrincipal("partition '" + p.partition +
                        "' is not an AWS partition (aws, aws-cn, "
                        "aws-us-gov, ...)");
  }
  if (parts[2] != "iam" && parts[2] != "sts") {
    return BadPrincipal("service '" + std::string(parts[2]) +
                        "' must be iam (a role or user) or sts (an assumed-role session)");
  }
  if (!parts[3].empty()) {
    return BadPrincipal("IAM ARNs have no region, found '" + std::string(parts[3]) + "'");
  }
  EKM_RETURN_IF_ERROR(CheckAccount(parts[4]));
  p.account = std::string(parts[4]);
  std::vector<std::string_view> res = Split(parts[5], '/');
  if (parts[2] == "sts") {
    if (res.size() != 3 || res[0] != "assumed-role") {
      return BadPrincipal(
          "an sts ARN must be an assumed-role session, "
          "arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION");
    }
    EKM_RETURN_IF_ERROR(CheckIamName("role name", res[1]));
    EKM_RETURN_IF_ERROR(CheckIamName("session name", res[2]));
    p.is_role = true;
    p.session_arn = std::string(arn);
    p.arn = "arn:" + p.partition + ":iam::" + p.account + ":role/" + std::string(res[1]);
    return p;
  }
  if (res.size() == 1 && res[0] == "root") {
    return BadPrincipal("'" + std::string(arn) +
                        "' is an account root, not the role or user the platform runs as");
  }
  if (res.size() < 2 || (res[0] != "role" && res[0] != "user")) {
    return BadPrincipal("the resource '" + std::string(parts[5]) +
                        "' must be role/NAME or user/NAME");
  }
  for (size_t i = 1; i < res.size(); ++i) {
    EKM_RETURN_IF_ERROR(CheckIamName(i + 1 == res.size() ? "name" : "path segment", res[i]));
  }
  p.is_role = res[0] == "role";
  p.arn = std::string(arn);
  return p;
}

std::string EkmUseStatementSid(std::string_view workspace) {
  return "Allow ekm use of the key for workspace " + std::string(workspace);
}

std::string EkmMetadataStatementSid(std::string_view workspace) {
  return "Allow ekm to read key metadata for workspace " + std::string(workspace);
}

StatusOr<nlohmann::ordered_json> KeyPolicyStatements(const KeyPolicyStatementOptions& options) {
  EKM_ASSIGN_OR_RETURN(PlatformPrincipal p, ParsePlatformPrincipal(options.platform_principal));
  EKM_RETURN_IF_ERROR(ValidateName("workspace", options.workspace));
  ojson use = {
      {"Sid", EkmUseStatementSid(options.workspace)},
      {"Effect", "Allow"},
      {"Principal", PrincipalJson(p)},
      {"Action", {"kms:Encrypt", "kms:Decrypt"}},
      {"Resource", "*"},
      {"Condition",
       {{"StringEquals", {{"kms:EncryptionContext:ekm:workspace", options.workspace}}}}},
  };
  ojson out = ojson::array({use});
  if (options.include_metadata_statement) {
    out.push_back(ojson{
        {"Sid", EkmMetadataStatementSid(options.workspace)},
        {"Effect", "Allow"},
        {"Principal", PrincipalJson(p)},
        {"Action", {"kms:DescribeKey", "kms:GetKeyRotationStatus"}},
        {"Resource", "*"},
    });
  }
  return out;
}

StatusOr<std::string> KeyPolicyStatementsText(const KeyPolicyStatementOptions& options) {
  EKM_ASSIGN_OR_RETURN(ojson statements, KeyPolicyStatements(options));
  std::string text;
  for (size_t i = 0; i < statements.size(); ++i) {
    if (i > 0) text += ",\n";
    text += statements[i].dump(2);
  }
  text += "\n";
  return text;
}

StatusOr<nlohmann::ordered_json> ExampleKeyPolicy(std::string_view account_id,
                                                  const KeyPolicyStatementOptions& options) {
  EKM_ASSIGN_OR_RETURN(ojson statements, KeyPolicyStatements(options));
  EKM_ASSIGN_OR_RETURN(PlatformPrincipal p, ParsePlatformPrincipal(options.platform_principal));
  Status account = CheckAccount(account_id);
  if (!account.ok()) {
    return InvalidArgumentError(
        "the key's account id '" + std::string(account_id) + "' must be 12 digits",
        "use the AWS account that owns the KMS key (the 5th field of "
        "the key ARN)");
  }
  ojson root = {
      {"Sid", "Enable IAM User Permissions"},
      {"Effect", "Allow"},
      {"Principal", {{"AWS", "arn:" + p.partition + ":iam::" + std::string(account_id) + ":root"}}},
      {"Action", "kms:*"},
      {"Resource", "*"},
  };
  ojson all = ojson::array({root});
  for (auto& s : statements) all.push_back(s);
  return ojson{{"Id", "ekm-key-policy"}, {"Version", "2012-10-17"}, {"Statement", all}};
}

StatusOr<std::string> ExampleKeyPolicyText(std::string_view account_id,
                                           const KeyPolicyStatementOptions& options) {
  EKM_ASSIGN_OR_RETURN(ojson policy, ExampleKeyPolicy(account_id, options));
  return policy.dump(2) + "\n";
}

}  // namespace ekm
