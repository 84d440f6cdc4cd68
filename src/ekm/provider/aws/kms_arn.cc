#include "ekm/provider/aws/kms_arn.h"

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace ekm {
namespace {

constexpr std::string_view kCopyHint =
    "copy the ARN from the key's General configuration section in the AWS KMS console: it looks "
    "like arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
constexpr size_t kMaxAliasName = 250;  // AliasName is at most 256 including "alias/"
constexpr size_t kMaxQuoted = 64;      // longest piece of the input repeated in a message

// Every error carries the same way out: copy the ARN again. `action` is the precise fix, when
// there is one.
Status ArnError(std::string message, std::string_view action = {}) {
  std::string hint;
  if (!action.empty()) {
    hint = std::string(action) + ", or ";
  }
  hint += kCopyHint;
  return InvalidArgumentError(std::move(message), std::move(hint));
}

// ---- Characters as pasted -------------------------------------------------------------------

// One character of the input: a decoded code point, or one byte that is not valid UTF-8.
struct Unit {
  char32_t cp = 0;
  size_t offset = 0;  // byte offset in the input
  bool valid = true;
};

std::vector<Unit> Decode(std::string_view s) {
  std::vector<Unit> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b0 < 0x80) {
      len = 1, cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (b & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8 either.
    if (ok && (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) ok = false;
    if (ok) {
      out.push_back(Unit{cp, i, true});
      i += len;
    } else {
      out.push_back(Unit{b0, i, false});
      ++i;
    }
  }
  return out;
}

struct NamedChar {
  char32_t cp;
  std::string_view name;
};

// Characters that sneak in when an ARN travels through a web page, a chat tool or a word
// processor. Named so that the admin can see what was invisible.
constexpr std::array kNamedChars = {
    NamedChar{0x0085, "NEXT LINE"},
    NamedChar{0x00A0, "NO-BREAK SPACE"},
    NamedChar{0x00AD, "SOFT HYPHEN"},
    NamedChar{0x1680, "OGHAM SPACE MARK"},
    NamedChar{0x2000, "EN QUAD"},
    NamedChar{0x2001, "EM QUAD"},
    NamedChar{0x2002, "EN SPACE"},
    NamedChar{0x2003, "EM SPACE"},
    NamedChar{0x2004, "THREE-PER-EM SPACE"},
    NamedChar{0x2005, "FOUR-PER-EM SPACE"},
    NamedChar{0x2006, "SIX-PER-EM SPACE"},
    NamedChar{0x2007, "FIGURE SPACE"},
    NamedChar{0x2008, "PUNCTUATION SPACE"},
    NamedChar{0x2009, "THIN SPACE"},
    NamedChar{0x200A, "HAIR SPACE"},
    NamedChar{0x200B, "ZERO WIDTH SPACE"},
    NamedChar{0x200C, "ZERO WIDTH NON-JOINER"},
    NamedChar{0x200D, "ZERO WIDTH JOINER"},
    NamedChar{0x200E, "LEFT-TO-RIGHT MARK"},
    NamedChar{0x200F, "RIGHT-TO-LEFT MARK"},
    NamedChar{0x2010, "HYPHEN"},
    NamedChar{0x2011, "NON-BREAKING HYPHEN"},
    NamedChar{0x2012, "FIGURE DASH"},
    NamedChar{0x2013, "EN DASH"},
    NamedChar{0x2014, "EM DASH"},
    NamedChar{0x2015, "HORIZONTAL BAR"},
    NamedChar{0x2018, "LEFT SINGLE QUOTATION MARK"},
    NamedChar{0x2019, "RIGHT SINGLE QUOTATION MARK"},
    NamedChar{0x201C, "LEFT DOUBLE QUOTATION MARK"},
    NamedChar{0x201D, "RIGHT DOUBLE QUOTATION MARK"},
    NamedChar{0x2026, "HORIZONTAL ELLIPSIS"},
    NamedChar{0x2028, "LINE SEPARATOR"},
    NamedChar{0x2029, "PARAGRAPH SEPARATOR"},
    NamedChar{0x202A, "LEFT-TO-RIGHT EMBEDDING"},
    NamedChar{0x202B, "RIGHT-TO-LEFT EMBEDDING"},
    NamedChar{0x202C, "POP DIRECTIONAL FORMATTING"},
    NamedChar{0x202D, "LEFT-TO-RIGHT OVERRIDE"},
    NamedChar{0x202E, "RIGHT-TO-LEFT OVERRIDE"},
    NamedChar{0x202F, "NARROW NO-BREAK SPACE"},
    NamedChar{0x205F, "MEDIUM MATHEMATICAL SPACE"},
    NamedChar{0x2060, "WORD JOINER"},
    NamedChar{0x2066, "LEFT-TO-RIGHT ISOLATE"},
    NamedChar{0x2067, "RIGHT-TO-LEFT ISOLATE"},
    NamedChar{0x2068, "FIRST STRONG ISOLATE"},
    NamedChar{0x2069, "POP DIRECTIONAL ISOLATE"},
    NamedChar{0x2212, "MINUS SIGN"},
    NamedChar{0x2215, "DIVISION SLASH"},
    NamedChar{0x3000, "IDEOGRAPHIC SPACE"},
    NamedChar{0xFE63, "SMALL HYPHEN-MINUS"},
    NamedChar{0xFEFF, "BYTE ORDER MARK"},
    NamedChar{0xFF0D, "FULLWIDTH HYPHEN-MINUS"},
    NamedChar{0xFF0F, "FULLWIDTH SOLIDUS"},
    NamedChar{0xFF1A, "FULLWIDTH COLON"},
};

std::string CodePointLabel(char32_t cp) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string digits;
  for (char32_t v = cp; v != 0; v >>= 4) digits.insert(digits.begin(), kHex[v & 0xF]);
  while (digits.size() < 4) digits.insert(digits.begin(), '0');
  return "U+" + digits;
}

std::optional<std::string_view> CharName(char32_t cp) {
  for (const auto& n : kNamedChars) {
    if (n.cp == cp) return n.name;
  }
  return std::nullopt;
}

// A visible description of one character: "a space", "a newline '\n'", "'x'",
// "U+00A0 NO-BREAK SPACE", "byte 0xC3 (not valid UTF-8)".
std::string Describe(const Unit& u) {
  if (!u.valid) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    return std::string("byte 0x") + kHex[(u.cp >> 4) & 0xF] + kHex[u.cp & 0xF] +
           " (not valid UTF-8)";
  }
  switch (u.cp) {
    case ' ':
      return "a space";
    case '\t':
      return "a tab '\\t'";
    case '\n':
      return "a newline '\\n'";
    case '\r':
      return "a carriage return '\\r'";
    case '\v':
      return "a vertical tab '\\v'";
    case '\f':
      return "a form feed '\\f'";
    case '\0':
      return "a NUL character '\\0'";
    default:
      break;
  }
  if (u.cp > 0x20 && u.cp < 0x7F) return std::string("'") + static_cast<char>(u.cp) + "'";
  if (u.cp < 0x20 || u.cp == 0x7F || (u.cp >= 0x80 && u.cp < 0xA0 && u.cp != 0x85)) {
    return CodePointLabel(u.cp) + " (a control character)";
  }
  if (auto name = CharName(u.cp)) return CodePointLabel(u.cp) + " " + std::string(*name);
  return CodePointLabel(u.cp) + " (a non-ASCII character)";
}

bool IsSpaceLike(char32_t cp) {
  return cp == ' ' || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
bool IsLineBreak(char32_t cp) {
  return cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x85 || cp == 0x2028 ||
         cp == 0x2029;
}
bool IsInvisible(char32_t cp) {
  return cp == 0xAD || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0xFEFF;
}
// What nobody means to paste at either end of an ARN.
bool IsBlank(const Unit& u) {
  return u.valid && (IsSpaceLike(u.cp) || IsLineBreak(u.cp) || u.cp == '\t' || IsInvisible(u.cp));
}
bool IsDashLookalike(char32_t cp) {
  return (cp >= 0x2010 && cp <= 0x2015) || cp == 0x2212 || cp == 0xFE63 || cp == 0xFF0D;
}
bool IsQuote(char32_t cp) {
  return cp == '"' || cp == '\'' || cp == '`' || (cp >= 0x2018 && cp <= 0x201F);
}

// "space", "newline", ... : what to tell the admin to remove.
std::string_view BlankNoun(char32_t cp) {
  switch (cp) {
    case '\t':
      return "tab";
    case '\n':
      return "newline";
    case '\r':
      return "carriage return";
    default:
      break;
  }
  if (IsSpaceLike(cp)) return "space";
  if (IsLineBreak(cp)) return "line break";
  return "invisible character";
}

std::string CharRange(size_t first, size_t last) {  // 1-based, inclusive
  if (first == last) return "character " + std::to_string(first);
  return "characters " + std::to_string(first) + "-" + std::to_string(last);
}

// A run of blank characters at one end: units [begin, end) of the input.
Status BlankRunError(const std::vector<Unit>& units, size_t begin, size_t end, bool at_start) {
  const std::string_view where = at_start ? "start" : "end";
  const std::string verb = at_start ? "the key ARN starts with " : "the key ARN ends with ";
  const size_t n = end - begin;
  const std::string range = CharRange(begin + 1, end);
  std::string_view noun = BlankNoun(units[begin].cp);
  bool same = true;
  for (size_t i = begin; i < end; ++i) same = same && BlankNoun(units[i].cp) == noun;
  if (n == 1) {
    return ArnError(verb + Describe(units[begin]) + " (" + range + ")",
                    "remove the " + std::string(noun) + " at the " + std::string(where));
  }
  if (same) {
    const std::string which =
        units[begin].cp == ' ' ? std::string() : ", the first is " + Describe(units[begin]);
    return ArnError(
        verb + std::to_string(n) + " " + std::string(noun) + "s (" + range + which + ")",
        "remove the " + std::to_string(n) + " " + std::string(noun) + "s at the " +
            std::string(where));
  }
  return ArnError(verb + std::to_string(n) + " whitespace or invisible characters (" + range +
                      ", the first is " + Describe(units[begin]) + ")",
                  "remove the whitespace at the " + std::string(where));
}

// Characters anywhere in the text, before the ARN is taken apart. Returns the index of the
// first unit that is not printable ASCII, or npos.
size_t FirstNonPrintable(const std::vector<Unit>& units) {
  for (size_t i = 0; i < units.size(); ++i) {
    const Unit& u = units[i];
    if (!u.valid || u.cp <= 0x20 || u.cp >= 0x7F) return i;
  }
  return std::string_view::npos;
}

Status NonPrintableError(const Unit& u, size_t index) {
  const std::string where = "character " + std::to_string(index + 1);
  const std::string what = Describe(u);
  if (u.valid && u.cp == ' ') {
    return ArnError(where + " is a space inside the ARN: an ARN contains no spaces",
                    "remove the space");
  }
  if (u.valid && (u.cp == '\t' || IsLineBreak(u.cp))) {
    return ArnError(where + " is " + what + " inside the ARN: an ARN is one line",
                    "remove the line break and join the pieces");
  }
  if (u.valid && IsSpaceLike(u.cp)) {
    return ArnError(where + " is " + what + ", a space inside the ARN: an ARN contains no spaces",
                    "remove the space");
  }
  if (u.valid && IsInvisible(u.cp)) {
    return ArnError(where + " is " + what + ", an invisible character inside the ARN",
                    "delete the characters around " + where + " and type them again");
  }
  if (u.valid && IsDashLookalike(u.cp)) {
    return ArnError(where + " is " + what + ", which looks like '-' but is not a hyphen",
                    "replace it with an ordinary hyphen '-' (a word processor or chat tool may "
                    "have converted it)");
  }
  if (u.valid && IsQuote(u.cp)) {
    return ArnError(where + " is " + what + ", a quotation mark inside the ARN",
                    "remove the quotation mark");
  }
  if (u.valid && (u.cp == 0xFF1A || u.cp == 0xFF0F || u.cp == 0x2215)) {
    return ArnError(where + " is " + what + ", which looks like '" +
                        (u.cp == 0xFF1A ? std::string(":") : std::string("/")) +
                        "' but is a different character",
                    "replace it with the ordinary ASCII character");
  }
  if (!u.valid) {
    return ArnError(where + " is " + what + ": the text is not valid UTF-8",
                    "paste the ARN as plain text");
  }
  return ArnError(
      where + " is " + what + ": an ARN contains only ASCII letters, digits and - _ / :",
      "retype that character");
}

// ---- ASCII helpers (after the character checks the text is printable ASCII) ------------------

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLowerHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
bool IsHexAnyCase(char c) { return IsLowerHex(c) || (c >= 'A' && c <= 'F'); }
char ToLower(char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}
bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}
bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsDigit(c)) return false;
  }
  return true;
}
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ToLower(c);
  return out;
}

