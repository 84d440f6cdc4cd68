// Table-driven tests of the policy doctor over testdata/policy/ (cases.json names each file and
// what the doctor must say about it), plus the corrected policy of every case re-checked, exact
// positions for multi-byte text, limits and hostile input.
#include "ekm/policy/policy_doctor.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "ekm/policy/key_policy_statement.h"

namespace ekm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

const fs::path kDir = fs::path(EKM_SOURCE_DIR) / "testdata/policy";
constexpr char kRole[] = "arn:aws:iam::111122223333:role/ekm-platform";

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

PolicyCheckRequest Request(std::string_view text, std::string principal = kRole) {
  PolicyCheckRequest r;
  r.policy_text = text;
  r.platform_principal = std::move(principal);
  r.workspace = "acme";
  return r;
}

const ActionVerdict* Find(const PolicyReport& r, std::string_view action) {
  for (const auto& a : r.actions) {
    if (a.action == action) return &a;
  }
  return nullptr;
}

bool HasFinding(const PolicyReport& r, std::string_view code) {
  for (const auto& f : r.findings) {
    if (f.code == code) return true;
  }
  return false;
}

bool AnyReasonContains(const PolicyReport& r, std::string_view needle) {
  for (const auto& a : r.actions) {
    for (const auto& reason : a.reasons) {
      if (reason.find(needle) != std::string::npos) return true;
    }
  }
  return false;
}

