#include "ekm/provider/aws/aws_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "ekm/testing/temp_dir.h"

namespace ekm {
namespace {

std::string Reveal(const SecretBytes& s) {
  return std::string(s.RevealForCrypto().begin(), s.RevealForCrypto().end());
}

TEST(AwsConfigTest, RegionOrder) {
  auto cfg = AwsSharedConfig::Parse(
      "[default]\nregion = eu-central-1\n[profile p]\nregion=ap-south-1\n", "");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();

  EXPECT_EQ(*ResolveAwsRegion(
                MapGetEnv({{"AWS_REGION", "us-west-2"}, {"AWS_DEFAULT_REGION", "eu-west-1"}}),
                &*cfg, "eu-north-1"),
            "eu-north-1");
  EXPECT_EQ(
      *ResolveAwsRegion(
          MapGetEnv({{"AWS_REGION", "us-west-2"}, {"AWS_DEFAULT_REGION", "eu-west-1"}}), &*cfg),
      "us-west-2");
  EXPECT_EQ(*ResolveAwsRegion(MapGetEnv({{"AWS_DEFAULT_REGION", "eu-west-1"}}), &*cfg),
            "eu-west-1");
  EXPECT_EQ(*ResolveAwsRegion(MapGetEnv({}), &*cfg), "eu-central-1");
  EXPECT_EQ(*ResolveAwsRegion(MapGetEnv({{"AWS_PROFILE", "p"}}), &*cfg), "ap-south-1");
  // An empty variable counts as unset.
  EXPECT_EQ(*ResolveAwsRegion(MapGetEnv({{"AWS_REGION", ""}}), &*cfg), "eu-central-1");

  auto none = ResolveAwsRegion(MapGetEnv({}), nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.status().message(), "no AWS region configured");
  EXPECT_NE(none.status().hint().find("AWS_REGION"), std::string::npos);

  auto bad = ResolveAwsRegion(MapGetEnv({{"AWS_REGION", "eu-west-1/evil"}}), nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("region from AWS_REGION"), std::string::npos);
  EXPECT_NE(bad.status().message().find("position 10"), std::string::npos);
}

TEST(AwsConfigTest, DefaultEndpoints) {
  auto env = MapGetEnv({});
  auto kms = ResolveAwsEndpoint("kms", "eu-west-1", env, nullptr);
  ASSERT_TRUE(kms.ok());
  EXPECT_EQ(kms->url, "https://kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(kms->host_header, "kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(kms->path, "/");
  EXPECT_EQ(kms->signing_region, "eu-west-1");
  EXPECT_EQ(kms->source, "default");

  auto cn = ResolveAwsEndpoint("kms", "cn-north-1", env, nullptr);
  ASSERT_TRUE(cn.ok());
  EXPECT_EQ(cn->url, "https://kms.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(cn->signing_region, "cn-north-1");

  auto sts = ResolveAwsEndpoint("sts", "ap-southeast-2", env, nullptr);
  ASSERT_TRUE(sts.ok());
  EXPECT_EQ(sts->url, "https://sts.ap-southeast-2.amazonaws.com");
}

TEST(AwsConfigTest, EndpointOverrideOrder) {
  auto cfg = AwsSharedConfig::Parse(
      "[default]\n"
      "services = local\n"
      "endpoint_url = https://profile-global.example:8443\n"
      "[services local]\n"
      "kms =\n"
      "  endpoint_url = http://127.0.0.1:4000\n"
      "sts =\n"
      "  endpoint_url = http://127.0.0.1:4001\n",
      "");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  std::map<std::string, std::string> vars = {{"AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:5055"},
                                             {"AWS_ENDPOINT_URL", "http://127.0.0.1:6000/"}};

  auto e =
      ResolveAwsEndpoint("kms", "us-east-1", MapGetEnv(vars), &*cfg, "https://explicit.example");
  EXPECT_EQ(e->url, "https://explicit.example");

  e = ResolveAwsEndpoint("kms", "us-east-1", MapGetEnv(vars), &*cfg);
  EXPECT_EQ(e->url, "http://127.0.0.1:5055");
  EXPECT_EQ(e->host_header, "127.0.0.1:5055");
  EXPECT_EQ(e->signing_region, "us-east-1");
  EXPECT_EQ(e->source, "AWS_ENDPOINT_URL_KMS");

  // STS has no service-specific variable here: the global one wins over the files.
  e = ResolveAwsEndpoint("sts", "us-east-1", MapGetEnv(vars), &*cfg);
  EXPECT_EQ(e->url, "http://127.0.0.1:6000");
  EXPECT_EQ(e->source, "AWS_ENDPOINT_URL");

  // Without variables: the services section, then the profile's endpoint_url.
  e = ResolveAwsEndpoint("kms", "us-east-1", MapGetEnv({}), &*cfg);
  EXPECT_EQ(e->url, "http://127.0.0.1:4000");
  EXPECT_NE(e->source.find("[services local] kms"), std::string::npos);
  auto cfg2 =
      AwsSharedConfig::Parse("[default]\nendpoint_url = https://profile-global.example:8443\n", "");
  e = ResolveAwsEndpoint("kms", "eu-west-1", MapGetEnv({}), &*cfg2);
  EXPECT_EQ(e->url, "https://profile-global.example:8443");
  EXPECT_EQ(e->host_header, "profile-global.example:8443");
  EXPECT_EQ(e->signing_region, "eu-west-1");

  // Ignoring configured endpoints.
  vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true";
  e = ResolveAwsEndpoint("kms", "us-east-1", MapGetEnv(vars), &*cfg);
  EXPECT_EQ(e->url, "https://kms.us-east-1.amazonaws.com");
}

TEST(AwsConfigTest, ParseEndpoint) {
  auto e = ParseAwsEndpoint("https://kms.eu-west-1.amazonaws.com:443/", "us-east-1", "t");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host_header, "kms.eu-west-1.amazonaws.com");  // default port dropped
  EXPECT_EQ(e->signing_region, "eu-west-1");                 // from the host, not the setting

  e = ParseAwsEndpoint("http://[::1]:8080/kms/", "us-east-1", "t");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->host_header, "[::1]:8080");
  EXPECT_EQ(e->path, "/kms");
  EXPECT_EQ(e->url, "http://[::1]:8080/kms");

  EXPECT_EQ(ParseAwsEndpoint("HTTP://LOCALHOST:80", "us-east-1", "t")->host_header, "localhost");

  for (const char* bad : {"kms.eu-west-1.amazonaws.com", "ftp://h", "https://", "https://u:p@h",
                          "https://h:0", "https://h:99999", "https://h:12ab", "https://h/?x=1",
                          "https://h#f", "https://h h", "https://h:"}) {
    auto r = ParseAwsEndpoint(bad, "us-east-1", "AWS_ENDPOINT_URL_KMS");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("AWS_ENDPOINT_URL_KMS"), std::string::npos) << bad;
  }
}

TEST(AwsConfigTest, SigningRegionForHost) {
  EXPECT_EQ(SigningRegionForHost("kms.eu-west-1.amazonaws.com", "us-east-1"), "eu-west-1");
  EXPECT_EQ(SigningRegionForHost("kms-fips.us-gov-west-1.amazonaws.com", "x"), "us-gov-west-1");
  EXPECT_EQ(SigningRegionForHost("vpce-0a1b-c2d3.kms.eu-west-3.vpce.amazonaws.com", "x"),
            "eu-west-3");
  EXPECT_EQ(SigningRegionForHost("kms.cn-northwest-1.amazonaws.com.cn", "x"), "cn-northwest-1");
  EXPECT_EQ(SigningRegionForHost("sts.amazonaws.com", "eu-west-1"), "us-east-1");
  EXPECT_EQ(SigningRegionForHost("127.0.0.1", "ap-east-1"), "ap-east-1");
  EXPECT_EQ(SigningRegionForHost("kms.internal.example.com", "ap-east-1"), "ap-east-1");
}

TEST(AwsConfigTest, IniDialect) {
  auto cfg = AwsSharedConfig::Parse(
      "# comment\n"
      "; another\n"
      "[default]   # trailing comment\n"
      "region = eu-west-1 # inline\n"
      "[profile dev]\r\n"
      "Region=us-east-2\r\n"
      "s3 =\n"
      "  max_concurrent_requests = 20\n"
      "[sso-session corp]\n"
      "sso_region = us-east-1\n"
      "  weird = continuation\n"
      "[not-a-profile]\n"
      "region = xx-1\n",
      "[default]\n"
      "aws_access_key_id = AKIDEXAMPLE\n"
      "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n"
      "region = eu-south-1\n"
      "[profile dev]\n"
      "aws_access_key_id = literal-section-name\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  // The credentials file wins over the config file.
  EXPECT_EQ(cfg->Get("default", "region"), "eu-south-1");
  EXPECT_EQ(cfg->FileOf("default", "region"), "shared credentials file");
  EXPECT_EQ(cfg->Get("dev", "region"), "us-east-2");  // keys are lower-cased
  EXPECT_EQ(cfg->FileOf("dev", "region"), "config file");
  EXPECT_EQ(cfg->Get("dev", "s3.max_concurrent_requests"), "20");
  EXPECT_EQ(cfg->Get("default", "aws_access_key_id"), "AKIDEXAMPLE");
  EXPECT_EQ(Reveal(*cfg->GetSecret("default", "aws_secret_access_key")),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
  // "[profile dev]" in the credentials file is a profile literally named "profile dev".
  EXPECT_FALSE(cfg->Get("dev", "aws_access_key_id").has_value());
  EXPECT_TRUE(cfg->HasProfile("profile dev"));
  // Config sections without the "profile " prefix are not profiles.
  EXPECT_FALSE(cfg->HasProfile("not-a-profile"));

  auto bad = AwsSharedConfig::Parse("region = x\n", "", "/etc/aws/config");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "/etc/aws/config line 1: a setting before the first [section]");
  bad = AwsSharedConfig::Parse("[default]\nregion\n", "", "cfg");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "cfg line 2: expected 'key = value'");
  bad = AwsSharedConfig::Parse("", "[default\n", "cfg", "creds");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "creds line 1: section header without a closing ']'");
}

