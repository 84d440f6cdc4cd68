#include "ekm/provider/aws/sigv4_signer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ekm {
namespace {

using json = nlohmann::json;

AwsCredentials Creds(std::string_view ak, std::string_view sk,
                     std::optional<std::string> token = std::nullopt) {
  return AwsCredentials{std::string(ak), SecretBytes(AsBytes(sk)), std::move(token)};
}

std::chrono::system_clock::time_point At(int64_t unix_seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

json LoadVectors() {
  std::ifstream in(std::string(EKM_SOURCE_DIR) + "/testdata/sigv4/vectors.json");
  EXPECT_TRUE(in.good()) << "missing testdata/sigv4/vectors.json";
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(doc.is_discarded());
  return doc;
}

// Every case botocore signed (scripts/gen_sigv4_vectors.py) must come out byte-identical.
TEST(SigV4SignerTest, MatchesBotocoreVectors) {
  json doc = LoadVectors();
  ASSERT_TRUE(doc.contains("cases"));
  ASSERT_GE(doc["cases"].size(), 12u);
  for (const auto& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    SigV4Request req;
    req.method = c["method"].get<std::string>();
    req.path = c["path"].get<std::string>();
    for (const auto& q : c["query"]) req.query.emplace_back(q[0], q[1]);
    for (const auto& h : c["headers"]) req.headers.emplace_back(h[0], h[1]);
    std::string body = c["body"].get<std::string>();
    req.payload = AsBytes(body);
    std::optional<std::string> token;
    if (!c["session_token"].is_null()) token = c["session_token"].get<std::string>();
    AwsCredentials creds = Creds(c["access_key_id"].get<std::string>(),
                                 c["secret_access_key"].get<std::string>(), token);
    SigV4Scope scope{c["region"], c["service"]};
    auto sig = SignRequest(req, creds, scope, At(c["unix_time"].get<int64_t>()));
    ASSERT_TRUE(sig.ok()) << sig.status().ToString();
    const auto& want = c["expected"];
    EXPECT_EQ(sig->canonical_request, want["canonical_request"].get<std::string>());
    EXPECT_EQ(sig->string_to_sign, want["string_to_sign"].get<std::string>());
    EXPECT_EQ(sig->authorization, want["authorization"].get<std::string>());
    ASSERT_EQ(sig->headers_to_add.size(), want["headers_to_add"].size());
    for (size_t i = 0; i < sig->headers_to_add.size(); ++i) {
      EXPECT_EQ(sig->headers_to_add[i].first, want["headers_to_add"][i][0].get<std::string>());
      EXPECT_EQ(sig->headers_to_add[i].second, want["headers_to_add"][i][1].get<std::string>());
    }
  }
}

// AWS's published SigV4 test suite case "get-vanilla": an independent check of the key
// derivation, not produced by our generator.
TEST(SigV4SignerTest, AwsTestSuiteGetVanilla) {
  SigV4Request req;
  req.method = "GET";
  req.headers = {{"Host", "example.amazonaws.com"}};
  auto sig = SignRequest(req, Creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                         {"us-east-1", "service"}, At(1440938160));  // 2015-08-30T12:36:00Z
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  EXPECT_EQ(sig->signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(sig->authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(sig->headers_to_add.front(), HttpHeader("X-Amz-Date", "20150830T123600Z"));
}

SigV4Request KmsRequest(const std::string& body) {
  SigV4Request req;
  req.headers = {{"Host", "kms.us-east-1.amazonaws.com"},
                 {"Content-Type", "application/x-amz-json-1.1"},
                 {"X-Amz-Target", "TrentService.Encrypt"}};
  req.payload = AsBytes(body);
  return req;
}

TEST(SigV4SignerTest, SignatureDependsOnEverySignedInput) {
  const std::string body = R"({"KeyId":"k","Plaintext":"AA=="})";
  auto base =
      SignRequest(KmsRequest(body), Creds("AKID", "secret"), {"us-east-1", "kms"}, At(1700000000));
  ASSERT_TRUE(base.ok());
  auto differs = [&](const SigV4Request& r, const AwsCredentials& c, const SigV4Scope& s,
                     int64_t t) {
    auto other = SignRequest(r, c, s, At(t));
    EXPECT_TRUE(other.ok()) << other.status().ToString();
    return other.ok() && other->signature != base->signature;
  };
  EXPECT_TRUE(
      differs(KmsRequest(body + " "), Creds("AKID", "secret"), {"us-east-1", "kms"}, 1700000000));
  EXPECT_TRUE(differs(KmsRequest(body), Creds("AKID", "secreT"), {"us-east-1", "kms"}, 1700000000));
  EXPECT_TRUE(differs(KmsRequest(body), Creds("AKID", "secret"), {"us-east-2", "kms"}, 1700000000));
  EXPECT_TRUE(differs(KmsRequest(body), Creds("AKID", "secret"), {"us-east-1", "sts"}, 1700000000));
  EXPECT_TRUE(differs(KmsRequest(body), Creds("AKID", "secret"), {"us-east-1", "kms"}, 1700000001));
  EXPECT_TRUE(
      differs(KmsRequest(body), Creds("AKID", "secret", "tok"), {"us-east-1", "kms"}, 1700000000));
  SigV4Request target = KmsRequest(body);
  target.headers[2].second = "TrentService.Decrypt";
  EXPECT_TRUE(differs(target, Creds("AKID", "secret"), {"us-east-1", "kms"}, 1700000000));
  // Unsigned headers do not change the signature.
  SigV4Request ua = KmsRequest(body);
  ua.headers.emplace_back("User-Agent", "anything");
  auto same = SignRequest(ua, Creds("AKID", "secret"), {"us-east-1", "kms"}, At(1700000000));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->signature, base->signature);
}

TEST(SigV4SignerTest, SessionTokenIsAddedAndSigned) {
  auto sig = SignRequest(KmsRequest("{}"), Creds("ASIAX", "s", "token/with+chars="),
                         {"us-east-1", "kms"}, At(1700000000));
  ASSERT_TRUE(sig.ok());
  ASSERT_EQ(sig->headers_to_add.size(), 3u);
  EXPECT_EQ(sig->headers_to_add[1], HttpHeader("X-Amz-Security-Token", "token/with+chars="));
  EXPECT_EQ(sig->headers_to_add[2].first, "Authorization");
  EXPECT_EQ(sig->signed_headers, "content-type;host;x-amz-date;x-amz-security-token;x-amz-target");
}

TEST(SigV4SignerTest, SecretNeverAppearsInOutput) {
  const std::string secret = "VerySecretKeyMaterial1234567890";
  auto sig =
      SignRequest(KmsRequest("{}"), Creds("AKID", secret), {"us-east-1", "kms"}, At(1700000000));
  ASSERT_TRUE(sig.ok());
  for (const auto& s : {sig->canonical_request, sig->string_to_sign, sig->authorization}) {
    EXPECT_EQ(s.find(secret), std::string::npos);
  }
}

TEST(SigV4SignerTest, RejectsBadInput) {
  auto sign = [](SigV4Request r, AwsCredentials c = Creds("AKID", "s"),
                 SigV4Scope s = {"us-east-1", "kms"}) {
    return SignRequest(r, c, s, At(1700000000)).status();
  };
  SigV4Request no_host = KmsRequest("{}");
  no_host.headers.erase(no_host.headers.begin());
  EXPECT_NE(sign(no_host).message().find("no Host header"), std::string::npos);

  for (const char* owned : {"Authorization", "x-amz-date", "X-Amz-Security-Token"}) {
    SigV4Request r = KmsRequest("{}");
    r.headers.emplace_back(owned, "x");
    Status s = sign(r);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("added by the signer"), std::string::npos) << owned;
  }
  SigV4Request crlf = KmsRequest("{}");
  crlf.headers.emplace_back("X-Evil", "a\r\nX-Injected: 1");
  EXPECT_NE(sign(crlf).message().find("byte 0x0D at offset 1"), std::string::npos);
  SigV4Request bad_name = KmsRequest("{}");
  bad_name.headers.emplace_back("X Bad", "1");
  EXPECT_FALSE(sign(bad_name).ok());
  SigV4Request raw_path = KmsRequest("{}");
  raw_path.path = "/a b";
  EXPECT_NE(sign(raw_path).message().find("UriEncodePath"), std::string::npos);
  SigV4Request rel = KmsRequest("{}");
  rel.path = "a";
  EXPECT_FALSE(sign(rel).ok());
  EXPECT_NE(sign(KmsRequest("{}"), Creds("", "s")).message().find("access key id is empty"),
            std::string::npos);
  EXPECT_NE(sign(KmsRequest("{}"), Creds("AK/ID", "s")).message().find("access key id"),
            std::string::npos);
  EXPECT_NE(sign(KmsRequest("{}"), Creds("AKID", "")).message().find("secret access key"),
            std::string::npos);
  EXPECT_FALSE(sign(KmsRequest("{}"), Creds("AKID", "s", "")).ok());
  EXPECT_FALSE(sign(KmsRequest("{}"), Creds("AKID", "s", "a\nb")).ok());
  EXPECT_NE(sign(KmsRequest("{}"), Creds("AKID", "s"), {"", "kms"}).message().find("region"),
            std::string::npos);
  EXPECT_NE(sign(KmsRequest("{}"), Creds("AKID", "s"), {"us-east-1", "KMS"})
                .message()
                .find("service 'KMS'"),
            std::string::npos);
}

TEST(SigV4SignerTest, UriEncoding) {
  EXPECT_EQ(SigV4UriEncode("aZ09-._~ /+=&%\xc3\xbc", false), "aZ09-._~%20%2F%2B%3D%26%25%C3%BC");
  EXPECT_EQ(SigV4UriEncode("a/b c", true), "a/b%20c");
  EXPECT_EQ(UriEncodePath({}), "/");
  EXPECT_EQ(UriEncodePath({"2015-03-31", "functions", "my function/x"}),
            "/2015-03-31/functions/my%20function%2Fx");
}

TEST(SigV4SignerTest, Timestamp) {
  EXPECT_EQ(SigV4Timestamp(At(0)), "19700101T000000Z");
  EXPECT_EQ(SigV4Timestamp(At(1440938160) + std::chrono::milliseconds(999)), "20150830T123600Z");
  EXPECT_EQ(SigV4Timestamp(At(4102444799)), "20991231T235959Z");
}

}  // namespace
}  // namespace ekm