// 'text' in quotes, shortened if long. Only ever called on printable ASCII.
std::string Quote(std::string_view s) {
  if (s.size() <= kMaxQuoted) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kMaxQuoted)) + "...'";
}

std::string At(size_t offset) { return "character " + std::to_string(offset + 1); }
std::string Span(size_t offset, size_t len) {
  return CharRange(offset + 1, offset + (len == 0 ? 1 : len));
}

// 8-4-4-4-12 hex digits, either case.
bool LooksLikeUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !IsHexAnyCase(s[i])) return false;
  }
  return true;
}
bool LooksLikeKeyId(std::string_view s) {
  if (LooksLikeUuid(s)) return true;
  if (!StartsWithIgnoreCase(s, "mrk-") || s.size() != 36) return false;
  for (char c : s.substr(4)) {
    if (!IsHexAnyCase(c)) return false;
  }
  return true;
}

// ---- Partitions and regions (botocore's partitions.json regionRegex) --------------------------

struct Partition {
  std::string_view id;
  // Region = PREFIX-<word>-<number>; PREFIX is one of `prefixes` (each possibly two words).
  std::array<std::string_view, 9> prefixes;
  std::string_view examples;
};

constexpr std::array kPartitions = {
    Partition{"aws",
              {"us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"},
              "us-east-1, eu-west-3, ap-southeast-2"},
    Partition{"aws-cn", {"cn"}, "cn-north-1, cn-northwest-1"},
    Partition{"aws-us-gov", {"us-gov"}, "us-gov-west-1, us-gov-east-1"},
    Partition{"aws-iso", {"us-iso"}, "us-iso-east-1, us-iso-west-1"},
    Partition{"aws-iso-b", {"us-isob"}, "us-isob-east-1"},
    Partition{"aws-iso-e", {"eu-isoe"}, "eu-isoe-west-1"},
    Partition{"aws-iso-f", {"us-isof"}, "us-isof-east-1, us-isof-south-1"},
    Partition{"aws-eusc", {"eusc-de"}, "eusc-de-east-1"},
};
constexpr std::string_view kPartitionList =
    "aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc";