bool AnyCorrectionContains(const PolicyReport& r, std::string_view needle) {
  for (const auto& c : r.corrections) {
    if (c.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(PolicyDoctorTest, TableOfPolicies) {
  json table = json::parse(ReadFile(kDir / "cases.json"));
  const json& cases = table["cases"];
  ASSERT_GE(cases.size(), 20u);
  std::set<std::string> files;
  for (const json& c : cases) {
    std::string file = c["file"];
    files.insert(file);
    SCOPED_TRACE(file + " " + c.dump());
    std::string text = ReadFile(kDir / file);
    PolicyCheckRequest req = Request(text, c.value("principal", std::string(kRole)));
    req.environment = c.value("environment", "");
    req.key_arn = c.value("key_arn", "");
    auto report = CheckKeyPolicy(req);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    const PolicyReport& r = *report;
    EXPECT_EQ(r.ok(), c["ok"].get<bool>()) << r.ToText();

    if (c.contains("syntax_error")) {
      ASSERT_TRUE(r.syntax_error.has_value()) << r.ToText();
      EXPECT_EQ(r.syntax_error->line, c["syntax_error"]["line"].get<int>());
      EXPECT_EQ(r.syntax_error->column, c["syntax_error"]["column"].get<int>());
      std::string hint = c["syntax_error"]["hint"];
      EXPECT_NE(r.syntax_error->hint.find(hint), std::string::npos) << r.syntax_error->hint;
      if (c.contains("syntax_message")) {
        EXPECT_NE(r.syntax_error->message.find(c["syntax_message"].get<std::string>()),
                  std::string::npos)
            << r.syntax_error->message;
      }
      // In ekm's words: never nlohmann's internal text.
      EXPECT_EQ(r.syntax_error->message.find("json.exception"), std::string::npos)
          << r.syntax_error->message;
      EXPECT_EQ(r.ToStatus().code(), StatusCode::kInvalidArgument);
      for (const auto& a : r.actions) EXPECT_EQ(a.verdict, Verdict::kDenied);
    } else {
      EXPECT_FALSE(r.syntax_error.has_value()) << r.syntax_error->message;
    }
    if (c.contains("verdicts")) {
      for (const auto& [action, verdict] : c["verdicts"].items()) {
        const ActionVerdict* v = Find(r, action);
        ASSERT_NE(v, nullptr) << action;
        EXPECT_EQ(VerdictName(v->verdict), verdict.get<std::string>()) << action << "\n"
                                                                       << r.ToText();
        EXPECT_FALSE(v->reasons.empty());
      }
    }
    for (const auto& code : c.value("findings", json::array())) {
      EXPECT_TRUE(HasFinding(r, code.get<std::string>())) << code << "\n" << r.ToText();
    }
    if (c.contains("finding_message")) {
      bool found = false;
      for (const auto& f : r.findings) {
        found =
            found || f.message.find(c["finding_message"].get<std::string>()) != std::string::npos;
      }
      EXPECT_TRUE(found) << r.ToText();
    }
    for (const auto& code : c.value("no_findings", json::array())) {
      EXPECT_FALSE(HasFinding(r, code.get<std::string>())) << code << "\n" << r.ToText();
    }
    if (c.contains("reason")) {
      EXPECT_TRUE(AnyReasonContains(r, c["reason"].get<std::string>())) << r.ToText();
    }
    if (c.contains("corrections")) {
      EXPECT_TRUE(AnyCorrectionContains(r, c["corrections"].get<std::string>())) << r.ToText();
    }
    EXPECT_EQ(r.corrected_is_example, c.value("corrected_is_example", false)) << r.ToText();

    // The corrected policy parses, keeps ekm's statements, and passes the doctor's own check:
    // Encrypt and Decrypt granted, whatever the input denied.
    ASSERT_FALSE(r.corrected_policy.empty());
    auto again = CheckKeyPolicy([&] {
      PolicyCheckRequest r2 = req;
      r2.policy_text = r.corrected_policy;
      return r2;
    }());
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(again->syntax_error.has_value()) << r.corrected_policy;
    EXPECT_FALSE(HasFinding(*again, "wrong-statement-type"));
    EXPECT_FALSE(HasFinding(*again, "missing-version"));
    EXPECT_EQ(Find(*again, "kms:Encrypt")->verdict, Verdict::kGranted) << again->ToText();
    EXPECT_EQ(Find(*again, "kms:Decrypt")->verdict, Verdict::kGranted) << again->ToText();
    EXPECT_FALSE(HasFinding(*again, "deny-blocks-platform")) << again->ToText();
    // Checking the corrected policy again changes nothing.
    EXPECT_EQ(again->corrected_policy, r.corrected_policy);
    EXPECT_FALSE(r.ToText().empty());
    EXPECT_EQ(r.ToJson()["ok"], r.ok());
  }
  EXPECT_GE(files.size(), 20u);
}

TEST(PolicyDoctorTest, MissingCommaHintIsExact) {
  std::string text = ReadFile(kDir / "missing_comma.json");
  auto r = CheckKeyPolicy(Request(text));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->syntax_error);
  EXPECT_EQ(r->syntax_error->hint,
            "add a comma (,) after the closing } of the statement that ends on line 10, before "
            "the next statement");
  EXPECT_EQ(r->syntax_error->byte_offset, text.find("{\n      \"Sid\": \"Allow ekm"));
  Status s = r->ToStatus();
  EXPECT_NE(s.message().find("line 11, column 5"), std::string::npos) << s.ToString();
  // The repaired policy keeps both of the customer's statements.
  ordered_json corrected = ordered_json::parse(r->corrected_policy);
  EXPECT_EQ(corrected["Statement"][0]["Sid"], "Enable IAM User Permissions");
  EXPECT_EQ(corrected["Statement"].size(), 3u);  // root, ekm use (replaced), ekm metadata
}

TEST(PolicyDoctorTest, ColumnsCountCharactersNotBytes) {
  // Three two-byte characters before the error: column 15, byte offset 17.
  std::string text = "{\"Sid\": \"\xc3\xa9\xc3\xa9\xc3\xa9\" \"x\": 1}";
  auto r = CheckKeyPolicy(Request(text));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->syntax_error);
  EXPECT_EQ(r->syntax_error->line, 1);
  EXPECT_EQ(r->syntax_error->column, 15);
  EXPECT_EQ(r->syntax_error->byte_offset, 17u);

  EXPECT_EQ(LineColumnForTest("a\nb\xe2\x82\xac"
                              "c",
                              6),
            std::make_pair(2, 3));
  EXPECT_EQ(LineColumnForTest("", 0), std::make_pair(1, 1));
  EXPECT_EQ(LineColumnForTest("ab", 100), std::make_pair(1, 3));

  // A curly quote (3 bytes) after a 4-byte emoji on the same line.
  std::string curly =
      "{\"Sid\": \"\xf0\x9f\x94\x91\", \xe2\x80\x9c"
      "Effect\xe2\x80\x9d: 1}";
  r = CheckKeyPolicy(Request(curly));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->syntax_error);
  EXPECT_EQ(r->syntax_error->column, 14);
  EXPECT_NE(r->syntax_error->hint.find("straight double quotes"), std::string::npos);
}

