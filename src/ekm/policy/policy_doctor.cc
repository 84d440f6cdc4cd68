#include "ekm/policy/policy_doctor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <utility>

#include "ekm/envelope/envelope.h"
#include "ekm/policy/key_policy_statement.h"

namespace ekm {
namespace {

using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IEquals(std::string_view a, std::string_view b) { return Lower(a) == Lower(b); }

bool StartsWithI(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && IEquals(s.substr(0, prefix.size()), prefix);
}

// IAM wildcard match: '*' any run, '?' one character. Iterative with one backtrack point, so
// O(|pattern| * |text|) at worst and no recursion.
bool Glob(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool GlobI(std::string_view pattern, std::string_view text) {
  return Glob(Lower(pattern), Lower(text));
}

// ArnLike: each of the six colon-separated fields is matched on its own.
bool ArnGlob(std::string_view pattern, std::string_view arn) {
  auto split6 = [](std::string_view s) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (parts.size() < 5) {
      size_t colon = s.find(':', start);
      if (colon == std::string_view::npos) break;
      parts.push_back(s.substr(start, colon - start));
      start = colon + 1;
    }
    parts.push_back(s.substr(start));
    return parts;
  };
  auto pp = split6(pattern), ap = split6(arn);
  if (pp.size() != 6 || ap.size() != 6) return Glob(pattern, arn);
  for (size_t i = 0; i < 6; ++i) {
    if (!Glob(pp[i], ap[i])) return false;
  }
  return true;
}

std::string Quote(std::string_view s, size_t max = 60) {
  std::string out = "'";
  if (s.size() > max) {
    out += std::string(s.substr(0, max)) + "...";
  } else {
    out += s;
  }
  return out + "'";
}

// Text for messages: invalid UTF-8 becomes U+FFFD and control characters are escaped, so a
// report built from hostile bytes is always valid UTF-8 JSON.
std::string Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : "?";
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool valid = len != 0 && i + len <= s.size() && c != 0xC0 && c != 0xC1 && c <= 0xF4;
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (valid && len == 3) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (valid && len == 4) {
      unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

bool IsTwelveDigits(std::string_view s) {
  if (s.size() != 12) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string AccountOfArn(std::string_view arn) {
  // arn:partition:service:region:account:resource
  size_t pos = 0;
  for (int i = 0; i < 4; ++i) {
    pos = arn.find(':', pos);
    if (pos == std::string_view::npos) return "";
    ++pos;
  }
  size_t end = arn.find(':', pos);
  if (end == std::string_view::npos) return "";
  return std::string(arn.substr(pos, end - pos));
}

// Values of a policy element that may be a string or a list of strings. Other JSON types are
// reported through `bad`.
std::vector<std::string> StringList(const ojson& v, bool* bad) {
  std::vector<std::string> out;
  auto one = [&](const ojson& x) {
    if (x.is_string()) {
      out.push_back(x.get<std::string>());
    } else {
      *bad = true;
    }
  };
  if (v.is_array()) {
    for (const auto& x : v) one(x);
  } else {
    one(v);
  }
  return out;
}

// Condition values may also be numbers or booleans; IAM compares their text.
std::vector<std::string> ConditionValues(const ojson& v, bool* bad) {
  std::vector<std::string> out;
  auto one = [&](const ojson& x) {
    if (x.is_string()) {
      out.push_back(x.get<std::string>());
    } else if (x.is_number() || x.is_boolean()) {
      out.push_back(x.dump());
    } else {
      *bad = true;
    }
  };
  if (v.is_array()) {
    for (const auto& x : v) one(x);
  } else {
    one(v);
  }
  return out;
}

}  // namespace

std::pair<int, int> LineColumnForTest(std::string_view text, size_t byte_offset) {
  byte_offset = std::min(byte_offset, text.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < byte_offset; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xC0) != 0x80) {  // count characters, not continuation bytes
      ++column;
    }
  }
  return {line, column};
}

namespace {

std::pair<int, int> LineCol(std::string_view text, size_t offset) {
  return LineColumnForTest(text, offset);
}

std::string At(std::string_view text, size_t offset) {
  auto [l, c] = LineCol(text, offset);
  return "line " + std::to_string(l) + ", column " + std::to_string(c);
}

// ---------------------------------------------------------------------------------------------
// JSON diagnosis: a token-level scan of the text that finds the first grammar error the way a
// human would describe it, and proposes a repair for the mistakes that have an obvious one.

enum class Tok {
  kLBrace,
  kRBrace,
  kLBracket,
  kRBracket,
  kColon,
  kComma,
  kString,
  kWord,
  kComment,
  kEnd
};

struct Token {
  Tok type = Tok::kEnd;
  size_t start = 0;
  size_t end = 0;
  bool unterminated = false;  // strings and block comments
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsStructural(char c) {
  return c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',' || c == '"';
}

std::vector<Token> Tokenize(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    Token t;
    t.start = i;
    switch (c) {
      case '{':
        t.type = Tok::kLBrace;
        t.end = ++i;
        break;
      case '}':
        t.type = Tok::kRBrace;
        t.end = ++i;
        break;
      case '[':
        t.type = Tok::kLBracket;
        t.end = ++i;
        break;
      case ']':
        t.type = Tok::kRBracket;
        t.end = ++i;
        break;
      case ':':
        t.type = Tok::kColon;
        t.end = ++i;
        break;
      case ',':
        t.type = Tok::kComma;
        t.end = ++i;
        break;
      case '"': {
        t.type = Tok::kString;
        ++i;
        t.unterminated = true;
        while (i < s.size()) {
          if (s[i] == '\\') {
            i += 2;
            continue;
          }
          if (s[i] == '"') {
            ++i;
            t.unterminated = false;
            break;
          }
          if (s[i] == '\n') break;
          ++i;
        }
        t.end = std::min(i, s.size());
        i = t.end;
        break;
      }
      default:
        if (c == '/' && i + 1 < s.size() && (s[i + 1] == '*' || s[i + 1] == '/')) {
          t.type = Tok::kComment;
          if (s[i + 1] == '*') {
            size_t close = s.find("*/", i + 2);
            t.unterminated = close == std::string_view::npos;
            i = t.unterminated ? s.size() : close + 2;
          } else {
            size_t nl = s.find('\n', i);
            i = nl == std::string_view::npos ? s.size() : nl;
          }
          t.end = i;
        } else {
          t.type = Tok::kWord;
          while (i < s.size() && !IsSpace(s[i]) && !IsStructural(s[i])) ++i;
          t.end = i;
        }
    }
    out.push_back(t);
  }
  Token end;
  end.type = Tok::kEnd;
  end.start = end.end = s.size();
  out.push_back(end);
  return out;
}

bool IsJsonNumber(std::string_view w) {
  size_t i = 0;
  if (i < w.size() && w[i] == '-') ++i;
  if (i >= w.size()) return false;
  if (w[i] == '0') {
    ++i;
  } else if (w[i] >= '1' && w[i] <= '9') {
    while (i < w.size() && w[i] >= '0' && w[i] <= '9') ++i;
  } else {
    return false;
  }
  if (i < w.size() && w[i] == '.') {
    ++i;
    size_t d = i;
    while (i < w.size() && w[i] >= '0' && w[i] <= '9') ++i;
    if (i == d) return false;
  }
  if (i < w.size() && (w[i] == 'e' || w[i] == 'E')) {
    ++i;
    if (i < w.size() && (w[i] == '+' || w[i] == '-')) ++i;
    size_t d = i;
    while (i < w.size() && w[i] >= '0' && w[i] <= '9') ++i;
    if (i == d) return false;
  }
  return i == w.size();
}

bool IsValidWord(std::string_view w) {
  return w == "true" || w == "false" || w == "null" || IsJsonNumber(w);
}

// Curly quotes: U+201C/U+201D (double) and U+2018/U+2019 (single), UTF-8 E2 80 9C/9D/98/99.
size_t FindCurlyQuote(std::string_view s, size_t from = 0) {
  for (size_t i = from; i + 2 < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80) {
      unsigned char c = static_cast<unsigned char>(s[i + 2]);
      if (c == 0x9C || c == 0x9D || c == 0x98 || c == 0x99) return i;
    }
  }
  return std::string_view::npos;
}

struct Edit {
  size_t start = 0;
  size_t end = 0;
  std::string replacement;
};

struct Diagnosis {
  size_t offset = 0;
  std::string message;
  std::string hint;
  std::vector<Edit> fix;  // empty: no obvious repair
  std::string fix_description;
};

// Output of the structural scan over a text.
struct ScanResult {
  bool has_error = false;
  size_t error_token = 0;
  // Set when valid (or up to the error): keys seen twice in one object.
  std::vector<std::pair<std::string, size_t>> duplicate_keys;
};

enum class State {
  kTopValue,
  kTopDone,
  kObjKeyOrEnd,
  kObjKey,
  kObjColon,
  kObjValue,
  kObjCommaOrEnd,
  kArrValueOrEnd,
  kArrValue,
  kArrCommaOrEnd
};

struct Frame {
  bool object = false;
  size_t open_token = 0;
  std::string key;  // the key under which this container sits ("" at top level or in arrays)
  std::set<std::string> keys;
  bool has_effect = false;
};

class Scanner {
 public:
  Scanner(std::string_view text, const std::vector<Token>& tokens) : text_(text), tokens_(tokens) {}

  // Runs to the first grammar error or the end.
  ScanResult Run() {
    ScanResult r;
    for (idx_ = 0; idx_ < tokens_.size(); ++idx_) {
      if (!Step(tokens_[idx_], &r)) {
        r.has_error = true;
        r.error_token = idx_;
        return r;
      }
      if (tokens_[idx_].type == Tok::kEnd) break;
    }
    return r;
  }

  // Describes the grammar error at `tokens_[index]` (Run() must have stopped there).
  Diagnosis Describe(size_t index) const;

 private:
  std::string TokText(const Token& t) const {
    return std::string(text_.substr(t.start, t.end - t.start));
  }
  static bool IsValueStart(Tok t) {
    return t == Tok::kLBrace || t == Tok::kLBracket || t == Tok::kString || t == Tok::kWord;
  }

  void Open(const Token& t, bool object) {
    Frame f;
    f.object = object;
    f.open_token = idx_;
    f.key = pending_member_;
    stack_.push_back(std::move(f));
    state_ = object ? State::kObjKeyOrEnd : State::kArrValueOrEnd;
    (void)t;
  }

  void AfterValue() {
    if (stack_.empty()) {
      state_ = State::kTopDone;
    } else {
      state_ = stack_.back().object ? State::kObjCommaOrEnd : State::kArrCommaOrEnd;
    }
  }