const Partition* FindPartition(std::string_view id) {
  for (const auto& p : kPartitions) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

bool RegionInPartition(std::string_view region, const Partition& p) {
  for (std::string_view prefix : p.prefixes) {
    if (prefix.empty()) continue;
    if (region.size() <= prefix.size() + 1 || region.substr(0, prefix.size()) != prefix ||
        region[prefix.size()] != '-') {
      continue;
    }
    // The rest is <word>-<number>, exactly one more '-' (\w+ does not match '-').
    std::string_view rest = region.substr(prefix.size() + 1);
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string_view::npos) continue;
    if (rest.find('-', dash + 1) != std::string_view::npos) continue;
    if (!AllDigits(rest.substr(dash + 1))) continue;
    return true;
  }
  return false;
}

// ---- The parts of the ARN ---------------------------------------------------------------------

struct Part {
  std::string_view text;
  size_t offset = 0;  // byte offset == character offset (the text is ASCII by now)
};

Status CheckPartition(const Part& part) {
  const std::string_view p = part.text;
  if (p.empty()) {
    return ArnError("the partition is missing: 'arn:' is followed by ':' at " + At(part.offset),
                    "put the partition after 'arn:', e.g. arn:aws:kms:");
  }
  if (FindPartition(p) != nullptr) return Status::Ok();
  if (FindPartition(Lower(p)) != nullptr) {
    return ArnError(
        "the partition " + Quote(p) + " (" + Span(part.offset, p.size()) + ") must be lower case",
        "write " + Quote(Lower(p)));
  }
  if (EqualsIgnoreCase(p, "kms")) {
    return ArnError("the partition is missing: " + Quote(p) + " at " + At(part.offset) +
                        " is the service, which comes after the partition",
                    "start the ARN with arn:aws:kms: (or arn:aws-cn:kms:, arn:aws-us-gov:kms:)");
  }
  return ArnError("unknown partition " + Quote(p) + " (" + Span(part.offset, p.size()) +
                      "): valid partitions are " + std::string(kPartitionList),
                  "use aws for most regions, aws-cn for China and aws-us-gov for GovCloud");
}

