#include "ekm/provider/aws/kms_arn.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ekm {
namespace {

// 75 characters: partition at 5, service 9, region 13-21, account 23-34, resource 36,
// key id 40-75.
const std::string kKeyArn =
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kPrefix = "arn:aws:kms:us-east-1:111122223333:";
const std::string kKeyId = "1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kOtherArn =
    "arn:aws:kms:eu-west-3:444455556666:key/0987dcba-09ba-4321-abcd-0987654321ab";

// True if `message` names 1-based character `pos` ("character 23", "characters 23-34").
bool NamesPosition(const std::string& message, size_t pos) {
  for (const std::string prefix : {"character ", "characters "}) {
    const std::string needle = prefix + std::to_string(pos);
    for (size_t at = message.find(needle); at != std::string::npos;
         at = message.find(needle, at + 1)) {
      const size_t end = at + needle.size();
      if (end == message.size() || message[end] < '0' || message[end] > '9') return true;
    }
  }
  return false;
}

bool IsPrintableAscii(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

struct BadCase {
  std::string name;
  std::string input;
  size_t position;  // 1-based character the message must name; 0 = none
  std::string message;
  std::string hint;  // substring of the hint; empty = only the standard copy advice
};

std::vector<BadCase> BadCases() {
  const std::string k = kKeyArn;
  const std::string p = kPrefix;
  return {
      // Empty and blank.
      {"empty", "", 0, "the key ARN is empty", ""},
      {"only_spaces", "   ", 0, "the key ARN is blank", ""},
      {"only_newline", "\n", 0, "newline '\\n'", ""},
      // Whitespace at the ends.
      {"leading_space", " " + k, 1, "starts with a space", "remove the space at the start"},
      {"trailing_space", k + " ", 76, "ends with a space", "remove the space at the end"},
      {"trailing_newline", k + "\n", 76, "ends with a newline '\\n'",
       "remove the newline at the end"},
      {"trailing_crlf", k + "\r\n", 76, "2 whitespace or invisible characters (characters 76-77",
       "remove the whitespace at the end"},
      {"leading_tab", "\t" + k, 1, "starts with a tab '\\t'", "remove the tab at the start"},
      {"two_leading_spaces", "  " + k, 1, "starts with 2 spaces (characters 1-2",
       "remove the 2 spaces at the start"},
      {"leading_bom", "\xEF\xBB\xBF" + k, 1, "U+FEFF BYTE ORDER MARK",
       "remove the invisible character at the start"},
      {"trailing_nbsp", k + "\xC2\xA0", 76, "ends with U+00A0 NO-BREAK SPACE",
       "remove the space at the end"},
      {"trailing_zwsp", k + "\xE2\x80\x8B", 76, "U+200B ZERO WIDTH SPACE",
       "remove the invisible character at the end"},
      // Quotes and punctuation around it.
      {"double_quotes", "\"" + k + "\"", 1, "starts with '\"'", "remove the quotation marks"},
      {"smart_quotes", "\xE2\x80\x9C" + k + "\xE2\x80\x9D", 1, "U+201C LEFT DOUBLE QUOTATION MARK",
       "remove the quotation marks"},
      {"trailing_period", k + ".", 76, "ends with '.'", "remove the '.' at the end"},
      {"trailing_comma", k + ",", 76, "ends with ','", "remove the ',' at the end"},
      // Characters inside.
      {"space_inside", p.substr(0, 22) + " " + p.substr(22) + "key/" + kKeyId, 23,
       "is a space inside the ARN", "remove the space"},
      {"nbsp_inside", p.substr(0, 22) + "\xC2\xA0" + p.substr(22) + "key/" + kKeyId, 23,
       "U+00A0 NO-BREAK SPACE, a space inside the ARN", "remove the space"},
      {"zwsp_inside",
       "arn:aws:kms:\xE2\x80\x8B"
       "us-east-1:111122223333:key/" +
           kKeyId,
       13, "U+200B ZERO WIDTH SPACE, an invisible character", "type them again"},
      {"bom_inside",
       "arn:aws:\xEF\xBB\xBF"
       "kms:us-east-1:111122223333:key/" +
           kKeyId,
       9, "U+FEFF BYTE ORDER MARK, an invisible character", "type them again"},
      {"en_dash",
       "arn:aws:kms:us\xE2\x80\x93"
       "east-1:111122223333:key/" +
           kKeyId,
       15, "U+2013 EN DASH, which looks like '-'", "ordinary hyphen '-'"},
      {"newline_inside", p + "key/1234abcd-12ab-\n34cd-56ef-1234567890ab", 54,
       "a newline '\\n' inside the ARN", "join the pieces"},
      {"tab_inside", "arn:aws:kms:\tus-east-1:111122223333:key/" + kKeyId, 13,
       "a tab '\\t' inside the ARN", ""},
      {"invalid_utf8", p.substr(0, 22) + "\xFF" + p.substr(22) + "key/" + kKeyId, 23,
       "byte 0xFF (not valid UTF-8)", "plain text"},
      {"non_ascii_letter",
       "arn:aws:kms:us-\xC3\xA9"
       "ast-1:111122223333:key/" +
           kKeyId,
       16, "U+00E9 (a non-ASCII character)", "retype"},
      {"control_char", "arn:aws:kms:us-east-1:111122223333:\x07key/" + kKeyId, 36,
       "U+0007 (a control character)", ""},
      {"fullwidth_colon",
       "arn:aws:kms\xEF\xBC\x9A"
       "us-east-1:111122223333:key/" +
           kKeyId,
       12, "U+FF1A FULLWIDTH COLON", "ordinary ASCII"},
      // Pasted twice or with other text.
      {"pasted_twice", k + k, 76, "the key ARN was pasted twice", "paste only one ARN"},
      {"pasted_twice_newline", k + "\n" + k + "\n", 77, "pasted twice", "paste only one ARN"},
      {"pasted_twice_after_nbsp", "\xC2\xA0" + k + k, 77, "pasted twice", "paste only one ARN"},
      {"two_different_arns", k + "," + kOtherArn, 77, "more than one ARN", "paste only one ARN"},
      {"label_before", "Key ARN: " + k, 10, "other text before the ARN",
       "remove everything before 'arn:'"},
      {"url_encoded", "arn%3Aaws%3Akms%3Aus-east-1%3A111122223333%3Akey%2F" + kKeyId, 4,
       "URL-encoded", "%3A is ':'"},
      {"url_encoded_slash", p + "key%2F" + kKeyId, 39, "'%2F' (stands for '/')", "decode it"},
      // Not an ARN at all.
      {"bare_key_id", kKeyId, 1, "this is a key ID, not an ARN: ekm needs the full key ARN",
       "arn:aws:kms:REGION:ACCOUNT:key/" + kKeyId},
      {"bare_key_id_upper", "1234ABCD-12AB-34CD-56EF-1234567890AB", 1, "this is a key ID",
       "key/" + kKeyId},
      {"bare_mrk_id", "mrk-1234abcd12ab34cd56ef1234567890ab", 1, "this is a key ID, not an ARN",
       "key/mrk-1234abcd12ab34cd56ef1234567890ab"},
      {"bare_alias", "alias/my-key", 1, "this is an alias name, not an ARN",
       "arn:aws:kms:REGION:ACCOUNT:alias/my-key"},
      {"bare_key_resource", "key/" + kKeyId, 1, "only the end of a key ARN",
       "arn:aws:kms:REGION:ACCOUNT:key/" + kKeyId},
      {"bare_account", "111122223333", 1, "this is an AWS account ID", ""},
      {"console_url", "https://us-east-1.console.aws.amazon.com/kms/home?region=us-east-1", 1,
       "web address", "copy the ARN field"},
      {"upper_case_prefix", "ARN:aws:kms:us-east-1:111122223333:key/" + kKeyId, 1,
       "lower-case 'arn:'", "write 'arn:'"},
      {"wrong_prefix", "urn:aws:kms:us-east-1:111122223333:key/" + kKeyId, 1,
       "does not start with 'arn:'", "paste the key ARN"},
      // Partition.
      {"unknown_partition", "arn:amazon:kms:us-east-1:111122223333:key/" + kKeyId, 5,
       "unknown partition 'amazon' (characters 5-10): valid partitions are aws, aws-cn, "
       "aws-us-gov",
       "aws-cn for China"},
      {"partition_upper", "arn:AWS:kms:us-east-1:111122223333:key/" + kKeyId, 5,
       "partition 'AWS' (characters 5-7) must be lower case", "write 'aws'"},
      {"partition_empty", "arn::kms:us-east-1:111122223333:key/" + kKeyId, 5,
       "the partition is missing", "arn:aws:kms:"},
      {"partition_left_out", "arn:kms:us-east-1:111122223333:key/" + kKeyId, 5,
       "'kms' at character 5 is the service", "arn:aws:kms:"},
      // Service.
      {"iam_role", "arn:aws:iam::111122223333:role/Workato_EKM", 9,
       "this is an IAM ARN (service iam, characters 9-11), not a KMS key ARN",
       "belongs in the key policy's Principal"},
      {"s3_bucket", "arn:aws:s3:::my-bucket", 9, "this is an S3 ARN (service s3", "KMS key"},
      {"unknown_service", "arn:aws:foo:us-east-1:111122223333:key/" + kKeyId, 9,
       "an ARN of another service (service foo", ""},
      {"service_upper", "arn:aws:KMS:us-east-1:111122223333:key/" + kKeyId, 9,
       "must be lower case 'kms'", "write 'kms'"},
      {"service_empty", "arn:aws::us-east-1:111122223333:key/" + kKeyId, 9,
       "the service is missing", ""},
      // Region.
      {"region_no_dash", "arn:aws:kms:us-east1:111122223333:key/" + kKeyId, 20,
       "the '-' before its number is missing", "write 'us-east-1'"},
      {"region_upper", "arn:aws:kms:US-EAST-1:111122223333:key/" + kKeyId, 13,
       "region 'US-EAST-1' (characters 13-21) must be lower case", "write 'us-east-1'"},
      {"region_az", "arn:aws:kms:us-east-1a:111122223333:key/" + kKeyId, 13,
       "'us-east-1a' (characters 13-22) is an Availability Zone, not a region",
       "use the region 'us-east-1'"},
      {"region_of_aws_cn", "arn:aws:kms:cn-north-1:111122223333:key/" + kKeyId, 13,
       "'cn-north-1' (characters 13-22) belongs to partition aws-cn, not aws", "arn:aws-cn:kms:"},
      {"region_of_aws_in_cn", "arn:aws-cn:kms:us-east-1:111122223333:key/" + kKeyId, 16,
       "belongs to partition aws, not aws-cn", "arn:aws:kms:"},
      {"region_of_gov", "arn:aws:kms:us-gov-west-1:111122223333:key/" + kKeyId, 13,
       "belongs to partition aws-us-gov", "arn:aws-us-gov:kms:"},
      {"region_unknown", "arn:aws:kms:xx-east-1:111122223333:key/" + kKeyId, 13,
       "is not a region of partition aws: regions there look like us-east-1, eu-west-3, "
       "ap-southeast-2",
       ""},
      {"region_no_number", "arn:aws:kms:useast:111122223333:key/" + kKeyId, 13,
       "'useast' (characters 13-18) is not a valid region", ""},
      {"region_one_word", "arn:aws:kms:east-1:111122223333:key/" + kKeyId, 13,
       "is not a valid region", ""},
      {"region_underscore", "arn:aws:kms:us_east_1:111122223333:key/" + kKeyId, 15,
       "'_' is not allowed in the region", ""},
      {"region_empty", "arn:aws:kms::111122223333:key/" + kKeyId, 13, "the region is missing",
       "arn:aws:kms:us-east-1:"},
      {"region_left_out", "arn:aws:kms:111122223333:key/" + kKeyId, 13,
       "the region is missing: 'kms:' is followed by the account ID", "us-east-1"},
      // Account.
      {"account_11_digits", "arn:aws:kms:us-east-1:11112222333:key/" + kKeyId, 23,
       "'11112222333' (characters 23-33) has 11 digits: it must have 12", "missing digits"},
      {"account_13_digits", "arn:aws:kms:us-east-1:1111222233334:key/" + kKeyId, 23,
       "has 13 digits: it must have 12", "extra digits"},
      {"account_hyphens", "arn:aws:kms:us-east-1:1111-2222-3333:key/" + kKeyId, 23,
       "contains hyphens", "write '111122223333'"},
      {"account_placeholder", "arn:aws:kms:us-east-1:TODO-ACCOUNTID:key/" + kKeyId, 23,
       "'T' in the account ID 'TODO-ACCOUNTID' is not a digit", "12-digit"},
      {"account_empty", "arn:aws:kms:us-east-1::key/" + kKeyId, 23, "the account ID is missing",
       ""},
      {"account_left_out", "arn:aws:kms:us-east-1:key/" + kKeyId, 23,
       "the account ID is missing before 'key/'", ""},
      // Truncated.
      {"ends_after_partition", "arn:aws", 7, "ends after the partition", "paste the whole ARN"},
      {"ends_after_service", "arn:aws:kms", 11, "ends after the service", ""},
      {"ends_after_region", "arn:aws:kms:us-east-1", 21, "ends after the region", ""},
      {"ends_after_account", "arn:aws:kms:us-east-1:111122223333", 34, "ends after the account ID",
       ""},
      {"resource_empty", p, 36, "the resource is missing", ""},
      {"only_resource_after_arn", "arn:key/" + kKeyId, 5,
       "the partition, service, region and account ID are missing before 'key/'", ""},
      // Resource.
      {"resource_role", p + "role/x", 36,
       "'role/x' (characters 36-41) must start with 'key/' or "
       "'alias/'",
       ""},
      {"resource_upper_key", p + "Key/" + kKeyId, 36, "'Key' (characters 36-38) must be lower case",
       "write 'key/'"},
      {"resource_key_colon", p + "key:" + kKeyId, 39, "is ':' but after 'key' comes '/'",
       "replace that ':' with '/'"},
      {"resource_bare_key_id", p + kKeyId, 36, "is a bare key ID: it needs 'key/' in front",
       "write key/" + kKeyId},
      {"resource_extra_colon", p + "role:x", 40, "unexpected ':'", ""},
      // Key id.
      {"key_id_upper", p + "key/1234ABCD-12ab-34cd-56ef-1234567890ab", 44,
       "'A' in the key ID is upper case: key IDs are lower-case hex", "'" + kKeyId + "'"},
      {"key_id_short_group", p + "key/1234abcd-12ab-34c-56ef-1234567890ab", 54,
       "group 3 of the key ID '34c' (characters 54-56) has 3 hex digits: it must have 4", ""},
      {"key_id_long_group", p + "key/1234abcd-12ab-34cd-56ef-1234567890abc", 64,
       "group 5 of the key ID", ""},
      {"key_id_four_groups", p + "key/1234abcd-12ab-34cd-56ef1234567890ab", 40,
       "has 4 groups of hex digits: it must have 5", ""},
      {"key_id_not_hex", p + "key/1234abcd-12ab-34cd-56ef-1234567890ag", 75,
       "'g' in the key ID is not a hex digit", ""},
      {"key_id_empty", p + "key/", 40, "the key ID after 'key/' is missing", ""},
      {"key_id_trailing_colon", k + ":", 76, "':' in the key ID is not a hex digit", ""},
      {"mrk_short", p + "key/mrk-1234abcd12ab34cd56ef1234567890a", 40,
       "has 31 hex digits after 'mrk-': it must have 32", ""},
      {"mrk_upper_prefix", p + "key/MRK-1234abcd12ab34cd56ef1234567890ab", 40,
       "must be lower case 'mrk-'", ""},
      {"mrk_upper_hex", p + "key/mrk-1234ABCD12ab34cd56ef1234567890ab", 48, "is upper case", ""},
      // Alias.
      {"alias_aws_managed", p + "alias/aws/ebs", 36,
       "alias/aws/ebs (characters 36-48) is the alias of an AWS managed key: AWS managed keys "
       "cannot have their key policy changed",
       "create a customer managed key"},
      {"alias_bad_char", p + "alias/my.key", 44, "'.' is not allowed in an alias name", ""},
      {"alias_percent", p + "alias/50%", 44, "'%' is not allowed in an alias name", ""},
      {"alias_colon", p + "alias/a:b", 43, "':' is not allowed in an alias name", ""},
      {"alias_empty", p + "alias/", 42, "the alias name after 'alias/' is missing", ""},
      {"alias_too_long", p + "alias/" + std::string(251, 'a'), 292,
       "the alias name is 251 characters long: at most 250", ""},
      {"alias_colon_sep", p + "alias:my-key", 41, "is ':' but after 'alias' comes '/'", ""},
  };
}

class KmsArnBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(KmsArnBadTest, NamesWhatAndWhere) {
  const BadCase& c = GetParam();
  auto parsed = ParseKmsArn(c.input);
  ASSERT_FALSE(parsed.ok()) << "accepted: " << parsed->ToString();
  const Status s = parsed.status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(c.message), std::string::npos) << s.message();
  if (c.position != 0) {
    EXPECT_TRUE(NamesPosition(s.message(), c.position))
        << "expected character " << c.position << " in: " << s.message();
  }
  EXPECT_NE(s.hint().find(c.hint), std::string::npos) << s.hint();
  EXPECT_NE(s.hint().find("copy the ARN from the key's General configuration section in the "
                          "AWS KMS console: it looks like " +
                          kKeyArn),
            std::string::npos)
      << s.hint();
  // Invisible characters are named, never echoed.
  EXPECT_TRUE(IsPrintableAscii(s.message())) << s.message();
  EXPECT_TRUE(IsPrintableAscii(s.hint())) << s.hint();
}

TEST(KmsArnBadTest, EnoughCases) { EXPECT_GT(BadCases().size(), 30u); }

INSTANTIATE_TEST_SUITE_P(Table, KmsArnBadTest, ::testing::ValuesIn(BadCases()),
                         [](const auto& info) { return info.param.name; });

struct GoodCase {
  std::string input;
  std::string partition;
  std::string region;
  KmsResourceType type;
  std::string id;
};

std::vector<GoodCase> GoodCases() {
  return {
      {kKeyArn, "aws", "us-east-1", KmsResourceType::kKey, kKeyId},
      {"arn:aws:kms:eu-west-3:111122223333:key/" + kKeyId, "aws", "eu-west-3",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws:kms:ap-southeast-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", "aws",
       "ap-southeast-2", KmsResourceType::kKey, "mrk-1234abcd12ab34cd56ef1234567890ab"},
      {"arn:aws:kms:us-east-1:111122223333:alias/my-key", "aws", "us-east-1",
       KmsResourceType::kAlias, "my-key"},
      {"arn:aws:kms:us-east-1:111122223333:alias/Team/Prod_Key-1", "aws", "us-east-1",
       KmsResourceType::kAlias, "Team/Prod_Key-1"},
      {"arn:aws:kms:us-east-1:111122223333:alias/awsome", "aws", "us-east-1",
       KmsResourceType::kAlias, "awsome"},
      {"arn:aws:kms:us-east-1:111122223333:alias/" + std::string(250, 'x'), "aws", "us-east-1",
       KmsResourceType::kAlias, std::string(250, 'x')},
      {"arn:aws-cn:kms:cn-north-1:111122223333:key/" + kKeyId, "aws-cn", "cn-north-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-cn:kms:cn-northwest-1:111122223333:key/" + kKeyId, "aws-cn", "cn-northwest-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/" + kKeyId, "aws-us-gov", "us-gov-west-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-iso:kms:us-iso-east-1:111122223333:key/" + kKeyId, "aws-iso", "us-iso-east-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-iso-b:kms:us-isob-east-1:111122223333:key/" + kKeyId, "aws-iso-b", "us-isob-east-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-iso-e:kms:eu-isoe-west-1:111122223333:key/" + kKeyId, "aws-iso-e", "eu-isoe-west-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws-iso-f:kms:us-isof-south-1:111122223333:key/" + kKeyId, "aws-iso-f",
       "us-isof-south-1", KmsResourceType::kKey, kKeyId},
      {"arn:aws-eusc:kms:eusc-de-east-1:111122223333:key/" + kKeyId, "aws-eusc", "eusc-de-east-1",
       KmsResourceType::kKey, kKeyId},
      {"arn:aws:kms:il-central-1:000000000000:key/" + kKeyId, "aws", "il-central-1",
       KmsResourceType::kKey, kKeyId},
  };
}

TEST(KmsArnTest, ParsesValidArnsAndRoundTrips) {
  for (const GoodCase& c : GoodCases()) {
    SCOPED_TRACE(c.input);
    auto parsed = ParseKmsArn(c.input);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->partition, c.partition);
    EXPECT_EQ(parsed->region, c.region);
    EXPECT_EQ(parsed->resource_type, c.type);
    EXPECT_EQ(parsed->resource_id, c.id);
    EXPECT_EQ(parsed->ToString(), c.input);
    auto again = ParseKmsArn(parsed->ToString());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(*again, *parsed);
  }
}