  void Close() {
    last_closed_ = stack_.back();
    last_closed_token_ = idx_;
    stack_.pop_back();
    // The ] of the policy's own Statement list: a statement pasted after it is diagnosed as such.
    if (!last_closed_.object && last_closed_.key == "Statement" && stack_.size() == 1) {
      statement_close_token_ = idx_;
    }
    AfterValue();
  }

  bool Value(const Token& t) {
    if (t.type == Tok::kLBrace) {
      Open(t, true);
      return true;
    }
    if (t.type == Tok::kLBracket) {
      Open(t, false);
      return true;
    }
    if (t.type == Tok::kString) {
      if (t.unterminated) return false;
      AfterValue();
      return true;
    }
    if (t.type == Tok::kWord) {
      if (!IsValidWord(TokText(t))) return false;
      AfterValue();
      return true;
    }
    return false;
  }

  bool Step(const Token& t, ScanResult* r) {
    if (t.type == Tok::kComment) return false;
    switch (state_) {
      case State::kTopValue:
        pending_member_.clear();
        return Value(t);
      case State::kTopDone:
        return t.type == Tok::kEnd;
      case State::kObjKeyOrEnd:
        if (t.type == Tok::kRBrace) {
          Close();
          return true;
        }
        [[fallthrough]];
      case State::kObjKey: {
        if (t.type != Tok::kString || t.unterminated) return false;
        std::string raw = TokText(t);
        std::string key = raw.size() >= 2 ? raw.substr(1, raw.size() - 2) : raw;
        Frame& f = stack_.back();
        if (!f.keys.insert(key).second && f.keys.size() < 10000) {
          r->duplicate_keys.emplace_back(key, t.start);
        }
        if (key == "Effect") f.has_effect = true;
        pending_member_ = key;
        state_ = State::kObjColon;
        return true;
      }
      case State::kObjColon:
        if (t.type != Tok::kColon) return false;
        state_ = State::kObjValue;
        return true;
      case State::kObjValue:
        return Value(t);
      case State::kObjCommaOrEnd:
        if (t.type == Tok::kComma) {
          state_ = State::kObjKey;
          return true;
        }
        if (t.type == Tok::kRBrace) {
          Close();
          return true;
        }
        return false;
      case State::kArrValueOrEnd:
        if (t.type == Tok::kRBracket) {
          Close();
          return true;
        }
        [[fallthrough]];
      case State::kArrValue:
        pending_member_.clear();
        return Value(t);
      case State::kArrCommaOrEnd:
        if (t.type == Tok::kComma) {
          state_ = State::kArrValue;
          return true;
        }
        if (t.type == Tok::kRBracket) {
          Close();
          return true;
        }
        return false;
    }
    return false;
  }

  std::string_view text_;
  const std::vector<Token>& tokens_;
  size_t idx_ = 0;
  State state_ = State::kTopValue;
  std::vector<Frame> stack_;
  std::string pending_member_;
  Frame last_closed_;
  size_t last_closed_token_ = 0;
  std::optional<size_t> statement_close_token_;

  // A { right after the ] that closes the policy's Statement list (or after the policy's
  // closing }), with or without a comma between: a statement pasted outside the list.
  bool DescribeStatementAfterList(size_t index, Diagnosis* d) const;
};

bool Scanner::DescribeStatementAfterList(size_t index, Diagnosis* d) const {
  if (!statement_close_token_) return false;
  const Token& t = tokens_[index];
  size_t open = index;   // the { of the stray statement
  size_t cut = t.start;  // where the text to move away starts (with a comma before it)
  if (state_ == State::kTopDone) {
    if (t.type == Tok::kComma && index + 1 < tokens_.size() &&
        tokens_[index + 1].type == Tok::kLBrace) {
      open = index + 1;
    } else if (t.type != Tok::kLBrace) {
      return false;
    }
  } else {
    const bool in_policy = stack_.size() == 1 && stack_.back().object;
    const bool key_place = state_ == State::kObjKey || state_ == State::kObjKeyOrEnd ||
                           state_ == State::kObjCommaOrEnd;
    if (!in_policy || !key_place || t.type != Tok::kLBrace) return false;
    if (state_ == State::kObjKey && index > 0 && tokens_[index - 1].type == Tok::kComma) {
      cut = tokens_[index - 1].start;
    }
  }
  // The stray object's closing }, and whether its keys are a statement's (not a whole policy).
  int depth = 0;
  std::optional<size_t> close;
  bool statement_keys = false;
  for (size_t k = open; k < tokens_.size() && tokens_[k].type != Tok::kEnd; ++k) {
    Tok ty = tokens_[k].type;
    if (ty == Tok::kLBrace || ty == Tok::kLBracket) {
      ++depth;
    } else if ((ty == Tok::kRBrace || ty == Tok::kRBracket) && --depth == 0) {
      if (ty == Tok::kRBrace) close = k;
      break;
    } else if (ty == Tok::kString && depth == 1 && k + 1 < tokens_.size() &&
               tokens_[k + 1].type == Tok::kColon) {
      std::string key = TokText(tokens_[k]);
      if (key == "\"Statement\"") return false;
      statement_keys = statement_keys || key == "\"Effect\"" || key == "\"Action\"" ||
                       key == "\"Principal\"" || key == "\"Sid\"";
    }
  }
  if (!statement_keys) return false;
  const Token& list_end = tokens_[*statement_close_token_];
  const std::string line = std::to_string(LineCol(text_, tokens_[open].start).first);
  const std::string list_line = std::to_string(LineCol(text_, list_end.start).first);
  d->offset = tokens_[open].start;
  d->message = "the statement that starts at " + At(text_, tokens_[open].start) +
               " is outside the Statement list, which ends with ] on line " + list_line;
  d->hint = "move the statement into the Statement list: cut it from line " + line +
            " and paste it before the ] on line " + list_line +
            ", with a comma (,) between it and the statement before it";
  if (close) {
    const bool empty_list =
        *statement_close_token_ > 0 && tokens_[*statement_close_token_ - 1].type == Tok::kLBracket;
    std::string statement(
        text_.substr(tokens_[open].start, tokens_[*close].end - tokens_[open].start));
    d->fix = {{list_end.start, list_end.start, (empty_list ? "" : ",") + statement},
              {cut, tokens_[*close].end, ""}};
    d->fix_description = "moved the statement at line " + line +
                         " into the Statement list (before its ] on line " + list_line +
                         "), with a comma before it";
  }
  return true;
}

Diagnosis Scanner::Describe(size_t index) const {
  const Token& t = tokens_[index];
  const Token* prev = index > 0 ? &tokens_[index - 1] : nullptr;
  Diagnosis d;
  d.offset = t.start;
  std::string tok = TokText(t);
  auto closer_of = [](bool object) { return object ? "}" : "]"; };

  if (t.type == Tok::kComment) {
    d.message =
        "JSON does not allow comments, found " + Quote(tok, 40) + " at " + At(text_, t.start);
    d.hint = "delete the comment " + Quote(tok, 40) +
             " (JSON allows no comments; where the guide writes /* Comma before next object */ "
             "keep only the comma)";
    d.fix = {{t.start, t.end, ""}};
    d.fix_description = "removed the comment " + Quote(tok, 40) + " at " + At(text_, t.start);
    return d;
  }

  if (t.type == Tok::kEnd) {
    bool any = false;
    for (const Token& x : tokens_) any = any || x.type != Tok::kEnd;
    if (!any) {
      d.message = "the key policy is empty";
      d.hint = "paste the whole key policy: it starts with { and ends with }";
      return d;
    }
    if (!stack_.empty()) {
      const Frame& f = stack_.back();
      size_t open = tokens_[f.open_token].start;
      d.message = "the text ends before the policy is complete: the " +
                  std::string(f.object ? "{" : "[") + " opened at " + At(text_, open) +
                  " is never closed";
      d.hint = "add the missing " + std::string(closer_of(f.object)) +
               " (and any others), or copy the whole policy again: it may have been cut off";
      return d;
    }
  }

  if (DescribeStatementAfterList(index, &d)) return d;

  if (state_ == State::kTopDone) {
    size_t end = last_closed_token_ < tokens_.size() ? tokens_[last_closed_token_].start : 0;
    d.message = "unexpected text after the end of the policy, whose closing } is on line " +
                std::to_string(LineCol(text_, end).first);
    if (last_closed_.object && last_closed_.has_effect &&
        (t.type == Tok::kComma || t.type == Tok::kLBrace)) {
      d.hint =
          "this looks like statements without the policy around them: paste them into "
          "the \"Statement\": [ ... ] list of the whole key policy";
      d.fix = {{tokens_.front().start, tokens_.front().start, "["},
               {text_.size(), text_.size(), "]"}};
      d.fix_description = "treated the text as a list of statements";
    } else {
      d.hint = "delete everything after the policy's closing } on line " +
               std::to_string(LineCol(text_, end).first) +
               "; to combine two policies, merge their Statement lists";
      if (text_.find_first_of("{[", t.start) == std::string_view::npos) {
        d.fix = {{t.start, text_.size(), ""}};
        d.fix_description =
            "deleted the text after the policy's closing } on line " +
            std::to_string(LineCol(text_, end).first) + ": " +
            Quote(text_.substr(t.start, text_.find_last_not_of(" \t\r\n") + 1 - t.start), 40);
      }
    }
    return d;
  }

  if (t.type == Tok::kWord || (t.type == Tok::kString && t.unterminated)) {
    if (FindCurlyQuote(tok) != std::string::npos ||
        (t.type == Tok::kWord && FindCurlyQuote(text_.substr(t.start, 64)) != std::string::npos)) {
      size_t q = FindCurlyQuote(text_, t.start);
      d.offset = q == std::string::npos ? t.start : q;
      d.message = "curly quote " + std::string(text_.substr(d.offset, 3)) + " at " +
                  At(text_, d.offset) + " is not a JSON quote";
      d.hint =
          "replace the curly quotes \u201C \u201D (from a web page or word processor) with "
          "straight double quotes \"";
      // Replace every curly double quote outside well-formed strings, and curly single quotes
      // used as delimiters right next to them.
      std::vector<Token> toks = Tokenize(text_);
      for (const Token& x : toks) {
        if (x.type != Tok::kWord && !(x.type == Tok::kString && x.unterminated)) continue;
        for (size_t p = FindCurlyQuote(text_.substr(0, x.end), x.start); p != std::string::npos;
             p = FindCurlyQuote(text_.substr(0, x.end), p + 3)) {
          d.fix.push_back({p, p + 3, "\""});
        }
      }
      d.fix_description = "replaced curly quotes with straight double quotes";
      return d;
    }
    if (t.type == Tok::kString) {
      size_t nl = t.end;
      d.offset = nl;
      d.message = "the string that starts at " + At(text_, t.start) +
                  " is not closed before the end of the line";
      d.hint = "close it with \" on line " + std::to_string(LineCol(text_, t.start).first) +
               " (a string cannot span lines; write a line break as \\n)";
      return d;
    }
    if (tok.front() == '\'') {
      d.message =
          "single quotes are not JSON quotes: " + tok.substr(0, 40) + " at " + At(text_, t.start);
      d.hint = "use straight double quotes \" around keys and strings";
      size_t close = text_.find('\'', t.start + 1);
      size_t nl = text_.find('\n', t.start);
      if (close != std::string_view::npos && (nl == std::string_view::npos || close < nl) &&
          text_.substr(t.start, close - t.start).find('"') == std::string_view::npos) {
        d.fix = {{t.start, t.start + 1, "\""}, {close, close + 1, "\""}};
        d.fix_description = "replaced single quotes with double quotes at " + At(text_, t.start);
      }
      return d;
    }
    std::string low = Lower(tok);
    if (low == "true" || low == "false" || low == "null") {
      d.message = Quote(tok) + " at " + At(text_, t.start) + " is not a JSON literal";
      d.hint = "write " + low + " in lower case";
      d.fix = {{t.start, t.end, low}};
      d.fix_description = "wrote " + low + " in lower case at " + At(text_, t.start);
      return d;
    }
    if (state_ == State::kObjKey || state_ == State::kObjKeyOrEnd) {
      d.message =
          "the key " + Quote(tok, 40) + " at " + At(text_, t.start) + " is not in double quotes";
      d.hint = "write \"" + tok + "\": keys in JSON are strings in double quotes";
      d.fix = {{t.start, t.end, "\"" + tok + "\""}};
      d.fix_description = "put the key " + Quote(tok, 40) + " in double quotes";
      return d;
    }
    if (state_ == State::kObjValue || state_ == State::kArrValue ||
        state_ == State::kArrValueOrEnd || state_ == State::kTopValue) {
      d.message =
          "the value " + Quote(tok, 40) + " at " + At(text_, t.start) + " is not in double quotes";
      d.hint = "write \"" + tok + "\": text values in JSON are strings in double quotes";
      if (state_ != State::kTopValue) {
        d.fix = {{t.start, t.end, "\"" + tok + "\""}};
        d.fix_description = "put the value " + Quote(tok, 40) + " in double quotes";
      }
      return d;
    }
  }

  bool is_close = t.type == Tok::kRBrace || t.type == Tok::kRBracket;
  if (is_close && prev != nullptr && prev->type == Tok::kComma &&
      (state_ == State::kObjKey || state_ == State::kArrValue)) {
    d.message = "trailing comma at " + At(text_, prev->start) + " before the closing " + tok;
    d.hint = "delete the comma (,) at " + At(text_, prev->start) +
             ": JSON allows no comma after the last element of a list or object";
    d.fix = {{prev->start, prev->end, ""}};
    d.fix_description = "removed the trailing comma at " + At(text_, prev->start);
    return d;
  }

  if ((state_ == State::kObjCommaOrEnd || state_ == State::kArrCommaOrEnd) && prev != nullptr &&
      IsValueStart(t.type)) {
    int prev_line = LineCol(text_, prev->start).first;
    d.offset = t.start;
    d.message = "missing comma (,) before " +
                std::string(t.type == Tok::kLBrace ? "the {" : Quote(tok, 40)) + " at " +
                At(text_, t.start);
    if (prev->type == Tok::kRBrace && t.type == Tok::kLBrace) {
      const Frame& f = stack_.back();
      if (!f.object && f.key == "Statement") {
        d.hint = "add a comma (,) after the closing } of the statement that ends on line " +
                 std::to_string(prev_line) + ", before the next statement";
      } else {
        d.hint = "add a comma (,) after the closing } that ends on line " +
                 std::to_string(prev_line) + ", before the next {";
      }
    } else {
      d.hint = "add a comma (,) after " + Quote(TokText(*prev), 40) + " on line " +
               std::to_string(prev_line) + ", before " + Quote(tok, 40);
    }
    d.fix = {{prev->end, prev->end, ","}};
    d.fix_description = "added a comma after line " + std::to_string(prev_line);
    return d;
  }

  if (state_ == State::kObjColon && prev != nullptr) {
    d.message =
        "missing colon (:) after the key " + TokText(*prev) + " at " + At(text_, prev->start);
    d.hint = "write " + TokText(*prev) + ": followed by its value";
    if (IsValueStart(t.type)) {
      d.fix = {{prev->end, prev->end, ":"}};
      d.fix_description = "added a colon after the key " + TokText(*prev);
    }
    return d;
  }

  if (is_close && !stack_.empty() && ((t.type == Tok::kRBrace) != stack_.back().object)) {
    const Frame& f = stack_.back();
    d.message = tok + " at " + At(text_, t.start) + " does not match the " +
                (f.object ? "{" : "[") + " opened at " + At(text_, tokens_[f.open_token].start);
    d.hint = "close it with " + std::string(closer_of(f.object)) +
             " first, or look for a missing or extra bracket";
    return d;
  }

  if (t.type == Tok::kComma && prev != nullptr &&
      (prev->type == Tok::kComma || prev->type == Tok::kLBracket || prev->type == Tok::kLBrace ||
       prev->type == Tok::kColon)) {
    d.message = "unexpected comma at " + At(text_, t.start);
    d.hint = "delete the extra comma (,)";
    d.fix = {{t.start, t.end, ""}};
    d.fix_description = "removed the extra comma at " + At(text_, t.start);
    return d;
  }

  if (state_ == State::kObjValue && is_close) {
    d.message = "a value is missing after " + (prev ? TokText(*prev) : std::string()) + " at " +
                At(text_, t.start);
    d.hint = "add the value after the colon, e.g. \"Allow\"";
    return d;
  }

  d.message = "unexpected " + Quote(tok, 40) + " at " + At(text_, t.start);
  switch (state_) {
    case State::kObjKey:
    case State::kObjKeyOrEnd:
      d.hint = "a key in double quotes was expected here, e.g. \"Effect\"";
      break;
    case State::kObjValue:
    case State::kArrValue:
    case State::kArrValueOrEnd:
    case State::kTopValue:
      d.hint = "a value was expected here: a \"string\", a number, true, false, null, { or [";
      break;
    default:
      d.hint = "check the punctuation around it: , between elements, : between key and value";
  }
  return d;
}

// Maximum nesting of { and [ outside strings; bounds nlohmann's recursion.
int MaxDepth(std::string_view s) {
  int depth = 0, max = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"' || c == '\n') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max = std::max(max, ++depth);
    } else if (c == '}' || c == ']') {
      depth = std::max(0, depth - 1);
    }
  }
  return max;
}