struct ServiceName {
  std::string_view id;
  std::string_view what;  // "an IAM ARN"
};
// ARNs pasted by mistake, most often the IAM role that the key policy names.
constexpr std::array kServiceNames = {
    ServiceName{"iam", "an IAM ARN"},
    ServiceName{"sts", "an STS ARN"},
    ServiceName{"s3", "an S3 ARN"},
    ServiceName{"secretsmanager", "a Secrets Manager ARN"},
    ServiceName{"ssm", "a Systems Manager ARN"},
    ServiceName{"ec2", "an EC2 ARN"},
    ServiceName{"lambda", "a Lambda ARN"},
    ServiceName{"sns", "an SNS ARN"},
    ServiceName{"sqs", "an SQS ARN"},
    ServiceName{"dynamodb", "a DynamoDB ARN"},
    ServiceName{"rds", "an RDS ARN"},
    ServiceName{"acm", "an ACM ARN"},
    ServiceName{"cloudhsm", "a CloudHSM ARN"},
    ServiceName{"logs", "a CloudWatch Logs ARN"},
    ServiceName{"payment-cryptography", "an AWS Payment Cryptography ARN"},
};

Status CheckService(const Part& part) {
  const std::string_view s = part.text;
  if (s == "kms") return Status::Ok();
  const std::string span = Span(part.offset, s.size());
  if (s.empty()) {
    return ArnError("the service is missing at " + At(part.offset) + ": it must be 'kms'",
                    "write the ARN as arn:aws:kms:REGION:ACCOUNT:key/KEY-ID");
  }
  if (EqualsIgnoreCase(s, "kms")) {
    return ArnError("the service " + Quote(s) + " (" + span + ") must be lower case 'kms'",
                    "write 'kms'");
  }
  const std::string lower = Lower(s);
  std::string what = "an ARN of another service";
  for (const auto& n : kServiceNames) {
    if (n.id == lower) what = std::string(n.what);
  }
  std::string action = "paste the ARN of the KMS key itself";
  if (lower == "iam" || lower == "sts") {
    action =
        "an IAM role or user ARN belongs in the key policy's Principal, not here; paste the ARN "
        "of the KMS key itself";
  }
  return ArnError("this is " + what + " (service " + std::string(s.substr(0, kMaxQuoted)) + ", " +
                      span + "), not a KMS key ARN: the service must be 'kms'",
                  action);
}

