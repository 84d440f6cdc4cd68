#include "ekm/api/request_codec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ekm {
namespace {

constexpr int64_t kNowMs = 1'796'083'200'000;  // 2026-12-01T00:00:00Z

TEST(RequestDecodingTest, EncryptFastPathAndFullParserDecodeTheSame) {
  for (const char* body : {R"({"plaintext":"aGVsbG8=","scope":"orders"})",
                           R"({"scope": "orders", "plaintext": "aGVsbG8="})",
                           R"({"plaintext":"aGVsbG8=","scope":"o\u0072ders"})"}) {
    auto fast = DecodeEncryptBody(body);
    ASSERT_TRUE(fast.ok()) << body << ": " << fast.status().ToString();
    auto slow = DecodeEncryptObject(nlohmann::json::parse(body));
    ASSERT_TRUE(slow.ok());
    EXPECT_EQ(fast->plaintext, slow->plaintext) << body;
    EXPECT_EQ(fast->scope, "orders") << body;
    EXPECT_EQ(std::string(fast->plaintext.begin(), fast->plaintext.end()), "hello");
  }
}

TEST(RequestDecodingTest, DecryptReadsInPlaceOrFromStorage) {
  std::string storage;
  const std::string flat = R"({"ciphertext":"ekm1:AAAA"})";
  auto in_place = DecodeDecryptBody(flat, &storage);
  ASSERT_TRUE(in_place.ok());
  EXPECT_EQ(*in_place, "ekm1:AAAA");
  EXPECT_EQ(in_place->data(), flat.data() + 15);  // a view into the body: no copy
  auto escaped = DecodeDecryptBody(R"({"ciphertext":"ekm1:\/A"})", &storage);
  ASSERT_TRUE(escaped.ok());
  EXPECT_EQ(*escaped, "ekm1:/A");
  EXPECT_EQ(escaped->data(), storage.data());
}

// nlohmann's own text quotes the last token it read ("last read: '…'"), which can be a piece
// of a plaintext: the error names only the line and column.
TEST(RequestDecodingTest, ASyntaxErrorNeverQuotesTheBody) {
  auto r = DecodeEncryptBody("{\"plaintext\": \"my-secret-value\x01\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("line 1, column"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(r.status().message().find("my-secret"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(r.status().message().find("last read"), std::string::npos) << r.status().ToString();

  auto big = DecodeNameBody("{\"name\": 1e309}");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("line 1, column 10"), std::string::npos)
      << big.status().ToString();
  EXPECT_NE(big.status().message().find("out of range"), std::string::npos)
      << big.status().ToString();
}

TEST(RequestDecodingTest, ABadPlaintextIsNamedButNotQuoted) {
  auto r = DecodeEncryptBody(R"({"plaintext":"not base64 at all!"})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("field \"plaintext\" must be base64"), std::string::npos);
  EXPECT_EQ(r.status().message().find("not base64 at all"), std::string::npos);
}

TEST(RequestDecodingTest, QuotedNamesAreCutShort) {
  const std::string key(100000, 'k');
  auto token = DecodeCreateTokenBody("{\"role\": \"app\", \"" + key + "\": 1}");
  ASSERT_FALSE(token.ok());
  EXPECT_NE(token.status().message().find("unknown field \"kkkk"), std::string::npos);
  EXPECT_LT(token.status().message().size(), 200u);

  auto settings = DecodeSettingsPatchBody("{\"" + key + "\": 1}");
  ASSERT_FALSE(settings.ok());
  EXPECT_LT(settings.status().message().size(), 200u);
}

TEST(RequestDecodingTest, AnAbsurdRelativeTimeIsAnErrorNotAnOverflow) {
  auto q = DecodeEventQuery("acme", "since=999999999999d", kNowMs);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(q.status().message().find("before 1970"), std::string::npos) << q.status().ToString();
  auto far = DecodeEventQuery("acme", "since=24h&until=4052-12-01T00:00:00Z", kNowMs);
  ASSERT_FALSE(far.ok());
  EXPECT_NE(far.status().message().find("outside the years"), std::string::npos)
      << far.status().ToString();
  auto ok = DecodeEventQuery("acme", "since=24h&limit=5&environment=prod", kNowMs);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->since_ms, kNowMs - 24 * 3600 * 1000);
  EXPECT_EQ(ok->limit, 5u);
  EXPECT_EQ(ok->environment, "prod");
}