TEST(PolicyDoctorTest, MoreSyntaxHints) {
  struct Case {
    std::string text;
    std::string hint;
  };
  for (const Case& c : std::vector<Case>{
           {"{\"Version\": \"2012-10-17\" \"Statement\": []}", "add a comma (,) after"},
           {"{\"Effect\" \"Allow\"}", "write \"Effect\": followed by its value"},
           {"{\"Effect\": Allow}", "write \"Allow\""},
           {"{\"a\": True}", "write true in lower case"},
           {"[1,,2]", "delete the extra comma"},
           {"{\"a\": [1}", "close it with ]"},
           {"{\"a\": \"x\ny\"}", "close it with \""},
           {"{\"a\": \"\\q\"}", "after a backslash"},
           {"{\"a\": \"\xff\"}", "save the policy as UTF-8"},
           {"\xff\xfe{", "UTF-16"},
           {"   \n  ", "paste the whole key policy"},
           {"/* only a comment */", "delete the comment"},
       }) {
    auto r = CheckKeyPolicy(Request(c.text));
    ASSERT_TRUE(r.ok()) << c.text;
    ASSERT_TRUE(r->syntax_error) << c.text;
    EXPECT_NE(r->syntax_error->hint.find(c.hint), std::string::npos)
        << c.text << " -> " << r->syntax_error->message << " / " << r->syntax_error->hint;
  }
}

TEST(PolicyDoctorTest, MergeReplacesSameSidInPlaceAndKeepsOrder) {
  std::string text = R"({
  "Id": "mine",
  "Statement": [
    {"Sid": "Allow ekm use of the key for workspace acme", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/ekm-platform"},
     "Action": "kms:Encrypt", "Resource": "*"},
    {"Sid": "Other", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "kms:*", "Resource": "*"}
  ],
  "Version": "2012-10-17"
})";
  auto r = CheckKeyPolicy(Request(text));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Find(*r, "kms:Decrypt")->verdict, Verdict::kDenied);
  EXPECT_TRUE(HasFinding(*r, "confused-deputy"));
  ordered_json c = ordered_json::parse(r->corrected_policy);
  std::vector<std::string> keys;
  for (const auto& [k, v] : c.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"Id", "Statement", "Version"}));
  ASSERT_EQ(c["Statement"].size(), 3u);
  auto ekm = KeyPolicyStatements({kRole, "acme", true});
  EXPECT_EQ(c["Statement"][0], (*ekm)[0]);  // replaced in place
  EXPECT_EQ(c["Statement"][1]["Sid"], "Other");
  EXPECT_EQ(c["Statement"][2], (*ekm)[1]);
  EXPECT_TRUE(AnyCorrectionContains(*r, "replaced statement"));
}

TEST(PolicyDoctorTest, ConditionOperators) {
  auto check = [](const std::string& condition) {
    std::string text = R"({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/ekm-platform"},
      "Action": "kms:Decrypt", "Resource": "*", "Condition": )" +
                       condition + "}]}";
    auto r = CheckKeyPolicy(Request(text));
    EXPECT_TRUE(r.ok());
    EXPECT_FALSE(r->syntax_error) << r->syntax_error->message;
    return std::string(VerdictName(Find(*r, "kms:Decrypt")->verdict));
  };
  EXPECT_EQ(check(R"({"StringEqualsIgnoreCase": {"kms:EncryptionContext:ekm:workspace": "ACME"}})"),
            "granted");
  EXPECT_EQ(check(R"({"StringEquals": {"kms:EncryptionContext:ekm:workspace": "ACME"}})"),
            "denied");
  EXPECT_EQ(check(R"({"StringNotEquals": {"kms:EncryptionContext:ekm:workspace": "globex"}})"),
            "granted");
  EXPECT_EQ(
      check(R"({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "ekm:workspace"}})"),
      "granted");
  EXPECT_EQ(
      check(R"({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["ekm:workspace"]}})"),
      "denied");
  EXPECT_EQ(check(R"({"StringEquals": {"kms:EncryptionContext:tenant": "acme"}})"), "denied");
  EXPECT_EQ(check(R"({"StringEqualsIfExists": {"kms:EncryptionContext:tenant": "acme"}})"),
            "granted");
  EXPECT_EQ(check(R"({"Null": {"kms:EncryptionContext:ekm:workspace": "false"}})"), "granted");
  EXPECT_EQ(
      check(
          R"({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/ekm-platform"}})"),
      "granted");
  EXPECT_EQ(check(R"({"StringEquals": {"kms:CallerAccount": ["444455556666", "111122223333"]}})"),
            "granted");
  EXPECT_EQ(check(R"({"StringEquals": {"kms:EncryptionContext:ekm:ek-version": "1"}})"),
            "uncertain");
  EXPECT_EQ(check(R"({"Bool": {"aws:SecureTransport": "true"}})"), "uncertain");
  EXPECT_EQ(check(R"({"NumericLessThan": {"kms:EncryptionContext:ekm:workspace": "3"}})"),
            "uncertain");
  // A false condition wins over one that cannot be evaluated.
  EXPECT_EQ(check(R"({"Bool": {"aws:SecureTransport": "true"},
                      "StringEquals": {"kms:EncryptionContext:ekm:workspace": "globex"}})"),
            "denied");
}