Status CheckRegion(const Part& part, const Partition& partition) {
  const std::string_view r = part.text;
  const std::string span = Span(part.offset, r.size());
  if (r.empty()) {
    return ArnError("the region is missing at " + At(part.offset) +
                        " (nothing between 'kms:' and the next ':')",
                    "put the key's region after 'kms:', e.g. arn:aws:kms:us-east-1:");
  }
  for (size_t i = 0; i < r.size(); ++i) {
    const char c = r[i];
    if (IsUpper(c)) {
      return ArnError("the region " + Quote(r) + " (" + span + ") must be lower case: " +
                          At(part.offset + i) + " is '" + std::string(1, c) + "'",
                      "write " + Quote(Lower(r)));
    }
    if (!IsLower(c) && !IsDigit(c) && c != '-') {
      return ArnError(At(part.offset + i) + " '" + std::string(1, c) +
                          "' is not allowed in the region " + Quote(r) +
                          ": regions look like us-east-1",
                      "correct the region");
    }
  }
  // Shape: lower-case words separated by '-', ending in -<number>: us-east-1, us-gov-west-1.
  const size_t last_dash = r.rfind('-');
  const std::string_view tail = last_dash == std::string_view::npos ? r : r.substr(last_dash + 1);
  if (last_dash != std::string_view::npos && !tail.empty() && IsDigit(tail.front()) &&
      IsLower(tail.back())) {
    size_t digits = 0;
    while (digits < tail.size() && IsDigit(tail[digits])) ++digits;
    const std::string_view region = r.substr(0, last_dash + 1 + digits);
    return ArnError(Quote(r) + " (" + span + ") is an Availability Zone, not a region",
                    "use the region " + Quote(region));
  }
  bool shape =
      last_dash != std::string_view::npos && last_dash > 0 && AllDigits(tail) && IsLower(r.front());
  for (size_t i = 0; shape && i + 1 < r.size(); ++i) {
    if (r[i] == '-' && r[i + 1] == '-') shape = false;
  }
  if (shape && r.find('-') == last_dash) shape = false;  // "east-1": only one word
  if (!shape) {
    std::string what = "the region " + Quote(r) + " (" + span + ") is not a valid region";
    if (!r.empty() && IsDigit(r.back()) &&
        (last_dash == std::string_view::npos || !AllDigits(tail))) {
      size_t d = r.size();
      while (d > 0 && IsDigit(r[d - 1])) --d;
      what += ": the '-' before its number is missing (" + At(part.offset + d) + ")";
      return ArnError(
          what + "; regions look like us-east-1",
          "write " + Quote(std::string(r.substr(0, d)) + "-" + std::string(r.substr(d))));
    }
    return ArnError(what + ": regions look like " + std::string(partition.examples),
                    "put the key's region, as shown in the AWS console's region selector");
  }
  if (RegionInPartition(r, partition)) return Status::Ok();
  for (const auto& other : kPartitions) {
    if (RegionInPartition(r, other)) {
      return ArnError("the region " + Quote(r) + " (" + span + ") belongs to partition " +
                          std::string(other.id) + ", not " + std::string(partition.id),
                      "start the ARN with arn:" + std::string(other.id) + ":kms:");
    }
  }
  return ArnError("the region " + Quote(r) + " (" + span + ") is not a region of partition " +
                      std::string(partition.id) + ": regions there look like " +
                      std::string(partition.examples),
                  "check the key's region in the AWS console's region selector");
}

Status CheckAccount(const Part& part) {
  const std::string_view a = part.text;
  const std::string span = Span(part.offset, a.size());
  if (a.empty()) {
    return ArnError("the account ID is missing at " + At(part.offset) +
                        " (nothing between the region and the next ':')",
                    "put the 12-digit ID of the AWS account that owns the key");
  }
  size_t digits = 0;
  size_t hyphens = 0;
  for (char c : a) {
    digits += IsDigit(c) ? 1 : 0;
    hyphens += c == '-' ? 1 : 0;
  }
  if (hyphens > 0 && digits + hyphens == a.size() && digits == 12) {
    std::string plain;
    for (char c : a) {
      if (c != '-') plain += c;
    }
    return ArnError("the account ID " + Quote(a) + " (" + span +
                        ") contains hyphens: in an ARN it is 12 digits without hyphens",
                    "write " + Quote(plain));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (!IsDigit(a[i])) {
      return ArnError(At(part.offset + i) + " '" + std::string(1, a[i]) + "' in the account ID " +
                          Quote(a) + " is not a digit: an account ID is 12 digits",
                      "put the 12-digit ID of the AWS account that owns the key");
    }
  }
  if (a.size() != 12) {
    return ArnError("the account ID " + Quote(a) + " (" + span + ") has " +
                        std::to_string(a.size()) + (a.size() == 1 ? " digit" : " digits") +
                        ": it must have 12",
                    a.size() < 12 ? "check for missing digits (leading zeros count)"
                                  : "check for extra digits");
  }
  return Status::Ok();
}

Status CheckHex(std::string_view id, size_t offset, size_t i) {
  const char c = id[i];
  if (c >= 'A' && c <= 'F') {
    return ArnError(At(offset + i) + " '" + std::string(1, c) +
                        "' in the key ID is upper case: key IDs are lower-case hex",
                    "write the key ID in lower case, " + Quote(Lower(id)));
  }
  return ArnError(At(offset + i) + " '" + std::string(1, c) +
                      "' in the key ID is not a hex digit: key IDs look like "
                      "1234abcd-12ab-34cd-56ef-1234567890ab or mrk-<32 hex digits>",
                  "check the key ID");
}

Status CheckKeyId(std::string_view id, size_t offset) {
  if (id.empty()) {
    return ArnError("the key ID after 'key/' is missing (" + At(offset) + ")",
                    "put the key ID after 'key/'");
  }
  if (StartsWithIgnoreCase(id, "mrk-")) {
    if (id.substr(0, 4) != "mrk-") {
      return ArnError("the multi-Region key prefix " + Quote(id.substr(0, 4)) + " (" +
                          Span(offset, 4) + ") must be lower case 'mrk-'",
                      "write 'mrk-'");
    }
    for (size_t i = 4; i < id.size(); ++i) {
      if (!IsLowerHex(id[i])) return CheckHex(id, offset, i);
    }
    if (id.size() != 36) {
      return ArnError("the multi-Region key ID " + Quote(id) + " (" + Span(offset, id.size()) +
                          ") has " + std::to_string(id.size() - 4) +
                          " hex digits after 'mrk-': it must have 32",
                      "check the key ID for missing or extra characters");
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < id.size(); ++i) {
    if (id[i] != '-' && !IsLowerHex(id[i])) return CheckHex(id, offset, i);
  }
  constexpr std::array<size_t, 5> kGroups = {8, 4, 4, 4, 12};
  std::vector<std::string_view> groups;
  std::vector<size_t> starts;
  size_t start = 0;
  while (true) {
    const size_t dash = id.find('-', start);
    groups.push_back(id.substr(start, dash == std::string_view::npos ? dash : dash - start));
    starts.push_back(start);
    if (dash == std::string_view::npos) break;
    start = dash + 1;
  }
  if (groups.size() != kGroups.size()) {
    return ArnError("the key ID " + Quote(id) + " (" + Span(offset, id.size()) + ") has " +
                        std::to_string(groups.size()) +
                        (groups.size() == 1 ? " group" : " groups") +
                        " of hex digits: it must have 5, separated by '-' (8-4-4-4-12)",
                    "check the key ID for missing or extra characters");
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].size() != kGroups[g]) {
      return ArnError("group " + std::to_string(g + 1) + " of the key ID " + Quote(groups[g]) +
                          " (" + Span(offset + starts[g], groups[g].size()) + ") has " +
                          std::to_string(groups[g].size()) + " hex digits: it must have " +
                          std::to_string(kGroups[g]) + " (8-4-4-4-12)",
                      "check the key ID for missing or extra characters");
    }
  }
  return Status::Ok();
}