TEST(RequestDecodingTest, KeyBodiesNameOneKeyExactlyOnce) {
  auto arn = DecodeSetKeyBody(R"({"aws_kms_arn":"arn:x","emergency":true,"reason":"r"})");
  ASSERT_TRUE(arn.ok());
  EXPECT_EQ(arn->key.provider, "aws-kms");
  EXPECT_TRUE(arn->change.emergency);
  EXPECT_EQ(arn->change.reason, "r");
  // Both forms at once is ambiguous, on every key route (the default key's too).
  for (auto decode : {+[](std::string_view b) { return DecodeValidateKeyBody(b).status(); },
                      +[](std::string_view b) { return DecodeDefaultKeyBody(b).status(); }}) {
    Status both = decode(R"({"aws_kms_arn":"arn:x","provider":"platform","key_id":"root"})");
    EXPECT_NE(both.message().find("not both"), std::string::npos) << both.ToString();
    EXPECT_NE(decode("{}").message().find("the key is missing"), std::string::npos);
  }
  EXPECT_NE(DecodeDefaultKeyBody("{}").status().hint().find("DELETE"), std::string::npos);
}

TEST(RequestDecodingTest, ShredHasTwoSteps) {
  auto one = DecodeShredBody("", "prod");
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(one->confirmation);
  auto two = DecodeShredBody(R"({"confirmation":"t","environment":"prod"})", "prod");
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->confirmation, "t");
  auto unnamed = DecodeShredBody(R"({"confirmation":"t"})", "prod");
  ASSERT_FALSE(unnamed.ok());
  EXPECT_NE(unnamed.status().hint().find("{\"environment\": \"prod\"}"), std::string::npos)
      << unnamed.status().ToString();
}

TEST(RequestDecodingTest, ABatchKeepsEachItemsPositionAndError) {
  auto b = DecodeEncryptBatchBody(
      R"({"items":[{"plaintext":"aGk="},7,{"plaintext":"!!"},{"plaintext":"aGk=","scope":"s"}]})");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->count, 4u);
  ASSERT_EQ(b->positions, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(b->items[0].scope, "");
  EXPECT_EQ(b->items[1].scope, "s");
  ASSERT_TRUE(b->errors[1] && b->errors[2]);
  EXPECT_NE(b->errors[1]->message().find("item 1 must be an object"), std::string::npos);
  EXPECT_NE(b->errors[2]->message().find("must be base64"), std::string::npos);
  EXPECT_FALSE(DecodeDecryptBatchBody(R"({"items":[]})").ok());
  std::string many = R"({"items":[)";
  for (size_t i = 0; i <= kMaxBatchItems; ++i) many += std::string(i ? "," : "") + "{}";
  auto too_many = DecodeDecryptBatchBody(many + "]}");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("at most"), std::string::npos);
}

TEST(RequestDecodingTest, OptionalBodiesAndTheirDefaults) {
  EXPECT_EQ(*DecodeImportParamsBody(""), 24 * 3600);
  auto gdk = DecodeGenerateDataKeyBody("");
  ASSERT_TRUE(gdk.ok());
  EXPECT_EQ(gdk->bytes, kDefaultDataKeyBytes);
  EXPECT_TRUE(gdk->with_plaintext);
  auto huge = DecodeGenerateDataKeyBody(R"({"bytes": 1e300})");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("16 to 64 bytes"), std::string::npos);
  EXPECT_TRUE(DecodeEmptyBody("", "a checkpoint request").ok());
  EXPECT_TRUE(DecodeEmptyBody("{}", "a checkpoint request").ok());
  EXPECT_FALSE(DecodeEmptyBody(R"({"x":1})", "a checkpoint request").ok());
  auto rotate = DecodeRotateDataKeysBody(R"({"scopes":["a","b"]})");
  ASSERT_TRUE(rotate.ok());
  EXPECT_EQ(rotate->scopes, (std::vector<std::string>{"a", "b"}));
}