struct ParseOutcome {
  bool ok = false;
  ojson value;
  Diagnosis diag;
  std::vector<std::pair<std::string, size_t>> duplicate_keys;
};

// Strips nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: ".
std::string NlohmannMessage(const std::string& what) {
  size_t colon = what.find(": ");
  std::string m = colon == std::string::npos ? what : what.substr(colon + 2);
  size_t last = m.find("; last read:");
  if (last != std::string::npos) m = m.substr(0, last);
  return m;
}

Diagnosis LexicalDiagnosis(std::string_view text, size_t offset, const std::string& what) {
  Diagnosis d;
  d.offset = offset;
  std::string m = NlohmannMessage(what);
  d.message = m + " at " + At(text, offset);
  if (what.find("control character") != std::string::npos) {
    char c = offset < text.size() ? text[offset] : 0;
    if (c == '\t') {
      d.message = "a tab character inside a string at " + At(text, offset);
      d.hint = "write it as \\t or replace it with spaces";
      d.fix = {{offset, offset + 1, " "}};
      d.fix_description = "replaced a tab inside a string with a space";
    } else {
      d.message = "a control character inside a string at " + At(text, offset);
      d.hint =
          "a string cannot contain line breaks or control characters; close the string "
          "with \" on the same line, or write \\n";
    }
  } else if (what.find("after backslash") != std::string::npos ||
             what.find("\\u") != std::string::npos) {
    d.message = "invalid escape sequence in a string at " + At(text, offset);
    d.hint =
        "after a backslash only \" \\ / b f n r t or u followed by 4 hex digits may follow; "
        "write \\\\ for a backslash";
  } else if (what.find("UTF-8") != std::string::npos) {
    d.message = "the text is not valid UTF-8 at " + At(text, offset);
    d.hint = "save the policy as UTF-8 (it may be in another encoding, e.g. UTF-16 or Latin-1)";
  } else {
    d.hint = "check the JSON syntax around that position";
  }
  return d;
}

// The first number too large for a double (1e999, -1e400): JSON allows it, nlohmann and AWS do
// not. The repair quotes it (condition values are compared as text anyway).
std::optional<Diagnosis> NumberOverflowDiagnosis(std::string_view text,
                                                 const std::vector<Token>& tokens) {
  for (const Token& t : tokens) {
    if (t.type != Tok::kWord) continue;
    std::string word(text.substr(t.start, t.end - t.start));
    if (!IsJsonNumber(word) || !std::isinf(std::strtod(word.c_str(), nullptr))) continue;
    Diagnosis d;
    d.offset = t.start;
    d.message = "the number " + Quote(word, 40) + " at " + At(text, t.start) +
                " is too large: numbers in a key policy must fit a double (at most about "
                "1.8e308)";
    d.hint = "write a smaller number, or the value in double quotes (\"" + word.substr(0, 40) +
             "\"): condition values are compared as text";
    d.fix = {{t.start, t.end, "\"" + word + "\""}};
    d.fix_description =
        "put the number " + Quote(word, 40) + " at " + At(text, t.start) + " in double quotes";
    return d;
  }
  return std::nullopt;
}

ParseOutcome ParseWithDiagnosis(std::string_view text) {
  ParseOutcome out;
  std::vector<Token> tokens = Tokenize(text);
  Scanner scanner(text, tokens);
  ScanResult scan = scanner.Run();
  out.duplicate_keys = scan.duplicate_keys;
  size_t stop = text.size();
  std::string what;
  try {
    out.value = ojson::parse(text.begin(), text.end());
    out.ok = true;
    return out;
  } catch (const nlohmann::json::parse_error& e) {
    stop = e.byte == 0 ? 0 : std::min<size_t>(e.byte - 1, text.size());
    what = e.what();
  } catch (const nlohmann::json::out_of_range& e) {
    // A number beyond double range (1e999): nlohmann names no position, the tokens do.
    if (std::optional<Diagnosis> d = NumberOverflowDiagnosis(text, tokens)) {
      if (!scan.has_error || tokens[scan.error_token].start > d->offset) {
        out.diag = std::move(*d);
        return out;
      }
      stop = d->offset;
    }
    what = e.what();
  } catch (const std::exception& e) {  // anything else nlohmann may throw
    what = e.what();
  }
  if (scan.has_error && tokens[scan.error_token].start <= stop) {
    out.diag = scanner.Describe(scan.error_token);
  } else {
    out.diag = LexicalDiagnosis(text, stop, what);
  }
  return out;
}