Status CheckAliasName(std::string_view name, size_t offset) {
  if (name.empty()) {
    return ArnError("the alias name after 'alias/' is missing (" + At(offset) + ")",
                    "put the alias name after 'alias/'");
  }
  if (name.substr(0, 4) == "aws/") {
    return ArnError("alias/" + std::string(name.substr(0, kMaxQuoted)) + " (" +
                        Span(offset - 6, name.size() + 6) +
                        ") is the alias of an AWS managed key: AWS managed keys cannot have their "
                        "key policy changed, so the platform cannot be granted access to them",
                    "create a customer managed key in AWS KMS and paste its ARN");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!IsLower(c) && !IsUpper(c) && !IsDigit(c) && c != '/' && c != '_' && c != '-') {
      return ArnError(At(offset + i) + " '" + std::string(1, c) +
                          "' is not allowed in an alias name: alias names contain only letters, "
                          "digits, '/', '_' and '-'",
                      "check the alias name");
    }
  }
  if (name.size() > kMaxAliasName) {
    return ArnError("the alias name is " + std::to_string(name.size()) +
                        " characters long: at most " + std::to_string(kMaxAliasName) +
                        " are allowed after 'alias/' (" + At(offset + kMaxAliasName) +
                        " is the first too many)",
                    "check the alias name");
  }
  return Status::Ok();
}

// The resource: key/KEY-ID or alias/ALIAS-NAME.
Status CheckResource(const Part& part, KmsArn& arn) {
  const std::string_view r = part.text;
  const size_t off = part.offset;
  if (r.empty()) {
    return ArnError("the resource is missing at " + At(off) +
                        ": after the account ID comes key/KEY-ID or alias/ALIAS-NAME",
                    "put key/ and the key ID after the account ID");
  }
  for (std::string_view type : {std::string_view("key"), std::string_view("alias")}) {
    if (StartsWithIgnoreCase(r, type) && r.size() > type.size()) {
      const char sep = r[type.size()];
      if (sep == ':') {
        return ArnError(At(off + type.size()) + " is ':' but after '" + std::string(type) +
                            "' comes '/' (" + std::string(type) + "/...)",
                        "replace that ':' with '/'");
      }
      if (sep == '/' && r.substr(0, type.size()) != type) {
        return ArnError("the resource type " + Quote(r.substr(0, type.size())) + " (" +
                            Span(off, type.size()) + ") must be lower case '" + std::string(type) +
                            "'",
                        "write '" + std::string(type) + "/'");
      }
    }
  }
  if (r.substr(0, 4) == "key/") {
    const std::string_view id = r.substr(4);
    EKM_RETURN_IF_ERROR(CheckKeyId(id, off + 4));
    arn.resource_type = KmsResourceType::kKey;
    arn.resource_id = std::string(id);
    return Status::Ok();
  }
  if (r.substr(0, 6) == "alias/") {
    const std::string_view name = r.substr(6);
    EKM_RETURN_IF_ERROR(CheckAliasName(name, off + 6));
    arn.resource_type = KmsResourceType::kAlias;
    arn.resource_id = std::string(name);
    return Status::Ok();
  }
  if (LooksLikeKeyId(r)) {
    return ArnError("the resource " + Quote(r) + " at " + At(off) +
                        " is a bare key ID: it needs 'key/' in front",
                    "write key/" + std::string(r));
  }
  const size_t colon = r.find(':');
  if (colon != std::string_view::npos) {
    return ArnError(
        "unexpected ':' at " + At(off + colon) +
            ": a KMS ARN has exactly 5 ':' (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID)",
        "remove the extra part");
  }
  return ArnError("the resource " + Quote(r) + " (" + Span(off, r.size()) +
                      ") must start with 'key/' or 'alias/'",
                  "paste the ARN of a KMS key (...:key/KEY-ID) or of an alias (...:alias/NAME)");
}

bool LooksLikeResource(std::string_view s) {
  return StartsWithIgnoreCase(s, "key/") || StartsWithIgnoreCase(s, "alias/");
}