TEST(AwsConfigTest, LoadFilesAndPaths) {
  testing::TempDir dir;
  auto env = MapGetEnv({{"HOME", dir.path()}});
  EXPECT_EQ(AwsConfigFilePath(env), dir.path() + "/.aws/config");
  EXPECT_EQ(AwsCredentialsFilePath(env), dir.path() + "/.aws/credentials");
  EXPECT_EQ(AwsProfileName(env), "default");
  EXPECT_EQ(AwsProfileName(MapGetEnv({{"AWS_DEFAULT_PROFILE", "b"}})), "b");
  EXPECT_EQ(AwsProfileName(MapGetEnv({{"AWS_PROFILE", "a"}, {"AWS_DEFAULT_PROFILE", "b"}})), "a");

  auto missing = AwsSharedConfig::Load(env);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->config_missing(), "no such file");
  EXPECT_EQ(missing->credentials_missing(), "no such file");

  std::string path = dir.path() + "/my-config";
  std::ofstream(path) << "[profile x]\nregion = sa-east-1\n";
  auto env2 = MapGetEnv({{"HOME", dir.path()}, {"AWS_CONFIG_FILE", path}, {"AWS_PROFILE", "x"}});
  auto loaded = AwsSharedConfig::Load(env2);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->config_missing(), "");
  EXPECT_EQ(*ResolveAwsRegion(env2, &*loaded), "sa-east-1");
  EXPECT_EQ(AwsConfigFilePath(MapGetEnv({{"HOME", "/h"}, {"AWS_CONFIG_FILE", "~/c"}})), "/h/c");
}

}  // namespace
}  // namespace ekm