TEST(PolicyDoctorTest, PrincipalForms) {
  auto check = [](const std::string& principal, const std::string& caller = kRole) {
    std::string text = R"({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Principal": )" + principal +
                       R"(, "Action": "kms:*", "Resource": "*",
      "Condition": {"StringEquals": {"kms:EncryptionContext:ekm:workspace": "acme"}}}]})";
    auto r = CheckKeyPolicy(Request(text, caller));
    EXPECT_TRUE(r.ok());
    return std::string(VerdictName(Find(*r, "kms:Encrypt")->verdict));
  };
  EXPECT_EQ(check(R"("*")"), "granted");
  EXPECT_EQ(check(R"({"AWS": "*"})"), "granted");
  EXPECT_EQ(check(R"({"AWS": "111122223333"})"), "granted_if_iam_allows");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:iam::111122223333:root"})"), "granted_if_iam_allows");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:iam::444455556666:root"})"), "denied");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:iam::111122223333:role/EKM-PLATFORM"})"), "denied");
  EXPECT_EQ(check(R"({"Service": "ec2.amazonaws.com"})"), "denied");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:sts::111122223333:assumed-role/ekm-platform/s1"})"),
            "uncertain");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:sts::111122223333:assumed-role/ekm-platform/s1"})",
                  "arn:aws:sts::111122223333:assumed-role/ekm-platform/s1"),
            "granted");
  EXPECT_EQ(check(R"({"AWS": "arn:aws:iam::111122223333:user/ekm"})",
                  "arn:aws:iam::111122223333:user/ekm"),
            "granted");
}

TEST(PolicyDoctorTest, NotPrincipalListingOnlyTheRoleIsUncertain) {
  std::string text = R"({"Version": "2012-10-17", "Statement": [
    {"Sid": "Allow ekm use of the key for workspace acme", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/ekm-platform"},
     "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:ekm:workspace": "acme"}}},
    {"Effect": "Deny", "NotPrincipal": {"AWS": ["arn:aws:iam::111122223333:role/ekm-platform",
     "arn:aws:iam::111122223333:root"]}, "Action": "kms:*", "Resource": "*"}]})";
  auto r = CheckKeyPolicy(Request(text));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Find(*r, "kms:Encrypt")->verdict, Verdict::kUncertain) << r->ToText();
  EXPECT_TRUE(AnyReasonContains(*r, "assumed-role session ARN"));
}

TEST(PolicyDoctorTest, ArgumentsAndLimits) {
  EXPECT_EQ(CheckKeyPolicy(Request("{}", "ekm")).status().code(), StatusCode::kInvalidArgument);
  PolicyCheckRequest bad_ws = Request("{}");
  bad_ws.workspace = "";
  EXPECT_EQ(CheckKeyPolicy(bad_ws).status().code(), StatusCode::kInvalidArgument);

  std::string big(kMaxPolicyBytes + 1, ' ');
  auto r = CheckKeyPolicy(Request(big));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("32768"), std::string::npos);

  std::string deep(kMaxPolicyBytes, '[');
  r = CheckKeyPolicy(Request(deep));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->syntax_error);
  EXPECT_NE(r->syntax_error->message.find("nested"), std::string::npos);

  std::string deep_ok = std::string(20, '[') + std::string(20, ']');
  r = CheckKeyPolicy(Request(deep_ok));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->syntax_error);
  EXPECT_TRUE(HasFinding(*r, "not-a-policy"));
}

// The corrected policy passes the doctor's own check: Encrypt and Decrypt granted.
void ExpectCorrectedGranted(const PolicyReport& r, const std::string& what) {
  auto again = CheckKeyPolicy(Request(r.corrected_policy));
  ASSERT_TRUE(again.ok()) << what;
  EXPECT_EQ(Find(*again, "kms:Encrypt")->verdict, Verdict::kGranted) << what << "\n"
                                                                     << again->ToText();
  EXPECT_EQ(Find(*again, "kms:Decrypt")->verdict, Verdict::kGranted) << what << "\n"
                                                                     << again->ToText();
}

