#include "ekm/policy/key_policy_statement.h"

#include <gtest/gtest.h>

#include "ekm/policy/policy_doctor.h"

namespace ekm {
namespace {

using nlohmann::ordered_json;

constexpr char kRole[] = "arn:aws:iam::111122223333:role/ekm-platform";

KeyPolicyStatementOptions Options(std::string principal = kRole, std::string workspace = "acme") {
  KeyPolicyStatementOptions o;
  o.platform_principal = std::move(principal);
  o.workspace = std::move(workspace);
  return o;
}

TEST(KeyPolicyStatementTest, StatementPinsWorkspace) {
  auto s = KeyPolicyStatements(Options());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->size(), 2u);
  const ordered_json& use = (*s)[0];
  EXPECT_EQ(use["Sid"], "Allow ekm use of the key for workspace acme");
  EXPECT_EQ(use["Effect"], "Allow");
  EXPECT_EQ(use["Principal"], ordered_json({{"AWS", kRole}}));
  EXPECT_EQ(use["Action"], ordered_json({"kms:Encrypt", "kms:Decrypt"}));
  EXPECT_EQ(use["Resource"], "*");
  EXPECT_EQ(use["Condition"]["StringEquals"]["kms:EncryptionContext:ekm:workspace"], "acme");
  const ordered_json& meta = (*s)[1];
  EXPECT_EQ(meta["Action"], ordered_json({"kms:DescribeKey", "kms:GetKeyRotationStatus"}));
  EXPECT_FALSE(meta.contains("Condition"));
  // Key order is what the administrator sees.
  std::vector<std::string> keys;
  for (const auto& [k, v] : use.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"Sid", "Effect", "Principal", "Action", "Resource",
                                            "Condition"}));
}

TEST(KeyPolicyStatementTest, OptionalStatementCanBeLeftOut) {
  auto o = Options();
  o.include_metadata_statement = false;
  auto s = KeyPolicyStatements(o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), 1u);
}

TEST(KeyPolicyStatementTest, TextIsReadyToPaste) {
  auto text = KeyPolicyStatementsText(Options());
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->front(), '{');
  EXPECT_NE(text->find("},\n{"), std::string::npos);
  EXPECT_NE(text->find("\n  \"Sid\": \"Allow ekm use of the key for workspace acme\""),
            std::string::npos);
  // Pasted between brackets it is a valid statement list.
  auto parsed = ordered_json::parse("[" + *text + "]");
  EXPECT_EQ(parsed, *KeyPolicyStatements(Options()));
}

TEST(KeyPolicyStatementTest, AssumedRoleSessionMapsToRole) {
  auto p = ParsePlatformPrincipal("arn:aws:sts::111122223333:assumed-role/ekm-platform/ekmd-7");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->arn, kRole);
  EXPECT_TRUE(p->is_role);
  EXPECT_EQ(p->account, "111122223333");
  EXPECT_EQ(p->AccountRootArn(), "arn:aws:iam::111122223333:root");
  auto s =
      KeyPolicyStatements(Options("arn:aws:sts::111122223333:assumed-role/ekm-platform/ekmd-7"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)[0]["Principal"]["AWS"], kRole);
}

TEST(KeyPolicyStatementTest, UserAndPathAndPartition) {
  EXPECT_TRUE(ParsePlatformPrincipal("arn:aws:iam::111122223333:user/ekm").ok());
  auto p = ParsePlatformPrincipal("arn:aws-cn:iam::111122223333:role/svc/ekm-platform");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->partition, "aws-cn");
  EXPECT_EQ(p->AccountRootArn(), "arn:aws-cn:iam::111122223333:root");
}

TEST(KeyPolicyStatementTest, BadPrincipalsAreNamed) {
  struct Case {
    std::string arn;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty"},
           {" arn:aws:iam::111122223333:role/x", "space at position 1"},
           {"ekm-platform", "not an ARN"},
           {"arn:aws:iam::1111:role/x", "account id '1111' must be 12 digits"},
           {"arn:aws:iam::TODO - ACCOUNTID:role/x", "space at position 18"},
           {"arn:aws:s3::111122223333:role/x", "service 's3'"},
           {"arn:aws:iam:us-east-1:111122223333:role/x", "no region"},
           {"arn:aws:iam::111122223333:root", "account root"},
           {"arn:aws:iam::111122223333:group/x", "role/NAME or user/NAME"},
           {"arn:aws:iam::111122223333:role/", "name is empty"},
           {"arn:aws:iam::111122223333:role/a*b", "position 2"},
           {"arn:aws:sts::111122223333:assumed-role/x", "assumed-role session"},
           {"arn:azure:iam::111122223333:role/x", "partition 'azure'"},
       }) {
    auto p = ParsePlatformPrincipal(c.arn);
    ASSERT_FALSE(p.ok()) << c.arn;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find(c.message), std::string::npos)
        << c.arn << ": " << p.status().message();
    EXPECT_FALSE(p.status().hint().empty());
  }
}

TEST(KeyPolicyStatementTest, WorkspaceIsValidated) {
  auto s = KeyPolicyStatements(Options(kRole, ""));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("workspace"), std::string::npos);
  EXPECT_FALSE(KeyPolicyStatements(Options(kRole, "Acme Corp")).ok());
}

TEST(KeyPolicyStatementTest, ExamplePolicyForANewKey) {
  auto policy = ExampleKeyPolicy("444455556666", Options());
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  EXPECT_EQ((*policy)["Version"], "2012-10-17");
  const auto& st = (*policy)["Statement"];
  ASSERT_EQ(st.size(), 3u);
  EXPECT_EQ(st[0]["Sid"], "Enable IAM User Permissions");
  EXPECT_EQ(st[0]["Principal"]["AWS"], "arn:aws:iam::444455556666:root");
  EXPECT_EQ(st[0]["Action"], "kms:*");
  EXPECT_EQ(st[1]["Sid"], EkmUseStatementSid("acme"));
  EXPECT_FALSE(ExampleKeyPolicy("4444", Options()).ok());

  // The example passes the policy doctor.
  auto text = ExampleKeyPolicyText("444455556666", Options());
  ASSERT_TRUE(text.ok());
  PolicyCheckRequest req;
  req.policy_text = *text;
  req.platform_principal = kRole;
  req.workspace = "acme";
  auto report = CheckKeyPolicy(req);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << report->ToText();
  for (const auto& a : report->actions) EXPECT_EQ(a.verdict, Verdict::kGranted) << a.action;
  EXPECT_TRUE(report->findings.empty()) << report->ToText();
}

}  // namespace
}  // namespace ekm
