// Parsing of AWS KMS key and alias ARNs as an administrator pastes them into the "Key ARN"
// field:
//
//   arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID       KEY-ID = 8-4-4-4-12 lower-case hex
//                                                             or mrk-<32 lower-case hex>
//   arn:PARTITION:kms:REGION:ACCOUNT:alias/ALIAS-NAME
//
// PARTITION is aws, aws-cn, aws-us-gov, aws-eusc or one of the isolated partitions (aws-iso,
// aws-iso-b, aws-iso-e, aws-iso-f), and REGION must match that partition's region pattern
// (botocore's partitions.json regionRegex, so new regions need no code change). ACCOUNT is 12
// digits; ALIAS-NAME is 1-250 of [A-Za-z0-9/_-] and not under "aws/" (AWS managed keys cannot
// have their key policy changed, so the platform could never be granted them).
//
// The input is untrusted text straight from a form. Nothing is trimmed or repaired silently:
// a stray space, newline or invisible character is an error, because whatever we store is what
// every later KMS call names. Each error is kInvalidArgument; its message says what is wrong and
// where ("character 23", "characters 13-20": 1-based Unicode characters of the text as pasted,
// an invalid UTF-8 byte counting as one), naming invisible characters instead of echoing them
// ("U+00A0 NO-BREAK SPACE", "a newline '\n'"); message and hint are printable ASCII. The hint
// says what to do and how to copy the ARN from the AWS KMS console, e.g.
//   message "the region 'us-east1' (characters 13-20) is not a valid region: the '-' before
//            its number is missing (character 20); regions look like us-east-1"
//   hint    "write 'us-east-1', or copy the ARN from the key's General configuration section..."
// Only the first problem is reported, checking the whole text before its parts: empty, two
// ARNs, whitespace at the ends, other characters, then arn / partition / service / region /
// account / resource in order.
//
// Thread-safe (pure functions).
#pragma once

#include <string>
#include <string_view>

#include "ekm/base/status.h"

namespace ekm {

enum class KmsResourceType { kKey, kAlias };

// "key" or "alias", as in the ARN.
std::string_view KmsResourceTypeName(KmsResourceType type);

struct KmsArn {
  std::string partition;  // "aws", "aws-cn", "aws-us-gov", "aws-iso", ...
  std::string region;     // "us-east-1"
  std::string account;    // 12 digits
  KmsResourceType resource_type = KmsResourceType::kKey;
  std::string resource_id;  // key id ("1234abcd-...", "mrk-...") or alias name without "alias/"

  // The ARN text; ParseKmsArn(ToString()) gives back an equal value.
  std::string ToString() const;
  // A multi-Region key ("mrk-" key id).
  bool IsMultiRegionKey() const;
  bool operator==(const KmsArn&) const = default;
};

StatusOr<KmsArn> ParseKmsArn(std::string_view text);

}  // namespace ekm