TEST(KmsArnTest, Fields) {
  auto parsed = ParseKmsArn(kKeyArn);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->account, "111122223333");
  EXPECT_FALSE(parsed->IsMultiRegionKey());
  EXPECT_EQ(KmsResourceTypeName(parsed->resource_type), "key");

  auto mrk = ParseKmsArn(kPrefix + "key/mrk-1234abcd12ab34cd56ef1234567890ab");
  ASSERT_TRUE(mrk.ok());
  EXPECT_TRUE(mrk->IsMultiRegionKey());

  // An alias named like a multi-Region key is still an alias.
  auto alias = ParseKmsArn(kPrefix + "alias/mrk-1234");
  ASSERT_TRUE(alias.ok());
  EXPECT_FALSE(alias->IsMultiRegionKey());
  EXPECT_EQ(KmsResourceTypeName(alias->resource_type), "alias");
}

TEST(KmsArnTest, ToStringOfConstructedValueParsesBack) {
  KmsArn arn;
  arn.partition = "aws-us-gov";
  arn.region = "us-gov-east-1";
  arn.account = "123456789012";
  arn.resource_type = KmsResourceType::kAlias;
  arn.resource_id = "prod/payments";
  EXPECT_EQ(arn.ToString(), "arn:aws-us-gov:kms:us-gov-east-1:123456789012:alias/prod/payments");
  auto parsed = ParseKmsArn(arn.ToString());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, arn);
}

