#include "ekm/api/flat_json.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace ekm {
namespace {

// What nlohmann::json makes of `body` when it is an object of strings: key → value.
bool FullParse(const std::string& body, std::map<std::string, std::string>* out) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return false;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return false;
    (*out)[k] = v.get<std::string>();
  }
  return true;
}

// Whatever the flat reader accepts, the full parser reads identically.
void ExpectAgrees(const std::string& body) {
  FlatFields f;
  size_t n = 0;
  if (!ParseFlatStringObject(body, &f, &n)) return;
  std::map<std::string, std::string> full;
  ASSERT_TRUE(FullParse(body, &full)) << body;
  ASSERT_EQ(full.size(), n) << body;
  for (size_t i = 0; i < n; ++i) {
    auto it = full.find(std::string(f[i].key));
    ASSERT_NE(it, full.end()) << body;
    EXPECT_EQ(it->second, f[i].value) << body;
  }
}

TEST(FlatJsonTest, ReadsTheDataPlaneBodies) {
  FlatFields f;
  size_t n = 0;
  ASSERT_TRUE(ParseFlatStringObject(R"({"plaintext":"aGk=","scope":"orders"})", &f, &n));
  ASSERT_EQ(n, 2u);
  EXPECT_EQ(*FlatValue(f, n, "plaintext"), "aGk=");
  EXPECT_EQ(*FlatValue(f, n, "scope"), "orders");
  EXPECT_EQ(FlatValue(f, n, "ciphertext"), nullptr);
  ASSERT_TRUE(ParseFlatStringObject(" \n{ \"ciphertext\" :\t\"ekm1:RUtN\" }\r\n", &f, &n));
  EXPECT_EQ(*FlatValue(f, n, "ciphertext"), "ekm1:RUtN");
  ASSERT_TRUE(ParseFlatStringObject("{}", &f, &n));
  EXPECT_EQ(n, 0u);
}

TEST(FlatJsonTest, LeavesEverythingElseToTheFullParser) {
  FlatFields f;
  size_t n = 0;
  for (const char* body : {
           "",  // empty
           "[]",
           "\"x\"",
           "1",
           "null",                             // not an object
           R"({"plaintext":"a\"b"})",          // an escape
           R"({"plaintext":"a\u0041"})",       // a unicode escape
           "{\"plaintext\":\"caf\xc3\xa9\"}",  // non-ASCII
           "{\"plaintext\":\"a\tb\"}",         // a control character
           R"({"plaintext":1})",               // a number
           R"({"plaintext":null})",
           R"({"plaintext":true})",
           R"({"plaintext":["a"]})",
           R"({"plaintext":{"a":"b"}})",                    // nesting
           R"({"scope":"a","scope":"b"})",                  // a repeated key
           R"({"a":"1","b":"2","c":"3","d":"4","e":"5"})",  // too many fields
           R"({"plaintext":"a",})",                         // trailing comma
           R"({"plaintext":"a"} x)",                        // trailing garbage
           R"({"plaintext" "a"})",
           R"({plaintext:"a"})",
           R"({"plaintext":"a")",
           R"({"plaintext":"a)",
       }) {
    EXPECT_FALSE(ParseFlatStringObject(body, &f, &n)) << body;
  }
}

// Random mutations of data-plane bodies: every one the flat reader accepts must read the same
// in nlohmann::json (the reference), so the fast path never changes what a request means.
TEST(FlatJsonTest, AgreesWithTheFullParserOnRandomInputs) {
  const std::string seeds[] = {
      R"({"plaintext":"aGVsbG8=","scope":"orders"})",
      R"({ "ciphertext" : "ekm1:RUtNAQEFYmVuY2g" })",
      R"({"scope":"a/b:c@d","plaintext":""})",
  };
  const std::string alphabet = "{}[]\":, \t\n\\abcAZ09=/+-_.@u\x01\x7f\xc3";
  std::mt19937 rng(20261125);  // NOLINT(grep-lint): deterministic test input, not randomness
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string body = seeds[rng() % std::size(seeds)];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          body[at] = c;
          break;
        case 1:
          body.insert(body.begin() + static_cast<ptrdiff_t>(at), c);
          break;
        default:
          body.erase(at, 1);
          break;
      }
    }
    FlatFields f;
    size_t n = 0;
    if (ParseFlatStringObject(body, &f, &n)) ++accepted;
    ExpectAgrees(body);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(accepted, 1000);  // the mutations keep reaching the accepting path
}

}  // namespace
}  // namespace ekm