TEST(PolicyDoctorTest, TruncatedAndMutatedInputsNeverFail) {
  for (const char* file : {"valid_pasted.json", "guide_multiple_statements.json",
                           "principal_star.json", "smart_quotes.json"}) {
    std::string text = ReadFile(kDir / file);
    for (size_t n = 0; n <= text.size(); ++n) {
      auto r = CheckKeyPolicy(Request(std::string_view(text).substr(0, n)));
      ASSERT_TRUE(r.ok()) << file << " " << n;
      ASSERT_FALSE(r->corrected_policy.empty());
      EXPECT_TRUE(ordered_json::accept(r->corrected_policy)) << file << " " << n;
    }
    for (size_t i = 0; i < text.size(); i += 7) {
      std::string m = text;
      m[i] = static_cast<char>(m[i] ^ 0x5a);
      auto r = CheckKeyPolicy(Request(m));
      ASSERT_TRUE(r.ok());
      (void)r->ToJson().dump();
    }
  }
}

// Whatever was pasted (cut short, a byte changed), the corrected policy never still fails.
TEST(PolicyDoctorTest, TheCorrectedPolicyOfAnyInputPassesItsOwnCheck) {
  for (const char* file : {"deny_uncertain.json", "not_principal.json", "statement_after_list.json",
                           "guide_multiple_statements.json"}) {
    std::string text = ReadFile(kDir / file);
    for (size_t n = 0; n <= text.size(); n += 29) {
      auto r = CheckKeyPolicy(Request(std::string_view(text).substr(0, n)));
      ASSERT_TRUE(r.ok()) << file << " " << n;
      ExpectCorrectedGranted(*r, std::string(file) + " cut at " + std::to_string(n));
    }
    for (size_t i = 0; i < text.size(); i += 23) {
      std::string m = text;
      m[i] = static_cast<char>(m[i] ^ 0x5a);
      auto r = CheckKeyPolicy(Request(m));
      ASSERT_TRUE(r.ok());
      ExpectCorrectedGranted(*r, std::string(file) + " byte " + std::to_string(i) + " flipped");
    }
  }
}

TEST(PolicyDoctorTest, JsonReport) {
  auto r = CheckKeyPolicy(Request(ReadFile(kDir / "trailing_comma.json")));
  ASSERT_TRUE(r.ok());
  ordered_json j = r->ToJson();
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["syntax_error"]["line"], 8);
  EXPECT_EQ(j["syntax_error"]["column"], 47);
  EXPECT_EQ(j["actions"].size(), 4u);
  EXPECT_EQ(j["actions"][0]["action"], "kms:Encrypt");
  EXPECT_EQ(j["actions"][0]["required"], true);
  EXPECT_EQ(j["actions"][2]["required"], false);
  EXPECT_TRUE(j["corrected_policy"].is_string());
  EXPECT_EQ(j["corrected_is_example"], false);

  r = CheckKeyPolicy(Request(ReadFile(kDir / "denied_no_statement.json")));
  ASSERT_TRUE(r.ok());
  Status s = r->ToStatus();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("kms:Encrypt"), std::string::npos);
  EXPECT_NE(r->ToText().find("Corrected policy"), std::string::npos);
}

// Issue 12: `ekm key policy --example` and the doctor's corrected policy for text it cannot
// repair name the same placeholder account, and are the same policy.
TEST(PolicyDoctorTest, TheExamplePolicyIsTheOneKeyPolicyExamplePrints) {
  const std::string principal = "arn:aws:iam::444455556666:role/ekm-platform";
  auto r = CheckKeyPolicy(Request("this is not a key policy", principal));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->corrected_is_example) << r->ToText();
  KeyPolicyStatementOptions o;
  o.platform_principal = principal;
  o.workspace = "acme";
  auto example = ExampleKeyPolicyText(kExampleKeyAccountId, o);  // what key policy --example prints
  ASSERT_TRUE(example.ok());
  EXPECT_EQ(r->corrected_policy, *example);
  EXPECT_NE(r->corrected_policy.find(std::string("arn:aws:iam::") +
                                     std::string(kExampleKeyAccountId) + ":root"),
            std::string::npos);
  const std::string text = r->ToText();
  EXPECT_NE(text.find("replace " + std::string(kExampleKeyAccountId) + " with the key's"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("YOUR-ACCOUNT-ID"), std::string::npos);
}

}  // namespace
}  // namespace ekm