// Whatever is wrong, one character removed, doubled or replaced never crashes the parser, and
// an accepted text always round-trips.
TEST(KmsArnTest, MutationsNeverCrashAndAcceptedTextsRoundTrip) {
  const std::string base = kKeyArn;
  const std::vector<std::string> inserts = {" ", "\n", "\xC2\xA0", "\xE2\x80\x8B", "\xFF", ":",
                                            "/", "-",  "A",        "%3A",          "arn:"};
  size_t accepted = 0;
  for (size_t i = 0; i <= base.size(); ++i) {
    std::vector<std::string> variants;
    if (i < base.size()) variants.push_back(base.substr(0, i) + base.substr(i + 1));
    for (const auto& ins : inserts) variants.push_back(base.substr(0, i) + ins + base.substr(i));
    variants.push_back(base.substr(0, i));
    for (const auto& v : variants) {
      auto parsed = ParseKmsArn(v);
      if (parsed.ok()) {
        ++accepted;
        EXPECT_EQ(parsed->ToString(), v);
      } else {
        EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
        EXPECT_FALSE(parsed.status().message().empty());
        EXPECT_TRUE(IsPrintableAscii(parsed.status().message())) << parsed.status().message();
      }
    }
  }
  EXPECT_GT(accepted, 0u);  // e.g. the whole ARN, which is a prefix of itself
}

}  // namespace
}  // namespace ekm
