#include "ekm/api/resource_json.h"

#include <gtest/gtest.h>

#include "ekm/base/json_text.h"

namespace ekm {
namespace {

// The wire forms are written by ekmd and read back by the client: what one writes, the other
// reads unchanged, and the text is the documented one (docs/api.md).
TEST(ResourceJsonTest, WorkspaceAndEnvironmentRoundTrip) {
  WorkspaceInfo w{"acme", 1764000000};
  EXPECT_EQ(JsonText(WorkspaceInfoToJson(w)),
            R"({"created_at":"2025-11-24T16:00:00Z","name":"acme"})");
  WorkspaceInfo w2 = WorkspaceInfoFromJson(WorkspaceInfoToJson(w));
  EXPECT_EQ(w2.name, "acme");
  EXPECT_EQ(w2.created_at, w.created_at);

  EnvironmentInfo e{"acme", "prod", 1764000000, "aws-kms", "arn:aws:kms:eu-west-1:1:key/k", 3};
  EnvironmentInfo e2 = EnvironmentInfoFromJson(EnvironmentInfoToJson(e));
  EXPECT_EQ(e2.workspace, "acme");
  EXPECT_EQ(e2.name, "prod");
  EXPECT_EQ(e2.created_at, e.created_at);
  EXPECT_EQ(e2.cmk_provider, "aws-kms");
  EXPECT_EQ(e2.cmk_key_id, e.cmk_key_id);
  EXPECT_EQ(e2.ek_version, 3u);
}

TEST(ResourceJsonTest, ApiTokenRoundTripAndState) {
  ApiTokenInfo t;
  t.id = "tok_1";
  t.role = "app";
  t.workspace = "acme";
  t.environments = {"prod", "dev"};
  t.description = "billing";
  t.created_at = 1764000000;
  t.created_by = "cli:alice";
  t.expires_at = 1764000600;
  nlohmann::json j = ApiTokenInfoToJson(t, 1764000000);
  EXPECT_EQ(j["state"], "active");
  EXPECT_TRUE(j["revoked_at"].is_null());
  EXPECT_FALSE(j.contains("token"));  // the secret is added by POST /v1/tokens alone
  EXPECT_EQ(ApiTokenInfoToJson(t, 1764000600)["state"], "expired");
  ApiTokenInfo t2 = ApiTokenInfoFromJson(j);
  EXPECT_EQ(t2.id, t.id);
  EXPECT_EQ(t2.environments, t.environments);
  EXPECT_EQ(t2.expires_at, t.expires_at);
  EXPECT_EQ(t2.revoked_at, 0);
  t.revoked_at = 1764000100;
  EXPECT_EQ(ApiTokenInfoToJson(t, 1764000000)["state"], "revoked");
  // GET /v1/token: who the caller is, nothing of its history.
  EXPECT_EQ(JsonText(CallerTokenToJson(t)),
            R"({"environments":["prod","dev"],"expires_at":"2025-11-24T16:10:00Z","id":"tok_1",)"
            R"("role":"app","workspace":"acme"})");
}

}  // namespace
}  // namespace ekm