// The client writes every body with an Encode function and the router reads it with the Decode
// function of the same route: each pair round-trips.
TEST(RequestCodecTest, EveryBodyRoundTrips) {
  auto text = [](const nlohmann::json& j) { return j.dump(); };
  EXPECT_EQ(*DecodeNameBody(text(EncodeNameBody("acme"))), "acme");

  const Bytes plaintext = {'h', 'i', 0, 0xff};
  auto enc = DecodeEncryptBody(text(EncodeEncryptBody(plaintext, "orders")));
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  EXPECT_EQ(enc->plaintext, plaintext);
  EXPECT_EQ(enc->scope, "orders");

  std::string storage;
  const std::string decrypt = text(EncodeDecryptBody("ekm1:AAAA"));
  EXPECT_EQ(*DecodeDecryptBody(decrypt, &storage), "ekm1:AAAA");
  EXPECT_EQ(*DecodeRewrapBody(text(EncodeRewrapBody("ekm1:AAAA"))), "ekm1:AAAA");

  auto set = DecodeSetKeyBody(text(EncodeSetKeyBody({{"platform", "k1"}, {true, "outage"}})));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->key.provider, "platform");
  EXPECT_EQ(set->key.key_id, "k1");
  EXPECT_TRUE(set->change.emergency);
  EXPECT_EQ(set->change.reason, "outage");
  auto plain_set = DecodeSetKeyBody(text(EncodeSetKeyBody({{"platform", "k1"}, {}})));
  ASSERT_TRUE(plain_set.ok());
  EXPECT_FALSE(plain_set->change.emergency);

  EXPECT_EQ(DecodeValidateKeyBody(text(EncodeKeyRefBody({"aws-kms", "arn:x"})))->key_id, "arn:x");
  EXPECT_EQ(DecodeDefaultKeyBody(text(EncodeKeyRefBody({"platform", "p"})))->provider, "platform");
  EXPECT_EQ(*DecodeCheckPolicyBody(text(EncodeCheckPolicyBody("{\"Statement\":[]}"))),
            "{\"Statement\":[]}");
  EXPECT_EQ(*DecodeImportParamsBody(text(EncodeImportParamsBody(3600))), 3600);

  const Bytes material(512, 7);
  std::string import = EncodeImportKeyMaterialBody(material, "tok\"en\\1", {true, "why"});
  auto imp = DecodeImportKeyMaterialBody(import);
  ASSERT_TRUE(imp.ok()) << imp.status().ToString();
  EXPECT_EQ(imp->material, material);
  EXPECT_EQ(imp->import_token, "tok\"en\\1");
  EXPECT_TRUE(imp->change.emergency);
  EXPECT_EQ(imp->change.reason, "why");

  auto rotate = DecodeRotateDataKeysBody(text(EncodeRotateDataKeysBody({{"a", "b"}, false})));
  ASSERT_TRUE(rotate.ok());
  EXPECT_EQ(rotate->scopes, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(DecodeRotateDataKeysBody(text(EncodeRotateDataKeysBody({{}, true})))->all_scopes);

  EXPECT_FALSE(DecodeShredBody(text(EncodeShredBody({})), "prod")->confirmation.has_value());
  auto shred = DecodeShredBody(text(EncodeShredBody({"conf", "prod"})), "prod");
  ASSERT_TRUE(shred.ok()) << shred.status().ToString();
  EXPECT_EQ(*shred->confirmation, "conf");
  EXPECT_EQ(shred->environment, "prod");
}

TEST(RequestCodecTest, SettingsTokensDataKeysBatchesAndQueriesRoundTrip) {
  auto text = [](const nlohmann::json& j) { return j.dump(); };
  SettingsPatchBody patch;
  patch.set.key_cache_ttl_seconds = 60;
  patch.reset = {"grace_period_seconds"};
  auto settings = DecodeSettingsPatchBody(text(EncodeSettingsPatchBody(patch)));
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->set.key_cache_ttl_seconds, 60);
  EXPECT_FALSE(settings->set.grace_period_seconds.has_value());
  EXPECT_EQ(settings->reset, patch.reset);

  ApiTokenRequest r{"app", "acme", {"prod"}, "billing", std::chrono::seconds(3600)};
  auto token = DecodeCreateTokenBody(text(EncodeCreateTokenBody(r)));
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(token->role, "app");
  EXPECT_EQ(token->workspace, "acme");
  EXPECT_EQ(token->environments, r.environments);
  EXPECT_EQ(token->description, "billing");
  EXPECT_EQ(token->expires_in, r.expires_in);

  auto dk = DecodeGenerateDataKeyBody(text(EncodeGenerateDataKeyBody({"s", 16, false})));
  ASSERT_TRUE(dk.ok()) << dk.status().ToString();
  EXPECT_EQ(dk->scope, "s");
  EXPECT_EQ(dk->bytes, 16u);
  EXPECT_FALSE(dk->with_plaintext);

  auto eb = DecodeEncryptBatchBody(text(EncodeEncryptBatchBody({{"a", {1}}, {"b", {2, 3}}})));
  ASSERT_TRUE(eb.ok()) << eb.status().ToString();
  ASSERT_EQ(eb->items.size(), 2u);
  EXPECT_EQ(eb->items[1].scope, "b");
  EXPECT_EQ(eb->items[1].plaintext, (Bytes{2, 3}));
  auto db = DecodeDecryptBatchBody(text(EncodeDecryptBatchBody({"ekm1:AAAA", "ekm1:BBBB"})));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(db->count, 2u);

  EventQuery q;
  q.workspace = "acme";
  q.environment = "prod env";
  q.type = "key.set";
  q.since_ms = 1'796'000'000'000;
  q.until_ms = 1'796'083'200'000;
  q.after_id = 42;
  q.limit = 7;
  const std::string query = EncodeEventQuery(q);
  auto back = DecodeEventQuery("acme", query.substr(1), kNowMs);
  ASSERT_TRUE(back.ok()) << query << ": " << back.status().ToString();
  EXPECT_EQ(back->environment, q.environment);
  EXPECT_EQ(back->type, q.type);
  EXPECT_EQ(back->since_ms, q.since_ms);
  EXPECT_EQ(back->until_ms, q.until_ms);
  EXPECT_EQ(back->after_id, q.after_id);
  EXPECT_EQ(back->limit, q.limit);
}

}  // namespace
}  // namespace ekm