// The text is printable ASCII without spaces and starts with "arn:".
StatusOr<KmsArn> ParseStructure(std::string_view s) {
  std::vector<Part> parts;
  size_t start = 0;
  while (parts.size() < 5) {
    const size_t colon = s.find(':', start);
    if (colon == std::string_view::npos) break;
    parts.push_back(Part{s.substr(start, colon - start), start});
    start = colon + 1;
  }
  parts.push_back(Part{s.substr(start), start});  // the rest, which may hold more ':'
  const size_t end = s.size();                    // offset just past the text

  KmsArn arn;
  // parts[0] is "arn".
  if (parts.size() < 2) {
    return ArnError("the ARN ends after 'arn:'", "paste the whole ARN");
  }
  // A part that is really the resource, found too early: everything before it is missing.
  auto early_resource = [&](size_t index, std::string_view missing) -> std::optional<Status> {
    if (index < parts.size() && index < 5 && LooksLikeResource(parts[index].text)) {
      const std::string_view r = parts[index].text;
      const std::string_view type = r.substr(0, StartsWithIgnoreCase(r, "key/") ? 4 : 6);
      return ArnError(std::string(missing) + " missing before " + Quote(type) + " at " +
                          At(parts[index].offset) +
                          ": a KMS ARN is arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID",
                      "put the missing parts in");
    }
    return std::nullopt;
  };
  if (auto e = early_resource(1, "the partition, service, region and account ID are")) return *e;
  EKM_RETURN_IF_ERROR(CheckPartition(parts[1]));
  const Partition& partition = *FindPartition(parts[1].text);
  arn.partition = std::string(parts[1].text);
  if (parts.size() < 3) {
    return ArnError("the ARN ends after the partition (" + At(end - 1) +
                        "): ':kms:REGION:ACCOUNT:key/KEY-ID' is missing",
                    "paste the whole ARN");
  }
  if (auto e = early_resource(2, "the service, region and account ID are")) return *e;
  EKM_RETURN_IF_ERROR(CheckService(parts[2]));
  if (parts.size() < 4) {
    return ArnError("the ARN ends after the service (" + At(end - 1) +
                        "): ':REGION:ACCOUNT:key/KEY-ID' is missing",
                    "paste the whole ARN");
  }
  if (auto e = early_resource(3, "the region and account ID are")) return *e;
  // arn:aws:kms:111122223333:key/... : the region was left out, not the account.
  if (parts.size() == 5 && AllDigits(parts[3].text) && LooksLikeResource(parts[4].text)) {
    return ArnError(
        "the region is missing: 'kms:' is followed by the account ID at " + At(parts[3].offset),
        "put the key's region between 'kms:' and the account ID, e.g. "
        "arn:aws:kms:us-east-1:" +
            std::string(parts[3].text.substr(0, 12)) + ":");
  }
  EKM_RETURN_IF_ERROR(CheckRegion(parts[3], partition));
  arn.region = std::string(parts[3].text);
  if (parts.size() < 5) {
    return ArnError(
        "the ARN ends after the region (" + At(end - 1) + "): ':ACCOUNT:key/KEY-ID' is missing",
        "paste the whole ARN");
  }
  if (auto e = early_resource(4, "the account ID is")) return *e;
  EKM_RETURN_IF_ERROR(CheckAccount(parts[4]));
  arn.account = std::string(parts[4].text);
  if (parts.size() < 6) {
    return ArnError(
        "the ARN ends after the account ID (" + At(end - 1) + "): ':key/KEY-ID' is missing",
        "paste the whole ARN");
  }
  EKM_RETURN_IF_ERROR(CheckResource(parts[5], arn));
  return arn;
}

// Forms that are not an ARN at all but are what people commonly paste instead.
std::optional<Status> CheckNotAnArn(std::string_view s) {
  if (StartsWithIgnoreCase(s, "https://") || StartsWithIgnoreCase(s, "http://")) {
    return ArnError("this is a web address (character 1), not an ARN",
                    "open the key in the AWS KMS console and copy the ARN field instead of the "
                    "page address");
  }
  if (LooksLikeKeyId(s)) {
    return InvalidArgumentError(
        "this is a key ID, not an ARN: ekm needs the full key ARN (character 1 starts the key "
        "ID " +
            Quote(s) + ")",
        std::string(kCopyHint) + " (for this key: arn:aws:kms:REGION:ACCOUNT:key/" + Lower(s) +
            ")");
  }
  if (StartsWithIgnoreCase(s, "key/") && s.find(':') == std::string_view::npos) {
    return InvalidArgumentError(
        "this is only the end of a key ARN (character 1 is 'key/...'), not the whole ARN: ekm "
        "needs the full key ARN",
        std::string(kCopyHint) + " (for this key: arn:aws:kms:REGION:ACCOUNT:" +
            std::string(s.substr(0, kMaxQuoted)) + ")");
  }
  if (StartsWithIgnoreCase(s, "alias/") && s.find(':') == std::string_view::npos) {
    return InvalidArgumentError("this is an alias name, not an ARN (character 1 starts " +
                                    Quote(s) + "): ekm needs the full alias ARN or key ARN",
                                std::string(kCopyHint) +
                                    " (the alias ARN looks like arn:aws:kms:REGION:ACCOUNT:" +
                                    std::string(s.substr(0, kMaxQuoted)) + ")");
  }
  if (s.size() == 12 && AllDigits(s)) {
    return ArnError("this is an AWS account ID (character 1), not a key ARN",
                    "paste the ARN of the key");
  }
  if (!StartsWithIgnoreCase(s, "arn:")) {
    return ArnError("the text does not start with 'arn:' (character 1 is '" +
                        std::string(1, s.front()) + "'): a KMS key ARN starts with 'arn:aws:kms:'",
                    "paste the key ARN");
  }
  if (s.substr(0, 4) != "arn:") {
    return ArnError("the ARN must start with lower-case 'arn:' (characters 1-3 are " +
                        Quote(s.substr(0, 3)) + ")",
                    "write 'arn:'");
  }
  return std::nullopt;
}

}  // namespace