void ApplyEdits(std::string* text, std::vector<Edit> edits) {
  std::sort(edits.begin(), edits.end(),
            [](const Edit& a, const Edit& b) { return a.start > b.start; });
  size_t limit = text->size() + 1;
  for (const Edit& e : edits) {
    if (e.end > limit || e.start > e.end) continue;  // overlapping: skip
    text->replace(e.start, e.end - e.start, e.replacement);
    limit = e.start;
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

enum class Tri { kFalse, kTrue, kUnknown };

struct Caller {
  PlatformPrincipal principal;
  std::string workspace;
  std::string environment;  // may be empty: unknown
  std::string key_arn;      // may be empty: unknown
};

struct Request {
  std::string action;
  bool has_context = false;
  std::string workspace;  // the ekm:workspace value sent
};

struct CondResult {
  Tri result = Tri::kTrue;
  std::vector<std::string> unknown;                 // named conditions ekm cannot evaluate
  std::vector<std::string> failed;                  // why a condition is false
  std::vector<std::string> other_workspace_values;  // ekm:workspace pinned to other values
};

// A condition key's value(s) in the request ekm makes.
struct KeyValues {
  bool known_key = true;
  bool multi = false;
  bool value_unknown = false;
  std::string why_unknown;
  std::vector<std::string> values;  // empty: the key is absent from the request
};

KeyValues ResolveKey(const std::string& key, const Caller& c, const Request& r) {
  KeyValues kv;
  std::string low = Lower(key);
  const std::string ec_prefix = "kms:encryptioncontext:";
  if (low == "kms:encryptioncontextkeys") {
    kv.multi = true;
    if (r.has_context) kv.values = {"ekm:workspace", "ekm:environment", "ekm:ek-version"};
    return kv;
  }
  if (low.rfind(ec_prefix, 0) == 0) {
    if (!r.has_context) return kv;  // no encryption context on this call
    std::string ec_key = low.substr(ec_prefix.size());
    if (ec_key == "ekm:workspace") {
      kv.values = {r.workspace};
    } else if (ec_key == "ekm:environment") {
      if (c.environment.empty()) {
        kv.value_unknown = true;
        kv.why_unknown = "depends on the environment, which was not given";
      } else {
        kv.values = {c.environment};
      }
    } else if (ec_key == "ekm:ek-version") {
      kv.value_unknown = true;
      kv.why_unknown = "depends on the environment key version, which changes on every rotation";
    }
    return kv;
  }
  if (low == "aws:principalarn") {
    kv.values = {c.principal.arn};
    return kv;
  }
  if (low == "kms:calleraccount" || low == "aws:principalaccount") {
    kv.values = {c.principal.account};
    return kv;
  }
  kv.known_key = false;
  return kv;
}

enum class BaseOp {
  kStrEq,
  kStrNe,
  kStrEqI,
  kStrNeI,
  kStrLike,
  kStrNotLike,
  kArnLike,
  kArnNotLike,
  kNull,
  kUnknown
};

BaseOp ParseBaseOp(std::string_view op) {
  static const std::map<std::string, BaseOp> kOps = {
      {"stringequals", BaseOp::kStrEq},
      {"stringnotequals", BaseOp::kStrNe},
      {"stringequalsignorecase", BaseOp::kStrEqI},
      {"stringnotequalsignorecase", BaseOp::kStrNeI},
      {"stringlike", BaseOp::kStrLike},
      {"stringnotlike", BaseOp::kStrNotLike},
      {"arnequals", BaseOp::kArnLike},
      {"arnlike", BaseOp::kArnLike},
      {"arnnotequals", BaseOp::kArnNotLike},
      {"arnnotlike", BaseOp::kArnNotLike},
      {"null", BaseOp::kNull},
  };
  auto it = kOps.find(Lower(op));
  return it == kOps.end() ? BaseOp::kUnknown : it->second;
}

bool IsNegated(BaseOp op) {
  return op == BaseOp::kStrNe || op == BaseOp::kStrNeI || op == BaseOp::kStrNotLike ||
         op == BaseOp::kArnNotLike;
}

// Whether request value `v` matches policy value `p` under the positive form of `op`.
bool MatchOne(BaseOp op, const std::string& v, const std::string& p) {
  switch (op) {
    case BaseOp::kStrEq:
    case BaseOp::kStrNe:
      return v == p;
    case BaseOp::kStrEqI:
    case BaseOp::kStrNeI:
      return IEquals(v, p);
    case BaseOp::kStrLike:
    case BaseOp::kStrNotLike:
      return Glob(p, v);
    case BaseOp::kArnLike:
    case BaseOp::kArnNotLike:
      return ArnGlob(p, v);
    default:
      return false;
  }
}

void CombineInto(Tri* acc, Tri x) {
  if (*acc == Tri::kFalse || x == Tri::kFalse) {
    *acc = Tri::kFalse;
  } else if (x == Tri::kUnknown) {
    *acc = Tri::kUnknown;
  }
}

CondResult EvaluateCondition(const ojson& condition, const Caller& c, const Request& r,
                             std::vector<std::string>* malformed) {
  CondResult out;
  if (!condition.is_object()) {
    malformed->push_back("Condition must be an object like {\"StringEquals\": {...}}");
    out.result = Tri::kUnknown;
    out.unknown.push_back("a malformed Condition");
    return out;
  }
  for (const auto& [op_name, block] : condition.items()) {
    std::string op = op_name;
    std::string set_op;
    if (StartsWithI(op, "ForAnyValue:")) {
      set_op = "any";
      op = op.substr(12);
    } else if (StartsWithI(op, "ForAllValues:")) {
      set_op = "all";
      op = op.substr(13);
    }
    bool if_exists = false;
    if (op.size() > 8 && IEquals(std::string_view(op).substr(op.size() - 8), "IfExists")) {
      if_exists = true;
      op = op.substr(0, op.size() - 8);
    }
    BaseOp base = ParseBaseOp(op);
    if (!block.is_object()) {
      malformed->push_back("condition operator '" + op_name +
                           "' must map to an object of "
                           "condition keys");
      CombineInto(&out.result, Tri::kUnknown);
      out.unknown.push_back("a malformed condition '" + op_name + "'");
      continue;
    }
    for (const auto& [key, pv] : block.items()) {
      std::string label = "condition '" + key + "' (" + op_name + ")";
      KeyValues kv = ResolveKey(key, c, r);
      if (base == BaseOp::kUnknown || !kv.known_key) {
        out.unknown.push_back(label + " cannot be evaluated by ekm; the grant is uncertain");
        CombineInto(&out.result, Tri::kUnknown);
        continue;
      }
      if (kv.value_unknown) {
        out.unknown.push_back(label + " " + kv.why_unknown + "; the grant is uncertain");
        CombineInto(&out.result, Tri::kUnknown);
        continue;
      }
      bool bad = false;
      std::vector<std::string> pol = ConditionValues(pv, &bad);
      if (bad) {
        malformed->push_back(label + " has a value that is not a string, number or boolean");
        out.unknown.push_back(label + " has a malformed value");
        CombineInto(&out.result, Tri::kUnknown);
        continue;
      }
      const std::vector<std::string>& req = kv.values;
      bool result = false;
      if (base == BaseOp::kNull) {
        bool absent = req.empty();
        bool any = false;
        for (const auto& p : pol) any = any || (Lower(p) == "true" ? absent : !absent);
        result = any;
      } else if (set_op.empty() && !kv.multi) {
        if (req.empty()) {
          result = if_exists || IsNegated(base);
        } else {
          bool m = std::any_of(pol.begin(), pol.end(),
                               [&](const std::string& p) { return MatchOne(base, req[0], p); });
          result = IsNegated(base) ? !m : m;
        }
      } else if (set_op == "all") {
        result = std::all_of(req.begin(), req.end(), [&](const std::string& v) {
          bool m = std::any_of(pol.begin(), pol.end(),
                               [&](const std::string& p) { return MatchOne(base, v, p); });
          return IsNegated(base) ? !m : m;
        });
      } else {  // ForAnyValue, or a multi-valued key with a plain operator
        result = std::any_of(req.begin(), req.end(), [&](const std::string& v) {
          bool m = std::any_of(pol.begin(), pol.end(),
                               [&](const std::string& p) { return MatchOne(base, v, p); });
          return IsNegated(base) ? !m : m;
        });
        if (req.empty() && if_exists) result = true;
      }
      if (!result) {
        std::string vals;
        for (const auto& p : pol) vals += (vals.empty() ? "" : ", ") + Quote(p);
        std::string sent;
        if (req.empty()) {
          sent = r.has_context || Lower(key).rfind("kms:encryptioncontext", 0) != 0
                     ? "ekm's request has no such key"
                     : r.action + " has no encryption context";
        } else {
          sent = "ekm's request has ";
          for (size_t i = 0; i < req.size(); ++i) sent += (i ? ", " : "") + Quote(req[i]);
        }
        out.failed.push_back(label + " with " + vals + " is false: " + sent);
        if (Lower(key) == "kms:encryptioncontext:ekm:workspace" && !IsNegated(base) &&
            base != BaseOp::kNull && r.has_context) {
          for (const auto& p : pol) out.other_workspace_values.push_back(p);
        }
      }
      CombineInto(&out.result, result ? Tri::kTrue : Tri::kFalse);
    }
  }
  return out;
}

enum class PMatch { kNo, kUnknown, kDelegated, kYes };

struct PrincipalEval {
  PMatch match = PMatch::kNo;
  std::string how;  // for reasons
};

bool IsValidPrincipalText(const std::string& v) {
  if (v == "*" || IsTwelveDigits(v)) return true;
  if (v.rfind("arn:", 0) != 0) return false;
  std::string account = AccountOfArn(v);
  if (!IsTwelveDigits(account)) return false;
  for (char ch : v) {
    if (static_cast<unsigned char>(ch) <= ' ') return false;
  }
  return true;
}

PrincipalEval MatchAwsPrincipal(const std::string& v, const Caller& c) {
  const PlatformPrincipal& p = c.principal;
  PrincipalEval e;
  if (v == "*") return {PMatch::kYes, "Principal \"*\" (every AWS principal)"};
  if (v == p.arn) return {PMatch::kYes, "the platform principal " + p.arn};
  if (!p.session_arn.empty() && v == p.session_arn) {
    return {PMatch::kYes, "the platform's session " + v};
  }
  if ((IsTwelveDigits(v) && v == p.account) || v == p.AccountRootArn()) {
    return {PMatch::kDelegated, "the account root " + p.AccountRootArn()};
  }
  std::string sts_prefix = "arn:" + p.partition + ":sts::" + p.account + ":assumed-role/";
  if (p.is_role && v.rfind(sts_prefix, 0) == 0) {
    std::string rest = v.substr(sts_prefix.size());
    std::string role = rest.substr(0, rest.find('/'));
    std::string role_name = p.arn.substr(p.arn.rfind('/') + 1);
    if (role == role_name) {
      return {PMatch::kUnknown,
              "one session of the platform role (" + v + "); ekm's sessions may have other names"};
    }
  }
  if (v != p.arn && IEquals(v, p.arn)) {
    return {PMatch::kNo, Quote(v) + ", which differs from the platform principal " + p.arn +
                             " only in letter case"};
  }
  return e;
}

struct StatementInfo {
  int index = 0;  // 1-based
  std::string label;
  const ojson* json = nullptr;
  bool usable = true;  // false: malformed beyond evaluation
  bool deny = false;
};

struct StmtEval {
  bool action_matches = false;
  Tri applies = Tri::kFalse;
  bool delegated = false;
  std::string principal_how;
  std::vector<std::string> unknown;
  std::string not_applying;  // why it does not apply (first reason)
  CondResult cond;
};

Tri MatchAction(const StatementInfo& s, const std::string& action) {
  const ojson& j = *s.json;
  bool bad = false;
  if (j.contains("Action")) {
    for (const auto& a : StringList(j["Action"], &bad)) {
      if (GlobI(a, action)) return Tri::kTrue;
    }
    return Tri::kFalse;
  }
  if (j.contains("NotAction")) {
    for (const auto& a : StringList(j["NotAction"], &bad)) {
      if (GlobI(a, action)) return Tri::kFalse;
    }
    return Tri::kTrue;
  }
  return Tri::kFalse;
}

PrincipalEval EvaluatePrincipal(const StatementInfo& s, const Caller& c) {
  const ojson& j = *s.json;
  bool bad = false;
  if (j.contains("Principal")) {
    const ojson& pr = j["Principal"];
    PrincipalEval best;
    std::vector<std::string> values;
    if (pr.is_string()) {
      values = {pr.get<std::string>()};
    } else if (pr.is_object() && pr.contains("AWS")) {
      values = StringList(pr["AWS"], &bad);
    }
    for (const auto& v : values) {
      PrincipalEval e = MatchAwsPrincipal(v, c);
      if (static_cast<int>(e.match) > static_cast<int>(best.match) ||
          (best.how.empty() && !e.how.empty())) {
        if (static_cast<int>(e.match) >= static_cast<int>(best.match)) best = e;
      }
    }
    if (best.match == PMatch::kNo) {
      std::string names;
      for (const auto& v : values) names += (names.empty() ? "" : ", ") + Quote(v, 80);
      std::string detail = best.how.empty() ? "" : " (" + best.how + ")";
      best.how = (names.empty() ? "no AWS principal" : "only " + names) + detail + ", not " +
                 c.principal.arn;
    }
    return best;
  }
  if (j.contains("NotPrincipal")) {
    const ojson& np = j["NotPrincipal"];
    std::vector<std::string> values;
    if (np.is_string()) {
      values = {np.get<std::string>()};
    } else if (np.is_object() && np.contains("AWS")) {
      values = StringList(np["AWS"], &bad);
    }
    bool self = false, account = false, session = false;
    for (const auto& v : values) {
      if (v == "*") return {PMatch::kNo, "NotPrincipal \"*\" excludes everyone"};
      PMatch m = MatchAwsPrincipal(v, c).match;
      if (v == c.principal.arn) self = true;
      if (!c.principal.session_arn.empty() && v == c.principal.session_arn) session = true;
      if (m == PMatch::kDelegated) account = true;
    }
    bool excluded = self && account && (!c.principal.is_role || session);
    if (excluded) return {PMatch::kNo, "NotPrincipal excludes the platform principal"};
    if (self || account || session) {
      return {
          PMatch::kUnknown,
          "NotPrincipal lists the platform principal only partly: AWS excludes a caller only "
          "if its " +
              std::string(c.principal.is_role ? "assumed-role session ARN, role ARN" : "user ARN") +
              " and account are all listed"};
    }
    return {PMatch::kYes, "NotPrincipal does not list the platform principal"};
  }
  return {PMatch::kNo, "no Principal"};
}

Tri MatchResource(const StatementInfo& s, const Caller& c, std::string* why) {
  const ojson& j = *s.json;
  bool bad = false;
  bool negated = !j.contains("Resource") && j.contains("NotResource");
  if (!j.contains("Resource") && !negated) return Tri::kTrue;  // reported as a finding
  std::vector<std::string> list = StringList(negated ? j["NotResource"] : j["Resource"], &bad);
  bool any_match = false, any_unknown = false;
  for (const auto& r : list) {
    if (r == "*") {
      any_match = true;
    } else if (!c.key_arn.empty()) {
      any_match = any_match || Glob(r, c.key_arn);
    } else {
      any_unknown = true;
    }
  }
  if (any_match) {
    if (negated) *why = "NotResource includes the key";
    return negated ? Tri::kFalse : Tri::kTrue;
  }
  if (any_unknown) {
    *why = std::string(negated ? "NotResource" : "Resource") +
           " names specific resources and the key ARN was not given (pass it to check; in a "
           "key policy, \"*\" means this key)";
    return Tri::kUnknown;
  }
  if (negated) return Tri::kTrue;
  *why = "Resource does not match the key " + c.key_arn;
  return Tri::kFalse;
}

StmtEval EvaluateStatement(const StatementInfo& s, const Caller& c, const Request& r,
                           std::vector<std::string>* malformed) {
  StmtEval e;
  if (!s.usable) return e;
  e.action_matches = MatchAction(s, r.action) == Tri::kTrue;
  if (!e.action_matches) return e;
  Tri applies = Tri::kTrue;
  PrincipalEval p = EvaluatePrincipal(s, c);
  e.principal_how = p.how;
  if (p.match == PMatch::kNo) {
    e.applies = Tri::kFalse;
    e.not_applying = "it names " + p.how;
    return e;
  }
  if (p.match == PMatch::kUnknown) {
    applies = Tri::kUnknown;
    e.unknown.push_back("its principal is " + p.how);
  }
  e.delegated = p.match == PMatch::kDelegated;
  std::string rwhy;
  Tri res = MatchResource(s, c, &rwhy);
  if (res == Tri::kFalse) {
    e.applies = Tri::kFalse;
    e.not_applying = rwhy;
    return e;
  }
  if (res == Tri::kUnknown) e.unknown.push_back(rwhy);
  CombineInto(&applies, res);
  if (s.json->contains("Condition")) {
    e.cond = EvaluateCondition((*s.json)["Condition"], c, r, malformed);
    if (e.cond.result == Tri::kFalse) {
      e.applies = Tri::kFalse;
      e.not_applying = e.cond.failed.empty() ? "its condition is false" : e.cond.failed[0];
      return e;
    }
    for (const auto& u : e.cond.unknown) e.unknown.push_back(u);
    CombineInto(&applies, e.cond.result);
  }
  e.applies = applies;
  return e;
}

std::string Join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

ActionVerdict EvaluateAction(const std::string& action, bool required,
                             const std::vector<StatementInfo>& statements, const Caller& c) {
  ActionVerdict v;
  v.action = action;
  v.required = required;
  Request r;
  r.action = action;
  r.has_context = action == "kms:Encrypt" || action == "kms:Decrypt";
  r.workspace = c.workspace;
  std::vector<std::string> ignored;
  std::vector<std::string> deny, maybe_deny, allow, delegated, maybe_allow, misses;
  for (const StatementInfo& s : statements) {
    StmtEval e = EvaluateStatement(s, c, r, &ignored);
    if (!e.action_matches) continue;
    if (s.deny) {
      if (e.applies == Tri::kTrue) {
        deny.push_back(s.label + " denies it (" + e.principal_how +
                       "); an explicit Deny overrides every Allow");
      } else if (e.applies == Tri::kUnknown) {
        maybe_deny.push_back(s.label + " may deny it: " + Join(e.unknown, "; "));
      }
      continue;
    }
    if (e.applies == Tri::kTrue && e.delegated) {
      delegated.push_back(s.label + " allows it for " + e.principal_how +
                          ", which only delegates to IAM: allowed only if the principal's IAM "
                          "policy also allows it");
    } else if (e.applies == Tri::kTrue) {
      allow.push_back(s.label + " allows it (" + e.principal_how + ")");
    } else if (e.applies == Tri::kUnknown) {
      maybe_allow.push_back(s.label + " would allow it, but " + Join(e.unknown, "; "));
    } else {
      misses.push_back(s.label + " does not apply: " + e.not_applying);
    }
  }
  auto add = [&](const std::vector<std::string>& x) {
    v.reasons.insert(v.reasons.end(), x.begin(), x.end());
  };
  if (!deny.empty()) {
    v.verdict = Verdict::kDenied;
    add(deny);
  } else if (!allow.empty() || !delegated.empty()) {
    v.verdict = maybe_deny.empty()
                    ? (!allow.empty() ? Verdict::kGranted : Verdict::kGrantedIfIamAllows)
                    : Verdict::kUncertain;
    add(maybe_deny);
    add(allow);
    add(delegated);
  } else if (!maybe_allow.empty()) {
    v.verdict = Verdict::kUncertain;
    add(maybe_deny);
    add(maybe_allow);
    add(misses);
  } else {
    v.verdict = Verdict::kDenied;
    add(maybe_deny);
    add(misses);
    v.reasons.push_back("no statement allows " + action + " for " + c.principal.arn +
                        " (implicitly denied)");
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Structure checks

const std::set<std::string> kStatementKeys = {"Sid",          "Effect",      "Principal",
                                              "NotPrincipal", "Action",      "NotAction",
                                              "Resource",     "NotResource", "Condition"};

void AddFinding(std::vector<PolicyFinding>* f, Severity sev, std::string code, std::string message,
                std::string hint, int statement = -1) {
  f->push_back({sev, std::move(code), std::move(message), std::move(hint), statement});
}

// Collects the statement objects of `policy` and reports structural problems.
std::vector<StatementInfo> CollectStatements(const ojson& policy, const ojson** statements_holder,
                                             std::vector<PolicyFinding>* findings) {
  std::vector<StatementInfo> out;
  std::vector<const ojson*> items;
  *statements_holder = nullptr;
  if (policy.is_array()) {
    AddFinding(findings, Severity::kError, "not-a-policy",
               "the text is a list, not a key policy object",
               "a key policy is an object {\"Version\": \"2012-10-17\", \"Statement\": [ ... ]}; "
               "put these statements into its Statement list");
    for (const auto& x : policy) items.push_back(&x);
  } else if (!policy.is_object()) {
    AddFinding(findings, Severity::kError, "not-a-policy",
               "the text is a JSON " + std::string(policy.type_name()) + ", not a key policy",
               "paste the whole key policy: {\"Version\": \"2012-10-17\", \"Statement\": [...]}");
    return out;
  } else if (!policy.contains("Statement") && policy.contains("Effect")) {
    AddFinding(findings, Severity::kError, "not-a-policy",
               "the text is a single statement, not a whole key policy",
               "put it inside {\"Version\": \"2012-10-17\", \"Statement\": [ ... ]}");
    items.push_back(&policy);
  } else {
    for (const auto& [k, v] : policy.items()) {
      if (k != "Version" && k != "Id" && k != "Statement") {
        AddFinding(findings, Severity::kError, "unknown-element",
                   "unknown policy element " + Quote(k),
                   "a key policy has only Version, Id and Statement; check the spelling");
      }
      (void)v;
    }
    if (!policy.contains("Version")) {
      AddFinding(findings, Severity::kWarning, "missing-version", "the policy has no Version",
                 "add \"Version\": \"2012-10-17\" (without it AWS uses the old 2008-10-17 "
                 "language)");
    } else if (!policy["Version"].is_string() || policy["Version"] != "2012-10-17") {
      bool old = policy["Version"] == "2008-10-17";
      AddFinding(findings, old ? Severity::kWarning : Severity::kError,
                 old ? "old-version" : "bad-version",
                 "Version is " + policy["Version"].dump() + ", expected \"2012-10-17\"",
                 "set \"Version\": \"2012-10-17\"");
    }
    if (!policy.contains("Statement")) {
      AddFinding(findings, Severity::kError, "missing-statement", "the policy has no Statement",
                 "add \"Statement\": [ ... ] with the statements, including ekm's");
      return out;
    }
    const ojson& st = policy["Statement"];
    *statements_holder = &st;
    if (st.is_array()) {
      for (const auto& x : st) items.push_back(&x);
    } else if (st.is_object()) {
      items.push_back(&st);
    } else {
      AddFinding(findings, Severity::kError, "wrong-statement-type",
                 "wrong Statement type: Statement is a " + std::string(st.type_name()) +
                     ", it must be a list [ ... ] of statement objects",
                 "write \"Statement\": [ {...}, {...} ] with one object per statement");
      return out;
    }
  }
  std::map<std::string, int> sids;
  for (size_t i = 0; i < items.size(); ++i) {
    const ojson& s = *items[i];
    StatementInfo info;
    info.index = static_cast<int>(i + 1);
    info.json = &s;
    int n = info.index;
    std::string sid = s.is_object() && s.contains("Sid") && s["Sid"].is_string()
                          ? s["Sid"].get<std::string>()
                          : "";
    info.label = sid.empty() ? "statement #" + std::to_string(n)
                             : "statement \"" + sid + "\" (#" + std::to_string(n) + ")";
    if (!s.is_object()) {
      AddFinding(findings, Severity::kError, "statement-not-object",
                 "statement #" + std::to_string(n) + " is a " + s.type_name() + ", not an object",
                 "each statement is an object { \"Effect\": ..., \"Principal\": ..., ... }", n);
      info.usable = false;
      out.push_back(info);
      continue;
    }
    if (!sid.empty()) {
      auto [it, inserted] = sids.emplace(sid, n);
      if (!inserted) {
        AddFinding(findings, Severity::kError, "duplicate-sid",
                   "statements #" + std::to_string(it->second) + " and #" + std::to_string(n) +
                       " have the same Sid \"" + sid + "\"",
                   "give every statement its own Sid, or delete the duplicate", n);
      }
    }
    for (const auto& [k, v] : s.items()) {
      if (!kStatementKeys.count(k)) {
        AddFinding(findings, Severity::kError, "unknown-element",
                   info.label + " has an unknown element " + Quote(k),
                   "statements have only Sid, Effect, Principal, Action, Resource, Condition "
                   "(and NotPrincipal, NotAction, NotResource); check the spelling",
                   n);
      }
      (void)v;
    }
    if (!s.contains("Effect")) {
      AddFinding(findings, Severity::kError, "missing-effect", info.label + " has no Effect",
                 "add \"Effect\": \"Allow\" or \"Effect\": \"Deny\"", n);
      info.usable = false;
    } else if (s["Effect"] != "Allow" && s["Effect"] != "Deny") {
      AddFinding(
          findings, Severity::kError, "bad-effect",
          info.label + " has Effect " + s["Effect"].dump() + "; it must be \"Allow\" or \"Deny\"",
          "write \"Allow\" or \"Deny\" exactly (capital first letter)", n);
      info.usable = false;
    } else {
      info.deny = s["Effect"] == "Deny";
    }
    bool has_action = s.contains("Action"), has_not_action = s.contains("NotAction");
    if (has_action == has_not_action) {
      AddFinding(findings, Severity::kError, has_action ? "action-and-notaction" : "missing-action",
                 info.label + (has_action ? " has both Action and NotAction" : " has no Action"),
                 "give exactly one of Action or NotAction, e.g. \"Action\": [\"kms:Encrypt\", "
                 "\"kms:Decrypt\"]",
                 n);
      info.usable = false;
    }
    bool has_p = s.contains("Principal"), has_np = s.contains("NotPrincipal");
    if (has_p == has_np) {
      AddFinding(
          findings, Severity::kError, has_p ? "principal-and-notprincipal" : "missing-principal",
          info.label + (has_p ? " has both Principal and NotPrincipal" : " has no Principal"),
          "statements in a key policy need a Principal, e.g. {\"AWS\": "
          "\"arn:aws:iam::111122223333:role/NAME\"}",
          n);
      info.usable = false;
    }
    if (!s.contains("Resource") && !s.contains("NotResource")) {
      AddFinding(findings, Severity::kError, "missing-resource", info.label + " has no Resource",
                 "add \"Resource\": \"*\" (in a key policy \"*\" means this key)", n);
    }
    bool bad = false;
    for (const char* k : {"Action", "NotAction", "Resource", "NotResource"}) {
      if (s.contains(k)) {
        bad = false;
        (void)StringList(s[k], &bad);
        if (bad) {
          AddFinding(findings, Severity::kError, "bad-element-type",
                     info.label + " has a " + k + " that is not a string or a list of strings",
                     std::string("write \"") + k + "\": \"...\" or [\"...\", \"...\"]", n);
          info.usable = false;
        }
      }
    }
    for (const char* k : {"Principal", "NotPrincipal"}) {
      if (!s.contains(k)) continue;
      const ojson& p = s[k];
      std::vector<std::string> aws;
      if (p.is_string()) {
        if (p != "*") {
          AddFinding(findings, Severity::kError, "bad-principal",
                     info.label + ": " + k + " is the string " + p.dump() +
                         "; only \"*\" may be written without {\"AWS\": ...}",
                     std::string("write \"") + k + "\": {\"AWS\": " + p.dump() + "}", n);
        }
        aws = {p.get<std::string>()};
      } else if (p.is_object()) {
        if (p.contains("AWS")) {
          bad = false;
          aws = StringList(p["AWS"], &bad);
          if (bad) {
            AddFinding(findings, Severity::kError, "bad-principal",
                       info.label + ": " + k + " AWS is not a string or a list of strings",
                       "write {\"AWS\": \"arn:...\"} or {\"AWS\": [\"arn:...\", ...]}", n);
          }
        }
      } else {
        AddFinding(findings, Severity::kError, "bad-principal",
                   info.label + ": " + k + " must be \"*\" or an object like {\"AWS\": ...}",
                   "write {\"AWS\": \"arn:aws:iam::111122223333:role/NAME\"}", n);
      }
      for (const auto& a : aws) {
        if (!IsValidPrincipalText(a)) {
          bool placeholder =
              a.find("TODO") != std::string::npos || a.find("ACCOUNT") != std::string::npos;
          AddFinding(findings, Severity::kError, "invalid-principal",
                     info.label + " names " + Quote(a, 80) +
                         ", which is not a valid AWS principal; AWS rejects the policy",
                     placeholder ? "replace the placeholder with the 12-digit AWS account id "
                                   "(no spaces)"
                                 : "use an ARN like arn:aws:iam::111122223333:role/NAME, a "
                                   "12-digit account id or \"*\"",
                     n);
        } else if (a != "*" && a.find('*') != std::string::npos) {
          AddFinding(
              findings, Severity::kError, "wildcard-principal",
              info.label + " names " + Quote(a, 80) + ": AWS allows no wildcards in principal ARNs",
              "name the role exactly, or use Principal \"*\" with a condition on "
              "aws:PrincipalArn",
              n);
        }
      }
    }
    out.push_back(info);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Corrected policy

// Merges ekm's statements into `policy`: a statement with the same Sid is replaced in place,
// otherwise appended. Never drops the customer's statements.
ojson MergeStatements(const ojson& policy, const ojson& ekm_statements,
                      std::vector<std::string>* corrections) {
  std::set<std::string> ekm_sids;
  for (const auto& s : ekm_statements) ekm_sids.insert(s["Sid"].get<std::string>());
  ojson customer = ojson::array();
  ojson base;
  if (policy.is_array()) {
    customer = policy;
    corrections->push_back("put the statements into a whole key policy");
  } else if (policy.is_object() && !policy.contains("Statement") && policy.contains("Effect")) {
    customer.push_back(policy);
    corrections->push_back("put the single statement into a whole key policy");
  } else if (policy.is_object()) {
    base = policy;
    if (policy.contains("Statement")) {
      const ojson& st = policy["Statement"];
      if (st.is_array()) {
        customer = st;
      } else if (st.is_object()) {
        customer.push_back(st);
        corrections->push_back("turned the single Statement object into a list");
      } else {
        customer.push_back(st);  // dropped below, with a note
      }
    }
  }
  ojson merged = ojson::array();
  std::set<std::string> placed;
  for (const auto& s : customer) {
    if (!s.is_object()) {
      // Not a statement: AWS would reject the policy with it, so it cannot be kept.
      corrections->push_back("dropped " + Quote(s.dump(), 60) + " from Statement: it is a " +
                             s.type_name() + ", not a statement object");
      continue;
    }
    std::string sid = s.is_object() && s.contains("Sid") && s["Sid"].is_string()
                          ? s["Sid"].get<std::string>()
                          : "";
    if (!sid.empty() && ekm_sids.count(sid)) {
      if (placed.count(sid)) {
        corrections->push_back("removed a duplicate of ekm's statement \"" + sid + "\"");
        continue;
      }
      for (const auto& e : ekm_statements) {
        if (e["Sid"] == sid) merged.push_back(e);
      }
      placed.insert(sid);
      if (s != merged.back()) corrections->push_back("replaced statement \"" + sid + "\"");
      continue;
    }
    merged.push_back(s);
  }
  for (const auto& e : ekm_statements) {
    std::string sid = e["Sid"].get<std::string>();
    if (!placed.count(sid)) {
      merged.push_back(e);
      corrections->push_back("added statement \"" + sid + "\"");
    }
  }
  // Rebuild with Version first when it was missing or wrong, keeping every other key in order.
  ojson out = ojson::object();
  bool version_ok = base.is_object() && base.contains("Version") && base["Version"] == "2012-10-17";
  if (!version_ok) {
    out["Version"] = "2012-10-17";
    corrections->push_back("set Version to \"2012-10-17\"");
  }
  bool statement_written = false;
  if (base.is_object()) {
    for (const auto& [k, v] : base.items()) {
      if (k == "Version") {
        if (version_ok) out["Version"] = v;
      } else if (k == "Statement") {
        out["Statement"] = merged;
        statement_written = true;
      } else {
        out[k] = v;
      }
    }
  }
  if (!statement_written) out["Statement"] = merged;
  return out;
}

std::string StatementLabel(const ojson& s, int n) {
  std::string sid =
      s.is_object() && s.contains("Sid") && s["Sid"].is_string() ? s["Sid"].get<std::string>() : "";
  return sid.empty() ? "statement #" + std::to_string(n)
                     : "statement \"" + sid + "\" (#" + std::to_string(n) + ")";
}

// kms:Encrypt and kms:Decrypt (those of them a Deny statement may deny the platform principal,
// with ekm's encryption context), "and"-joined; empty when it denies neither.
std::string DeniedToPlatform(const StatementInfo& s, const Caller& c, bool* certain) {
  std::vector<std::string> denied;
  *certain = true;
  std::vector<std::string> ignored;
  for (const char* action : {"kms:Encrypt", "kms:Decrypt"}) {
    StmtEval e = EvaluateStatement(s, c, Request{action, true, c.workspace}, &ignored);
    if (!e.action_matches || e.applies == Tri::kFalse) continue;
    denied.push_back(action);
    if (e.applies == Tri::kUnknown) *certain = false;
  }
  return Join(denied, " and ");
}

// An explicit Deny of kms:Encrypt or kms:Decrypt to the platform principal overrides ekm's
// Allow, so the corrected policy cannot keep it as it is: a Deny that names only the platform
// principal is removed; any other is narrowed with a condition that exempts the platform
// principal (aws:PrincipalArn), so it keeps denying everyone else. If the narrowed statement
// still denies (or may deny) the platform principal, it is removed.
void ExemptPlatformFromDenies(ojson* policy, const Caller& c,
                              std::vector<std::string>* corrections) {
  if (!policy->is_object() || !policy->contains("Statement") ||
      !(*policy)["Statement"].is_array()) {
    return;
  }
  ojson& statements = (*policy)["Statement"];
  ojson kept = ojson::array();
  const std::string& arn = c.principal.arn;
  for (size_t i = 0; i < statements.size(); ++i) {
    ojson s = statements[i];
    const int n = static_cast<int>(i + 1);
    if (!s.is_object() || !s.contains("Effect") || s["Effect"] != "Deny") {
      kept.push_back(std::move(s));
      continue;
    }
    StatementInfo info{n, StatementLabel(s, n), &s, true, true};
    bool certain = true;
    std::string denied = DeniedToPlatform(info, c, &certain);
    if (denied.empty()) {
      kept.push_back(std::move(s));
      continue;
    }
    // Named only the platform principal: nothing is left to deny once it is exempted.
    bool only_platform = false;
    if (s.contains("Principal") && s["Principal"].is_object() && s["Principal"].size() == 1 &&
        s["Principal"].contains("AWS")) {
      bool bad = false;
      std::vector<std::string> names = StringList(s["Principal"]["AWS"], &bad);
      only_platform =
          !bad && !names.empty() &&
          std::all_of(names.begin(), names.end(), [&](const std::string& v) {
            return v == arn || (!c.principal.session_arn.empty() && v == c.principal.session_arn);
          });
    }
    const std::string why = info.label + ": it " + (certain ? "denied " : "may deny ") + denied +
                            " to the platform principal " + arn +
                            ", and an explicit Deny overrides ekm's Allow";
    if (!only_platform) {
      ojson narrowed = s;
      if (!narrowed.contains("Condition")) narrowed["Condition"] = ojson::object();
      ojson& cond = narrowed["Condition"];
      bool done = false;
      if (cond.is_object()) {
        if (!cond.contains("ArnNotEquals")) cond["ArnNotEquals"] = ojson::object();
        ojson& op = cond["ArnNotEquals"];
        if (op.is_object()) {
          ojson& v = op["aws:PrincipalArn"];
          if (v.is_null()) {
            v = arn;
            done = true;
          } else if (v.is_string()) {
            v = ojson::array({v, arn});
            done = true;
          } else if (v.is_array()) {
            v.push_back(arn);
            done = true;
          }
        }
      }
      StatementInfo again{n, info.label, &narrowed, true, true};
      if (done && DeniedToPlatform(again, c, &certain).empty()) {
        corrections->push_back("narrowed " + why +
                               "; added the condition \"ArnNotEquals\": {\"aws:PrincipalArn\": \"" +
                               arn + "\"} so that it keeps denying every other principal");
        kept.push_back(std::move(narrowed));
        continue;
      }
    }
    corrections->push_back("removed " + why +
                           (only_platform ? " (it named no other principal)"
                                          : " (it could not be narrowed to exempt it)"));
  }
  statements = std::move(kept);
}

// The account owning the key: from the key ARN, else an account-root principal in the text.
std::string GuessKeyAccount(const PolicyCheckRequest& req) {
  std::string a = AccountOfArn(req.key_arn);
  if (IsTwelveDigits(a)) return a;
  std::string_view t = req.policy_text;
  for (size_t pos = t.find(":root"); pos != std::string_view::npos;
       pos = t.find(":root", pos + 1)) {
    if (pos >= 14 && t.substr(pos - 14, 2) == "::" && IsTwelveDigits(t.substr(pos - 12, 12))) {
      return std::string(t.substr(pos - 12, 12));
    }
  }
  return "";
}

}  // namespace

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kGranted:
      return "granted";
    case Verdict::kGrantedIfIamAllows:
      return "granted_if_iam_allows";
    case Verdict::kUncertain:
      return "uncertain";
    case Verdict::kDenied:
      return "denied";
  }
  return "denied";
}

std::string_view SeverityName(Severity severity) {
  switch (severity) {
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kInfo:
      return "info";
  }
  return "error";
}

StatusOr<PolicyReport> CheckKeyPolicy(const PolicyCheckRequest& request) {
  EKM_ASSIGN_OR_RETURN(PlatformPrincipal principal,
                       ParsePlatformPrincipal(request.platform_principal));
  EKM_RETURN_IF_ERROR(ValidateName("workspace", request.workspace));
  if (!request.environment.empty()) {
    EKM_RETURN_IF_ERROR(ValidateName("environment", request.environment));
  }
  if (request.policy_text.size() > kMaxPolicyBytes) {
    return InvalidArgumentError("the key policy is " + std::to_string(request.policy_text.size()) +
                                    " bytes; AWS key policies are at most " +
                                    std::to_string(kMaxPolicyBytes) + " bytes",
                                "check that the file is the key policy and nothing else");
  }
  KeyPolicyStatementOptions opts;
  opts.platform_principal = request.platform_principal;
  opts.workspace = request.workspace;
  EKM_ASSIGN_OR_RETURN(ojson ekm_statements, KeyPolicyStatements(opts));

  Caller caller{principal, request.workspace, request.environment, request.key_arn};
  PolicyReport report;
  std::string_view text = request.policy_text;
  const std::vector<std::pair<std::string, bool>> kActions = {{"kms:Encrypt", true},
                                                              {"kms:Decrypt", true},
                                                              {"kms:DescribeKey", false},
                                                              {"kms:GetKeyRotationStatus", false}};

  // 1. Syntax.
  ParseOutcome parsed;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF &&
      static_cast<unsigned char>(text[1]) == 0xBB && static_cast<unsigned char>(text[2]) == 0xBF) {
    parsed.diag.offset = 0;
    parsed.diag.message = "the text starts with a byte order mark (BOM, U+FEFF)";
    parsed.diag.hint = "save the file as UTF-8 without BOM, or copy the policy text itself";
    parsed.diag.fix = {{0, 3, ""}};
    parsed.diag.fix_description = "removed the byte order mark";
  } else if (text.size() >= 2 && ((static_cast<unsigned char>(text[0]) == 0xFF &&
                                   static_cast<unsigned char>(text[1]) == 0xFE) ||
                                  (static_cast<unsigned char>(text[0]) == 0xFE &&
                                   static_cast<unsigned char>(text[1]) == 0xFF))) {
    parsed.diag.message = "the text is UTF-16 (it starts with a UTF-16 byte order mark)";
    parsed.diag.hint = "save the file as UTF-8 (not UTF-16) without BOM";
  } else if (MaxDepth(text) > kMaxPolicyDepth) {
    parsed.diag.message = "the text is nested more than " + std::to_string(kMaxPolicyDepth) +
                          " levels deep; a key policy never is";
    parsed.diag.hint = "check that the file is the key policy";
  } else {
    parsed = ParseWithDiagnosis(text);
  }

  ojson policy;
  bool have_policy = parsed.ok;
  if (parsed.ok) {
    policy = std::move(parsed.value);
    for (const auto& [key, offset] : parsed.duplicate_keys) {
      AddFinding(&report.findings, Severity::kError, "duplicate-key",
                 "the key " + Quote(key) + " appears twice in one object (the second at " +
                     At(text, offset) + "); only one of them would count",
                 "merge the two into one");
    }
  } else {
    JsonSyntaxError err;
    err.byte_offset = std::min(parsed.diag.offset, text.size());
    std::tie(err.line, err.column) = LineCol(text, err.byte_offset);
    err.message = "the key policy is not valid JSON: " + parsed.diag.message;
    err.hint = parsed.diag.hint;
    report.syntax_error = err;
    for (const auto& [action, required] : kActions) {
      report.actions.push_back({action,
                                required,
                                Verdict::kDenied,
                                {"the key policy is not valid JSON; AWS rejects it "
                                 "(MalformedPolicyDocumentException)"}});
    }
    // Repair the diagnosed mistakes one at a time, at most a bounded number of times.
    std::string repaired(text);
    Diagnosis d = parsed.diag;
    for (int round = 0; round < 32 && !d.fix.empty(); ++round) {
      report.corrections.push_back(d.fix_description);
      ApplyEdits(&repaired, d.fix);
      if (MaxDepth(repaired) > kMaxPolicyDepth) break;
      ParseOutcome again = ParseWithDiagnosis(repaired);
      if (again.ok) {
        policy = std::move(again.value);
        have_policy = true;
        break;
      }
      d = again.diag;
    }
    if (!have_policy) report.corrections.clear();
  }

  // 2. Structure and evaluation.
  if (parsed.ok) {
    const ojson* holder = nullptr;
    std::vector<StatementInfo> statements = CollectStatements(policy, &holder, &report.findings);
    for (const auto& [action, required] : kActions) {
      report.actions.push_back(EvaluateAction(action, required, statements, caller));
    }
    bool admin = false;
    std::vector<std::pair<int, std::string>> wrong_principal;  // statement, message
    Request enc{"kms:Encrypt", true, request.workspace};
    Request other{"kms:Encrypt", true, "ekm-doctor-another-workspace"};
    for (const StatementInfo& s : statements) {
      if (!s.usable) continue;
      std::vector<std::string> malformed;
      StmtEval e = EvaluateStatement(s, caller, enc, &malformed);
      for (const auto& m : malformed) {
        AddFinding(&report.findings, Severity::kError, "bad-condition", s.label + ": " + m,
                   "write conditions as {\"StringEquals\": {\"KEY\": \"VALUE\"}}", s.index);
      }
      if (!s.deny && s.json->contains("Principal") && (*s.json)["Principal"].is_object()) {
        bool bad = false;
        for (const auto& a : StringList((*s.json)["Principal"].value("AWS", ojson()), &bad)) {
          if (IsTwelveDigits(a) || (a.size() > 5 && a.compare(a.size() - 5, 5, ":root") == 0)) {
            admin = true;
          }
        }
      }
      if (!e.cond.other_workspace_values.empty()) {
        AddFinding(&report.findings, Severity::kError, "other-workspace",
                   s.label + " pins kms:EncryptionContext:ekm:workspace to " +
                       Quote(Join(e.cond.other_workspace_values, ", ")) +
                       ", but this key is for workspace " + Quote(request.workspace),
                   "set the condition value to \"" + request.workspace +
                       "\", or use this key only for the workspace it names",
                   s.index);
      }
      if (s.deny) {
        bool certain = true;
        std::string denied = DeniedToPlatform(s, caller, &certain);
        if (!denied.empty()) {
          // A warning: the policy is valid, the verdict already says the action is denied.
          AddFinding(&report.findings, Severity::kWarning, "deny-blocks-platform",
                     s.label + (certain ? " denies " : " may deny ") + denied +
                         " to the platform principal " + principal.arn +
                         ": an explicit Deny overrides every Allow, ekm's included",
                     "remove the statement, or exempt the platform principal from it with "
                     "\"Condition\": {\"ArnNotEquals\": {\"aws:PrincipalArn\": \"" +
                         principal.arn + "\"}} (the corrected policy does this)",
                     s.index);
        }
        continue;
      }
      std::vector<std::string> granted_actions;
      for (const char* action : {"kms:Encrypt", "kms:Decrypt"}) {
        if (MatchAction(s, action) == Tri::kTrue) granted_actions.push_back(action);
      }
      bool enc_or_dec = !granted_actions.empty();
      PMatch pm = EvaluatePrincipal(s, caller).match;
      if (enc_or_dec && pm == PMatch::kNo && s.json->contains("Principal") &&
          (*s.json)["Principal"].is_object()) {
        // Grants the actions ekm needs to specific principals, none of them ekm's.
        bool bad = false;
        std::vector<std::string> others;
        for (const auto& a : StringList((*s.json)["Principal"].value("AWS", ojson()), &bad)) {
          if (IsValidPrincipalText(a) && a != "*" && !IsTwelveDigits(a) &&
              a.find('*') == std::string::npos) {
            others.push_back(a);
          }
        }
        if (!others.empty()) {
          wrong_principal.push_back(
              {s.index, s.label + " grants " + Join(granted_actions, " and ") + " to " +
                            Join(others, ", ") + ", not to the platform principal " +
                            principal.arn});
        }
      }
      if (!enc_or_dec || pm != PMatch::kYes) continue;
      StmtEval alt = EvaluateStatement(s, caller, other, &malformed);
      if (alt.applies == Tri::kTrue) {
        bool everyone = (*s.json).contains("NotPrincipal") || (*s.json)["Principal"] == "*" ||
                        ((*s.json)["Principal"].is_object() &&
                         (*s.json)["Principal"].value("AWS", ojson()) == "*");
        AddFinding(&report.findings, Severity::kWarning, "confused-deputy",
                   s.label + " allows " + (everyone ? "every principal, including ekm," : "ekm") +
                       " to use the key for any workspace: it has no condition "
                       "kms:EncryptionContext:ekm:workspace = \"" +
                       request.workspace + "\"",
                   "use ekm's statement (in the corrected policy) instead; it pins the key to "
                   "this workspace so the platform cannot be tricked into using it for another",
                   s.index);
      }
    }
    // Only a problem while ekm lacks what such a statement grants (the customer's own roles
    // may use the key too).
    const bool required_granted = std::all_of(
        report.actions.begin(), report.actions.end(),
        [](const ActionVerdict& a) { return !a.required || a.verdict == Verdict::kGranted; });
    if (!required_granted) {
      for (const auto& [index, message] : wrong_principal) {
        AddFinding(&report.findings, Severity::kWarning, "wrong-principal", message,
                   "if the statement is meant for ekm, make its Principal {\"AWS\": \"" +
                       principal.arn +
                       "\"} (`ekm key policy` prints ekm's statement; the corrected policy adds "
                       "it)",
                   index);
      }
    }
    if (!admin && !statements.empty()) {
      AddFinding(&report.findings, Severity::kInfo, "no-account-statement",
                 "no statement gives the key's account (arn:...:iam::ACCOUNT:root) access",
                 "keep the \"Enable IAM User Permissions\" statement so your account can still "
                 "manage the key; AWS refuses policies that lock you out");
    }
  }

  // 3. Corrected policy.
  if (have_policy) {
    std::vector<std::string> merge_notes;
    ojson corrected = MergeStatements(policy, ekm_statements, &merge_notes);
    ExemptPlatformFromDenies(&corrected, caller, &merge_notes);
    report.corrections.insert(report.corrections.end(), merge_notes.begin(), merge_notes.end());
    report.corrected_policy = corrected.dump(2) + "\n";
  } else {
    std::string account = GuessKeyAccount(request);
    bool placeholder = account.empty();
    auto example = ExampleKeyPolicy(placeholder ? kExampleKeyAccountId : account, opts);
    if (!example.ok()) return example.status();
    report.corrected_policy = example->dump(2) + "\n";
    report.corrected_is_example = true;
    report.corrections.push_back(
        "the policy could not be repaired automatically; this is the example policy for a new "
        "key" +
        (placeholder ? " (replace " + std::string(kExampleKeyAccountId) +
                           " with the key's 12-digit account id)"
                     : std::string()) +
        ": add your other statements to it");
  }
  // Messages quote the pasted text; keep them printable and valid UTF-8.
  auto clean = [](std::string& x) { x = Sanitize(x); };
  if (report.syntax_error) {
    clean(report.syntax_error->message);
    clean(report.syntax_error->hint);
  }
  for (auto& a : report.actions) {
    for (auto& r : a.reasons) clean(r);
  }
  for (auto& f : report.findings) {
    clean(f.message);
    clean(f.hint);
  }
  for (auto& c : report.corrections) clean(c);
  return report;
}

bool PolicyReport::ok() const {
  if (syntax_error) return false;
  for (const auto& f : findings) {
    if (f.severity == Severity::kError) return false;
  }
  for (const auto& a : actions) {
    if (a.required && a.verdict != Verdict::kGranted) return false;
  }
  return !actions.empty();
}

Status PolicyReport::ToStatus() const {
  if (syntax_error) {
    return InvalidArgumentError(syntax_error->message + " (line " +
                                    std::to_string(syntax_error->line) + ", column " +
                                    std::to_string(syntax_error->column) + ")",
                                syntax_error->hint);
  }
  for (const auto& f : findings) {
    if (f.severity == Severity::kError) return InvalidArgumentError(f.message, f.hint);
  }
  for (const auto& a : actions) {
    if (a.required && a.verdict != Verdict::kGranted) {
      return PermissionDeniedError(
          "the key policy does not grant " + a.action + " (" + std::string(VerdictName(a.verdict)) +
              ")" + (a.reasons.empty() ? "" : ": " + a.reasons.back()),
          "paste ekm's statement into the key policy (see the corrected policy)");
    }
  }
  return Status::Ok();
}

nlohmann::ordered_json PolicyReport::ToJson() const {
  ojson j;
  j["ok"] = ok();
  if (syntax_error) {
    j["syntax_error"] = {{"line", syntax_error->line},
                         {"column", syntax_error->column},
                         {"byte_offset", syntax_error->byte_offset},
                         {"message", syntax_error->message},
                         {"hint", syntax_error->hint}};
  }
  j["actions"] = ojson::array();
  for (const auto& a : actions) {
    j["actions"].push_back({{"action", a.action},
                            {"required", a.required},
                            {"verdict", VerdictName(a.verdict)},
                            {"reasons", a.reasons}});
  }
  j["findings"] = ojson::array();
  for (const auto& f : findings) {
    ojson fj = {{"severity", SeverityName(f.severity)},
                {"code", f.code},
                {"message", f.message},
                {"hint", f.hint}};
    if (f.statement > 0) fj["statement"] = f.statement;
    j["findings"].push_back(fj);
  }
  j["corrected_policy"] = corrected_policy;
  j["corrections"] = corrections;
  j["corrected_is_example"] = corrected_is_example;
  return j;
}

std::string PolicyReport::ToText() const {
  std::string out;
  if (syntax_error) {
    out += "error: line " + std::to_string(syntax_error->line) + ", column " +
           std::to_string(syntax_error->column) + ": " + syntax_error->message + "\n";
    out += "  hint: " + syntax_error->hint + "\n";
  } else {
    for (const auto& a : actions) {
      std::string name = a.action + (a.required ? "" : " (optional)");
      name.resize(std::max<size_t>(name.size(), 36), ' ');
      out += name + std::string(VerdictName(a.verdict)) + "\n";
      for (const auto& r : a.reasons) out += "    - " + r + "\n";
    }
  }
  for (const auto& f : findings) {
    out += std::string(SeverityName(f.severity)) + ": " + f.message + " [" + f.code + "]\n";
    if (!f.hint.empty()) out += "  hint: " + f.hint + "\n";
  }
  out += ok() ? "\nThe key policy lets ekm use the key for this workspace.\n"
              : "\nThe key policy does not (yet) let ekm use the key for this workspace.\n";
  if (!ok()) {
    out += "\nCorrected policy (paste it as the whole key policy):\n";
    for (const auto& c : corrections) out += "  * " + c + "\n";
    out += corrected_policy;
  }
  return out;
}

}  // namespace ekm