std::string_view KmsResourceTypeName(KmsResourceType type) {
  switch (type) {
    case KmsResourceType::kKey:
      return "key";
    case KmsResourceType::kAlias:
      return "alias";
  }
  return "key";
}

std::string KmsArn::ToString() const {
  std::string out = "arn:" + partition + ":kms:" + region + ":" + account + ":";
  out += KmsResourceTypeName(resource_type);
  out += "/";
  out += resource_id;
  return out;
}

bool KmsArn::IsMultiRegionKey() const {
  return resource_type == KmsResourceType::kKey && resource_id.starts_with("mrk-");
}

StatusOr<KmsArn> ParseKmsArn(std::string_view text) {
  if (text.empty()) {
    return ArnError("the key ARN is empty");
  }
  const std::vector<Unit> units = Decode(text);
  auto char_pos = [&](size_t byte_offset) {  // 1-based character position of a byte offset
    size_t n = 0;
    while (n < units.size() && units[n].offset < byte_offset) ++n;
    return n + 1;
  };

  size_t lead = 0;
  while (lead < units.size() && IsBlank(units[lead])) ++lead;
  if (lead == units.size()) {
    return ArnError("the key ARN is blank: it has " + std::to_string(units.size()) +
                    " whitespace or invisible characters and nothing else (the first is " +
                    Describe(units[0]) + ")");
  }

  // Two ARNs (or the same one twice) before anything else: trimming would not help.
  const size_t first = text.find("arn:");
  if (first != std::string_view::npos) {
    const size_t second = text.find("arn:", first + 4);
    if (second != std::string_view::npos) {
      std::string_view a = text.substr(first, second - first);
      std::string_view b = text.substr(second);
      auto trim = [](std::string_view v) {
        while (!v.empty() && (v.back() == ' ' || v.back() == '\n' || v.back() == '\r' ||
                              v.back() == '\t' || v.back() == ',' || v.back() == ';')) {
          v.remove_suffix(1);
        }
        return v;
      };
      const bool same = trim(a) == trim(b);
      return ArnError(
          std::string(same ? "the key ARN was pasted twice" : "the text holds more than one ARN") +
              ": a second 'arn:' starts at character " + std::to_string(char_pos(second)),
          "paste only one ARN");
    }
  }

  if (lead > 0) return BlankRunError(units, 0, lead, /*at_start=*/true);
  size_t trail = units.size();
  while (trail > 0 && IsBlank(units[trail - 1])) --trail;
  if (trail < units.size()) return BlankRunError(units, trail, units.size(), /*at_start=*/false);

  // Quotes and punctuation picked up with the ARN from a document or a sentence.
  const Unit& head = units.front();
  const Unit& tail = units.back();
  if (head.valid && (IsQuote(head.cp) || head.cp == '(' || head.cp == '<' || head.cp == '[')) {
    return ArnError("the key ARN starts with " + Describe(head) + " (character 1)",
                    IsQuote(head.cp) ? "remove the quotation marks around the ARN"
                                     : "remove the " + Describe(head) + " at the start");
  }
  if (tail.valid && (IsQuote(tail.cp) || tail.cp == '.' || tail.cp == ',' || tail.cp == ';' ||
                     tail.cp == ')' || tail.cp == '>' || tail.cp == ']' || tail.cp == 0x2026)) {
    return ArnError("the key ARN ends with " + Describe(tail) + " (character " +
                        std::to_string(units.size()) + ")",
                    IsQuote(tail.cp) ? "remove the quotation marks around the ARN"
                                     : "remove the " + Describe(tail) + " at the end");
  }

  // Text before the ARN ("Key ARN: arn:aws:..."), before a space in it is blamed.
  if (first != std::string_view::npos && first > 0) {
    return ArnError("there is other text before the ARN: 'arn:' starts at character " +
                        std::to_string(char_pos(first)),
                    "remove everything before 'arn:'");
  }

  if (size_t bad = FirstNonPrintable(units); bad != std::string_view::npos) {
    return NonPrintableError(units[bad], bad);
  }
  // From here on the text is printable ASCII: byte offsets are character offsets.

  const size_t pct = text.find('%');
  if (pct != std::string_view::npos && pct + 2 < text.size() && IsHexAnyCase(text[pct + 1]) &&
      IsHexAnyCase(text[pct + 2])) {
    const std::string code(text.substr(pct, 3));
    std::string meaning;
    if (EqualsIgnoreCase(code, "%3A")) meaning = " (stands for ':')";
    if (EqualsIgnoreCase(code, "%2F")) meaning = " (stands for '/')";
    return ArnError("the key ARN is URL-encoded: " + At(pct) + " starts '" + code + "'" + meaning,
                    "decode it (%3A is ':' and %2F is '/')");
  }

  if (auto e = CheckNotAnArn(text)) return *e;
  return ParseStructure(text);
}

}  // namespace ekm
